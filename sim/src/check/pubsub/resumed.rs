//! The accounting when sessions outlive connections (`resume_window > 0`).
//!
//! The invariant, checked on every such run: for every session that
//! resumed, nothing is lost and nothing duplicated, in order (duplicates and
//! order are checked as messages arrive, in the parent module); every other
//! loss is explained by the end of the session (`SessionEvent::Ended`, which
//! carries the unacknowledged range, and the `PeerDown` that comes with it)
//! at either end, or by a crash of either process.
//!
//! Per (message, receiving process), over all the copies handed to it:
//! - delivered, or read whole while the receiver did not subscribe (dropped
//!   and counted there): **ok**;
//! - otherwise lost; the loss is explained (**lost with range**) if after
//!   the first hand-off either application was told the session ended, or
//!   either process crashed, and no later message of the same publisher on
//!   the same topic reached the same receiver before that (a silent gap: the
//!   session went on without it). Anything else is **unknown** and fails the
//!   run.
//!
//! On the wire, as it happens: a resumed connection's `Resume { from }`
//! never starts past what the peer's `Hello` on that connection said it
//! expects next, or the highest `Ack` the peer wrote in the session (on any
//! connection: simultaneous dials) (that would skip messages: lost with the session going on).
//! A session never resumes with a peer that restarted (same id, new
//! process): checked at every `SessionEvent::Resumed`, and no message is
//! ever handed again to a restarted process (checked at each hand-off).
//!
//! The planted bug `session.planted_resend_bug` (a resume re-sends
//!   from one past the point the peer expects) leaves such a gap.

use super::{Accounting, Fed, PubSub};
use crate::check::{Cx, Wire};
use crate::net::{Net, ProcId};
use crate::trace::fmt_time;
use estafeta_core::wire::{Header, SessionFrame};
use estafeta_core::{NodeId, SessionEvent};
use std::collections::BTreeMap;

/// What became of one message for one receiving process.
struct Fate {
    g: usize,
    to: ProcId,
    first_at: u64,
    delivered: Option<u64>,
    dropped_unsubscribed: bool,
}

/// The process now running node `id` (the latest started).
fn running(cx: &Cx<'_>, id: NodeId) -> Option<ProcId> {
    cx.procs.iter().rposition(|q| q.id == id).map(|i| i as ProcId)
}

impl PubSub {
    /// `p` started a session with `peer`: remember which process runs it.
    pub(super) fn session_started(&mut self, cx: &Cx<'_>, p: ProcId, peer: NodeId) {
        if let Some(q) = running(cx, peer) {
            self.session_peer.insert((p, peer), q);
        }
    }

    /// `p`'s session with `peer` ended: acknowledgements start again.
    pub(super) fn session_over(&mut self, cx: &Cx<'_>, p: ProcId, peer: NodeId) {
        self.acks.retain(|(a, b), _| {
            let (a_id, b_id) = (cx.procs[*a as usize].id, cx.procs[*b as usize].id);
            !((*a == p && b_id == peer) || (*b == p && a_id == peer))
        });
    }

    /// A session resumed: never with a peer that restarted since it began
    /// (same id, new process). A `Hello` the old process wrote before it
    /// died may still be read after the restart and resume the session on
    /// a connection that is about to fail: that is the old process, so it
    /// counts only if the new one claimed a session from `p`.
    pub(super) fn on_session_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &SessionEvent) {
        let SessionEvent::Resumed { peer, .. } = ev else { return };
        let began = self.session_peer.get(&(p, peer.id)).copied();
        let now = running(cx, peer.id);
        let claimed_by_new = now.is_some_and(|q| self.claimed.contains(&(q, p)));
        if began.is_some() && began != now && claimed_by_new {
            cx.fail(format!("{}: resumed its session with {peer}, which restarted since the session began", cx.who(p)));
        }
    }

    /// Hellos and resumes on the wire: a resume never skips what the peer
    /// expects.
    pub(super) fn on_session_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) {
        match w.header {
            Header::Hello(h) => {
                if let Some(claim) = h.session.as_ref().and_then(|s| s.resume) {
                    self.expects.insert((w.tcp, w.from), claim.next_expected);
                    self.claimed.insert((w.from, w.to));
                }
            }
            Header::Session(SessionFrame::Ack { next }) => {
                let a = self.acks.entry((w.from, w.to)).or_default();
                *a = (*a).max(*next);
            }
            Header::Session(SessionFrame::Resume { from }) => {
                let Some(hello) = self.expects.get(&(w.tcp, w.to)).copied() else { return };
                // The peer may have acknowledged more on another connection
                // (simultaneous dials) since its Hello.
                let next = hello.max(self.acks.get(&(w.to, w.from)).copied().unwrap_or(0));
                if *from > next {
                    cx.fail(format!(
                        "{} resumed its session with {} from message {from}, but the peer expects {next}: \
                         messages {next}..{from} lost while the session goes on",
                        cx.who(w.from),
                        cx.who(w.to)
                    ));
                }
            }
            _ => {}
        }
    }

    /// The session-aware accounting; fails each unexplained loss.
    pub(super) fn account_sessions(&self, cx: &mut Cx<'_>, _net: &Net) -> Accounting {
        let mut acc = Accounting::default();
        let mut errs: Vec<String> = Vec::new();
        // Per (publisher, receiver, topic), in first hand-off order.
        let mut streams: BTreeMap<(ProcId, ProcId, usize), Vec<Fate>> = BTreeMap::new();
        for (g, m) in self.msgs.iter().enumerate() {
            let Ok(r) = &m.result else {
                acc.refused += 1;
                continue;
            };
            acc.published += 1;
            let mut receivers: Vec<ProcId> = Vec::new();
            for h in &m.handoffs {
                if receivers.contains(&h.to) {
                    continue;
                }
                receivers.push(h.to);
                let copies = m.handoffs.iter().filter(|c| c.to == h.to);
                let mut fate = Fate { g, to: h.to, first_at: h.at, delivered: None, dropped_unsubscribed: false };
                for c in copies {
                    fate.delivered = fate.delivered.or(c.delivered);
                    if matches!(c.fed, Some((_, Fed::Unsubscribed | Fed::Either))) {
                        fate.dropped_unsubscribed = true;
                    }
                }
                streams.entry((m.proc, h.to, m.topic)).or_default().push(fate);
            }
            if receivers.len() > r.queued {
                errs.push(format!("message #{g} was queued for {} peers but handed to {}", r.queued, receivers.len()));
            }
            acc.dropped_unsent += r.queued.saturating_sub(receivers.len()) as u64;
        }
        for ((x, y, _), fates) in &streams {
            let (x, y) = (*x, *y);
            let (x_id, y_id) = (cx.procs[x as usize].id, cx.procs[y as usize].id);
            // The session ended (or a process died) within [lo, hi].
            let ended_within = |lo: u64, hi: u64| {
                self.down_within(x, y_id, lo, hi)
                    || self.down_within(y, x_id, lo, hi)
                    || [x, y].iter().any(|p| cx.procs[*p as usize].crashed.is_some_and(|t| (lo..=hi).contains(&t)))
            };
            for (i, f) in fates.iter().enumerate() {
                if f.delivered.is_some() {
                    acc.delivered += 1;
                    acc.session_ok += 1;
                    continue;
                }
                if f.dropped_unsubscribed {
                    acc.dropped_by_receiver += 1;
                    acc.session_ok += 1;
                    continue;
                }
                let gap = fates[i + 1..]
                    .iter()
                    .find_map(|l| l.delivered.filter(|d| !ended_within(f.first_at, *d)).map(|d| (l.g, d)));
                let explained = ended_within(f.first_at, u64::MAX);
                if explained && gap.is_none() {
                    acc.session_lost_with_range += 1;
                    let crashed = [x, y].iter().any(|p| cx.procs[*p as usize].crashed.is_some());
                    if crashed {
                        acc.lost_in_crash += 1;
                    } else {
                        acc.lost_with_connection += 1;
                    }
                    continue;
                }
                acc.session_unknown += 1;
                let why = match gap {
                    Some((later, at)) => format!(
                        "and message #{later}, handed later, was delivered at {} with the session going on (silent gap)",
                        fmt_time(at)
                    ),
                    None => "and the session never ended and neither process crashed".to_string(),
                };
                let m = &self.msgs[f.g];
                errs.push(format!(
                    "unexplained loss in a session: message #{} ({:?} on {}) published at {} by {}, first handed at {} to {}, never delivered, {why}",
                    f.g,
                    m.mode,
                    cx.topics[m.topic],
                    fmt_time(m.at),
                    cx.procs[x as usize].name,
                    fmt_time(f.first_at),
                    cx.procs[f.to as usize].name,
                ));
            }
        }
        for e in errs {
            cx.fail(e);
        }
        acc
    }
}
