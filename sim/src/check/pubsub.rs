//! The pub/sub plane's observer: every message published, every hand-off of
//! it to a connection, every delivery, the application's picture of who
//! subscribes to what, and the final accounting of every message.
//!
//! Safety, checked as things happen:
//! - a delivered payload is byte-for-byte what was published, on the topic it
//!   was published on, from the node that published it;
//! - a message reaches a node only if it was handed to a connection to that
//!   node and the node read the whole frame; at most once per node;
//! - per publisher, each node receives messages in publish order;
//! - a message goes only to a node that subscribes to its topic;
//! - round-robin and directed messages are handed to one connection at most;
//!   a publish that returned an error hands nothing to anyone;
//! - the application's picture built from events (peers' topics) equals the
//!   node's subscriber index, and the publish result agrees with it;
//! - counters equal the events: `Stats::received` and `Stats::dropped`;
//! - subscriptions on the wire (`Hello`, `Subscribe`, `Unsubscribe`) name
//!   topics the applications use.
//!
//! Liveness, after healing: every node sees exactly its neighbours'
//! subscriptions.
//!
//! The accounting, at the end: every published message, for every node it
//! was meant for, is delivered, dropped-and-counted, or lost with a
//! connection whose loss the core reported. Anything else is an unexplained
//! loss.
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
//! Everything else must be counted by `Event::PubSub(PubSubEvent::Dropped)`, per node and peer:
//! messages queued and never written (`QueueFull`, `Disconnected` at the
//! publisher), and frames a receiver read whole but did not deliver (it had
//! unsubscribed: `NotSubscribed`; its connection closed before it processed
//! them: `Disconnected` at the receiver).

use super::{Cx, Observer, Want, Wire};
use crate::net::{Net, ProcId, TcpId};
use crate::payload;
use crate::trace::fmt_time;
use estafeta_core::wire::{Header, SessionFrame};
use estafeta_core::{
    DropReason, Event, Message, Node, NodeId, PeerRef, PubSubEvent, PublishError, Published, SendMode, SessionEvent,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

mod expect;
mod gaps;
mod resumed;

/// How a message was addressed, as the oracle remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    All,
    RoundRobin,
    To(PeerRef),
}

impl Mode {
    pub(crate) fn of(mode: &SendMode) -> Mode {
        match mode {
            SendMode::All => Mode::All,
            SendMode::RoundRobin => Mode::RoundRobin,
            SendMode::To(p) => Mode::To(p.clone()),
            _ => Mode::All,
        }
    }
}

/// One hand-off of a message to a connection, and what became of it.
#[derive(Clone, Debug)]
struct Handoff {
    tcp: TcpId,
    to: ProcId,
    at: u64,
    /// When the receiver had the whole frame, and whether it subscribed to
    /// the topic when it processed it.
    fed: Option<(u64, Fed)>,
    delivered: Option<u64>,
}

/// Whether a receiver subscribed to a frame's topic when it processed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fed {
    Subscribed,
    Unsubscribed,
    /// The subscription changed while the frame waited behind a full event
    /// queue: either outcome is correct.
    Either,
}

#[derive(Clone, Debug)]
struct MsgRec {
    proc: ProcId,
    seq: u64,
    topic: usize,
    mode: Mode,
    len: usize,
    at: u64,
    result: Result<Published, PublishError>,
    /// Receivers the application could expect from its events (when in sync).
    expected: Option<BTreeSet<NodeId>>,
    handoffs: Vec<Handoff>,
}

#[derive(Clone, Debug)]
struct PeerView {
    name: Arc<str>,
    topics: BTreeSet<usize>,
    /// False while the session is suspended (between `Suspended` and
    /// `Resumed`): a name resolves to a connected peer first.
    connected: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DropKind {
    QueueFull,
    Disconnected,
    NotSubscribed,
    Unprocessed,
    /// Overwritten in a full queue (`FullQueuePolicy::DropOldest`).
    Overwritten,
    Other,
}

/// What one process did and was told, for pub/sub.
#[derive(Clone, Debug, Default)]
struct ProcRec {
    /// Ground truth: topics the node subscribes to (commands given).
    subs: BTreeSet<usize>,
    /// The application's picture of its peers and their topics, from events.
    view: BTreeMap<NodeId, PeerView>,
    peer_downs: BTreeMap<NodeId, Vec<u64>>,
    drops: BTreeMap<(Option<NodeId>, DropKind), u64>,
    dropped: u64,
    received: u64,
    dropped_at_publish: u64,
    next_seq: u64,
    /// Messages fed since the node was last in sync: maybe not processed yet.
    unsettled: Vec<u64>,
}

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
    /// With sessions (`resume_window > 0`), (message, receiver) pairs handed
    /// over at least once: delivered, or dropped by the receiver and
    /// counted (see `check::pubsub::resumed`).
    pub session_ok: u64,
    /// With sessions: lost, and explained by the session's end (`Ended` with
    /// its range, `PeerDown`) at either end or a crash.
    pub session_lost_with_range: u64,
    /// With sessions: lost with nothing to explain it (each also fails the run).
    pub session_unknown: u64,
    /// Messages publishers reported overwritten in full queues
    /// (`FullQueuePolicy::DropOldest`; also in `dropped_unsent`).
    pub overwritten: u64,
    /// Of those, the ones whose receiver reported the same gap (`Skipped`).
    pub overwritten_matched: u64,
}

/// (publisher, receiver) processes.
/// (publisher, receiver, topic): a stream whose order is kept.
type Pair = (ProcId, ProcId, usize);

/// A gap a node reported: count, marker sequence number, when.
pub(super) type Gap = (u64, Option<u64>, u64);

/// Everything the pub/sub observer knows.
#[derive(Debug, Default)]
pub(crate) struct PubSub {
    procs: Vec<ProcRec>,
    /// Every message, indexed by its id.
    msgs: Vec<MsgRec>,
    /// Per (receiving machine, publishing process, topic): the last sequence delivered.
    order: BTreeMap<(usize, ProcId, usize), u64>,
    /// The last accounting ([`Observer::at_end`]).
    pub(crate) accounting: Accounting,
    /// Topics published with relay identities: the discovery observer
    /// checks their messages (only counted here).
    pub(crate) relayed: BTreeSet<usize>,
    /// Sessions outlive connections (`resume_window > 0`): a message may be
    /// handed to the same receiver again after a resume, and its loss is
    /// explained only by the session's end or a crash (see [`resumed`]).
    pub(crate) sessions: bool,
    /// With sessions: per (connection, writer of a `Hello` claiming to
    /// resume), the sequence number the writer expects next from the other end.
    expects: BTreeMap<(TcpId, ProcId), u64>,
    /// With sessions: per (process, peer id), the peer's process when the
    /// session started (a restart with the same id must never resume it).
    session_peer: BTreeMap<(ProcId, NodeId), ProcId>,
    /// (writer, reader) processes: the writer sent the reader a `Hello`
    /// claiming a session to resume.
    claimed: BTreeSet<(ProcId, ProcId)>,
    /// With sessions: per (writer, receiver process), the highest
    /// `Ack { next }` written in the current session (on any connection).
    acks: BTreeMap<(ProcId, ProcId), u64>,
    /// Per (publisher process, receiver id): the gaps it reported
    /// (`Overwritten`: count, marker sequence number, when).
    overwritten: BTreeMap<(ProcId, NodeId), Vec<Gap>>,
    /// The gaps receivers reported (`Skipped`): receiver, publisher id,
    /// count, marker sequence number, when.
    skipped: Vec<(ProcId, NodeId, u64, Option<u64>, u64)>,
}

impl PubSub {
    /// The application of `p` subscribed to `topic` (or unsubscribed).
    pub(crate) fn set_subscribed(&mut self, p: ProcId, topic: usize, on: bool) {
        let r = &mut self.procs[p as usize];
        if on {
            r.subs.insert(topic);
        } else {
            r.subs.remove(&topic);
        }
        // Frames read but not processed yet (input paused on a full event
        // queue) meet the new subscription, not the one they were read under.
        for g in r.unsettled.clone() {
            let m = &mut self.msgs[g as usize];
            if m.topic == topic {
                for h in m.handoffs.iter_mut().filter(|h| h.to == p) {
                    if let Some((_, f)) = &mut h.fed {
                        *f = Fed::Either;
                    }
                }
            }
        }
    }

    /// The id the next published message gets.
    pub(crate) fn next_msg(&self) -> u64 {
        self.msgs.len() as u64
    }

    /// The peers the application of `p` believes subscribe to `topic`, from
    /// its events, in id order.
    pub(crate) fn subscribers(&self, p: ProcId, topic: usize) -> impl Iterator<Item = NodeId> + '_ {
        self.procs[p as usize].view.iter().filter(move |(_, v)| v.topics.contains(&topic)).map(|(id, _)| *id)
    }

    /// The processes that received message `g`.
    pub(crate) fn delivered_to(&self, g: u64) -> impl Iterator<Item = ProcId> + '_ {
        self.msgs.get(g as usize).into_iter().flat_map(|m| &m.handoffs).filter(|h| h.delivered.is_some()).map(|h| h.to)
    }

    /// Node `p` published message `g`; `in_sync` says whether its application
    /// had seen every event (so its picture must match the result).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_publish(
        &mut self,
        cx: &mut Cx<'_>,
        p: ProcId,
        g: u64,
        topic: usize,
        mode: Mode,
        len: usize,
        result: Result<Published, PublishError>,
        in_sync: bool,
    ) {
        debug_assert_eq!(g, self.msgs.len() as u64);
        let expected = in_sync.then(|| self.expect(p, topic, &mode));
        if let Some(exp) = &expected {
            let ok = match (exp, &result, &mode) {
                (Ok(set), Ok(r), Mode::All) => r.queued + r.dropped == set.len(),
                (Ok(_), Ok(r), _) => r.queued == 1 && r.dropped == 0,
                (Ok(_), Err(PublishError::Full(_)), _) => true,
                (Err("NoSubscribers"), Err(PublishError::NoSubscribers(_)), _) => true,
                (Err("UnknownPeer"), Err(PublishError::UnknownPeer(_)), _) => true,
                (Err("NotSubscribed"), Err(PublishError::NotSubscribed { .. }), _) => true,
                (Err("AmbiguousPeer"), Err(PublishError::AmbiguousPeer(_)), _) => true,
                _ => false,
            };
            if !ok {
                cx.fail(format!(
                    "{} publish #{g} on {} ({mode:?}) returned {result:?}, but its events say {exp:?}",
                    cx.who(p),
                    cx.topics[topic]
                ));
            }
        }
        let rec = &mut self.procs[p as usize];
        let seq = rec.next_seq;
        rec.next_seq += 1;
        if let Ok(r) = &result {
            rec.dropped_at_publish += r.dropped as u64;
        }
        let expected = match (expected, &result) {
            (Some(Ok(set)), Ok(_)) => Some(set),
            _ => None,
        };
        self.msgs.push(MsgRec { proc: p, seq, topic, mode, len, at: cx.now, result, expected, handoffs: Vec::new() });
    }

    /// Node `from` handed a publish frame to `tcp`, whose other end is `to`.
    /// Returns the message id if it is one of ours.
    fn on_handoff(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>, topic: &str) -> Option<u64> {
        let (from, to) = (w.from, w.to);
        let Some(g) = payload::id_of(w.payload).filter(|g| *g < self.msgs.len() as u64) else {
            cx.fail(format!("{} wrote an unknown payload", cx.who(from)));
            return None;
        };
        let to_id = cx.procs[to as usize].id;
        let to_name = &cx.procs[to as usize].name;
        let m = &self.msgs[g as usize];
        let mut errs = Vec::new();
        if m.proc != from {
            errs.push(format!("handed by {} but published by {}", cx.who(from), cx.who(m.proc)));
        }
        // The bytes themselves are checked where they are delivered.
        if topic != cx.topics[m.topic] || w.payload.len() != m.len {
            errs.push("written with the wrong topic or payload".to_string());
        }
        if m.result.is_err() {
            errs.push(format!("refused by publish ({:?}) yet written", m.result));
        }
        // A resumed session re-sends what the receiver did not acknowledge,
        // to the same process: never to a restart with the same id.
        let twice = m.handoffs.iter().any(|h| cx.procs[h.to as usize].id == to_id && (!self.sessions || h.to != to));
        if twice {
            errs.push(format!("handed to {} twice", cx.who(to)));
        }
        if m.mode != Mode::All && m.handoffs.iter().any(|h| !self.sessions || h.to != to) {
            errs.push(format!("{:?} message handed to a second connection", m.mode));
        }
        if let Some(exp) = &m.expected {
            if !exp.contains(&to_id) {
                errs.push(format!("handed to {} which its events never showed subscribed", cx.who(to)));
            }
        }
        match &m.mode {
            Mode::To(PeerRef::Id(id)) if *id != to_id => errs.push("sent to the wrong peer".into()),
            Mode::To(PeerRef::Name(n)) if n != to_name => errs.push("sent to the wrong peer".into()),
            _ => {}
        }
        for e in errs {
            cx.fail(format!("message #{g}: {e}"));
        }
        self.msgs[g as usize].handoffs.push(Handoff { tcp: w.tcp, to, at: cx.now, fed: None, delivered: None });
        Some(g)
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, p: ProcId, m: &Message) {
        if cx.topic_index(m.topic.as_str()).is_some_and(|t| self.relayed.contains(&t)) {
            self.procs[p as usize].received += 1;
            return;
        }
        let who = cx.who(p);
        let Some(g) = payload::id_of(&m.payload).filter(|g| *g < self.msgs.len() as u64) else {
            return cx.fail(format!("{who} received an unknown payload"));
        };
        self.procs[p as usize].received += 1;
        let slot = cx.procs[p as usize].slot;
        let rec = &self.msgs[g as usize];
        let publisher = &cx.procs[rec.proc as usize];
        let mut errs = Vec::new();
        if m.payload.len() != rec.len || !payload::is_intact(&m.payload) {
            errs.push("payload differs from what was published".to_string());
        }
        if m.topic.as_str() != cx.topics[rec.topic] {
            errs.push(format!("arrived on topic {} instead of {}", m.topic, cx.topics[rec.topic]));
        }
        if m.from.id != publisher.id || *m.from.name != *publisher.name {
            errs.push(format!("claims to be from {} instead of {}", m.from, cx.who(rec.proc)));
        }
        if !self.procs[p as usize].subs.contains(&rec.topic) {
            errs.push("delivered on a topic the node does not subscribe to".into());
        }
        let twice = rec.handoffs.iter().any(|h| h.delivered.is_some() && cx.procs[h.to as usize].slot == slot);
        if twice {
            errs.push("delivered twice to the same node".into());
        }
        match rec.handoffs.iter().position(|h| h.to == p && (h.fed.is_some() || !self.sessions)) {
            None => errs.push("delivered but never handed to a connection to this node".into()),
            Some(i) if rec.handoffs[i].fed.is_none() => {
                errs.push("delivered before the node read its whole frame".into())
            }
            Some(_) => {}
        }
        // Order holds per publisher, receiver and topic: each topic has its
        // own queue and credit, so topics may overtake each other.
        let key = (slot, rec.proc, rec.topic);
        let seq = rec.seq;
        if let Some(last) = self.order.get(&key) {
            if *last >= seq {
                errs.push(format!("out of order: seq {seq} from {} after seq {last}", cx.who(rec.proc)));
            }
        }
        self.order.insert(key, seq);
        if let Some(h) = self.msgs[g as usize].handoffs.iter_mut().find(|h| h.to == p && h.fed.is_some()) {
            h.delivered.get_or_insert(cx.now);
        }
        for e in errs {
            cx.fail(format!("{who} message #{g}: {e}"));
        }
    }

    fn downs(&self, p: ProcId, peer: NodeId) -> &[u64] {
        self.procs[p as usize].peer_downs.get(&peer).map_or(&[], |v| v.as_slice())
    }

    fn down_within(&self, p: ProcId, peer: NodeId, lo: u64, hi: u64) -> bool {
        self.downs(p, peer).iter().any(|t| (lo..=hi).contains(t))
    }

    /// Classifies every message; fails each unexplained loss or miscount.
    fn account(&self, cx: &mut Cx<'_>, net: &Net) -> Accounting {
        if self.sessions {
            return self.account_sessions(cx, net);
        }
        let mut acc = Accounting::default();
        let mut errs: Vec<String> = Vec::new();
        // Per (publisher, receiver, topic), the order messages keep: handoffs
        // in order, with delivery times, and for each position the next
        // delivered one after it.
        let mut streams: BTreeMap<Pair, Vec<(u64, Option<u64>)>> = BTreeMap::new();
        for m in &self.msgs {
            for h in &m.handoffs {
                streams.entry((m.proc, h.to, m.topic)).or_default().push((h.at, h.delivered));
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
        let mut pos: BTreeMap<Pair, usize> = BTreeMap::new();
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
            let x_id = cx.procs[x as usize].id;
            for h in &m.handoffs {
                let key = (x, h.to, m.topic);
                let i = *pos.entry(key).and_modify(|i| *i += 1).or_insert(0);
                if h.delivered.is_some() {
                    acc.delivered += 1;
                    continue;
                }
                let y = h.to;
                let y_id = cx.procs[y as usize].id;
                let died = net.tcps[h.tcp].died_at();
                if let Some((_, fed)) = h.fed {
                    // The receiver read the whole frame: it must count it.
                    if fed == Fed::Subscribed && died.is_none() {
                        errs.push(format!(
                            "message #{g} was read whole by subscribed {} on a live connection but never delivered",
                            cx.procs[y as usize].name
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
                        cx.procs[y as usize].name
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
                    cx.topics[m.topic],
                    fmt_time(m.at),
                    cx.procs[x as usize].name,
                    fmt_time(h.at),
                    cx.procs[y as usize].name,
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
            let name = &cx.procs[p].name;
            let p = p as ProcId;
            let alive = cx.procs[p as usize].crashed.is_none();
            let counted =
                |k: DropKind| -> u64 { rec.drops.iter().filter(|((_, kk), _)| *kk == k).map(|(_, n)| n).sum() };
            let full = counted(DropKind::QueueFull);
            if full != rec.dropped_at_publish {
                errs.push(format!(
                    "{name}: publishes reported {} drops for full queues, Dropped(QueueFull) says {full}",
                    rec.dropped_at_publish
                ));
            }
            let reported = |id: Option<NodeId>| -> u64 {
                [DropKind::Disconnected, DropKind::NotSubscribed, DropKind::Unprocessed, DropKind::Overwritten]
                    .iter()
                    .map(|k| rec.drops.get(&(id, *k)).copied().unwrap_or(0))
                    .sum()
            };
            let all_reported = counted(DropKind::Disconnected)
                + counted(DropKind::NotSubscribed)
                + counted(DropKind::Unprocessed)
                + counted(DropKind::Overwritten);
            let want = total.get(&p).copied().unwrap_or(0);
            if (alive && all_reported != want) || all_reported > want {
                errs.push(format!(
                    "{name}: {want} messages were queued and never written or read and not delivered, but \
                     Dropped(Disconnected | NotSubscribed | Unprocessed) and Overwritten count {all_reported}"
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
                        "{name}: dropped messages for/from {id:#} should count {lo}..={} but count {got}",
                        lo + slack
                    ));
                }
            }
        }
        for e in errs {
            cx.fail(e);
        }
        acc
    }
}

impl Observer for PubSub {
    fn on_start(&mut self, _p: ProcId) {
        self.procs.push(ProcRec::default());
    }

    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        match ev {
            Event::PubSub(PubSubEvent::Message(m)) => self.on_message(cx, p, m),
            Event::Session(ev) => {
                if let SessionEvent::Suspended { peer, .. } | SessionEvent::Resumed { peer, .. } = ev {
                    let resumed = matches!(ev, SessionEvent::Resumed { .. });
                    if let Some(v) = self.procs[p as usize].view.get_mut(&peer.id) {
                        v.connected = resumed;
                    }
                }
                self.on_session_event(cx, p, ev)
            }
            Event::PeerUp { peer, .. } => {
                if self.sessions {
                    self.session_started(cx, p, peer.id);
                }
                let v = PeerView { name: peer.name.clone(), topics: BTreeSet::new(), connected: true };
                self.procs[p as usize].view.insert(peer.id, v);
            }
            Event::PeerDown { peer, .. } => {
                if self.sessions {
                    self.session_over(cx, p, peer.id);
                }
                let r = &mut self.procs[p as usize];
                r.peer_downs.entry(peer.id).or_default().push(cx.now);
                r.view.remove(&peer.id);
            }
            Event::PubSub(PubSubEvent::Subscribed { peer, topic })
            | Event::PubSub(PubSubEvent::Unsubscribed { peer, topic }) => {
                let on = matches!(ev, Event::PubSub(PubSubEvent::Subscribed { .. }));
                let idx = cx.topic_index(topic.as_str());
                match (self.procs[p as usize].view.get_mut(&peer.id), idx) {
                    (Some(v), Some(i)) => {
                        if on {
                            v.topics.insert(i);
                        } else {
                            v.topics.remove(&i);
                        }
                    }
                    _ => cx.fail(format!("{}: {ev:?} for a peer not up", cx.who(p))),
                }
            }
            Event::PubSub(PubSubEvent::Dropped { peer, count, reason }) => {
                let kind = match reason {
                    DropReason::QueueFull => DropKind::QueueFull,
                    DropReason::Disconnected => DropKind::Disconnected,
                    DropReason::NotSubscribed | DropReason::PeerUnsubscribed => DropKind::NotSubscribed,
                    DropReason::Unprocessed => DropKind::Unprocessed,
                    _ => DropKind::Other,
                };
                let r = &mut self.procs[p as usize];
                *r.drops.entry((peer.as_ref().map(|i| i.id), kind)).or_default() += count;
                r.dropped += count;
            }
            Event::PubSub(PubSubEvent::Overwritten { peer, count, seq, .. }) => {
                let r = &mut self.procs[p as usize];
                *r.drops.entry((Some(peer.id), DropKind::Overwritten)).or_default() += count;
                r.dropped += count;
                self.overwritten.entry((p, peer.id)).or_default().push((*count, *seq, cx.now));
            }
            Event::PubSub(PubSubEvent::Skipped { peer, count, seq, .. }) => {
                self.skipped.push((p, peer.id, *count, *seq, cx.now));
            }
            _ => {}
        }
    }

    fn on_wire(&mut self, cx: &mut Cx<'_>, w: &Wire<'_>) -> Option<u64> {
        if self.sessions {
            self.on_session_wire(cx, w);
        }
        let unknown = |t: &str| cx.topic_index(t).is_none();
        let bad: Option<&str> = match w.header {
            Header::Publish { topic } => return self.on_handoff(cx, w, topic),
            Header::Subscribe { topic }
            | Header::Unsubscribe { topic }
            | Header::Credit { topic, .. }
            | Header::SubscribeRefused { topic, .. }
            | Header::Overwritten { topic, .. } => unknown(topic).then_some(*topic),
            Header::Hello(h) => h.subscriptions.iter().copied().find(|t| unknown(t)),
            Header::Heartbeat | Header::Goodbye { .. } | Header::Stream(_) | Header::Membership(_) => None,
            Header::Transfer(_) => None,
            Header::Session(SessionFrame::Credit { topic, .. }) => unknown(topic).then_some(*topic),
            Header::Session(SessionFrame::Ack { .. } | SessionFrame::Resume { .. }) => None,
            // Requests, referrals and relayed messages: the discovery observer's.
            Header::Discovery(_) => None,
        };
        if let Some(topic) = bad {
            cx.fail(format!("{} wrote a subscription to {topic:?}, a topic nobody uses", cx.who(w.from)));
        }
        None
    }

    /// Node `to` now holds the whole frame of message `g`.
    fn on_fed(&mut self, cx: &mut Cx<'_>, to: ProcId, tcp: TcpId, g: u64) {
        let subscribed = self.procs[to as usize].subs.contains(&self.msgs[g as usize].topic);
        let fed = if subscribed { Fed::Subscribed } else { Fed::Unsubscribed };
        let sessions = self.sessions;
        let hs = &mut self.msgs[g as usize].handoffs;
        // With sessions a message may be re-sent on several connections (both
        // ends dialed at once): the copy being read is the last one handed
        // over on this connection.
        let h = if sessions {
            hs.iter_mut().rev().find(|h| h.to == to && h.tcp == tcp)
        } else {
            hs.iter_mut().find(|h| h.to == to)
        };
        if let Some(h) = h {
            h.fed.get_or_insert((cx.now, fed));
        }
        self.procs[to as usize].unsettled.push(g);
    }

    fn after_step(&mut self, cx: &mut Cx<'_>, p: ProcId, node: &Node) {
        self.procs[p as usize].unsettled.clear();
        let r = &self.procs[p as usize];
        let stats = node.stats();
        let mut errs = Vec::new();
        if stats.pubsub.received != r.received {
            errs.push(format!("Stats::received {} but {} Message events", stats.pubsub.received, r.received));
        }
        if stats.pubsub.dropped != r.dropped {
            errs.push(format!("Stats::dropped {} but Dropped events count {}", stats.pubsub.dropped, r.dropped));
        }
        for (i, t) in cx.topics.iter().enumerate() {
            let seen = r.view.values().filter(|v| v.topics.contains(&i)).count();
            let count = node.pubsub_ref().subscriber_count(t);
            if count != seen {
                errs.push(format!("{count} subscribers of {t} but events say {seen}"));
            }
        }
        let mut told: Vec<&str> = r.subs.iter().map(|i| cx.topics[*i].as_str()).collect();
        told.sort_unstable();
        if !node.pubsub_ref().subscriptions().map(|t| t.as_str()).eq(told.iter().copied()) {
            let subs: Vec<&str> = node.pubsub_ref().subscriptions().map(|t| t.as_str()).collect();
            errs.push(format!("subscribes to {subs:?}, was told {told:?}"));
        }
        for e in errs {
            cx.fail(format!("{}: {e}", cx.who(p)));
        }
    }

    fn settled(&self, want: &Want<'_>) -> Result<(), String> {
        // Backlogs drain once the network is whole: credit never deadlocks.
        for (slot, node) in want.nodes.iter().enumerate() {
            for &o in &want.neighbours[slot] {
                let queued = node.pubsub_ref().queued_bytes(want.ids[o]).unwrap_or(0);
                if queued > 0 {
                    let mut info = String::new();
                    for t in want.topics {
                        let sc = node.pubsub_ref().send_credit(want.ids[o], t);
                        let rc = want.nodes[o].pubsub_ref().receive_credit(want.ids[slot], t);
                        let sub = want.nodes[o].pubsub_ref().is_subscribed(t);
                        info.push_str(&format!(" [{t}: credit {sc:?} here, {rc:?} there, subscribed {sub}]"));
                    }
                    return Err(format!("n{slot} still has {queued} bytes queued for n{o}{info}"));
                }
            }
        }
        for (slot, node) in want.nodes.iter().enumerate() {
            for (t, name) in want.topics.iter().enumerate() {
                let expect = want.neighbours[slot].iter().filter(|o| want.subs[**o].contains(&t)).count();
                let got = node.pubsub_ref().subscriber_count(name);
                if got != expect {
                    return Err(format!("n{slot} sees {got} subscribers of {name}, expected {expect}"));
                }
            }
        }
        Ok(())
    }

    /// Messages handed to a connection that is still open at both ends and
    /// not yet read whole by the receiver: still travelling.
    fn in_transit(&self, net: &Net) -> usize {
        self.msgs
            .iter()
            .flat_map(|m| &m.handoffs)
            .filter(|h| h.fed.is_none() && h.delivered.is_none() && net.tcps[h.tcp].died_at().is_none())
            .count()
    }

    fn at_end(&mut self, cx: &mut Cx<'_>, net: &Net) {
        self.accounting = self.account(cx, net);
        self.match_gaps(cx);
    }
}
