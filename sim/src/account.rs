//! The final accounting: every published message, for every node it was
//! meant for, is delivered, dropped-and-counted, or lost with a connection
//! whose loss the core reported. Anything else is an unexplained loss.
//!
//! At most once over TCP means a message handed to a connection that then
//! dies before the receiver read the whole frame may be lost. That loss is
//! explained only if an application was told:
//! - the publisher saw `PeerDown` for the receiver after handing it over, or
//!   the receiver saw `PeerDown` for the publisher after the connection
//!   opened, or either process crashed while its node still held the
//!   connection (a paused process that crashes never learns of a reset that
//!   arrived while it was paused); and
//! - no later message from the same publisher reached the same receiver
//!   without such a `PeerDown` in between (a silent gap).
//!
//! Everything else must be counted by `Event::Dropped`, per node and peer:
//! messages queued and never written (`QueueFull`, `Disconnected` at the
//! publisher), and frames a receiver read whole but did not deliver (it had
//! unsubscribed: `NotSubscribed`; its connection closed before it processed
//! them: `Disconnected` at the receiver).

use crate::check::{DropKind, Fed, Mode, Oracle};
use crate::net::{Net, ProcId};
use crate::trace::fmt_time;
use estafeta_core::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// What became of every published message, per intended receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Publishes accepted by the core.
    pub published: u64,
    /// Publishes refused with an error (nothing queued).
    pub refused: u64,
    /// (message, receiver) pairs delivered.
    pub delivered: u64,
    /// Handed to a connection that died before the receiver read the frame;
    /// the loss was reported with `PeerDown`.
    pub lost_with_connection: u64,
    /// Handed to a connection that died with the publisher's or the
    /// receiver's process.
    pub lost_in_crash: u64,
    /// Read whole by the receiver and dropped there (unsubscribed, or the
    /// connection closed first), counted by the receiver.
    pub dropped_by_receiver: u64,
    /// Queued and never written, counted by the publisher.
    pub dropped_unsent: u64,
}

/// (publisher, receiver) processes.
type Pair = (ProcId, ProcId);

impl Oracle {
    fn downs(&self, p: ProcId, peer: NodeId) -> &[u64] {
        self.procs[p as usize].peer_downs.get(&peer).map_or(&[], |v| v.as_slice())
    }

    fn down_within(&self, p: ProcId, peer: NodeId, lo: u64, hi: u64) -> bool {
        self.downs(p, peer).iter().any(|t| (lo..=hi).contains(t))
    }

    /// Messages handed to a connection that is still open at both ends and
    /// not yet read whole by the receiver: still travelling.
    pub(crate) fn in_transit(&self, net: &Net) -> usize {
        self.msgs
            .iter()
            .flat_map(|m| &m.handoffs)
            .filter(|h| h.fed.is_none() && h.delivered.is_none() && net.tcps[h.tcp].died_at().is_none())
            .count()
    }

    /// Classifies every message; records a violation for each unexplained
    /// loss or miscount. Call when the network is quiet.
    pub(crate) fn account(&mut self, now: u64, net: &Net) -> Accounting {
        let mut acc = Accounting::default();
        let mut errs: Vec<String> = Vec::new();
        // Per (publisher, receiver): handoffs in order, with delivery times,
        // and for each position the next delivered one after it.
        let mut streams: BTreeMap<Pair, Vec<(u64, Option<u64>)>> = BTreeMap::new();
        for m in &self.msgs {
            for h in &m.handoffs {
                streams.entry((m.proc, h.to)).or_default().push((h.at, h.delivered));
            }
        }
        let mut next_delivered: BTreeMap<Pair, Vec<Option<(u64, u64)>>> = BTreeMap::new();
        for (k, v) in &streams {
            let mut out = vec![None; v.len()];
            let mut next = None;
            for i in (0..v.len()).rev() {
                out[i] = next;
                if let Some(d) = v[i].1 {
                    next = Some((v[i].0, d));
                }
            }
            next_delivered.insert(*k, out);
        }
        let mut pos: BTreeMap<(ProcId, ProcId), usize> = BTreeMap::new();
        // Drops each (node, peer) must have counted.
        let mut expect: BTreeMap<(ProcId, NodeId), u64> = BTreeMap::new();
        let mut unknown_dest: BTreeMap<ProcId, u64> = BTreeMap::new();
        let mut total: BTreeMap<ProcId, u64> = BTreeMap::new();
        for (g, m) in self.msgs.iter().enumerate() {
            let Ok(r) = &m.result else {
                acc.refused += 1;
                continue;
            };
            acc.published += 1;
            let x = m.proc;
            let x_id = self.procs[x as usize].id;
            for h in &m.handoffs {
                let key = (x, h.to);
                let i = *pos.entry(key).and_modify(|i| *i += 1).or_insert(0);
                if h.delivered.is_some() {
                    acc.delivered += 1;
                    continue;
                }
                let y = h.to;
                let y_id = self.procs[y as usize].id;
                let died = net.tcps[h.tcp].died_at();
                if let Some((_, fed)) = h.fed {
                    // The receiver read the whole frame: it must count it.
                    if fed == Fed::Subscribed && died.is_none() {
                        errs.push(format!(
                            "message #{g} was read whole by subscribed {} on a live connection but never delivered",
                            self.procs[y as usize].name
                        ));
                    }
                    *expect.entry((y, x_id)).or_default() += 1;
                    *total.entry(y).or_default() += 1;
                    acc.dropped_by_receiver += 1;
                    continue;
                }
                // A process that crashed while its node still held the
                // connection (open, or reset and not yet reported to the
                // node, say because the process was paused): nobody is left
                // to tell, or to tell it.
                let t = &net.tcps[h.tcp];
                let crashed_with_it = |p: ProcId| t.ends.iter().any(|e| e.proc == p && e.held_at_crash);
                if crashed_with_it(x) || crashed_with_it(y) {
                    acc.lost_in_crash += 1;
                    continue;
                }
                let Some(died) = died else {
                    errs.push(format!(
                        "message #{g} handed at {} to a live connection (tcp {}) was never read by {}",
                        fmt_time(h.at),
                        h.tcp,
                        self.procs[y as usize].name
                    ));
                    continue;
                };
                acc.lost_with_connection += 1;
                let opened = net.tcps[h.tcp].opened_at;
                let told_x = self.downs(x, y_id).iter().any(|t| *t >= h.at);
                let told_y = self.downs(y, x_id).iter().any(|t| *t >= opened);
                let gap = next_delivered[&key][i].filter(|(later_at, later_delivered)| {
                    !self.down_within(x, y_id, h.at, *later_at) && !self.down_within(y, x_id, opened, *later_delivered)
                });
                if (told_x || told_y) && gap.is_none() {
                    continue;
                }
                let why = match gap {
                    Some((later_at, _)) => format!(
                        "and a later message handed at {} was delivered with no PeerDown in between (silent gap)",
                        fmt_time(later_at)
                    ),
                    None => "and neither side ever reported PeerDown".to_string(),
                };
                errs.push(format!(
                    "unexplained loss: message #{g} ({:?} on {}) published at {} by {}, handed at {} to {} on tcp {} which died at {}, {why}",
                    m.mode,
                    self.topics[m.topic],
                    fmt_time(m.at),
                    self.procs[x as usize].name,
                    fmt_time(h.at),
                    self.procs[y as usize].name,
                    h.tcp,
                    fmt_time(died),
                ));
            }
            if m.handoffs.len() > r.queued {
                errs.push(format!("message #{g} was queued for {} peers but handed to {}", r.queued, m.handoffs.len()));
            }
            let unsent = r.queued.saturating_sub(m.handoffs.len()) as u64;
            acc.dropped_unsent += unsent;
            *total.entry(x).or_default() += unsent;
            // A directed message's unsent copy was meant for its target;
            // for the other modes the publisher's counts must cover it.
            match (&m.mode, &m.expected) {
                (Mode::To(_), Some(exp)) if unsent > 0 => {
                    let id = *exp.iter().next().expect("one target");
                    *expect.entry((x, id)).or_default() += unsent;
                }
                _ => *unknown_dest.entry(x).or_default() += unsent,
            }
        }
        for (p, rec) in self.procs.iter().enumerate() {
            let p = p as ProcId;
            let alive = rec.crashed.is_none();
            let counted =
                |k: DropKind| -> u64 { rec.drops.iter().filter(|((_, kk), _)| *kk == k).map(|(_, n)| n).sum() };
            let full = counted(DropKind::QueueFull);
            if full != rec.dropped_at_publish {
                errs.push(format!(
                    "{}: publishes reported {} drops for full queues, Dropped(QueueFull) says {full}",
                    rec.name, rec.dropped_at_publish
                ));
            }
            let reported = |id: Option<NodeId>| -> u64 {
                [DropKind::Disconnected, DropKind::NotSubscribed, DropKind::Unprocessed]
                    .iter()
                    .map(|k| rec.drops.get(&(id, *k)).copied().unwrap_or(0))
                    .sum()
            };
            let all_reported =
                counted(DropKind::Disconnected) + counted(DropKind::NotSubscribed) + counted(DropKind::Unprocessed);
            let want = total.get(&p).copied().unwrap_or(0);
            if (alive && all_reported != want) || all_reported > want {
                errs.push(format!(
                    "{}: {want} messages were queued and never written or read and not delivered, but \
                     Dropped(Disconnected | NotSubscribed | Unprocessed) counts {all_reported}",
                    rec.name
                ));
            }
            let slack = unknown_dest.get(&p).copied().unwrap_or(0);
            let mut peers: BTreeSet<NodeId> = rec.drops.keys().filter_map(|(id, _)| *id).collect();
            peers.extend(
                expect.range((p, NodeId::from_u128(0))..).take_while(|((q, _), _)| *q == p).map(|((_, id), _)| *id),
            );
            for id in peers {
                let lo = expect.get(&(p, id)).copied().unwrap_or(0);
                let got = reported(Some(id));
                if (alive && got < lo) || got > lo + slack {
                    errs.push(format!(
                        "{}: dropped messages for/from {id:#} should count {lo}..={} but count {got}",
                        rec.name,
                        lo + slack
                    ));
                }
            }
        }
        for e in errs {
            self.violations.push(format!("{}: {e}", fmt_time(now)));
        }
        acc
    }
}
