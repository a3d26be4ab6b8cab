//! The streams plane's observer. Every stream the applications open carries
//! its global number in its request, so both ends of a stream are known.
//!
//! Safety, as things happen:
//! - one terminal (`Closed`) per stream per side, and no `Data` after it, and
//!   `Data` only on a stream the node opened;
//! - where a side's terminal came from the other side (`remote`), the codes
//!   of both sides are equal;
//! - no credit overrun, on the wire: a producer starts a message only while
//!   the credit the consumer wrote (its Open's window plus its Credit
//!   frames) exceeds what the producer already sent.
//!
//! - replies arrive in order, each once: the application writes reply `k`
//!   of a stream as bytes of value `k`, and the consumer's `k`-th `Data`
//!   must carry them; a consumer whose stream the producer ended (a remote
//!   terminal other than 1001, which drops what was queued) got every reply
//!   its producer wrote. With sessions that resume this spans a lost
//!   connection: what was in flight is re-sent, and re-sent frames are not
//!   counted twice on the wire ([`WireSeq`]).
//!
//! Liveness, after healing: no stream is left open on any node (open counts
//! return to zero). Accounting at the end: every stream of a process that
//! did not crash ended at both ends it reached.

use super::wire_seq::WireSeq;
use super::{Cx, Observer, Want, Wire};
use crate::net::ProcId;
use estafeta_core::wire::{Header, StreamFrame, MESSAGE_COST};
use estafeta_core::{CloseCode, Event, Role, StreamEvent, StreamId};
use std::collections::BTreeMap;

/// One end of a stream: the process, its id there, and its terminal.
#[derive(Clone, Debug)]
struct End {
    proc: ProcId,
    id: StreamId,
    closed: Option<(CloseCode, bool)>,
}

/// One stream the applications opened.
#[derive(Debug, Default)]
struct Rec {
    consumer: Option<End>,
    producer: Option<End>,
    /// Replies the producer's application wrote (accepted by its node).
    written: u64,
    /// Replies the consumer's application received.
    received: u64,
}

/// Credit on one stream, as the wire shows it.
#[derive(Debug, Default)]
struct WireCredit {
    granted: u64,
    used: u64,
    partial: bool,
}

/// The streams observer.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    streams: Vec<Rec>,
    /// (process, stream) → (global number, role).
    index: BTreeMap<(ProcId, StreamId), (u64, Role)>,
    /// (consumer process, producer process, wire id) → credit. The two
    /// sides of a session may send on different connections (after a
    /// simultaneous dial), and an Open starts the record afresh (a new
    /// session reuses ids; everything of the old one was written before).
    credit: BTreeMap<(ProcId, ProcId, u64), WireCredit>,
    seq: WireSeq,
    /// Streams opened, terminals seen, and remote terminals compared.
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) matched: u64,
}

/// The global number a request carries (its first 8 bytes).
pub(crate) fn number_of(request: &[u8]) -> Option<u64> {
    request.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

impl Streams {
    /// The application of `p` opened stream `g` as `id`.
    pub(crate) fn on_open(&mut self, p: ProcId, id: StreamId, g: u64) {
        let g = g as usize;
        if self.streams.len() <= g {
            self.streams.resize_with(g + 1, Rec::default);
        }
        self.streams[g].consumer = Some(End { proc: p, id, closed: None });
        self.index.insert((p, id), (g as u64, Role::Consumer));
        self.opened += 1;
    }

    /// The application of `p` wrote a reply on producer stream `id`: the
    /// payload's bytes to write (its index in the stream).
    pub(crate) fn reply_byte(&mut self, p: ProcId, id: StreamId) -> u8 {
        match self.index.get(&(p, id)) {
            Some(&(g, Role::Producer)) => self.streams[g as usize].written as u8,
            _ => 0xEE,
        }
    }

    /// The node of `p` accepted the reply on `id`.
    pub(crate) fn on_reply(&mut self, p: ProcId, id: StreamId) {
        if let Some(&(g, Role::Producer)) = self.index.get(&(p, id)) {
            self.streams[g as usize].written += 1;
        }
    }

    /// The next global stream number.
    pub(crate) fn next_number(&self) -> u64 {
        self.streams.len() as u64
    }

    fn end_mut(&mut self, g: u64, role: Role) -> Option<&mut End> {
        let r = self.streams.get_mut(g as usize)?;
        match role {
            Role::Consumer => r.consumer.as_mut(),
            Role::Producer => r.producer.as_mut(),
        }
    }
}

impl Observer for Streams {
    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        if let Event::PeerDown { peer, .. } = ev {
            if let Some(q) = cx.procs.iter().rposition(|q| q.id == peer.id) {
                self.seq.session_over(p, q as ProcId);
            }
        }
        let Event::Stream(ev) = ev else { return };
        match ev {
            StreamEvent::Request { stream, request, .. } => {
                let Some(g) = number_of(request).filter(|g| (*g as usize) < self.streams.len()) else {
                    cx.fail(format!("{}: a request that no application sent", cx.who(p)));
                    return;
                };
                let r = &mut self.streams[g as usize];
                if r.producer.is_some() {
                    cx.fail(format!("{}: stream #{g} requested twice", cx.who(p)));
                    return;
                }
                r.producer = Some(End { proc: p, id: *stream, closed: None });
                self.index.insert((p, *stream), (g, Role::Producer));
            }
            StreamEvent::Data { stream, payload } => match self.index.get(&(p, *stream)) {
                Some(&(g, Role::Consumer)) => {
                    if self.end_mut(g, Role::Consumer).is_some_and(|e| e.closed.is_some()) {
                        cx.fail(format!("{}: data on stream #{g} after its terminal", cx.who(p)));
                    }
                    let r = &mut self.streams[g as usize];
                    let k = r.received;
                    r.received += 1;
                    if payload.first() != Some(&(k as u8)) || r.received > r.written {
                        cx.fail(format!(
                            "{}: reply {k} of stream #{g} carries {:?} ({} written): lost, duplicated or out of order",
                            cx.who(p),
                            payload.first(),
                            r.written
                        ));
                    }
                }
                _ => cx.fail(format!("{}: data on {stream}, which it did not open", cx.who(p))),
            },
            StreamEvent::Closed { stream, role, end } => {
                let Some(&(g, r)) = self.index.get(&(p, *stream)) else {
                    cx.fail(format!("{}: Closed for unknown {stream}", cx.who(p)));
                    return;
                };
                if r != *role {
                    cx.fail(format!("{}: stream #{g} closed as {role:?}, opened as {r:?}", cx.who(p)));
                }
                let e = self.end_mut(g, r).expect("indexed");
                if let Some(prev) = e.closed {
                    cx.fail(format!("{}: second terminal on stream #{g} ({prev:?}, then {end:?})", cx.who(p)));
                    return;
                }
                e.closed = Some((end.code, end.remote));
                self.closed += 1;
                let rec = &self.streams[g as usize];
                if r == Role::Consumer && end.remote && end.code != CloseCode::GOING_AWAY && rec.received != rec.written
                {
                    cx.fail(format!(
                        "{}: stream #{g} ended by its producer ({}) after {} of the {} replies it wrote",
                        cx.who(p),
                        end.code,
                        rec.received,
                        rec.written
                    ));
                }
                if let (Some(c), Some(pr)) = (&rec.consumer, &rec.producer) {
                    if let (Some((cc, cr)), Some((pc, pr_))) = (c.closed, pr.closed) {
                        if cr || pr_ {
                            self.matched += 1;
                            if cc != pc {
                                cx.fail(format!(
                                    "stream #{g}: consumer {} ended with {cc} (remote {cr}), producer {} with {pc} (remote {pr_})",
                                    cx.who(c.proc),
                                    cx.who(pr.proc)
                                ));
                            }
                        }
                    }
                }
            }
            StreamEvent::Writable { .. } | StreamEvent::Serving { .. } => {}
        }
    }

    fn on_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) -> Option<u64> {
        // A frame re-sent after a resume was counted when first written.
        if !self.seq.is_new(w) {
            return None;
        }
        let Header::Stream(f) = w.header else { return None };
        match f {
            StreamFrame::Open { id, window, .. } => {
                self.credit.insert((w.from, w.to, *id), WireCredit { granted: *window, ..Default::default() });
            }
            StreamFrame::Credit { id, bytes } => {
                if let Some(c) = self.credit.get_mut(&(w.from, w.to, *id)) {
                    c.granted += bytes;
                }
            }
            StreamFrame::Data { id, more } => {
                let Some(c) = self.credit.get_mut(&(w.to, w.from, *id)) else {
                    cx.fail(format!("{} wrote data on stream {id}, never opened on tcp {}", cx.who(w.from), w.tcp));
                    return None;
                };
                let len = w.payload.len() as u64;
                if !c.partial {
                    if c.used >= c.granted {
                        cx.fail(format!(
                            "credit overrun: {} started a message on stream {id} (tcp {}) with {} used of {} granted",
                            cx.who(w.from),
                            w.tcp,
                            c.used,
                            c.granted
                        ));
                    }
                    c.used += len + MESSAGE_COST;
                } else {
                    c.used += len;
                }
                c.partial = *more;
            }
            _ => {}
        }
        None
    }

    fn settled(&self, want: &Want<'_>) -> Result<(), String> {
        for (slot, node) in want.nodes.iter().enumerate() {
            let (c, p) = node.streams_ref().open_counts();
            if c + p > 0 {
                return Err(format!("n{slot} still holds {c} consumer and {p} producer streams"));
            }
        }
        Ok(())
    }

    fn at_end(&mut self, cx: &mut Cx<'_>, _net: &crate::net::Net) {
        let mut missing = Vec::new();
        for (g, r) in self.streams.iter().enumerate() {
            for e in [&r.consumer, &r.producer].into_iter().flatten() {
                if e.closed.is_none() && cx.procs[e.proc as usize].crashed.is_none() {
                    missing.push(format!("#{g} ({}) at {}", e.id, cx.who(e.proc)));
                }
            }
        }
        if !missing.is_empty() {
            missing.truncate(10);
            cx.fail(format!("streams that never ended: {}", missing.join(", ")));
        }
    }
}
