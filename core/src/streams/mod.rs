//! The streams plane: many request → stream-of-replies exchanges over the
//! connection a node already has with each peer.
//!
//! **Roles.** The node that opens a stream is its *consumer*: it sends the
//! request and receives replies. The peer that serves the topic is its
//! *producer*: it writes replies and ends the stream with a close code.
//! Streams belong to the peer's session and die with it (1006 at both ends).
//! In a session that resumes (both ends announced
//! [`Capabilities::STREAM_RESUME`](crate::Capabilities::STREAM_RESUME)) the
//! frames of streams take sequence numbers and stay in the session's send
//! log until acknowledged: a lost connection only suspends the streams, and
//! the resume re-sends what the peer did not take (serve announcements are
//! state, announced again).
//!
//! **Ids.** Wire ids are chosen by the opener; their low bit is the opener's
//! side (0 for the node with the lower node id), so the two sides never pick
//! the same id; each side's ids strictly increase and are never reused. The
//! application sees node-wide [`StreamId`]s instead.
//!
//! **Credit.** The consumer grants each stream a window (in bytes plus
//! [`MESSAGE_COST`](crate::wire::MESSAGE_COST) per message), the first
//! grant in its Open, more once about half of it was consumed by the
//! application, and never more than `connection_window` outstanding over
//! all streams with one peer. A producer's write is accepted while the
//! stream has credit left (the last message may overshoot), so what a
//! producer queues is bounded by credit and a stalled stream slows nobody
//! else. Stream data is a data source of the outbound scheduler, produced on
//! pull, round-robin across streams, long messages split into fragments.
//!
//! **Endings.** Every stream ends exactly once at each end, with one
//! [`StreamEvent::Closed`]: the producer closes (Close frame), the consumer
//! cancels (Cancel frame), an open is refused (Close frame), the session
//! ends (1006, never sent), the node closes (1001), or a stream heartbeat
//! shows the other side no longer holds it (1006).

mod api;
mod churn;
mod event;
mod recv;
mod send;

pub use api::{Streams, StreamsRef};
pub use event::{Role, StreamEnd, StreamEvent, StreamId, WriteError};

use crate::config::StreamsConfig;
use crate::event::{Event, Events, PeerInfo};
use crate::id::{ConnId, NodeId, Topic};
use crate::stats::StreamsStats;
use crate::time::Timestamp;
use crate::timer::Timers;
use crate::wire::{CloseCode, MESSAGE_COST};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// A stream this node opened (consumer end).
#[derive(Debug)]
struct Opened {
    local: StreamId,
    topic: Topic,
    /// The request, until the Open leaves.
    request: Option<Bytes>,
    deadline: Option<Timestamp>,
    sent_open: bool,
    /// Credit granted in total, received (cost) and consumed by the application.
    granted: u64,
    received: u64,
    consumed: u64,
    /// The fragments of a message still arriving.
    partial: Option<BytesMut>,
}

impl Opened {
    /// Credit granted and not yet consumed (consumption may pass the
    /// grants by the overshoot of a last message).
    fn held(&self) -> u64 {
        self.granted.saturating_sub(self.consumed)
    }
}

/// A stream a peer opened (producer end).
#[derive(Debug)]
struct Served {
    local: StreamId,
    /// Credit granted in total, and used by accepted messages.
    granted: u64,
    used: u64,
    queue: VecDeque<Bytes>,
    /// Bytes of the front message already sent as fragments.
    offset: usize,
    /// The Close to send once the queue is empty.
    close: Option<(CloseCode, String)>,
    /// The application saw its Closed event; only the Close frame is left.
    ended: bool,
    in_ring: bool,
    want_writable: bool,
}

/// Streams with one peer in session.
#[derive(Debug)]
struct PeerStreams {
    info: PeerInfo,
    /// The session's primary: where this plane's frames to the peer leave.
    conn: ConnId,
    /// Streams outlive connections with the session: the frames of streams
    /// take sequence numbers and are logged until acknowledged.
    logged: bool,
    /// The session is suspended (no connection): nothing leaves, the
    /// streams wait for the resume or the session's end.
    suspended: bool,
    /// This node's id parity (low bit of the ids it opens).
    bit: u64,
    /// The counter of this node's next id.
    next: u64,
    /// Highest id of ours whose Open left.
    sent_open_max: u64,
    /// Highest id of the peer's we have seen.
    highest_remote: u64,
    /// Topics the peer serves.
    serves: BTreeSet<Topic>,
    /// Topics this node told the peer it serves, in this session (after a
    /// resume each is announced again, served or not).
    announced: BTreeSet<Topic>,
    opened: BTreeMap<u64, Opened>,
    served: BTreeMap<u64, Served>,
    /// Credit granted on `opened` and not consumed (the connection window).
    outstanding: u64,
    /// Control, as state: encoded at pull time.
    serve_changes: BTreeMap<Topic, bool>,
    opens: VecDeque<u64>,
    grants: BTreeSet<u64>,
    /// Streams that wanted credit the connection window did not have.
    starved: BTreeSet<u64>,
    cancels: VecDeque<(u64, CloseCode, String)>,
    refusals: VecDeque<(u64, CloseCode, String)>,
    hb_due: bool,
    /// The due heartbeat is a reply (not the interval's).
    hb_reply: bool,
    hb_armed: bool,
    /// Producer streams with data or a close to send, round-robin.
    ring: VecDeque<u64>,
    /// The primary is closing: nothing new starts.
    closing: bool,
    /// The peer's open/cancel churn bucket.
    churn: churn::Churn,
}

impl PeerStreams {
    fn held_count(&self) -> usize {
        self.opened.len() + self.served.len()
    }

    /// The connection window has room again: starved streams may be granted.
    fn unstarve(&mut self) -> bool {
        if self.starved.is_empty() {
            return false;
        }
        let s = std::mem::take(&mut self.starved);
        self.grants.extend(s);
        true
    }
}

#[derive(Debug)]
pub(crate) struct StreamsState {
    cfg: StreamsConfig,
    me: NodeId,
    /// Topics this node serves.
    local: BTreeSet<Topic>,
    peers: BTreeMap<NodeId, PeerStreams>,
    /// The application's ids: (peer, wire id).
    locals: BTreeMap<StreamId, (NodeId, u64)>,
    next_local: u64,
    /// Consumer streams open, all peers.
    open_count: usize,
    deadlines: Timers<(NodeId, u64)>,
    heartbeats: Timers<NodeId>,
    /// The server round-robin chose last, per topic.
    rr: BTreeMap<Topic, NodeId>,
    pub(crate) stats: StreamsStats,
}

/// Credit a message of `len` bytes costs.
pub(crate) fn cost(len: usize) -> u64 {
    len as u64 + MESSAGE_COST
}

impl StreamsState {
    pub(crate) fn new(cfg: StreamsConfig, me: NodeId) -> Self {
        StreamsState {
            cfg,
            me,
            local: BTreeSet::new(),
            peers: BTreeMap::new(),
            locals: BTreeMap::new(),
            next_local: 0,
            open_count: 0,
            deadlines: Timers::default(),
            heartbeats: Timers::default(),
            rr: BTreeMap::new(),
            stats: StreamsStats::default(),
        }
    }

    fn new_local(&mut self) -> StreamId {
        self.next_local += 1;
        StreamId(self.next_local)
    }

    pub(crate) fn check_topic(&self, topic: &str) -> Result<(), String> {
        crate::pubsub::check_topic(topic, self.cfg.max_topic_len)
    }

    /// A session with `info` starts on `conn`: announce what we serve. If
    /// `logged`, the session's streams survive a lost connection. A
    /// suspended session's streams resume on `conn` as they were.
    pub(crate) fn on_peer_up(&mut self, info: &PeerInfo, conn: ConnId, logged: bool, now: Timestamp) {
        if let Some(p) = self.peers.get_mut(&info.id).filter(|p| p.suspended) {
            p.conn = conn;
            p.suspended = false;
            // Announcements are state, not numbered: all of it again.
            let gone: Vec<Topic> = p.announced.difference(&self.local).cloned().collect();
            p.serve_changes =
                self.local.iter().map(|t| (t.clone(), true)).chain(gone.into_iter().map(|t| (t, false))).collect();
            self.touch(info.id, now);
            return;
        }
        let p = PeerStreams {
            info: info.clone(),
            conn,
            logged,
            suspended: false,
            bit: u64::from(self.me > info.id),
            next: 0,
            sent_open_max: 0,
            highest_remote: 0,
            serves: BTreeSet::new(),
            announced: BTreeSet::new(),
            opened: BTreeMap::new(),
            served: BTreeMap::new(),
            outstanding: 0,
            serve_changes: self.local.iter().map(|t| (t.clone(), true)).collect(),
            opens: VecDeque::new(),
            grants: BTreeSet::new(),
            starved: BTreeSet::new(),
            cancels: VecDeque::new(),
            refusals: VecDeque::new(),
            hb_due: false,
            hb_reply: false,
            hb_armed: false,
            ring: VecDeque::new(),
            closing: false,
            churn: churn::Churn::new(&self.cfg),
        };
        self.peers.insert(info.id, p);
    }

    /// The connection carrying the session with `peer` was lost and the
    /// session is suspended: logged streams wait for the resume (what they
    /// wrote is re-sent from the session's log); others end with 1006.
    pub(crate) fn on_suspend(&mut self, peer: NodeId, events: &mut Events) {
        match self.peers.get_mut(&peer) {
            Some(p) if p.logged => {
                p.suspended = true;
                if self.cfg.planted_suspend_bug {
                    for s in p.served.values_mut() {
                        // (A message partly sent keeps its rest.)
                        s.queue.truncate(usize::from(s.offset > 0));
                    }
                }
                p.hb_armed = false;
                p.hb_due = false;
                p.hb_reply = false;
                self.heartbeats.cancel(peer);
            }
            _ => self.on_peer_down(peer, events),
        }
    }

    /// True if the session with `peer` logs its stream frames.
    pub(crate) fn is_logged(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.logged)
    }

    /// The session with `peer` ended: every stream with it ends with 1006.
    pub(crate) fn on_peer_down(&mut self, peer: NodeId, events: &mut Events) {
        let Some(p) = self.peers.remove(&peer) else { return };
        self.heartbeats.cancel(peer);
        let text = "connection lost";
        for (id, s) in p.opened {
            self.deadlines.cancel((peer, id));
            self.locals.remove(&s.local);
            self.open_count -= 1;
            push_closed(events, s.local, Role::Consumer, CloseCode::ABNORMAL, text, false);
        }
        for (_, s) in p.served {
            self.locals.remove(&s.local);
            if !s.ended {
                push_closed(events, s.local, Role::Producer, CloseCode::ABNORMAL, text, false);
            }
        }
        for t in p.serves {
            events.push(Event::Stream(StreamEvent::Serving { peer: p.info.clone(), topic: t, serving: false }));
        }
    }

    /// `conn` started a graceful close: if it carries a session, every stream
    /// with that peer ends with 1001 (Cancel and Close frames leave before
    /// the goodbye) and nothing new starts.
    pub(crate) fn on_closing(&mut self, conn: ConnId, peer: Option<NodeId>, events: &mut Events) {
        let Some(id) = peer else { return };
        let Some(p) = self.peers.get_mut(&id).filter(|p| p.conn == conn) else { return };
        p.closing = true;
        let text = "going away: the node is closing";
        let opened: Vec<u64> = p.opened.keys().copied().collect();
        for wid in opened {
            self.end_opened(id, wid, CloseCode::GOING_AWAY, text, false, true, events);
        }
        let p = self.peers.get_mut(&id).expect("present above");
        for (wid, s) in p.served.iter_mut() {
            // A stream its application already closed keeps its replies and
            // its code (the close timeout bounds the flush); the others
            // drop what is queued and end with 1001.
            if !s.ended {
                s.queue.clear();
                s.offset = 0;
                s.ended = true;
                s.close = Some((CloseCode::GOING_AWAY, text.into()));
                push_closed(events, s.local, Role::Producer, CloseCode::GOING_AWAY, text, false);
            }
            if !s.in_ring {
                s.in_ring = true;
                p.ring.push_back(*wid);
            }
        }
    }

    /// Ends consumer stream `wid` with `peer`: forgets it, returns its
    /// credit to the connection window, tells the application, and (if
    /// `send` and its Open left) tells the producer with a Cancel.
    #[allow(clippy::too_many_arguments)]
    fn end_opened(
        &mut self,
        peer: NodeId,
        wid: u64,
        code: CloseCode,
        text: &str,
        remote: bool,
        send: bool,
        events: &mut Events,
    ) -> Option<ConnId> {
        let p = self.peers.get_mut(&peer)?;
        let s = p.opened.remove(&wid)?;
        p.outstanding -= s.held();
        p.unstarve();
        if send && s.sent_open {
            p.cancels.push_back((wid, code, text.to_string()));
        }
        self.deadlines.cancel((peer, wid));
        self.locals.remove(&s.local);
        self.open_count -= 1;
        push_closed(events, s.local, Role::Consumer, code, text, remote);
        Some(p.conn)
    }

    /// Ends producer stream `wid` with `peer` because the consumer cancelled
    /// it or no longer holds it: its queue is dropped, no frame is sent.
    fn drop_served(&mut self, peer: NodeId, wid: u64, code: CloseCode, text: &str, remote: bool, events: &mut Events) {
        let Some(p) = self.peers.get_mut(&peer) else { return };
        let Some(s) = p.served.remove(&wid) else { return };
        self.locals.remove(&s.local);
        if !s.ended {
            push_closed(events, s.local, Role::Producer, code, text, remote);
        }
    }

    /// Arms the stream heartbeat with `peer` if streams are open and it is not.
    fn touch(&mut self, peer: NodeId, now: Timestamp) {
        let interval = self.cfg.heartbeat_interval;
        if let Some(p) = self.peers.get_mut(&peer) {
            if !p.hb_armed && !p.suspended && p.held_count() > 0 {
                p.hb_armed = true;
                self.heartbeats.set(peer, now + interval);
            }
        }
    }

    /// The next deadline or stream heartbeat.
    pub(crate) fn next_timer(&self) -> Option<Timestamp> {
        let a = self.deadlines.next().map(|(t, _)| t);
        let b = self.heartbeats.next().map(|(t, _)| t);
        match (a, b) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Fires due deadlines (the consumer cancels with 4008) and heartbeats.
    pub(crate) fn handle_timeout(&mut self, now: Timestamp, ready: &mut BTreeSet<ConnId>, events: &mut Events) {
        while let Some((peer, wid)) = self.deadlines.pop_due(now) {
            let text = "deadline exceeded";
            if let Some(c) = self.end_opened(peer, wid, CloseCode::DEADLINE_EXCEEDED, text, false, true, events) {
                ready.insert(c);
            }
        }
        while let Some(peer) = self.heartbeats.pop_due(now) {
            let Some(p) = self.peers.get_mut(&peer) else { continue };
            p.hb_armed = false;
            if p.held_count() > 0 {
                p.hb_due = true;
                p.hb_reply = false;
                ready.insert(p.conn);
                self.touch(peer, now);
            }
        }
    }

    /// True if the peer whose primary is `conn` has stream control to send.
    pub(crate) fn has_control(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        self.peer_on(conn, peer).is_some_and(|p| {
            !p.serve_changes.is_empty()
                || !p.opens.is_empty()
                || !p.grants.is_empty()
                || !p.cancels.is_empty()
                || !p.refusals.is_empty()
                || p.hb_due
        })
    }

    /// True if the peer whose primary is `conn` has stream data or closes to send.
    pub(crate) fn has_sendable(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        self.peer_on(conn, peer).is_some_and(|p| !p.ring.is_empty())
    }

    /// True if nothing of this plane waits to leave on `conn`.
    pub(crate) fn is_flushed(&self, conn: ConnId, peer: Option<NodeId>) -> bool {
        !self.has_control(conn, peer) && !self.has_sendable(conn, peer)
    }

    /// `conn` is refused: discard what waits to leave on it.
    pub(crate) fn clear_data(&mut self, conn: ConnId, peer: Option<NodeId>) {
        let Some(p) = peer.and_then(|id| self.peers.get_mut(&id)).filter(|p| p.conn == conn) else { return };
        p.ring.clear();
        for s in p.served.values_mut() {
            s.queue.clear();
            s.in_ring = false;
        }
        p.serve_changes.clear();
        p.opens.clear();
        p.grants.clear();
        p.cancels.clear();
        p.refusals.clear();
        p.hb_due = false;
    }

    fn peer_on(&self, conn: ConnId, peer: Option<NodeId>) -> Option<&PeerStreams> {
        peer.and_then(|id| self.peers.get(&id)).filter(|p| p.conn == conn && !p.suspended)
    }

    /// The application consumed `messages` messages of `bytes` payload bytes
    /// on consumer stream `stream`. Returns the connection if a grant is due.
    pub(crate) fn consumed(&mut self, stream: StreamId, messages: u64, bytes: u64) -> Option<ConnId> {
        let &(peer, wid) = self.locals.get(&stream)?;
        let half = self.cfg.window / 2;
        let p = self.peers.get_mut(&peer)?;
        let s = p.opened.get_mut(&wid)?;
        let c = bytes.saturating_add(messages.saturating_mul(MESSAGE_COST)).min(s.received - s.consumed);
        let before = s.held();
        s.consumed += c;
        p.outstanding -= before - s.held();
        let mut due = false;
        if s.held() <= half && s.sent_open {
            due |= p.grants.insert(wid);
        }
        if c > 0 {
            due |= p.unstarve();
        }
        due.then_some(p.conn)
    }

    /// Open streams: (as consumer, as producer), all peers.
    pub(crate) fn open_counts(&self) -> (usize, usize) {
        let served = self.peers.values().map(|p| p.served.len()).sum();
        (self.open_count, served)
    }
}

/// Pushes a stream's terminal event.
fn push_closed(events: &mut Events, stream: StreamId, role: Role, code: CloseCode, text: &str, remote: bool) {
    let end = StreamEnd { code, text: text.to_string(), remote };
    events.push(Event::Stream(StreamEvent::Closed { stream, role, end }));
}

/// The deadline a consumer still has, as sent in an Open.
fn remaining_ms(deadline: Option<Timestamp>, now: Timestamp) -> Option<u64> {
    deadline.map(|d| u64::try_from(d.saturating_since(now).as_millis()).unwrap_or(u64::MAX))
}

/// The deadline an Open announced.
fn deadline_of(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}
