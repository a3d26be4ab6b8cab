//! The node: every connection, subscription and dial target of one process.

mod input;
mod publish;
mod timers;

use crate::config::{Config, ConfigError};
use crate::conn::{Conn, Phase};
use crate::error::CommandError;
use crate::event::{Action, CloseReason, DropReason, Event, PeerInfo, TargetId};
use crate::id::{ConnId, NodeId, PeerAddr, Topic};
use crate::outbound::Out;
use crate::rng::Rng;
use crate::stats::Stats;
use crate::time::Timestamp;
use crate::wire::{encode_frame, CloseCode, Header, Hello, VERSION};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

pub use publish::{Published, SendMode};

/// A connected peer: its identity and its connections. Messages to the peer
/// leave on `primary`; more than one connection exists only after a
/// simultaneous dial. Losing any of them ends the session (`PeerDown`).
#[derive(Debug)]
struct PeerEntry {
    info: PeerInfo,
    primary: ConnId,
    conns: BTreeSet<ConnId>,
    /// The connection the peer's messages arrive on in this session (the
    /// peer's primary, which never changes within a session).
    data_conn: Option<ConnId>,
}

/// A dial target: an address this node keeps connected to.
#[derive(Debug)]
struct Target {
    addr: PeerAddr,
    conn: Option<ConnId>,
    /// Failed attempts in a row.
    attempts: u32,
    next_dial: Option<Timestamp>,
    ever_connected: bool,
    /// When the current connection completed its handshake.
    connected_at: Option<Timestamp>,
}

/// The sans-IO protocol state of one estafeta node.
///
/// A `Node` performs no I/O and reads no clock. A driver feeds it socket
/// events and time through the `handle_*` methods, gives it commands
/// (`subscribe`, `publish`, `connect`, `close`), and drains its outputs in
/// this order after every input or command:
///
/// 1. bytes to write, per connection: [`Node::poll_transmit`] (use
///    [`Node::next_transmit`] to find connections with output);
/// 2. actions for the driver: [`Node::poll_action`] (dial, close);
/// 3. events for the application: [`Node::poll_event`];
/// 4. the next deadline: [`Node::poll_timeout`] — call
///    [`Node::handle_timeout`] when it passes.
///
/// [`Drain`](crate::Drain) does exactly this and is what the tokio and smol
/// drivers and the simulator use. `examples/std_loop.rs` drives a node by hand.
///
/// Bytes from the network never make a call fail and never panic: bad input
/// closes that connection with a reason, is counted in [`Stats::malformed`]
/// and is reported as [`Event::ProtocolViolation`].
///
/// ```
/// use estafeta_core::{Config, Node, Timestamp};
/// let mut node = Node::new(Config::default(), "alice").unwrap();
/// node.subscribe("news").unwrap();
/// let target = node.connect("bob@127.0.0.1:7000".parse().unwrap()).unwrap();
/// // The node asks its driver to dial.
/// match node.poll_action() {
///     Some(estafeta_core::Action::Dial { addr, .. }) => assert_eq!(addr.port, 7000),
///     other => panic!("{other:?}"),
/// }
/// # let _ = target;
/// ```
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    id: NodeId,
    name: Arc<str>,
    now: Timestamp,
    rng: Rng,
    next_conn: u64,
    next_target: u64,
    conns: BTreeMap<ConnId, Conn>,
    peers: BTreeMap<NodeId, PeerEntry>,
    /// Remote subscribers per topic: the primary connection of each subscribed peer.
    topics: BTreeMap<Topic, BTreeSet<ConnId>>,
    /// Last connection chosen by round-robin, per topic.
    rr_cursor: BTreeMap<Topic, ConnId>,
    local_subs: BTreeSet<Topic>,
    targets: BTreeMap<TargetId, Target>,
    events: VecDeque<Event>,
    event_bytes: usize,
    actions: VecDeque<Action>,
    stats: Stats,
    /// Set by `close` or `abort`.
    closing: bool,
    /// When `close` stops waiting for queues to flush.
    close_deadline: Option<Timestamp>,
    closed: bool,
    /// Some connection holds unprocessed input because the event queue was full.
    input_stalled: bool,
    /// Counts sessions ended (`PeerDown`s); see `Conn::epoch`.
    epoch: u64,
    /// The epoch at which each peer was last reported down, kept while a
    /// connection opened before it may still be handshaking.
    down_epochs: BTreeMap<NodeId, u64>,
}

impl Node {
    /// A node with an id drawn from `cfg.seed`.
    pub fn new(cfg: Config, name: &str) -> Result<Node, ConfigError> {
        let mut rng = Rng::new(cfg.seed);
        let id = NodeId::from_u128(((rng.next_u64() as u128) << 64) | rng.next_u64() as u128);
        Node::with_id(cfg, id, name)
    }

    /// A node with the given id (for example, one kept across restarts).
    pub fn with_id(cfg: Config, id: NodeId, name: &str) -> Result<Node, ConfigError> {
        cfg.validate()?;
        if name.len() > cfg.max_name_len {
            return Err(ConfigError("name is longer than max_name_len"));
        }
        let rng = Rng::new(cfg.seed ^ 0x005E_ED0F_E57A_FE7A);
        Ok(Node {
            cfg,
            id,
            name: Arc::from(name),
            now: Timestamp::ZERO,
            rng,
            next_conn: 1,
            next_target: 1,
            conns: BTreeMap::new(),
            peers: BTreeMap::new(),
            topics: BTreeMap::new(),
            rr_cursor: BTreeMap::new(),
            local_subs: BTreeSet::new(),
            targets: BTreeMap::new(),
            events: VecDeque::new(),
            event_bytes: 0,
            actions: VecDeque::new(),
            stats: Stats::default(),
            closing: false,
            close_deadline: None,
            closed: false,
            input_stalled: false,
            epoch: 0,
            down_epochs: BTreeMap::new(),
        })
    }

    // ----- getters -------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Connected peers, in id order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values().map(|p| &p.info)
    }

    /// How many connected peers subscribe to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |s| s.len())
    }

    /// Topics this node subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Topic> + '_ {
        self.local_subs.iter()
    }

    /// The peer `target` is connected to now, if its connection is open.
    pub fn target_peer(&self, target: TargetId) -> Option<&PeerInfo> {
        let conn = self.targets.get(&target)?.conn?;
        let c = self.conns.get(&conn)?;
        if c.phase == Phase::Open {
            c.peer.as_ref()
        } else {
            None
        }
    }

    /// True if `target` used up its dial attempts and is no longer dialed.
    pub fn target_gave_up(&self, target: TargetId) -> bool {
        self.targets.get(&target).is_some_and(|t| t.conn.is_none() && t.next_dial.is_none())
    }

    /// True after [`Node::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True once `close` finished: no connection is left.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes queued for `peer`'s primary connection, if it is connected.
    pub fn queued_bytes(&self, peer: NodeId) -> Option<usize> {
        let p = self.peers.get(&peer)?;
        Some(self.conns.get(&p.primary)?.out.queued_bytes())
    }

    /// True if the driver should read more bytes for `conn`: the connection
    /// exists, is connected, and neither its buffer nor the event queue is full.
    pub fn wants_read(&self, conn: ConnId) -> bool {
        match self.conns.get(&conn) {
            Some(c) => c.phase != Phase::Dialing && !self.input_paused(c),
            None => false,
        }
    }

    /// True while received input waits for the application: the event queue
    /// is full, or the buffer holds `max_read_buffer` bytes and starts with a
    /// whole frame. A frame larger than the buffer is always read to its end
    /// (it is bounded by `max_frame_size`).
    fn input_paused(&self, c: &Conn) -> bool {
        self.events_full() || (c.rx.len() >= self.cfg.max_read_buffer && starts_with_whole_frame(&c.rx))
    }

    fn events_full(&self) -> bool {
        self.events.len() >= self.cfg.max_pending_events || self.event_bytes >= self.cfg.max_pending_event_bytes
    }

    // ----- commands ------------------------------------------------------

    fn check_topic(&self, topic: &str) -> Result<(), String> {
        if topic.is_empty() {
            Err("empty topic".into())
        } else if topic.len() > self.cfg.max_topic_len {
            Err(format!("topic of {} bytes exceeds max_topic_len {}", topic.len(), self.cfg.max_topic_len))
        } else {
            Ok(())
        }
    }

    /// Subscribes to `topic` and tells every connected peer. Returns `false` if
    /// already subscribed (nothing changed).
    pub fn subscribe(&mut self, topic: &str) -> Result<bool, CommandError> {
        self.check_topic(topic).map_err(CommandError::BadTopic)?;
        if self.closing {
            return Err(CommandError::Closed);
        }
        if self.local_subs.contains(topic) {
            return Ok(false);
        }
        let t = Topic::from(topic);
        self.local_subs.insert(t.clone());
        for c in self.conns.values_mut().filter(|c| c.phase != Phase::Dialing) {
            c.out.push_control(Out::Subscribe(t.clone()));
        }
        Ok(true)
    }

    /// Unsubscribes from `topic` and tells every connected peer. Returns `false`
    /// if not subscribed (nothing changed). Messages the peers sent before
    /// they learned of it are dropped, counted and reported.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<bool, CommandError> {
        let Some(t) = self.local_subs.take(topic) else {
            return Ok(false);
        };
        for c in self.conns.values_mut().filter(|c| c.phase != Phase::Dialing) {
            c.out.push_control(Out::Unsubscribe(t.clone()));
        }
        Ok(true)
    }

    /// Keeps this node connected to `addr`: dials now, and redials with
    /// backoff whenever the connection fails, until the attempts in a row run
    /// out. Returns the existing target if `addr` is already one.
    pub fn connect(&mut self, addr: PeerAddr) -> Result<TargetId, CommandError> {
        if self.closing {
            return Err(CommandError::Closed);
        }
        if let Some((id, _)) = self.targets.iter().find(|(_, t)| t.addr.host == addr.host && t.addr.port == addr.port) {
            let id = *id;
            let t = self.targets.get_mut(&id).expect("found above");
            if t.conn.is_none() && t.next_dial.is_none() {
                // It had given up: start again.
                t.attempts = 0;
                self.dial(id);
            }
            return Ok(id);
        }
        if self.conns.len() >= self.cfg.max_connections || self.targets.len() >= self.cfg.max_connections {
            return Err(CommandError::TooManyConnections);
        }
        let id = TargetId(self.next_target);
        self.next_target += 1;
        self.targets.insert(
            id,
            Target { addr, conn: None, attempts: 0, next_dial: None, ever_connected: false, connected_at: None },
        );
        self.dial(id);
        Ok(id)
    }

    /// Stops keeping `target` connected and closes its connection gracefully.
    pub fn disconnect(&mut self, target: TargetId) {
        if let Some(t) = self.targets.remove(&target) {
            if let Some(conn) = t.conn {
                self.begin_close(conn, CloseReason::Local(CloseCode::NORMAL));
            }
        }
    }

    /// Closes the node: no new publishes or dials; every connection flushes
    /// what is queued, says goodbye (1001) and closes. Connections still
    /// flushing after `close_timeout` are cut, and their queued messages are
    /// counted as dropped. [`Event::Closed`] follows.
    pub fn close(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.close_deadline = Some(self.now + self.cfg.close_timeout);
        self.targets.clear();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.begin_close(id, CloseReason::Local(CloseCode::GOING_AWAY));
        }
        self.check_closed();
    }

    /// Closes the node at once, like a crashed process: every connection is
    /// cut without a goodbye and queued messages are dropped (counted and
    /// reported). [`Event::Closed`] follows.
    pub fn abort(&mut self) {
        self.closing = true;
        self.targets.clear();
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.remove_conn(id, CloseReason::Local(CloseCode::ABNORMAL));
        }
        self.check_closed();
    }

    // ----- inputs --------------------------------------------------------

    fn advance(&mut self, now: Timestamp) {
        debug_assert!(now >= self.now || now.as_micros() == 0, "time went backwards");
        self.now = self.now.max(now);
    }

    /// A listening socket accepted a connection. Returns its id, or an error if
    /// the connection limit is reached (drop the socket).
    pub fn handle_accepted(&mut self, now: Timestamp) -> Result<ConnId, CommandError> {
        self.advance(now);
        if self.closing {
            return Err(CommandError::Closed);
        }
        if self.conns.len() >= self.cfg.max_connections {
            return Err(CommandError::TooManyConnections);
        }
        let id = self.new_conn_id();
        let mut conn = Conn::new(id, None, Phase::AwaitPreamble, self.now);
        conn.epoch = self.epoch;
        conn.out.push_control(Out::Encoded(self.hello_frame()));
        self.conns.insert(id, conn);
        Ok(id)
    }

    /// A dial asked by [`Action::Dial`] connected.
    pub fn handle_connected(&mut self, now: Timestamp, conn: ConnId) {
        self.advance(now);
        let hello = self.hello_frame();
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.phase == Phase::Dialing {
                c.phase = Phase::AwaitPreamble;
                c.epoch = self.epoch;
                c.opened_at = self.now;
                c.last_recv = self.now;
                c.last_send = self.now;
                c.out.push_control(Out::Encoded(hello));
            }
        }
    }

    /// The socket of `conn` closed, failed, or its dial failed.
    ///
    /// What the peer sent before the socket ended is still delivered: frames
    /// already buffered (at most `max_read_buffer` plus one frame) are
    /// processed now, even past `max_pending_events`, then the connection is
    /// removed.
    pub fn handle_closed(&mut self, now: Timestamp, conn: ConnId, reason: CloseReason) {
        self.advance(now);
        if self.conns.get(&conn).is_some_and(|c| c.phase == Phase::Open && !c.rx.is_empty()) {
            self.process_input(conn, false);
        }
        if self.conns.contains_key(&conn) {
            self.remove_conn(conn, reason);
        }
    }

    // ----- outputs -------------------------------------------------------

    /// The first connection after `after` (in id order) with bytes to write.
    pub fn next_transmit(&self, after: Option<ConnId>) -> Option<ConnId> {
        let start = after.map_or(0, |c| c.0 + 1);
        self.conns.range(ConnId(start)..).find(|(_, c)| c.has_output()).map(|(id, _)| *id)
    }

    /// Appends bytes to write on `conn` to `buf` (about `transmit_chunk` at
    /// most) and returns how many. The driver must write them, in order,
    /// before asking for more.
    pub fn poll_transmit(&mut self, now: Timestamp, conn: ConnId, buf: &mut Vec<u8>) -> usize {
        self.advance(now);
        let chunk = self.cfg.transmit_chunk;
        let (max_b, max_f) = (self.cfg.max_queued_bytes_per_peer, self.cfg.max_queued_frames_per_peer);
        let Some(c) = self.conns.get_mut(&conn) else {
            return 0;
        };
        if c.phase == Phase::Dialing {
            return 0;
        }
        let (n, frames) = c.out.fill(buf, chunk);
        if n > 0 {
            c.last_send = self.now;
            self.stats.bytes_out += n as u64;
            self.stats.sent += frames;
        }
        let writable = c.want_writable && c.out.below_low_water(max_b, max_f);
        if writable {
            c.want_writable = false;
        }
        let mut finished = None;
        if let Some(reason) = &c.closing {
            if c.out.data_is_empty() && !c.goodbye_queued {
                c.goodbye_queued = true;
                c.out.push_control(Out::Goodbye(reason.code().0, reason.to_string()));
            } else if c.goodbye_queued && c.out.is_empty() {
                finished = Some(reason.clone());
            }
        }
        if writable {
            self.push_event(Event::Writable);
        }
        if let Some(reason) = finished {
            self.remove_conn(conn, reason);
        }
        n
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application. Taking events makes room for more
    /// received input to be processed.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.input_stalled && self.events.len() <= self.cfg.max_pending_events / 2 {
            self.resume_input();
        }
        let ev = self.events.pop_front()?;
        if let Event::Message(m) = &ev {
            self.event_bytes -= m.payload.len();
        }
        Some(ev)
    }

    // ----- internals -----------------------------------------------------

    fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn hello_frame(&self) -> Vec<u8> {
        let subscriptions: Vec<&str> = self.local_subs.iter().map(|t| t.as_str()).collect();
        let hello = Hello { version: VERSION, id: self.id.as_u128(), name: &self.name, roles: 0, subscriptions };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &Header::Hello(hello), &[]);
        buf
    }

    fn dial(&mut self, target: TargetId) {
        let conn = self.new_conn_id();
        let Some(t) = self.targets.get_mut(&target) else {
            return;
        };
        t.conn = Some(conn);
        t.next_dial = None;
        let addr = t.addr.clone();
        self.conns.insert(conn, Conn::new(conn, Some(target), Phase::Dialing, self.now));
        self.actions.push_back(Action::Dial { conn, addr });
    }

    fn push_event(&mut self, ev: Event) {
        if let Event::Message(m) = &ev {
            self.event_bytes += m.payload.len();
        }
        self.events.push_back(ev);
    }

    fn report_drop(&mut self, peer: Option<PeerInfo>, count: u64, reason: DropReason) {
        if count == 0 {
            return;
        }
        self.stats.dropped += count;
        // Consecutive drops for the same peer and reason become one event, so
        // a slow consumer does not turn into an event storm.
        if let Some(Event::Dropped { peer: p, count: n, reason: r }) = self.events.back_mut() {
            if *p == peer && *r == reason {
                *n += count;
                return;
            }
        }
        self.push_event(Event::Dropped { peer, count, reason });
    }

    /// Starts a graceful close: flush data, send goodbye, then close.
    fn begin_close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase == Phase::Dialing || c.phase == Phase::AwaitPreamble && c.out.is_empty() {
            self.remove_conn(conn, reason);
            return;
        }
        if c.closing.is_none() {
            c.closing = Some(reason);
            if c.out.data_is_empty() && c.out.control_is_empty() {
                c.goodbye_queued = true;
                let r = c.closing.as_ref().expect("set above");
                c.out.push_control(Out::Goodbye(r.code().0, r.to_string()));
            }
        }
    }

    /// Closes `conn` now: tells the driver, updates peers, topics and targets.
    fn remove_conn(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        if c.phase != Phase::Dialing {
            self.actions.push_back(Action::Close { conn });
        }
        let dropped = c.out.clear();
        let peer = c.peer.clone();
        // Messages that arrived but were never processed (the application
        // was behind) are lost with the connection: count them.
        let unread = if c.phase == Phase::Open && !matches!(c.closing, Some(CloseReason::Protocol(_))) {
            input::unprocessed_messages(&c.rx)
        } else {
            0
        };
        self.report_drop(peer.clone(), unread, DropReason::Unprocessed);
        if let Some(info) = &peer {
            self.detach_from_peer(info, conn, reason.clone());
        }
        self.report_drop(peer, dropped, DropReason::Disconnected);
        if c.want_writable {
            self.push_event(Event::Writable);
        }
        if let Some(tid) = c.target {
            self.target_lost(tid, conn, reason);
        }
        self.check_closed();
    }

    fn check_closed(&mut self) {
        if self.closing && !self.closed && self.conns.is_empty() {
            self.closed = true;
            self.close_deadline = None;
            self.push_event(Event::Closed);
        }
    }
}

/// True if `rx` begins with a complete length-prefixed frame.
fn starts_with_whole_frame(rx: &[u8]) -> bool {
    match rx.get(..crate::wire::LEN_PREFIX) {
        Some(p) => rx.len() >= crate::wire::LEN_PREFIX + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize,
        None => false,
    }
}

impl Node {
    /// True if `conn` has bytes to write now.
    pub fn next_transmit_is(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.has_output())
    }
}
