//! The oracle: what every node was asked to do, what it wrote on the wire,
//! what it told its application, and the safety invariants checked on every
//! step. The final accounting of every message is in `account.rs`.
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
//! - the application's picture built from events (peers up, their topics)
//!   equals the node's state, and the publish result agrees with it;
//! - counters equal the events: `Stats::received` and `Stats::dropped`.

use crate::net::{ProcId, TcpId};
use crate::payload;
use crate::tap::Watch;
use bytes::Bytes;
use estafeta_core::wire::Header;
use estafeta_core::{DropReason, Event, Node, NodeId, PeerRef, PublishError, Published, SendMode};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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
pub(crate) struct Handoff {
    pub(crate) tcp: TcpId,
    pub(crate) to: ProcId,
    pub(crate) at: u64,
    /// When the receiver had the whole frame, and whether it subscribed to
    /// the topic when it processed it.
    pub(crate) fed: Option<(u64, Fed)>,
    pub(crate) delivered: Option<u64>,
}

/// Whether a receiver subscribed to a frame's topic when it processed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fed {
    Subscribed,
    Unsubscribed,
    /// The subscription changed while the frame waited behind a full event
    /// queue: either outcome is correct.
    Either,
}

#[derive(Clone, Debug)]
pub(crate) struct MsgRec {
    pub(crate) proc: ProcId,
    pub(crate) seq: u64,
    pub(crate) topic: usize,
    pub(crate) mode: Mode,
    pub(crate) len: usize,
    pub(crate) at: u64,
    pub(crate) result: Result<Published, PublishError>,
    /// Receivers the application could expect from its events (when in sync).
    pub(crate) expected: Option<BTreeSet<NodeId>>,
    pub(crate) handoffs: Vec<Handoff>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PeerView {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) topics: BTreeSet<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DropKind {
    QueueFull,
    Disconnected,
    NotSubscribed,
    Unprocessed,
    Other,
}

/// One process incarnation of a node.
#[derive(Clone, Debug)]
pub(crate) struct ProcRec {
    pub(crate) slot: usize,
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) crashed: Option<u64>,
    /// Ground truth: topics the node subscribes to (commands given).
    pub(crate) subs: BTreeSet<usize>,
    /// The application's picture, from events.
    pub(crate) view: BTreeMap<NodeId, PeerView>,
    pub(crate) peer_downs: BTreeMap<NodeId, Vec<u64>>,
    pub(crate) drops: BTreeMap<(Option<NodeId>, DropKind), u64>,
    pub(crate) dropped: u64,
    pub(crate) received: u64,
    pub(crate) queued: u64,
    pub(crate) dropped_at_publish: u64,
    pub(crate) handed: u64,
    next_seq: u64,
    /// Messages fed since the node was last in sync: maybe not processed yet.
    unsettled: Vec<u64>,
}

/// Everything the oracle knows.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    pub(crate) topics: Vec<String>,
    pub(crate) procs: Vec<ProcRec>,
    pub(crate) msgs: Vec<MsgRec>,
    /// Per (receiving machine, publishing process): the last sequence delivered.
    order: BTreeMap<(usize, ProcId), u64>,
    pub(crate) violations: Vec<String>,
}

impl Oracle {
    pub(crate) fn new(topics: Vec<String>) -> Oracle {
        Oracle { topics, ..Default::default() }
    }

    fn fail(&mut self, now: u64, what: String) {
        self.violations.push(format!("{}: {what}", crate::trace::fmt_time(now)));
    }

    pub(crate) fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == name)
    }

    fn who(&self, p: ProcId) -> String {
        let r = &self.procs[p as usize];
        format!("{}#{p}({:#})", r.name, r.id)
    }

    /// A process started on `slot` with node id `id`.
    pub(crate) fn new_proc(&mut self, slot: usize, id: NodeId, name: &str) -> ProcId {
        self.procs.push(ProcRec {
            slot,
            id,
            name: name.to_string(),
            crashed: None,
            subs: BTreeSet::new(),
            view: BTreeMap::new(),
            peer_downs: BTreeMap::new(),
            drops: BTreeMap::new(),
            dropped: 0,
            received: 0,
            queued: 0,
            dropped_at_publish: 0,
            handed: 0,
            next_seq: 0,
            unsettled: Vec::new(),
        });
        (self.procs.len() - 1) as ProcId
    }

    pub(crate) fn crashed(&mut self, p: ProcId, now: u64) {
        self.procs[p as usize].crashed = Some(now);
    }

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

    /// Machines (slots) that received message `g`.
    pub(crate) fn delivered_to(&self, g: u64) -> Vec<usize> {
        self.msgs.get(g as usize).map_or(Vec::new(), |m| {
            m.handoffs.iter().filter(|h| h.delivered.is_some()).map(|h| self.procs[h.to as usize].slot).collect()
        })
    }

    /// The id the next published message gets.
    pub(crate) fn next_msg(&self) -> u64 {
        self.msgs.len() as u64
    }

    /// Who the application of `p` expects a publish on `topic` to reach,
    /// from the events it saw, or the error it expects.
    fn expect(&self, p: ProcId, topic: usize, mode: &Mode) -> Result<BTreeSet<NodeId>, &'static str> {
        let view = &self.procs[p as usize].view;
        let subs: BTreeSet<NodeId> =
            view.iter().filter(|(_, v)| v.topics.contains(&topic)).map(|(id, _)| *id).collect();
        match mode {
            Mode::All | Mode::RoundRobin if subs.is_empty() => Err("NoSubscribers"),
            Mode::All | Mode::RoundRobin => Ok(subs),
            Mode::To(target) => {
                let ids: Vec<NodeId> = match target {
                    PeerRef::Id(id) => view.contains_key(id).then_some(*id).into_iter().collect(),
                    PeerRef::Name(n) => {
                        view.iter().filter(|(_, v)| v.name.as_deref() == Some(n.as_str())).map(|(id, _)| *id).collect()
                    }
                };
                match ids.as_slice() {
                    [] => Err("UnknownPeer"),
                    [id] if subs.contains(id) => Ok([*id].into()),
                    [_] => Err("NotSubscribed"),
                    _ => Err("AmbiguousPeer"),
                }
            }
        }
    }

    /// Node `p` published message `g`; `in_sync` says whether its application
    /// had seen every event (so its picture must match the result).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_publish(
        &mut self,
        now: u64,
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
                let who = self.who(p);
                self.fail(
                    now,
                    format!(
                        "{who} publish #{g} on {} ({mode:?}) returned {result:?}, but its events \
                         say {exp:?}",
                        self.topics[topic]
                    ),
                );
            }
        }
        let rec = &mut self.procs[p as usize];
        let seq = rec.next_seq;
        rec.next_seq += 1;
        if let Ok(r) = &result {
            rec.queued += r.queued as u64;
            rec.dropped_at_publish += r.dropped as u64;
        }
        let expected = match (expected, &result) {
            (Some(Ok(set)), Ok(_)) => Some(set),
            _ => None,
        };
        self.msgs.push(MsgRec { proc: p, seq, topic, mode, len, at: now, result, expected, handoffs: Vec::new() });
    }

    /// Node `from` handed a frame to `tcp`, whose other end is `to`. Returns
    /// what to watch until the receiver has read it whole: the ids of
    /// publish frames that carry one of our messages.
    pub(crate) fn on_wire(
        &mut self,
        now: u64,
        from: ProcId,
        tcp: TcpId,
        to: ProcId,
        header: &Header<'_>,
        payload: &Bytes,
    ) -> Vec<Watch> {
        match header {
            Header::Publish { topic } => {
                self.on_handoff(now, from, tcp, to, topic, payload).map(|g| (0, g)).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Node `from` handed a publish frame to `tcp`, whose other end is `to`.
    /// Returns the message id if it is one of ours.
    fn on_handoff(
        &mut self,
        now: u64,
        from: ProcId,
        tcp: TcpId,
        to: ProcId,
        topic: &str,
        payload: &Bytes,
    ) -> Option<u64> {
        let Some(g) = payload::id_of(payload).filter(|g| *g < self.msgs.len() as u64) else {
            self.fail(now, format!("{} wrote an unknown payload", self.who(from)));
            return None;
        };
        let to_id = self.procs[to as usize].id;
        let to_name = self.procs[to as usize].name.clone();
        let m = &self.msgs[g as usize];
        let mut errs = Vec::new();
        if m.proc != from {
            errs.push(format!("handed by {} but published by {}", self.who(from), self.who(m.proc)));
        }
        // The bytes themselves are checked where they are delivered.
        if topic != self.topics[m.topic] || payload.len() != m.len {
            errs.push("written with the wrong topic or payload".to_string());
        }
        if m.result.is_err() {
            errs.push(format!("refused by publish ({:?}) yet written", m.result));
        }
        let twice = m.handoffs.iter().any(|h| self.procs[h.to as usize].id == to_id);
        if twice {
            errs.push(format!("handed to {} twice", self.who(to)));
        }
        if m.mode != Mode::All && !m.handoffs.is_empty() {
            errs.push(format!("{:?} message handed to a second connection", m.mode));
        }
        if let Some(exp) = &m.expected {
            if !exp.contains(&to_id) {
                errs.push(format!("handed to {} which its events never showed subscribed", self.who(to)));
            }
        }
        match &m.mode {
            Mode::To(PeerRef::Id(id)) if *id != to_id => errs.push("sent to the wrong peer".into()),
            Mode::To(PeerRef::Name(n)) if *n != to_name => errs.push("sent to the wrong peer".into()),
            _ => {}
        }
        for e in errs {
            self.fail(now, format!("message #{g}: {e}"));
        }
        self.procs[from as usize].handed += 1;
        self.msgs[g as usize].handoffs.push(Handoff { tcp, to, at: now, fed: None, delivered: None });
        Some(g)
    }

    /// Node `to` now holds the whole frame of message `g`.
    pub(crate) fn on_fed(&mut self, now: u64, to: ProcId, (_, g): Watch) {
        let subscribed = {
            let m = &self.msgs[g as usize];
            self.procs[to as usize].subs.contains(&m.topic)
        };
        let fed = if subscribed { Fed::Subscribed } else { Fed::Unsubscribed };
        if let Some(h) = self.msgs[g as usize].handoffs.iter_mut().find(|h| h.to == to) {
            h.fed.get_or_insert((now, fed));
        }
        self.procs[to as usize].unsettled.push(g);
    }

    /// Node `p` emitted `ev` to its application.
    pub(crate) fn on_event(&mut self, now: u64, p: ProcId, ev: &Event) {
        match ev {
            Event::Message(m) => self.on_message(now, p, m),
            Event::PeerUp { peer, .. } => {
                let v = PeerView { name: Some(peer.name.clone()), topics: BTreeSet::new() };
                if self.procs[p as usize].view.insert(peer.id, v).is_some() {
                    self.fail(now, format!("{}: PeerUp {peer} while it was already up", self.who(p)));
                }
            }
            Event::PeerDown { peer, .. } => {
                let r = &mut self.procs[p as usize];
                r.peer_downs.entry(peer.id).or_default().push(now);
                if r.view.remove(&peer.id).is_none() {
                    self.fail(now, format!("{}: PeerDown {peer} that was not up", self.who(p)));
                }
            }
            Event::Subscribed { peer, topic } | Event::Unsubscribed { peer, topic } => {
                let on = matches!(ev, Event::Subscribed { .. });
                let idx = self.topic_index(topic.as_str());
                let r = &mut self.procs[p as usize];
                match (r.view.get_mut(&peer.id), idx) {
                    (Some(v), Some(i)) => {
                        if on {
                            v.topics.insert(i);
                        } else {
                            v.topics.remove(&i);
                        }
                    }
                    _ => self.fail(now, format!("{}: {ev:?} for a peer not up", self.who(p))),
                }
            }
            Event::Dropped { peer, count, reason } => {
                let kind = match reason {
                    DropReason::QueueFull => DropKind::QueueFull,
                    DropReason::Disconnected => DropKind::Disconnected,
                    DropReason::NotSubscribed => DropKind::NotSubscribed,
                    DropReason::Unprocessed => DropKind::Unprocessed,
                    _ => DropKind::Other,
                };
                let r = &mut self.procs[p as usize];
                *r.drops.entry((peer.as_ref().map(|i| i.id), kind)).or_default() += count;
                r.dropped += count;
            }
            _ => {}
        }
    }

    fn on_message(&mut self, now: u64, p: ProcId, m: &estafeta_core::Message) {
        let who = self.who(p);
        let Some(g) = payload::id_of(&m.payload).filter(|g| *g < self.msgs.len() as u64) else {
            return self.fail(now, format!("{who} received an unknown payload"));
        };
        self.procs[p as usize].received += 1;
        let slot = self.procs[p as usize].slot;
        let rec = &self.msgs[g as usize];
        let publisher = &self.procs[rec.proc as usize];
        let mut errs = Vec::new();
        if m.payload.len() != rec.len || !payload::is_intact(&m.payload) {
            errs.push("payload differs from what was published".to_string());
        }
        if m.topic.as_str() != self.topics[rec.topic] {
            errs.push(format!("arrived on topic {} instead of {}", m.topic, self.topics[rec.topic]));
        }
        if m.from.id != publisher.id || *m.from.name != *publisher.name {
            errs.push(format!("claims to be from {} instead of {}", m.from, self.who(rec.proc)));
        }
        if !self.procs[p as usize].subs.contains(&rec.topic) {
            errs.push("delivered on a topic the node does not subscribe to".into());
        }
        let twice = rec.handoffs.iter().any(|h| h.delivered.is_some() && self.procs[h.to as usize].slot == slot);
        if twice {
            errs.push("delivered twice to the same node".into());
        }
        match rec.handoffs.iter().position(|h| h.to == p) {
            None => errs.push("delivered but never handed to a connection to this node".into()),
            Some(i) if rec.handoffs[i].fed.is_none() => {
                errs.push("delivered before the node read its whole frame".into())
            }
            Some(_) => {}
        }
        let key = (slot, rec.proc);
        let seq = rec.seq;
        if let Some(last) = self.order.get(&key) {
            if *last >= seq {
                errs.push(format!("out of order: seq {seq} from {} after seq {last}", self.who(rec.proc)));
            }
        }
        self.order.insert(key, seq);
        if let Some(h) = self.msgs[g as usize].handoffs.iter_mut().find(|h| h.to == p) {
            h.delivered.get_or_insert(now);
        }
        for e in errs {
            self.fail(now, format!("{who} message #{g}: {e}"));
        }
    }

    /// After a drain that left no event behind: the application's picture
    /// and the counters must equal the node's state.
    pub(crate) fn check_node(&mut self, now: u64, p: ProcId, node: &Node) {
        self.procs[p as usize].unsettled.clear();
        let r = &self.procs[p as usize];
        let stats = node.stats();
        let mut errs = Vec::new();
        if stats.received != r.received {
            errs.push(format!("Stats::received {} but {} Message events", stats.received, r.received));
        }
        if stats.dropped != r.dropped {
            errs.push(format!("Stats::dropped {} but Dropped events count {}", stats.dropped, r.dropped));
        }
        if !node.peers().map(|i| i.id).eq(r.view.keys().copied()) {
            let ids: Vec<String> = node.peers().map(|i| i.to_string()).collect();
            errs.push(format!(
                "peers {ids:?} but events say {:?}",
                r.view.keys().map(|k| format!("{k:#}")).collect::<Vec<_>>()
            ));
        }
        for (i, t) in self.topics.iter().enumerate() {
            let seen = r.view.values().filter(|v| v.topics.contains(&i)).count();
            let count = node.subscriber_count(t);
            if count != seen {
                errs.push(format!("{count} subscribers of {t} but events say {seen}"));
            }
        }
        let mut told: Vec<&str> = r.subs.iter().map(|i| self.topics[*i].as_str()).collect();
        told.sort_unstable();
        if !node.subscriptions().map(|t| t.as_str()).eq(told.iter().copied()) {
            let subs: Vec<&str> = node.subscriptions().map(|t| t.as_str()).collect();
            errs.push(format!("subscribes to {subs:?}, was told {told:?}"));
        }
        if !errs.is_empty() {
            let who = self.who(p);
            for e in errs {
                self.fail(now, format!("{who}: {e}"));
            }
        }
    }
}
