//! The node: a façade that routes inputs to its planes (session, dialer,
//! pub/sub) and drains their outputs. It owns nothing a plane owns.

mod close;
mod consumed;
mod discovery;
mod membership;
mod output;
mod resume;
mod route;
mod secure;
mod timers;

use crate::config::{Config, ConfigError};
use crate::dialer::Dialer;
use crate::error::CommandError;
use crate::event::{Action, CloseReason, Event, Events, PeerInfo, TargetId};
use crate::id::{ConnId, NodeId, PeerAddr};
use crate::membership::MembershipState;
use crate::pubsub::{self, DropReason, PubSub, PubSubState};
use crate::rng::Rng;
use crate::session::handshake::Me;
use crate::session::{Closing, Session};
use crate::stats::Stats;
use crate::streams::{Streams, StreamsRef, StreamsState};
use crate::time::Timestamp;
use crate::transfer::{FileError, FileReply, FileReqId, FileRequest, Transfer, TransferRef, TransferState};
use crate::wire::CloseCode;
use std::collections::VecDeque;
use std::sync::Arc;

/// The sans-IO protocol state of one estafeta node.
///
/// A `Node` performs no I/O and reads no clock. A driver feeds it socket
/// events and time through the `handle_*` methods, gives it commands
/// ([`Node::connect`], [`Node::close`], and each plane's through its
/// accessor, such as [`Node::pubsub`]), and drains its outputs after every
/// input or command: bytes ([`Node::poll_transmit`]), actions
/// ([`Node::poll_action`]), events ([`Node::poll_event`]), then the deadline
/// ([`Node::poll_timeout`]). [`Drain`](crate::Drain) does exactly this; the
/// crate documentation has the whole contract.
///
/// ```
/// use estafeta_core::secure::{Identity, SeededEntropy};
/// use estafeta_core::{Action, Config, Node};
/// // In a driver the entropy is the operating system's.
/// let mut entropy = SeededEntropy::from_seed(1);
/// let identity = Identity::generate(&mut entropy);
/// let mut node = Node::with_identity(Config::default(), identity, Box::new(entropy), "alice").unwrap();
/// node.pubsub().subscribe("news").unwrap();
/// let target = node.connect("bob@127.0.0.1:7000".parse().unwrap()).unwrap();
/// // The node asks its driver to dial.
/// match node.poll_action() {
///     Some(Action::Dial { addr, .. }) => assert_eq!(addr.port, 7000),
///     other => panic!("{other:?}"),
/// }
/// # let _ = target;
/// ```
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    me: Me,
    now: Timestamp,
    rng: Rng,
    session: Session,
    dialer: Dialer,
    pubsub: PubSubState,
    streams: StreamsState,
    membership: MembershipState,
    discovery: crate::discovery::DiscoveryState,
    transfer: TransferState,
    events: Events,
    actions: VecDeque<Action>,
    session_stats: crate::stats::SessionStats,
    /// Set by `close` or `abort`.
    closing: bool,
    /// When `close` stops waiting for queues to flush.
    close_deadline: Option<Timestamp>,
    closed: bool,
    /// Some connection holds unprocessed input because the event queue was full.
    input_stalled: bool,
    /// The subscribed topic of the last Publish or Relay received (any
    /// connection): the next one on it takes the receiver's shortcut
    /// ([`take_publish_on`](crate::wire::take_publish_on),
    /// [`take_relay_on`](crate::wire::take_relay_on)).
    rx_topic: Option<crate::id::Topic>,
    /// `pubsub.local_gen` when `rx_topic` was read from the local
    /// subscriptions: while it is the same, `rx_topic` is still one of them
    /// and a message on it is delivered without looking it up.
    rx_gen: u64,
    /// Keys, entropy and counters of the secure channel.
    secure: secure::SecureNode,
    /// The peer each dial target reached last: a redial claims its session.
    target_peers: std::collections::BTreeMap<TargetId, NodeId>,
    /// The listen address each connected peer announced in its Hello: a
    /// target that never reached its peer yet still claims the session
    /// with the peer listening there (see `hello_session`), and a new
    /// target for it is not dialed while that session lives (`connect`).
    peer_listen: std::collections::BTreeMap<NodeId, (String, u16)>,
    /// Per peer, the last session it claimed that this node did not hold
    /// (one this node never saw start, or saw end): a connection that
    /// began that session, read only now, is stale.
    unknown_claims: std::collections::BTreeMap<NodeId, u64>,
    /// Consumption handed out by `poll_event` and not yet reported.
    unreported: consumed::Unreported,
}

impl Node {
    /// A node with an id drawn from `cfg.seed`. Only in the plaintext mode
    /// (`cfg.security.mode = SecurityMode::Plaintext`), where ids are claimed, not
    /// proven; a secure node is made by [`Node::with_identity`].
    pub fn new(cfg: Config, name: &str) -> Result<Node, ConfigError> {
        let mut rng = Rng::new(cfg.seed);
        let id = NodeId::from_u128(((rng.next_u64() as u128) << 64) | rng.next_u64() as u128);
        Node::with_id(cfg, id, name)
    }

    /// A node with the given id (for example, one kept across restarts).
    /// Only in the plaintext mode, like [`Node::new`].
    pub fn with_id(cfg: Config, id: NodeId, name: &str) -> Result<Node, ConfigError> {
        if cfg.security.mode == crate::secure::SecurityMode::Noise {
            return Err(ConfigError(
                "security.mode is Noise: a secure node's id is its key (use Node::with_identity), \
                 or set security.mode = SecurityMode::Plaintext",
            ));
        }
        Node::build(cfg, id, name)
    }

    fn build(cfg: Config, id: NodeId, name: &str) -> Result<Node, ConfigError> {
        cfg.validate()?;
        if name.len() > cfg.session.max_name_len {
            return Err(ConfigError("name is longer than session.max_name_len"));
        }
        let mut rng = Rng::new(cfg.seed ^ 0x005E_ED0F_E57A_FE7A);
        let epoch = rng.next_u64() as u32;
        let mut caps = cfg.capabilities;
        if cfg.membership.coordinator {
            caps = caps | crate::wire::Capabilities::COORDINATOR;
        }
        if !cfg.session.resume_window.is_zero() {
            caps = caps | crate::wire::Capabilities::RESUME;
            if caps.contains(crate::wire::Capabilities::STREAMS) {
                caps = caps | crate::wire::Capabilities::STREAM_RESUME;
            }
        }
        let me = Me { id, name: Arc::from(name), caps, listen: None };
        let mut session = Session::new(cfg.session.clone());
        session.incarnation = rng.next_u64() | 1;
        let mut pubsub = PubSubState::new(cfg.pubsub.clone(), cfg.discovery.planted_full_relay_hold);
        pubsub.ack_delay = cfg.session.ack_delay;
        pubsub.planted_resend_bug = cfg.session.planted_resend_bug;
        pubsub.planted_overwrite_bug = cfg.session.planted_overwrite_bug;
        pubsub.planted_run_bug = cfg.session.planted_run_bug;
        Ok(Node {
            session,
            dialer: Dialer::new(cfg.dialer.clone()),
            pubsub,
            streams: StreamsState::new(cfg.streams.clone(), id),
            membership: MembershipState::new(cfg.membership.clone()),
            discovery: crate::discovery::DiscoveryState::new(cfg.discovery.clone(), epoch),
            transfer: TransferState::new(
                cfg.transfer.clone(),
                cfg.session.max_frame_size,
                cfg.seed ^ id.as_u128() as u64,
            ),
            cfg,
            me,
            now: Timestamp::ZERO,
            rng,
            events: Events::default(),
            actions: VecDeque::new(),
            session_stats: Default::default(),
            closing: false,
            close_deadline: None,
            closed: false,
            input_stalled: false,
            rx_topic: None,
            rx_gen: 0,
            secure: secure::SecureNode::plaintext(),
            target_peers: Default::default(),
            peer_listen: Default::default(),
            unknown_claims: Default::default(),
            unreported: Default::default(),
        })
    }

    // ----- getters -------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters, one block per plane.
    pub fn stats(&self) -> Stats {
        Stats {
            session: self.session_stats,
            dialer: self.dialer.stats,
            pubsub: self.pubsub.stats,
            streams: self.streams.stats,
            membership: self.membership.stats(),
            discovery: self.discovery.stats,
            transfer: self.transfer.stats,
            security: self.secure.stats,
        }
    }

    /// Peers with a session, in id order: connected ones and suspended ones
    /// (connection lost, waiting for a resume within `resume_window`).
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.session.peer_infos()
    }

    /// Peers with a connection now, in id order (a suspended session's peer
    /// is left out until it resumes).
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.session.connected_infos()
    }

    /// The pub/sub plane: subscribe, publish, credit, subscriber counts.
    pub fn pubsub(&mut self) -> PubSub<'_> {
        self.report_consumed();
        PubSub { state: &mut self.pubsub, session: &mut self.session, events: &mut self.events, closing: self.closing }
    }

    /// The pub/sub plane's queries, from a shared borrow.
    pub fn pubsub_ref(&self) -> crate::pubsub::PubSubRef<'_> {
        crate::pubsub::PubSubRef { state: &self.pubsub }
    }

    /// The streams plane: serve, open, write, close, cancel, credit.
    pub fn streams(&mut self) -> Streams<'_> {
        self.report_consumed();
        Streams {
            state: &mut self.streams,
            session: &mut self.session,
            events: &mut self.events,
            closing: self.closing,
            now: self.now,
        }
    }

    /// The streams plane's queries, from a shared borrow.
    pub fn streams_ref(&self) -> StreamsRef<'_> {
        StreamsRef { state: &self.streams }
    }

    /// The transfer plane: send files, receive them into a directory,
    /// answer offers.
    pub fn transfer(&mut self) -> Transfer<'_> {
        self.report_consumed();
        Transfer {
            state: &mut self.transfer,
            session: &mut self.session,
            pubsub: crate::pubsub::PubSubRef { state: &self.pubsub },
            events: &mut self.events,
            closing: self.closing,
        }
    }

    /// The transfer plane's queries, from a shared borrow.
    pub fn transfer_ref(&self) -> TransferRef<'_> {
        TransferRef { state: &self.transfer }
    }

    /// The next file operation the transfer plane needs. The driver runs it
    /// off its event loop and reports the result with
    /// [`Node::handle_file`]. [`Drain`](crate::Drain) hands these to
    /// [`Sink::file`](crate::Sink::file).
    pub fn poll_file_request(&mut self) -> Option<FileRequest> {
        self.transfer.poll_request()
    }

    /// A file operation asked by [`Node::poll_file_request`] completed.
    pub fn handle_file(&mut self, now: Timestamp, id: FileReqId, result: Result<FileReply, FileError>) {
        self.advance(now);
        self.transfer.complete(id, result, &mut self.events);
        self.transfer_wake();
    }

    /// Connections the transfer plane has new output for become ready.
    pub(crate) fn transfer_wake(&mut self) {
        for c in self.transfer.wake.drain(..) {
            self.session.ready.insert(c);
        }
    }

    /// Where this node listens, announced in every Hello from now on (for
    /// discovery). A driver calls it after binding.
    pub fn set_listen_addr(&mut self, host: &str, port: u16) {
        self.me.listen = Some((host.to_string(), port));
    }

    /// The peer `target` is connected to now: the peer on its open
    /// connection, or, while the target is not dialed because that peer's
    /// session lives on a connection the peer dialed, that peer.
    pub fn target_peer(&self, target: TargetId) -> Option<&PeerInfo> {
        self.session.conns.get(&self.target_conn(target)?)?.peer()
    }

    /// The connection `target` reaches its peer on: its own (open or
    /// opening), or, while it is parked, the connection of the peer's live
    /// session.
    pub(crate) fn target_conn(&self, target: TargetId) -> Option<ConnId> {
        if let Some(conn) = self.dialer.conn(target) {
            return Some(conn);
        }
        if !self.dialer.is_parked(target) {
            return None;
        }
        let e = self.session.peers.get(self.target_peers.get(&target)?)?;
        e.is_connected().then_some(e.primary)
    }

    /// True if `target` used up its dial attempts and is no longer dialed.
    pub fn target_gave_up(&self, target: TargetId) -> bool {
        self.dialer.gave_up(target)
    }

    /// True after [`Node::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// True once `close` finished: no connection is left.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True if the driver should read more bytes for `conn`: the connection
    /// exists, is connected, and its input is not waiting for the
    /// application (see `SessionConfig::max_read_buffer` and
    /// `max_pending_events`: with credit flow control this stays true
    /// unless a driver stops taking events).
    pub fn wants_read(&self, conn: ConnId) -> bool {
        self.session.conns.get(&conn).is_some_and(|c| !c.is_dialing() && !self.input_paused(conn))
    }

    fn input_paused(&self, conn: ConnId) -> bool {
        let Some(c) = self.session.conns.get(&conn) else { return false };
        self.events_full() || (c.rx.len() >= self.cfg.session.max_read_buffer && starts_with_whole_frame(&c.rx))
    }

    fn events_full(&self) -> bool {
        self.events.len() >= self.cfg.session.max_pending_events
            || self.events.bytes() >= self.cfg.session.max_pending_event_bytes
    }

    // ----- commands ------------------------------------------------------

    /// Keeps this node connected to `addr`: dials now, and redials with
    /// backoff whenever the connection fails, until the attempts in a row run
    /// out. Returns the existing target if `addr` is already one.
    ///
    /// If a connected peer (one that dialed this node, say) announced
    /// `addr` as where it listens (and `addr` pins no other id and names
    /// no other node), no second connection is opened: the target reaches
    /// that peer at once ([`Node::target_peer`]) and dials when the
    /// session is lost. (A second connection would only be a duplicate,
    /// and one the peer read before the first one's frames could cost the
    /// session.)
    pub fn connect(&mut self, addr: PeerAddr) -> Result<TargetId, CommandError> {
        if self.closing {
            return Err(CommandError::Closed);
        }
        if let Some(id) = self.dialer.find(&addr) {
            if self.dialer.revive(id) {
                self.dial(id);
            }
            return Ok(id);
        }
        let max = self.max_connections();
        if self.conn_count() >= max || self.dialer.len() >= max {
            return Err(CommandError::TooManyConnections);
        }
        let listening = self.live_peer_listening_at(&addr);
        let id = self.dialer.add(addr);
        if let Some(peer) = listening {
            // `dial` parks the target while the session lives.
            self.target_peers.insert(id, peer);
        }
        self.dial(id);
        Ok(id)
    }

    /// The peer with a live session that announced `addr` as its listen
    /// address, if `addr` pins no other id and names no other node.
    fn live_peer_listening_at(&self, addr: &PeerAddr) -> Option<NodeId> {
        let (peer, e) = self
            .peer_listen
            .iter()
            .filter(|(_, (host, port))| *host == addr.host && *port == addr.port)
            .find_map(|(p, _)| Some((*p, self.session.peers.get(p).filter(|e| e.is_connected())?)))?;
        let named_other = match addr.pinned_id() {
            Some(id) => id != peer,
            None => addr.name.as_deref().is_some_and(|n| n != &*e.info.name),
        };
        (!named_other).then_some(peer)
    }

    /// Stops keeping `target` connected and closes its connection
    /// gracefully. A target waiting on a session that lives on the peer's
    /// own connection closes nothing: that connection is the peer's.
    pub fn disconnect(&mut self, target: TargetId) {
        self.report_consumed();
        self.target_peers.remove(&target);
        if let Some(conn) = self.dialer.remove(target) {
            self.begin_close(conn, CloseReason::Local(CloseCode::NORMAL));
        }
    }

    /// Closes the node: no new publishes or dials; the node leaves every
    /// group it joined; every connection flushes what is queued (the Leaves
    /// too), says goodbye (1001) and closes. Connections still
    /// flushing after `close_timeout` are cut, and their queued messages are
    /// counted as dropped. [`Event::Closed`] follows.
    pub fn close(&mut self) {
        self.report_consumed();
        if self.closing {
            return;
        }
        self.closing = true;
        self.close_deadline = Some(self.now + self.cfg.session.close_timeout);
        // Groups are left: the Leaves go out before the goodbyes.
        self.membership.leave_all();
        self.membership.flush_wake(&mut self.session);
        self.dialer.clear();
        let ids: Vec<ConnId> = self.session.conns.keys().copied().collect();
        for id in ids {
            self.begin_close(id, CloseReason::Local(CloseCode::GOING_AWAY));
        }
        self.check_closed();
    }

    /// Closes the node at once, like a crashed process: every connection is
    /// cut without a goodbye and queued messages are dropped (counted and
    /// reported). [`Event::Closed`] follows.
    pub fn abort(&mut self) {
        self.report_consumed();
        self.closing = true;
        self.dialer.clear();
        let ids: Vec<ConnId> = self.session.conns.keys().copied().collect();
        for id in ids {
            self.remove_conn(id, CloseReason::Local(CloseCode::ABNORMAL));
        }
        self.check_closed();
    }

    // ----- inputs --------------------------------------------------------

    fn advance(&mut self, now: Timestamp) {
        debug_assert!(now >= self.now || now.as_micros() == 0, "time went backwards");
        self.now = self.now.max(now);
        self.report_consumed();
    }

    /// A listening socket accepted a connection. Returns its id. At the
    /// connection limit the connection is still taken, only to be refused:
    /// the peer reads a goodbye with [`CloseCode::TRY_AGAIN_LATER`] and a
    /// text saying so, then it closes. An error (drop the socket) only when
    /// too many refusals are in flight already, or the node is closing.
    pub fn handle_accepted(&mut self, now: Timestamp) -> Result<ConnId, CommandError> {
        self.advance(now);
        if self.closing {
            return Err(CommandError::Closed);
        }
        let conn = self.admit_accepted().ok_or(CommandError::TooManyConnections)?;
        if self.resumption() {
            // An acceptor's Hello follows the dialer's (see `resume_decision`).
            if let Some(c) = self.session.conns.get_mut(&conn).filter(|c| c.closing.is_none()) {
                c.control.hello = false;
            }
        }
        self.attach_secure(conn, false);
        Ok(conn)
    }

    /// A dial asked by [`Action::Dial`] connected.
    pub fn handle_connected(&mut self, now: Timestamp, conn: ConnId) {
        self.advance(now);
        if self.session.conns.get(&conn).is_some_and(|c| c.is_dialing()) {
            self.session.start_handshake(conn, self.now);
            self.attach_secure(conn, true);
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
        // The end of stream that ends a close wait ends a close this node began.
        let reason = self.close_wait_reason(conn).unwrap_or(reason);
        if self.session.conns.get(&conn).is_some_and(|c| c.is_open() && !c.rx.is_empty()) {
            self.process_input(conn, false);
        }
        if self.session.conns.contains_key(&conn) {
            self.remove_conn(conn, reason);
        }
    }

    // ----- internals -----------------------------------------------------

    fn dial(&mut self, target: TargetId) {
        // The peer this target reached last is connected (it dialed us):
        // another connection would only be a duplicate.
        if self.target_peers.get(&target).is_some_and(|p| self.session_live(*p)) {
            self.dialer.park(target, None);
            return;
        }
        // Never past the connection limit: try again later.
        if self.conn_count() >= self.max_connections() {
            self.dialer.defer(target, self.now, &mut self.rng, &mut self.events);
            return;
        }
        let conn = self.session.dial(target, self.now, self.cfg.dialer.dial_timeout);
        match self.dialer.dialing(target, conn) {
            Some(addr) => {
                self.dialer.stats.dials += 1;
                self.actions.push_back(Action::Dial { conn, addr });
            }
            None => {
                self.session.take(conn);
            }
        }
    }

    /// Starts a graceful close: flush data, send goodbye, then close.
    fn begin_close(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(c) = self.session.conns.get_mut(&conn) else {
            return;
        };
        let unsent = c.control.is_empty();
        if c.is_dialing() || matches!(c.phase, crate::session::Phase::AwaitPreamble) && unsent {
            self.remove_conn(conn, reason);
            return;
        }
        if c.closing.is_none() {
            c.closing = Some(Closing::Flushing(reason));
            c.close_by = Some(self.now + self.cfg.session.close_timeout);
            let peer = c.peer().map(|p| p.id);
            self.session.ready.insert(conn);
            self.pubsub.on_closing(conn, peer);
            self.streams.on_closing(conn, peer, &mut self.events);
        }
    }

    /// Closes `conn` now: tells the driver, ends its peer's session if it
    /// carried it (closing the session's other connections), tells the
    /// planes and the dialer.
    fn remove_conn(&mut self, conn: ConnId, reason: CloseReason) {
        let mut work = vec![(conn, reason)];
        while let Some((conn, reason)) = work.pop() {
            let Some(c) = self.session.take(conn) else { continue };
            // Also for a dial: the driver abandons it.
            self.actions.push_back(Action::Close { conn });
            let peer = c.peer().cloned();
            if c.in_close_wait() {
                self.close_wait_over(conn, peer.as_ref());
            }
            // Messages that arrived but were never processed (the
            // application was behind) are lost with the connection: count them.
            let resumable = peer.as_ref().is_some_and(|p| self.pubsub.is_resumable(p.id));
            if c.is_open() && !c.refused() && !resumable {
                let unread = pubsub::unprocessed_messages(&c.rx);
                self.pubsub.report_drop(&mut self.events, peer.clone(), unread, DropReason::Unprocessed);
            }
            let progressed = peer.as_ref().is_some_and(|p| self.pubsub.progressed_on(p.id, conn));
            self.pubsub.on_conn_closed(conn);
            self.discovery.on_conn_closed(conn);
            self.secure_conn_closed(conn);
            if let Some(info) = &peer {
                if self.may_suspend(info.id, conn, &reason) {
                    let others = self.suspend_session(info, conn, reason.clone());
                    work.extend(others.into_iter().rev().map(|o| (o, CloseReason::Duplicate)));
                } else if let Some(others) = self.session.detach(info.id, conn) {
                    let loss = match reason {
                        CloseReason::Session(l) => l,
                        _ => crate::resume::LossReason::Closed,
                    };
                    self.session_ended(info, reason.clone(), loss, false);
                    work.extend(others.into_iter().rev().map(|o| (o, reason.clone())));
                }
            }
            if let Some(t) = c.target {
                // A duplicate of a session that lives on: the target waits
                // for that session to be lost.
                if reason == CloseReason::Duplicate && peer.as_ref().is_some_and(|p| self.session_live(p.id)) {
                    self.dialer.park(t, Some(conn));
                } else if !self.closing && !self.discovery_target_lost(t, &reason, peer.is_some()) {
                    let live = self.cfg.session.liveness_timeout;
                    let (now, rng, events) = (self.now, &mut self.rng, &mut self.events);
                    self.dialer.lost(t, conn, reason, now, live, progressed, rng, events);
                }
            }
        }
        self.check_closed();
    }

    /// True if the session with `peer` is up (not suspended) on a connection.
    fn session_live(&self, peer: NodeId) -> bool {
        self.session.peers.get(&peer).is_some_and(crate::session::PeerEntry::is_connected)
    }

    fn check_closed(&mut self) {
        if self.closing && !self.closed && self.session.conns.is_empty() {
            self.closed = true;
            self.close_deadline = None;
            self.events.push(Event::Closed);
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
