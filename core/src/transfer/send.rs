//! The sending side: one `Outgoing` per transfer, one `OutPeer` per receiver,
//! each at its own offset with its own credit and at most one file request
//! outstanding.

use super::{Control, Due, FileError, FileOp, FileReply, Owner, TimerKey, TransferEvent, TransferState};
use crate::event::{Events, PeerInfo};
use crate::id::{ConnId, NodeId, Topic};
use crate::time::Timestamp;
use crate::transfer::event::Direction;
use crate::wire::transfer::TransferFrame;
use crate::wire::{encode_frame, Header};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

/// Where the bytes of an outgoing transfer come from.
#[derive(Clone, Debug)]
pub(crate) enum Src {
    Path(PathBuf),
    Mem(Bytes),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutPhase {
    /// Offer due or sent; waiting for Accept or Reject.
    Offering,
    /// Checking the receiver's prefix.
    Checking,
    /// Sending chunks.
    Sending,
    /// Everything sent; waiting for Complete.
    Sent,
    Done,
    Failed,
}

#[derive(Debug)]
pub(crate) struct OutPeer {
    pub(crate) info: PeerInfo,
    pub(crate) phase: OutPhase,
    /// Bumped whenever reads in flight become stale.
    gen: u64,
    accepted: u64,
    prefix: [u8; 32],
    /// Where the current start begins.
    start: u64,
    next_read: u64,
    next_send: u64,
    until: u64,
    synced: u64,
    ready: VecDeque<(u64, Bytes)>,
    ready_bytes: usize,
    /// A file request is outstanding.
    busy: bool,
    /// Highest byte end ever sent to this receiver.
    high: u64,
    /// Bytes the receiver said it received (in this start).
    acked: u64,
    /// Bytes allowed on the wire beyond `acked` now (see [`Pace`]).
    pace: Pace,
    pub(crate) reason: Option<String>,
}

/// The in-flight allowance of one receiver: a window that follows the
/// round trip instead of a fixed `max_in_flight`, so a message on the same
/// connection waits behind about one target delay of file data, not behind
/// whatever the socket buffers hold (LEDBAT-like: below the lowest round
/// trip seen plus [`QUEUE_TARGET`] the window grows by the bytes acked, above
/// it it shrinks in proportion; between a floor and `max_in_flight`).
#[derive(Debug)]
struct Pace {
    window: u64,
    /// Lowest round trip seen (a chunk's send to the Credit that covers
    /// it) over the last [`BASE_SAMPLES`] to twice that many samples, so a
    /// lucky early sample does not pin the window to its floor.
    min_rtt: Option<std::time::Duration>,
    /// The lowest of the samples since the last renewal, and their count.
    next_min: Option<std::time::Duration>,
    samples: u32,
    /// (chunk end, when sent), oldest first; bounded by `max_in_flight` / chunk + 2.
    stamps: VecDeque<(u64, Timestamp)>,
}

/// Queueing delay the pace aims at, beyond the lowest round trip.
const QUEUE_TARGET: std::time::Duration = std::time::Duration::from_millis(1);

/// Round-trip samples after which the lowest round trip is renewed.
const BASE_SAMPLES: u32 = 256;

impl Pace {
    fn new() -> Self {
        Pace { window: 0, min_rtt: None, next_min: None, samples: 0, stamps: VecDeque::new() }
    }

    /// The floor: a quarter of `cap` and a chunk (a receiver acks at least
    /// every quarter of `max_in_flight`, so the sender never waits for an
    /// ack that is not coming).
    fn floor(cap: u64, chunk: u64) -> u64 {
        (cap / 4 + chunk).min(cap.max(chunk))
    }

    fn allowed(&self, cap: u64, chunk: u64) -> u64 {
        if self.window == 0 {
            cap
        } else {
            self.window.clamp(Self::floor(cap, chunk), cap.max(chunk))
        }
    }

    fn sent(&mut self, end: u64, now: Timestamp, cap: u64, chunk: u64) {
        if self.stamps.len() < (cap / chunk.max(1)) as usize + 2 {
            self.stamps.push_back((end, now));
        }
    }

    /// The receiver has `received` bytes (after `acked` bytes `acked_bytes` ago).
    fn acked(&mut self, received: u64, newly: u64, now: Timestamp, cap: u64, chunk: u64) {
        let mut sample = None;
        while let Some(&(end, at)) = self.stamps.front() {
            if end > received {
                break;
            }
            self.stamps.pop_front();
            sample = Some(now.saturating_since(at));
        }
        let Some(rtt) = sample else { return };
        let min = self.min_rtt.map_or(rtt, |m| m.min(rtt));
        self.min_rtt = Some(min);
        self.next_min = Some(self.next_min.map_or(rtt, |m| m.min(rtt)));
        self.samples += 1;
        if self.samples >= BASE_SAMPLES {
            self.min_rtt = self.next_min.take();
            self.samples = 0;
        }
        let w = self.allowed(cap, chunk) as f64;
        let target = QUEUE_TARGET.as_secs_f64();
        let delay = rtt.saturating_sub(min).as_secs_f64();
        let gain = ((target - delay) / target).clamp(-1.0, 1.0);
        let w = if gain >= 0.0 { w + gain * newly as f64 } else { w * (1.0 + gain / 2.0) };
        self.window = (w as u64).clamp(Self::floor(cap, chunk), cap.max(chunk));
    }

    /// A new start: round trips so far say nothing about what follows.
    fn restart(&mut self) {
        self.stamps.clear();
    }
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) src: Src,
    pub(crate) topic: Topic,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) chunk: u32,
    pub(crate) meta: Vec<(String, String)>,
    pub(crate) to: BTreeMap<NodeId, OutPeer>,
    /// The hash is being computed while the file is sent (`hash` is all
    /// zero until then); `None` once it is known.
    pub(crate) hashing: Option<Hashing>,
}

/// The whole-file hash of an outgoing transfer offered without it: the
/// bytes read for sending are hashed in order as they come back; if they
/// did not cover the file from 0 by the time a receiver has every byte (it
/// resumed, or a reconnect read a range again), the file is hashed whole.
#[derive(Debug)]
pub(crate) struct Hashing {
    hasher: Box<blake3::Hasher>,
    /// Bytes `0..hashed` fed to `hasher`.
    hashed: u64,
    /// A request hashing the whole file is outstanding.
    whole: bool,
}

impl Hashing {
    pub(crate) fn new() -> Self {
        Hashing { hasher: Box::new(blake3::Hasher::new()), hashed: 0, whole: false }
    }
}

impl OutPeer {
    pub(crate) fn new(info: PeerInfo) -> Self {
        OutPeer {
            info,
            phase: OutPhase::Offering,
            gen: 0,
            accepted: 0,
            prefix: [0; 32],
            start: 0,
            next_read: 0,
            next_send: 0,
            until: 0,
            synced: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            busy: false,
            high: 0,
            acked: 0,
            pace: Pace::new(),
            reason: None,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        !matches!(self.phase, OutPhase::Done | OutPhase::Failed)
    }

    fn reset(&mut self) {
        self.pace.restart();
        self.gen += 1;
        self.ready.clear();
        self.ready_bytes = 0;
    }

    /// A chunk is ready and within the bytes allowed in flight (at least
    /// one chunk may always be in flight).
    fn can_send(&self, cap: u64, chunk: u64) -> bool {
        let Some((offset, data)) = self.ready.front() else { return false };
        let cap = self.pace.allowed(cap, chunk);
        self.phase == OutPhase::Sending && (*offset == self.acked || offset + data.len() as u64 <= self.acked + cap)
    }

    /// Bytes this receiver's state holds in memory.
    pub(crate) fn held(&self) -> usize {
        self.ready_bytes
    }
}

impl Outgoing {
    /// The control frame `what` for receiver `peer`, from state.
    pub(super) fn control(&self, id: u64, peer: NodeId, what: Due) -> Option<Control> {
        let p = self.to.get(&peer)?;
        match what {
            Due::Offer if p.phase == OutPhase::Offering => Some(Control::Offer {
                id,
                topic: self.topic.clone(),
                name: self.name.clone(),
                size: self.size,
                hash: self.hash,
                chunk: self.chunk,
                meta: self.meta.clone(),
            }),
            Due::Start if matches!(p.phase, OutPhase::Sending | OutPhase::Sent) => Some(Control::Start(id, p.start)),
            Due::Digest if p.is_live() && self.hashing.is_none() => Some(Control::Digest(id, self.hash)),
            Due::AbortOut if p.phase == OutPhase::Failed => {
                Some(Control::Abort(id, true, p.reason.clone().unwrap_or_default()))
            }
            _ => None,
        }
    }
}

impl TransferState {
    /// Registers a new outgoing transfer to `receivers` and offers it.
    pub(super) fn add_outgoing(&mut self, id: u64, o: Outgoing) {
        let peers: Vec<NodeId> = o.to.keys().copied().collect();
        self.out.insert(id, o);
        for p in peers {
            self.due(p, id, Due::Offer);
        }
    }

    pub(super) fn out_peer_up(&mut self, id: u64, info: &PeerInfo) {
        let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&info.id)) else { return };
        if !p.is_live() {
            return;
        }
        p.reset();
        p.phase = OutPhase::Offering;
        self.timers.cancel(TimerKey::Out(id, info.id));
        self.due(info.id, id, Due::Offer);
    }

    /// Returns true if the receiver's transfer is still live (wait for it).
    pub(super) fn out_peer_down(&mut self, id: u64, peer: NodeId) -> bool {
        let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&peer)) else { return false };
        if !p.is_live() {
            return false;
        }
        p.reset();
        p.phase = OutPhase::Offering;
        true
    }

    pub(super) fn on_accept(
        &mut self,
        peer: NodeId,
        id: u64,
        offset: u64,
        prefix: [u8; 32],
        until: u64,
        events: &mut Events,
    ) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let size = o.size;
        let Some(p) = o.to.get_mut(&peer) else { return };
        if !p.is_live() {
            return;
        }
        if offset > size {
            self.out_fail(id, peer, format!("receiver accepted from {offset}, past the size {size}"), true, events);
            return;
        }
        p.reset();
        p.accepted = offset;
        p.prefix = prefix;
        p.until = until;
        p.synced = p.synced.min(offset);
        if offset == 0 {
            self.out_start(id, peer, 0, events);
            return;
        }
        match &o.src {
            Src::Mem(b) => {
                let ok = blake3::hash(&b[..offset as usize]).as_bytes() == &prefix;
                self.out_start(id, peer, if ok { offset } else { 0 }, events);
            }
            Src::Path(_) => {
                p.phase = OutPhase::Checking;
                self.out_pump(id, peer);
            }
        }
    }

    fn out_start(&mut self, id: u64, peer: NodeId, offset: u64, events: &mut Events) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let size = o.size;
        let Some(p) = o.to.get_mut(&peer) else { return };
        if offset < p.accepted {
            self.stats.prefix_mismatches += 1;
        }
        p.phase = if offset == size { OutPhase::Sent } else { OutPhase::Sending };
        p.start = offset;
        p.acked = offset;
        p.next_read = offset;
        p.next_send = offset;
        let info = p.info.clone();
        Self::push_event(events, TransferEvent::Started { peer: info, id, direction: Direction::Outgoing, offset });
        self.due(peer, id, Due::Start);
        if offset == size {
            self.out_need_digest(id);
        }
        self.out_pump(id, peer);
    }

    pub(super) fn on_credit(
        &mut self,
        peer: NodeId,
        id: u64,
        (synced, until, received): (u64, u64, u64),
        now: Timestamp,
        events: &mut Events,
    ) {
        let cap = self.cfg.max_in_flight;
        let Some(o) = self.out.get_mut(&id) else { return };
        let total = o.size;
        let chunk = o.chunk as u64;
        let Some(p) = o.to.get_mut(&peer) else { return };
        if !p.is_live() {
            return;
        }
        p.until = p.until.max(until);
        if received > p.acked && received <= p.next_send {
            p.pace.acked(received, received - p.acked, now, cap, chunk);
            p.acked = received;
            if !p.ready.is_empty() {
                if let Some(l) = self.links.get(&peer) {
                    self.wake.push(l.conn);
                }
            }
        }
        let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&peer)) else { return };
        if synced > p.synced {
            p.synced = synced;
            let ev = TransferEvent::Progress {
                peer: p.info.clone(),
                id,
                direction: Direction::Outgoing,
                bytes: synced.min(total),
                total,
            };
            Self::push_event(events, ev);
        }
        self.out_pump(id, peer);
    }

    pub(super) fn on_complete(&mut self, peer: NodeId, id: u64, events: &mut Events) {
        let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&peer)) else { return };
        if !p.is_live() {
            return;
        }
        p.phase = OutPhase::Done;
        p.reset();
        self.stats.delivered += 1;
        let info = p.info.clone();
        self.timers.cancel(TimerKey::Out(id, peer));
        Self::push_event(events, TransferEvent::Delivered { peer: info, id });
        self.out_gc(id);
    }

    /// Ends the transfer to `peer` with `reason`; `tell`: send Abort.
    pub(super) fn out_fail(&mut self, id: u64, peer: NodeId, reason: String, tell: bool, events: &mut Events) {
        let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&peer)) else { return };
        if !p.is_live() {
            return;
        }
        p.phase = OutPhase::Failed;
        p.reset();
        p.reason = Some(reason.clone());
        let info = p.info.clone();
        self.stats.failed += 1;
        self.timers.cancel(TimerKey::Out(id, peer));
        Self::push_event(events, TransferEvent::Failed { peer: info, id, direction: Direction::Outgoing, reason });
        if tell {
            self.due(peer, id, Due::AbortOut);
        } else {
            self.out_gc(id);
        }
    }

    /// Forgets a transfer whose receivers all finished and were told.
    fn out_gc(&mut self, id: u64) {
        let Some(o) = self.out.get(&id) else { return };
        let waiting = |peer: &NodeId| self.links.get(peer).is_some_and(|l| l.due.contains(&(id, Due::AbortOut)));
        let hashing = o.hashing.as_ref().is_some_and(|h| h.whole);
        if !hashing && o.to.iter().all(|(peer, p)| !p.is_live() && !p.busy && !waiting(peer)) {
            self.out.remove(&id);
        }
    }

    /// Starts the next file request for receiver `peer`, if one is needed.
    pub(super) fn out_pump(&mut self, id: u64, peer: NodeId) {
        let read_size = self.cfg.read_size as u64;
        let Some(o) = self.out.get_mut(&id) else { return };
        let (size, chunk) = (o.size, o.chunk as u64);
        let Some(p) = o.to.get_mut(&peer) else { return };
        if p.busy || !self.links.contains_key(&peer) {
            return;
        }
        let owner = Owner::Out { id, peer, gen: p.gen };
        match p.phase {
            OutPhase::Checking => {
                if let Src::Path(path) = &o.src {
                    p.busy = true;
                    let op = FileOp::Hash { path: path.clone(), len: p.accepted };
                    self.request(owner, op);
                }
            }
            OutPhase::Sending => {
                let end = p.until.min(size);
                // Read ahead at most one read beyond what is ready.
                if p.next_read >= end || p.ready_bytes as u64 >= read_size {
                    return;
                }
                let len = (end - p.next_read).min(read_size.max(chunk));
                match &o.src {
                    Src::Mem(b) => {
                        let data = b.slice(p.next_read as usize..(p.next_read + len) as usize);
                        push_chunks(p, data, chunk);
                        self.wake_peer(peer);
                        self.out_pump(id, peer);
                    }
                    Src::Path(path) => {
                        p.busy = true;
                        let op = FileOp::Read { path: path.clone(), offset: p.next_read, len: len as usize };
                        self.request(owner, op);
                    }
                }
            }
            _ => {}
        }
    }

    pub(super) fn out_file_done(
        &mut self,
        id: u64,
        peer: NodeId,
        gen: u64,
        result: Result<FileReply, FileError>,
        events: &mut Events,
    ) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let chunk = o.chunk as u64;
        let Some(p) = o.to.get_mut(&peer) else { return };
        p.busy = false;
        if gen != p.gen || !p.is_live() {
            self.out_gc(id);
            self.out_pump(id, peer);
            return;
        }
        match (p.phase, result) {
            (OutPhase::Checking, Ok(FileReply::Hashed(h))) => {
                let ok = h.finalize().as_bytes() == &p.prefix;
                let at = if ok { p.accepted } else { 0 };
                if ok && at == o.size {
                    // The receiver holds the whole file: its hash is known now.
                    let prefix = p.prefix;
                    self.out_hash_known(id, Some(prefix));
                }
                self.out_start(id, peer, at, events);
            }
            (OutPhase::Sending, Ok(FileReply::Data(data))) => {
                let at = p.next_read;
                let size = o.size;
                let mut whole = false;
                if let Some(h) = o.hashing.as_mut().filter(|h| h.hashed >= at && h.hashed < at + data.len() as u64) {
                    h.hasher.update(&data[(h.hashed - at) as usize..]);
                    h.hashed = at + data.len() as u64;
                    whole = h.hashed == size;
                }
                if whole {
                    self.out_hash_known(id, None);
                }
                let Some(p) = self.out.get_mut(&id).and_then(|o| o.to.get_mut(&peer)) else { return };
                push_chunks(p, data, chunk);
                self.wake_peer(peer);
                self.out_pump(id, peer);
            }
            (_, Err(e)) => self.out_fail(id, peer, format!("reading the file failed: {e}"), true, events),
            (_, Ok(_)) => self.out_fail(id, peer, "unexpected file reply".into(), true, events),
        }
    }

    /// Chunk frames for the peer whose primary is `conn`, round-robin over
    /// its transfers, at least one frame if any is ready, then up to `room`
    /// bytes. Returns bytes written.
    pub(crate) fn produce(
        &mut self,
        conn: ConnId,
        peer: NodeId,
        buf: &mut Vec<u8>,
        room: usize,
        now: Timestamp,
    ) -> usize {
        let cap = self.cfg.max_in_flight;
        let start = buf.len();
        if self.out.is_empty() {
            return 0;
        }
        let Some(link) = self.links.get(&peer).filter(|l| l.conn == conn) else { return 0 };
        let cursor = link.cursor;
        let ids: Vec<u64> = self
            .out
            .range(cursor.wrapping_add(1)..)
            .chain(self.out.range(..=cursor))
            .filter(|(_, o)| o.to.get(&peer).is_some_and(|p| p.can_send(cap, o.chunk as u64)))
            .map(|(id, _)| *id)
            .collect();
        let mut last = None;
        'all: for id in ids {
            loop {
                let Some(o) = self.out.get_mut(&id) else { continue 'all };
                let (size, chunk) = (o.size, o.chunk as u64);
                let Some(p) = o.to.get_mut(&peer) else { continue 'all };
                if !p.can_send(cap, chunk) {
                    break;
                }
                let Some((offset, data)) = p.ready.front() else { break };
                let written = buf.len() - start;
                if written > 0 && written + data.len() > room {
                    break 'all;
                }
                let (offset, data) = (*offset, data.clone());
                p.ready.pop_front();
                p.ready_bytes -= data.len();
                let end = offset + data.len() as u64;
                encode_frame(buf, &Header::Transfer(TransferFrame::Chunk { id, offset }), &data);
                if offset < p.high {
                    self.stats.bytes_resent += p.high.min(end) - offset;
                }
                p.high = p.high.max(end);
                p.next_send = end;
                p.pace.sent(end, now, cap, chunk);
                self.stats.bytes_sent += data.len() as u64;
                last = Some(id);
                if end == size {
                    p.phase = OutPhase::Sent;
                    self.out_need_digest(id);
                }
                self.out_pump(id, peer);
            }
        }
        if let (Some(id), Some(l)) = (last, self.links.get_mut(&peer)) {
            l.cursor = id;
        }
        buf.len() - start
    }

    /// True if chunks are ready for the peer whose primary is `conn`.
    pub(crate) fn has_data(&self, peer: NodeId) -> bool {
        let cap = self.cfg.max_in_flight;
        self.out.values().any(|o| o.to.get(&peer).is_some_and(|p| p.can_send(cap, o.chunk as u64)))
    }
}

impl TransferState {
    /// A receiver has every byte: if the hash is still unknown and the
    /// bytes read did not cover the file, hash the whole file.
    fn out_need_digest(&mut self, id: u64) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let Some(h) = o.hashing.as_mut().filter(|h| !h.whole && h.hashed < o.size) else { return };
        let Src::Path(path) = &o.src else { return };
        h.whole = true;
        let op = FileOp::Hash { path: path.clone(), len: o.size };
        self.request(Owner::Digest { id }, op);
    }

    /// The whole file was hashed (a request from [`Self::out_need_digest`]).
    pub(super) fn out_digest_done(&mut self, id: u64, result: Result<FileReply, FileError>, events: &mut Events) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let Some(h) = o.hashing.as_mut() else {
            self.out_gc(id);
            return;
        };
        h.whole = false;
        match result {
            Ok(FileReply::Hashed(hasher)) => self.out_hash_known(id, Some(*hasher.finalize().as_bytes())),
            other => {
                let why = match other {
                    Err(e) => format!("hashing the file failed: {e}"),
                    Ok(_) => "unexpected file reply".into(),
                };
                let peers: Vec<NodeId> = o.to.iter().filter(|(_, p)| p.is_live()).map(|(k, _)| *k).collect();
                for p in peers {
                    self.out_fail(id, p, why.clone(), true, events);
                }
            }
        }
        self.out_gc(id);
    }

    /// The whole-file hash is known (`hash`, or from the bytes read in
    /// order): every receiver still in progress is owed a `Digest`, and
    /// later offers carry it.
    fn out_hash_known(&mut self, id: u64, hash: Option<[u8; 32]>) {
        let Some(o) = self.out.get_mut(&id) else { return };
        let Some(h) = o.hashing.take() else { return };
        o.hash = hash.unwrap_or_else(|| *h.hasher.finalize().as_bytes());
        let peers: Vec<NodeId> = o.to.iter().filter(|(_, p)| p.is_live()).map(|(k, _)| *k).collect();
        for p in peers {
            self.due(p, id, Due::Digest);
        }
    }
}

/// Splits `data` (read at `p.next_read`) into chunks aligned to `chunk`.
fn push_chunks(p: &mut OutPeer, data: Bytes, chunk: u64) {
    let mut at = 0usize;
    while at < data.len() {
        let off = p.next_read;
        let to_boundary = (chunk - off % chunk) as usize;
        let n = to_boundary.min(data.len() - at);
        p.ready.push_back((off, data.slice(at..at + n)));
        p.ready_bytes += n;
        p.next_read += n as u64;
        at += n;
    }
}
