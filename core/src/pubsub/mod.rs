//! The pub/sub plane: local subscriptions, the index of remote subscribers,
//! the three send modes, one send queue per subscription of each peer, and
//! credit flow control.
//!
//! **Credit.** A node grants each peer, per topic it subscribes to, a window
//! of messages and payload bytes (`PubSubConfig::window_*`): the peer may
//! send that much more and no more. The node grants again once about half
//! of the window was consumed by its application, so a slow subscription
//! slows only its own senders on its own topic, and the socket is always
//! read. Messages waiting for credit wait in the sender's per-subscription
//! queue, bounded like the peer's whole queue; round-robin skips subscribers
//! without spare credit. Credit lives for a session: it starts at zero with
//! every session (the receiver grants its window at once) and survives
//! unsubscribing, so grants and messages in flight always add up.
//!
//! **Announcements.** Subscribe and Unsubscribe are per connection: every
//! connection carries its own full picture (its Hello, then changes), and
//! the index uses the picture of the peer's session's primary connection.
//! Messages and credit are per session and pass the session gate.

mod api;
mod credit;
mod event;
mod log_marks;
mod queue;
mod run;
mod send;
mod session;

pub use api::{PubSub, PubSubRef};
pub use event::{DropReason, Message, PubSubEvent, Relayed};
pub use run::{IntoIter as RunIntoIter, Iter as RunIter, MessageRun};
pub use send::{Published, SendMode};
pub(crate) use session::{Kind as LogKind, Seq, SessionLog, StreamLog};

use crate::config::PubSubConfig;
use crate::event::{Event, Events, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::stats::PubSubStats;
use crate::wire::{encode_frame, Header, LEN_PREFIX};
use bytes::Bytes;
pub(crate) use credit::Deliver;
use credit::{Debt, RecvCredit};
use queue::SendQ;
use std::collections::{BTreeMap, BTreeSet};

/// Remote subscribers of one topic.
#[derive(Debug, Default)]
struct TopicSubs {
    peers: BTreeSet<NodeId>,
    /// The subscriber round-robin chose last.
    rr: Option<NodeId>,
}

/// What one connection says and is told about subscriptions.
#[derive(Debug, Default)]
struct Link {
    /// Topics the peer announced on this connection.
    peer_subs: BTreeSet<Topic>,
    /// Our Hello left on it: later changes go as frames.
    announced: bool,
    /// Both sides run pub/sub (known once the peer's Hello arrived).
    enabled: bool,
    /// Changes to announce, coalesced: `true` subscribe, `false` unsubscribe.
    changes: BTreeMap<Topic, bool>,
}

/// A peer in session, as this plane sees it.
#[derive(Debug)]
struct PeerState {
    info: PeerInfo,
    /// The session's primary: where messages and credit to the peer leave.
    conn: ConnId,
    /// Topics indexed for the peer (its primary's picture).
    subs: BTreeSet<Topic>,
    /// One send queue per topic, with its credit.
    out: BTreeMap<Topic, SendQ>,
    /// The peer's bound (unsent and unacknowledged together) and, in a
    /// resumable session, the messages written and not acknowledged.
    log: crate::resume::SendLog<Payload>,
    /// The topic of each run of messages on one topic in `log`, the
    /// identity of each relayed copy in it, and the kind of each entry
    /// that is not a message.
    topics: log_marks::Marks<Topic>,
    tags: log_marks::Marks<crate::discovery::RelayTag>,
    kinds: log_marks::Marks<session::Kind>,
    /// Sequence numbers and acks of what the peer sends.
    rx: session::RxSeq,
    /// Both ends announced `RESUME`: messages are logged until acknowledged.
    resumable: bool,
    /// The peer announced `OVERWRITE`: a full queue may overwrite its oldest
    /// messages (with [`FullQueuePolicy::DropOldest`]) and tell it so.
    overwrite: bool,
    /// The peer announced `DISCOVERY`: relayed copies reach it with their
    /// relay identity (and a peer without it gets none forwarded).
    relay: bool,
    /// The connection is lost and the session waits for a resume.
    suspended: bool,
    /// Sent first on the connection after a resume: where re-sending starts.
    resume_from: Option<u64>,
    /// The topic the last turn served (round-robin across topics).
    cursor: Option<Topic>,
    /// A publish was refused for this peer's queue: report Writable.
    want_writable: bool,
    /// This node asked the peer for an ack (a heartbeat) and none came yet.
    ack_asked: bool,
    /// (messages acknowledged by the peer, messages taken from it) when the
    /// current connection took the session: more since is progress.
    progress_mark: (u64, u64),
    /// The session's primary is closing: nothing more is queued.
    closing: bool,
    /// What this node granted the peer, per topic.
    recv: BTreeMap<Topic, RecvCredit>,
    /// Topics whose grant may be due: encoded when bytes are pulled.
    grants: BTreeSet<Topic>,
}

#[derive(Debug)]
pub(crate) struct PubSubState {
    cfg: PubSubConfig,
    local: BTreeSet<Topic>,
    index: BTreeMap<Topic, TopicSubs>,
    peers: BTreeMap<NodeId, PeerState>,
    links: BTreeMap<ConnId, Link>,
    /// Messages of ended sessions the application has not consumed yet.
    debts: BTreeMap<(NodeId, Topic), Debt>,
    /// Round-robin was refused for want of credit: report Writable on the next grant.
    rr_waiting: bool,
    /// Changes with every local subscribe and unsubscribe (the discovery
    /// plane re-evaluates pairing when it moves).
    pub(crate) local_gen: u64,
    /// Connections a relay release made a grant due on, or an ack (the node wakes them).
    pub(crate) wake: Vec<ConnId>,
    /// The simulator's planted bug: relayed copies hold the whole window.
    planted_full_relay_hold: bool,
    pub(crate) stats: PubSubStats,
    /// When each peer's delayed ack is due.
    ack_timers: crate::timer::Timers<NodeId>,
    /// `SessionConfig::ack_delay`.
    pub(crate) ack_delay: std::time::Duration,
    /// Test only: re-send from one past the peer's resume point (a planted bug).
    pub(crate) planted_resend_bug: bool,
    /// Test only: overwritten messages' markers are not written (a planted bug).
    pub(crate) planted_overwrite_bug: bool,
    /// Test only: see `SessionConfig::planted_run_bug`.
    pub(crate) planted_run_bug: bool,
}

impl PubSubState {
    pub(crate) fn new(cfg: PubSubConfig, planted_full_relay_hold: bool) -> Self {
        PubSubState {
            planted_full_relay_hold,
            cfg,
            local: BTreeSet::new(),
            index: BTreeMap::new(),
            peers: BTreeMap::new(),
            links: BTreeMap::new(),
            debts: BTreeMap::new(),
            rr_waiting: false,
            local_gen: 0,
            wake: Vec::new(),
            stats: PubSubStats::default(),
            ack_timers: Default::default(),
            ack_delay: std::time::Duration::from_millis(5),
            planted_resend_bug: false,
            planted_overwrite_bug: false,
            planted_run_bug: false,
        }
    }

    pub(crate) fn check_topic(&self, topic: &str) -> Result<(), String> {
        check_topic(topic, self.cfg.max_topic_len)
    }

    /// A shared copy of `topic` if it is already known (saves an allocation).
    fn intern(&self, topic: &str) -> Topic {
        if let Some(t) = self.local.get(topic) {
            return t.clone();
        }
        self.index.get_key_value(topic).map_or_else(|| Topic::from(topic), |(t, _)| t.clone())
    }

    /// The topics for this node's Hello on `conn`; later changes go as frames.
    pub(crate) fn hello_subs(&mut self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        let link = self.links.entry(conn).or_default();
        link.announced = true;
        link.changes.clear();
        self.local.iter().map(|t| t.as_str())
    }

    /// The peer's Hello on `conn` announced these topics (already checked);
    /// `enabled`: both sides run pub/sub (otherwise they are ignored, and
    /// this plane sends the peer nothing).
    pub(crate) fn on_hello(&mut self, conn: ConnId, subs: &[&str], enabled: bool) {
        let topics: BTreeSet<Topic> =
            if enabled { subs.iter().map(|t| self.intern(t)).collect() } else { BTreeSet::new() };
        let link = self.links.entry(conn).or_default();
        link.peer_subs = topics;
        link.enabled = enabled;
        if !enabled {
            link.changes.clear();
        }
    }

    /// A session with `info` starts on `conn`: index its topics, grant
    /// credit for ours.
    pub(crate) fn on_peer_up(
        &mut self,
        info: &PeerInfo,
        conn: ConnId,
        resumable: bool,
        (overwrite, relay): (bool, bool),
        events: &mut Events,
    ) {
        if !self.links.get(&conn).is_some_and(|l| l.enabled) {
            return;
        }
        let subs = self.links.get(&conn).map(|l| l.peer_subs.clone()).unwrap_or_default();
        for t in &subs {
            self.index.entry(t.clone()).or_default().peers.insert(info.id);
            events.push(Event::PubSub(PubSubEvent::Subscribed { peer: info.clone(), topic: t.clone() }));
        }
        self.peers.insert(
            info.id,
            PeerState {
                info: info.clone(),
                conn,
                subs,
                out: BTreeMap::new(),
                log: crate::resume::SendLog::new(
                    self.cfg.max_queued_frames_per_peer,
                    self.cfg.max_queued_bytes_per_peer,
                ),
                topics: Default::default(),
                tags: Default::default(),
                kinds: Default::default(),
                rx: session::RxSeq::default(),
                resumable,
                overwrite,
                relay,
                suspended: false,
                resume_from: None,
                progress_mark: (0, 0),
                cursor: None,
                want_writable: false,
                ack_asked: false,
                closing: false,
                recv: BTreeMap::new(),
                grants: BTreeSet::new(),
            },
        );
        let local: Vec<Topic> = self.local.iter().cloned().collect();
        for t in local {
            self.grant(info.id, &t);
        }
    }

    /// The session with `peer` ended: its queued messages are dropped
    /// (counted), what its application still holds becomes a debt, and it
    /// leaves the index.
    pub(crate) fn on_peer_down(&mut self, peer: NodeId, events: &mut Events) {
        let Some(p) = self.peers.remove(&peer) else { return };
        for t in &p.subs {
            if let Some(s) = self.index.get_mut(t) {
                s.peers.remove(&peer);
                if s.peers.is_empty() {
                    self.index.remove(t);
                }
            }
        }
        for (t, r) in p.recv {
            let held = r.held();
            if !held.is_zero() {
                self.debts.entry((peer, t)).or_default().add(held);
            }
        }
        let dropped = p.log.unsent() as u64 + p.out.values().map(queue::SendQ::overwritten_count).sum::<u64>();
        for (t, q) in &p.out {
            for (up, len) in q.relay_upstreams() {
                self.relay_release(up, t, 1, len);
            }
        }
        self.report_drop(events, Some(p.info), dropped, DropReason::Disconnected);
        if p.want_writable || (self.rr_waiting && dropped > 0) {
            events.push(Event::PubSub(PubSubEvent::Writable));
        }
    }

    /// `conn` started a graceful close: if it is a session's primary, that
    /// peer takes no more messages (a publish to it is `Full`, and Writable
    /// follows when the session ends).
    pub(crate) fn on_closing(&mut self, conn: ConnId, peer: Option<NodeId>) {
        if let Some(p) = peer.and_then(|id| self.peers.get_mut(&id)).filter(|p| p.conn == conn) {
            p.closing = true;
        }
        // The ack leaves before the goodbye.
        if let Some(id) = peer {
            self.ack_now(id);
        }
    }

    /// `conn` is gone.
    pub(crate) fn on_conn_closed(&mut self, conn: ConnId) {
        self.links.remove(&conn);
    }

    /// A Subscribe or Unsubscribe from `peer` on `conn` (not gated: each
    /// connection carries its own picture). `primary`: `conn` is the session's.
    pub(crate) fn on_announce(
        &mut self,
        conn: ConnId,
        peer: &PeerInfo,
        primary: bool,
        topic: &str,
        subscribe: bool,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        let max = self.cfg.max_subscriptions_per_peer;
        if subscribe {
            self.check_topic(topic).map_err(ProtocolError::Limit)?;
        }
        let t = self.intern(topic);
        let link = self.links.entry(conn).or_default();
        if subscribe {
            if link.peer_subs.contains(topic) {
                return Ok(());
            }
            if link.peer_subs.len() >= max {
                return Err(ProtocolError::Limit(format!("more than {max} subscriptions")));
            }
            link.peer_subs.insert(t.clone());
        } else if !link.peer_subs.remove(topic) {
            return Ok(());
        }
        if !primary {
            return Ok(());
        }
        let Some(p) = self.peers.get_mut(&peer.id) else { return Ok(()) };
        if subscribe {
            p.subs.insert(t.clone());
            self.index.entry(t.clone()).or_default().peers.insert(peer.id);
            events.push(Event::PubSub(PubSubEvent::Subscribed { peer: peer.clone(), topic: t }));
        } else {
            p.subs.remove(&t);
            // Messages still queued for the topic would wait for credit the
            // peer no longer grants: they are dropped here (counted), as the
            // peer would drop them on arrival. The credit itself stays.
            let ups = p.out.get(&t).map(|q| q.relay_upstreams()).unwrap_or_default();
            let dropped = p.out.get_mut(&t).map_or((0, 0), |q| q.clear());
            p.log.unadmit(dropped.0, dropped.1);
            if let Some(s) = self.index.get_mut(&t) {
                s.peers.remove(&peer.id);
                if s.peers.is_empty() {
                    self.index.remove(&t);
                }
            }
            for (up, len) in ups {
                self.relay_release(up, &t, 1, len);
            }
            events.push(Event::PubSub(PubSubEvent::Unsubscribed { peer: peer.clone(), topic: t }));
            self.report_drop(events, Some(peer.clone()), dropped.0 as u64, DropReason::PeerUnsubscribed);
        }
        Ok(())
    }

    /// Control frames for `conn`, encoded from state: announcements, then
    /// credit grants if `conn` is a session's primary. Returns bytes written.
    pub(crate) fn write_control(&mut self, conn: ConnId, peer: Option<NodeId>, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        if let Some(link) = self.links.get_mut(&conn).filter(|l| l.enabled && !l.changes.is_empty()) {
            for (t, sub) in std::mem::take(&mut link.changes) {
                let topic = t.as_str();
                let h = if sub { Header::Subscribe { topic } } else { Header::Unsubscribe { topic } };
                encode_frame(buf, &h, &[]);
            }
        }
        if let Some(id) = peer {
            self.write_session_control(conn, id, buf);
            self.write_grants(conn, id, buf);
        }
        buf.len() - start
    }

    /// True if `conn` has announcements or grants to send.
    pub(crate) fn has_control(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        self.links.get(&conn).is_some_and(|l| l.enabled && !l.changes.is_empty())
            || peer.and_then(|id| self.peers.get(&id)).is_some_and(|p| p.conn == conn && !p.grants.is_empty())
            || peer.is_some_and(|id| self.has_session_control(conn, id))
    }

    /// True if nothing is left to write for the peer whose primary is
    /// `conn`: nothing unsent and nothing to re-send (written messages
    /// waiting for their ack do not count; see [`PubSubState::unacked_range`]).
    pub(crate) fn data_is_empty(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        peer.and_then(|id| self.peers.get(&id)).is_none_or(|p| {
            p.conn != conn || p.log.unsent() == 0 && p.log.pending_resend() == 0 && p.overwritten() == 0
        })
    }

    /// Messages written to `peer` and not acknowledged (a range of
    /// sequence numbers), if its session is resumable.
    pub(crate) fn unacked_range(&self, peer: NodeId) -> Option<std::ops::Range<u64>> {
        self.peers.get(&peer).filter(|p| p.resumable).map(|p| p.log.acked()..p.log.next_seq())
    }

    /// Discards what is queued for the peer whose primary is `conn` (the
    /// connection is refused); returns how many messages.
    pub(crate) fn clear_data(&mut self, conn: ConnId, peer: Option<NodeId>) -> u64 {
        let Some(p) = peer.and_then(|id| self.peers.get_mut(&id)).filter(|p| p.conn == conn) else { return 0 };
        let n = p.log.unsent() as u64 + p.overwritten();
        let ups: Vec<(Topic, NodeId, u64)> =
            p.out.iter().flat_map(|(t, q)| q.relay_upstreams().into_iter().map(|(u, l)| (t.clone(), u, l))).collect();
        p.out.clear();
        let unsent = (p.log.unsent(), p.log.bytes() - p.log.unacked_bytes());
        p.log.unadmit(unsent.0, unsent.1);
        for (t, up, len) in ups {
            self.relay_release(up, &t, 1, len);
        }
        n
    }

    /// Counts and reports a drop; consecutive drops for the same peer and
    /// reason become one event, so a slow consumer is no event storm.
    pub(crate) fn report_drop(&mut self, events: &mut Events, peer: Option<PeerInfo>, count: u64, reason: DropReason) {
        if count == 0 {
            return;
        }
        self.stats.dropped += count;
        if let Some(Event::PubSub(PubSubEvent::Dropped { peer: p, count: n, reason: r })) = events.back_mut() {
            if *p == peer && *r == reason {
                *n += count;
                return;
            }
        }
        events.push(Event::PubSub(PubSubEvent::Dropped { peer, count, reason }));
    }

    /// A shared copy of `topic` if it is known (saves an allocation).
    pub(crate) fn topic(&self, topic: &str) -> Topic {
        self.intern(topic)
    }

    /// The connected peers subscribed to `topic`.
    pub(crate) fn subscriber_ids(&self, topic: &str) -> impl Iterator<Item = NodeId> + '_ {
        self.index.get(topic).into_iter().flat_map(|s| s.peers.iter().copied())
    }

    /// The local subscriptions.
    pub(crate) fn local_topics(&self) -> &BTreeSet<Topic> {
        &self.local
    }

    /// Queues a relayed (or relay-published) message on `topic` for every
    /// subscriber but those in `except`. Publishing (`RelayPush::Publish`),
    /// nothing is queued if one of them is full (`Full`, and Writable
    /// follows), and peers without the discovery plane get a plain message;
    /// forwarding (`RelayPush::Forward`), the full ones are skipped and
    /// returned, and peers without the plane get nothing (they could not
    /// tell copies apart). Returns (queued, skipped); `NoSubscribers` if the
    /// topic has none at all.
    pub(crate) fn push_relay(
        &mut self,
        topic: &str,
        payload: &Payload,
        tag: crate::discovery::RelayTag,
        except: &[NodeId],
        how: RelayPush,
        wake: &mut BTreeSet<ConnId>,
    ) -> Result<(usize, Vec<PeerInfo>), crate::error::PublishError> {
        let PubSubState { index, peers, cfg, .. } = self;
        let Some((topic, subs)) = index.get_key_value(topic).filter(|(_, s)| !s.peers.is_empty()) else {
            return Err(crate::error::PublishError::NoSubscribers(Topic::from(topic)));
        };
        let cost = queue::data_cost(topic, payload);
        let forward = how == RelayPush::Forward;
        let tag_for = |p: &PeerState| match (p.relay, forward) {
            (true, _) => Some(Some(tag)),
            (false, false) => Some(None),
            (false, true) => None,
        };
        if let (1, Some(id)) = (subs.peers.len(), subs.peers.first()) {
            // One subscriber, the common case: its queue is looked up once,
            // and the set is not iterated (as in `publish_all`; the loop
            // below costs the origin 78 more instructions a copy).
            let Some(p) = peers.get_mut(id).filter(|_| !except.contains(id)) else { return Ok((0, Vec::new())) };
            let Some(tag) = tag_for(p) else { return Ok((0, Vec::new())) };
            return match p.try_push_tagged(topic, payload.clone(), tag, cost, cfg) {
                Some(sendable) => {
                    if sendable {
                        wake.insert(p.conn);
                    }
                    Ok((1, Vec::new()))
                }
                None if forward => Ok((0, vec![p.info.clone()])),
                None => {
                    p.refused(wake);
                    Err(crate::error::PublishError::Full(topic.clone()))
                }
            };
        }
        let targets = || subs.peers.iter().filter(|id| !except.contains(id));
        if !forward {
            let mut full = false;
            for id in targets() {
                if let Some(p) = peers.get_mut(id) {
                    if !p.has_room(topic, cost, cfg) {
                        p.refused(wake);
                        full = true;
                    }
                }
            }
            if full {
                return Err(crate::error::PublishError::Full(topic.clone()));
            }
        }
        let (mut queued, mut skipped) = (0, Vec::new());
        for id in targets() {
            let Some(p) = peers.get_mut(id) else { continue };
            let Some(tag) = tag_for(p) else { continue };
            match p.try_push_tagged(topic, payload.clone(), tag, cost, cfg) {
                None => skipped.push(p.info.clone()),
                Some(sendable) => {
                    if sendable {
                        wake.insert(p.conn);
                    }
                    queued += 1;
                }
            }
        }
        Ok((queued, skipped))
    }

    /// Bytes queued for `peer`, if it is in session.
    pub(crate) fn queued_bytes(&self, peer: NodeId) -> Option<usize> {
        self.peers.get(&peer).map(|p| p.log.bytes())
    }
}

/// Counts the whole Publish frames in `rx`: messages received but never
/// processed when a connection ends, so they can be reported as dropped.
pub(crate) fn unprocessed_messages(rx: &[u8]) -> u64 {
    let mut rest = rx;
    let mut n = 0;
    while let Some(p) = rest.get(..LEN_PREFIX) {
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let Some(frame) = rest.get(LEN_PREFIX..LEN_PREFIX + len) else { break };
        if let Ok((Header::Publish { .. }, _)) = postcard::take_from_bytes::<Header<'_>>(frame) {
            n += 1;
        }
        rest = &rest[LEN_PREFIX + len..];
    }
    n
}

/// How [`PubSubState::push_relay`] treats full queues and peers without
/// the discovery plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelayPush {
    /// This node publishes: all or nothing; plain copies to peers without the plane.
    Publish,
    /// This node forwards: full queues skipped; none to peers without the plane.
    Forward,
}

/// The payload of a message as queued: shared, never copied.
pub(crate) type Payload = Bytes;

/// A topic is non-empty and at most `max_len` bytes (pub/sub's and streams'
/// `max_topic_len`); the error says which rule it broke.
pub(crate) fn check_topic(topic: &str, max_len: usize) -> Result<(), String> {
    if topic.is_empty() {
        Err("empty topic".into())
    } else if topic.len() > max_len {
        Err(format!("topic of {} bytes exceeds max_topic_len {max_len}", topic.len()))
    } else {
        Ok(())
    }
}
