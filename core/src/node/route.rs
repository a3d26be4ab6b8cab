//! Received bytes and the frame router: the handshake gate, the session
//! gate, the capability gate, then the plane. Planes return a protocol
//! error; only the router refuses a connection.

use super::resume::Decision;
use super::Node;
use crate::event::{CloseReason, DialEvent, Event, ProtocolError};
use crate::id::{ConnId, NodeId, PeerAddr, Topic};
use crate::pubsub::DropReason;
use crate::session::handshake::check_hello;
use crate::session::{Closing, Gate, HelloOutcome, Open, Phase};
use crate::time::Timestamp;
use crate::wire::{
    check_preamble, decode_frame, take_publish_on, take_relay_on, take_stream_data, Capabilities, CloseCode,
    DiscoveryFrame, Header, Hello, RelayHead, SessionFrame, PREAMBLE_LEN,
};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// On a secure connection, the bytes of records not yet whole that count as
/// hearing the peer, as if a record had opened. A peer sending a long record
/// delivers this much well within any liveness timeout; the heartbeats and
/// acks of an idle peer (a few dozen bytes each per heartbeat interval) do
/// not, so they cannot keep alive a channel whose record length was
/// corrupted.
const PARTIAL_RECORD_LIVENESS: usize = 1024;

/// What one frame did to the connection.
pub(super) enum Flow {
    Continue,
    /// The connection was closed or is closing; stop reading it.
    Stop,
}

impl Node {
    /// Bytes arrived on `conn`. They are buffered and processed as far as the
    /// event queue has room; the rest waits (see [`Node::wants_read`]).
    /// Bad bytes close the connection with a reason; this call never fails.
    pub fn handle_bytes(&mut self, now: Timestamp, conn: ConnId, bytes: &[u8]) {
        if let Some(rx) = self.recv_buffer(conn) {
            rx.extend_from_slice(bytes);
            self.handle_received(now, conn, bytes.len());
        }
    }

    /// The receive buffer of `conn`, for a driver that reads from its socket
    /// straight into it (saving a copy), then reports the bytes it appended
    /// with [`Node::handle_received`]. Only append; read only while
    /// [`Node::wants_read`] is true. `None` if `conn` is not connected.
    pub fn recv_buffer(&mut self, conn: ConnId) -> Option<&mut BytesMut> {
        let c = self.session.conns.get_mut(&conn).filter(|c| !c.is_dialing())?;
        Some(match c.secure.as_mut() {
            Some(s) => &mut s.crx,
            None => &mut c.rx,
        })
    }

    /// `n` bytes were appended to [`Node::recv_buffer`]; processes them like
    /// [`Node::handle_bytes`].
    pub fn handle_received(&mut self, now: Timestamp, conn: ConnId, n: usize) {
        self.advance(now);
        let Some(c) = self.session.conns.get_mut(&conn) else {
            return;
        };
        if c.is_dialing() || n == 0 {
            return;
        }
        self.session_stats.bytes_in += n as u64;
        if c.secure.is_none() {
            c.last_recv = self.now;
        } else {
            // On a secure connection an opened record shows the peer is
            // alive, and so does a part of one as long as it comes at a
            // rate (`PARTIAL_RECORD_LIVENESS`): a record of 64 KiB on a slow
            // link may take longer than the liveness timeout to arrive
            // (simulator seed 45 with `--secure 1000 --sessions 1000`: a
            // 47 KB message re-sent after each resume never arrived in
            // time, and the connection was lost again and again). A
            // corrupted record length must not keep a dead channel open on
            // the heartbeats that trickle into a record they can never
            // complete: those are far below the rate.
            let before = c.rx.len();
            c.unopened = c.unopened.saturating_add(n);
            if !self.secure_input(conn) {
                return;
            }
            let Some(c) = self.session.conns.get_mut(&conn) else { return };
            if c.rx.len() != before || c.unopened >= PARTIAL_RECORD_LIVENESS {
                c.last_recv = self.now;
                c.unopened = 0;
            }
        }
        self.process_input(conn, true);
    }

    /// Processes buffered input of connections that stalled on a full event queue.
    pub(super) fn resume_input(&mut self) {
        self.input_stalled = false;
        let ids: Vec<ConnId> = self.session.conns.iter().filter(|(_, c)| !c.rx.is_empty()).map(|(id, _)| *id).collect();
        for id in ids {
            self.process_input(id, true);
        }
    }

    /// Processes whole frames buffered for `conn`. `bounded`: stop while the
    /// event queue is full (the rest waits in the read buffer). In a
    /// resumable session the messages taken are acknowledged at the ack
    /// thresholds, with the next bytes this node writes to the peer anyway,
    /// when the peer asks (a heartbeat) or after the ack delay: not after
    /// every read, which cost a write of its own per round trip.
    pub(super) fn process_input(&mut self, conn: ConnId, bounded: bool) {
        self.process_frames(conn, bounded);
        self.wake_pubsub_conns();
    }

    fn process_frames(&mut self, conn: ConnId, bounded: bool) {
        loop {
            if bounded && self.events_full() {
                self.input_stalled = true;
                return;
            }
            let max_frame = self.cfg.session.max_frame_size;
            let Some(c) = self.session.conns.get_mut(&conn) else {
                return;
            };
            if c.refused() {
                // The peer broke the protocol: nothing more it sends is read.
                c.rx.clear();
                return;
            }
            // A graceful close still delivers what the peer sends until the
            // connection is gone.
            if matches!(c.phase, Phase::AwaitPreamble) {
                if c.rx.len() < PREAMBLE_LEN {
                    return;
                }
                let pre = c.rx.split_to(PREAMBLE_LEN);
                if let Err(e) = check_preamble(&pre) {
                    self.violation(conn, ProtocolError::Wire(e));
                    return;
                }
                if pre[PREAMBLE_LEN - 1] != crate::secure::SecurityMode::Plaintext.wire_byte() {
                    let why =
                        "the peer requires the secure transport; this node runs plaintext (security.mode = Plaintext)";
                    self.secure.stats.mode_mismatch += 1;
                    self.violation(conn, ProtocolError::SecurityMismatch(why.into()));
                    return;
                }
                c.phase = Phase::AwaitHello;
                continue;
            }
            // The hot path: a message on the topic of the one before it
            // (every gate below still applies).
            if let Some(t) = self.rx_topic.take() {
                if let Some(payload) = take_publish_on(&mut c.rx, t.as_str(), max_frame) {
                    let local = self.rx_topic_is_local(&t);
                    let flow =
                        self.route_or_cut(conn, Header::Publish { topic: t.as_str() }, payload, local.then_some(&t));
                    // The frames on that topic that follow it, as one run.
                    if let (Flow::Continue, true) = (&flow, local && !(bounded && self.events_full())) {
                        self.take_run(conn, &t);
                    }
                    self.rx_topic = Some(t);
                    if let Flow::Stop = flow {
                        return;
                    }
                    continue;
                }
                // A relayed copy on that topic likewise.
                if let Some((h, payload)) = take_relay_on(&mut c.rx, t.as_str(), max_frame) {
                    let RelayHead { origin, epoch, seq, hops } = h;
                    let relay = DiscoveryFrame::Relay { topic: t.as_str(), origin, epoch, seq, hops };
                    let local = self.rx_topic_is_local(&t).then_some(&t);
                    let flow = self.route_or_cut(conn, Header::Discovery(relay), payload, local);
                    self.rx_topic = Some(t);
                    if let Flow::Stop = flow {
                        return;
                    }
                    continue;
                }
                self.rx_topic = Some(t);
            }
            // The consumer's hot path: a stream reply (every gate still applies).
            if let Some((f, payload)) = take_stream_data(&mut c.rx, max_frame) {
                if let Flow::Stop = self.route_or_cut(conn, Header::Stream(f), payload, None) {
                    return;
                }
                continue;
            }
            let frame = match decode_frame(&mut c.rx, max_frame) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(e) => {
                    self.violation(conn, ProtocolError::Wire(e));
                    return;
                }
            };
            let (header, payload) = match frame.parse() {
                Ok(x) => x,
                Err(e) => {
                    self.violation(conn, ProtocolError::Wire(e));
                    return;
                }
            };
            if let Header::Publish { topic } | Header::Discovery(DiscoveryFrame::Relay { topic, .. }) = header {
                if self.rx_topic.as_ref().is_none_or(|t| t.as_str() != topic) || self.rx_gen != self.pubsub.local_gen {
                    self.rx_topic = self.pubsub.local_topics().get(topic).cloned();
                    self.rx_gen = self.pubsub.local_gen;
                }
            }
            // A message on a local subscription: those on its topic that
            // follow it come as one run (a cheap clone: once per topic change).
            let run = match header {
                Header::Publish { .. } => self.rx_topic.clone(),
                _ => None,
            };
            if let Flow::Stop = self.route_or_cut(conn, header, payload, None) {
                return;
            }
            if let Some(t) = run.filter(|_| !(bounded && self.events_full())) {
                self.take_run(conn, &t);
            }
        }
    }

    /// After a Publish on `t`, a local subscription, passed every gate on
    /// `conn`: takes the Publish frames on `t` that follow it in the read
    /// buffer as one run (the gates hold for them as for the first; the
    /// credit and sequence numbers are checked as the run is cut).
    fn take_run(&mut self, conn: ConnId, t: &Topic) {
        let max_frame = self.cfg.session.max_frame_size;
        let Some(c) = self.session.conns.get_mut(&conn) else { return };
        let crate::session::Conn { phase: Phase::Open(o), rx, .. } = c else { return };
        // Room for two frames at least (a message that came alone, the
        // common case when traffic is light, costs no more than this).
        let frame = crate::wire::LEN_PREFIX + 2 + t.as_str().len();
        if rx.len() < 2 * frame || !self.cfg.security.permissions.may_publish(o.peer.id, t.as_str()) {
            return;
        }
        let seq = o.caps.contains(Capabilities::RESUME).then_some(self.now);
        self.pubsub.receive_run(&o.peer, t, rx, max_frame, seq, &mut self.events);
    }

    /// True if `t` (the receiver's shortcut topic) is still a local
    /// subscription: at once while no subscription changed since it was
    /// read, else looked up (once per change).
    pub(super) fn rx_topic_is_local(&mut self, t: &Topic) -> bool {
        if self.rx_gen != self.pubsub.local_gen {
            if !self.pubsub.local_topics().contains(t.as_str()) {
                return false;
            }
            self.rx_gen = self.pubsub.local_gen;
        }
        true
    }

    /// Routes one frame; a frame that breaks the protocol cuts the connection.
    /// `local`: the frame's topic is known to be this local subscription
    /// (the topic of the frame before it, still subscribed).
    fn route_or_cut(&mut self, conn: ConnId, header: Header<'_>, payload: Bytes, local: Option<&Topic>) -> Flow {
        match self.route(conn, header, payload, local) {
            Ok(flow) => flow,
            Err(e) => self.violation(conn, e),
        }
    }

    /// The router: gates, then the plane.
    fn route(
        &mut self,
        conn: ConnId,
        header: Header<'_>,
        payload: Bytes,
        local: Option<&Topic>,
    ) -> Result<Flow, ProtocolError> {
        let Some(c) = self.session.conns.get(&conn) else { return Ok(Flow::Stop) };
        // 1. The handshake gate.
        let open = match (&c.phase, &header) {
            (Phase::AwaitHello, Header::Hello(_) | Header::Goodbye { .. }) => None,
            (Phase::AwaitHello, _) => return Err(ProtocolError::UnexpectedFrame("first frame must be Hello")),
            (Phase::Open(_), Header::Hello(_)) => return Err(ProtocolError::UnexpectedFrame("second Hello")),
            (Phase::Open(o), _) => Some((o.caps, o.peer.id)),
            (Phase::Dialing | Phase::AwaitPreamble, _) => return Ok(Flow::Stop),
        };
        match header {
            Header::Hello(hello) => return Ok(self.on_hello(conn, hello)),
            Header::Heartbeat => {
                // In a resumable session a heartbeat also asks for an ack.
                if let Some((_, peer)) = open {
                    self.pubsub.ack_now(peer);
                    self.wake_pubsub_conns();
                }
                return Ok(Flow::Continue);
            }
            Header::Goodbye { code, reason } => {
                // Also the refusal of a peer that refused our Hello before
                // sending its own.
                if open.is_none() {
                    self.refused_by_peer(conn, CloseCode(code), reason);
                }
                let remote = || CloseReason::Remote { code: CloseCode(code), reason: reason.to_string() };
                // The peer's goodbye answers ours during the close wait.
                let waiting = self.close_wait_reason(conn);
                let in_wait = waiting.is_some();
                let reason = waiting.unwrap_or_else(remote);
                // Otherwise, in a resumable session, the last ack answers the goodbye.
                if !in_wait && open.is_some() {
                    let peer = self.conn_peer(conn);
                    if self.answer_goodbye(conn, &peer, reason.clone()) {
                        return Ok(Flow::Stop);
                    }
                }
                self.remove_conn(conn, reason);
                return Ok(Flow::Stop);
            }
            _ => {}
        }
        let Some((caps, peer_id)) = open else { return Ok(Flow::Stop) };
        // 2. The capability gate: both sides announced the frame's plane.
        let plane = header.plane();
        if !caps.contains(plane) {
            return Err(ProtocolError::NotAnnounced(match plane {
                Capabilities::PUBSUB => "pub/sub",
                Capabilities::STREAMS => "streams",
                Capabilities::MEMBERSHIP => "membership",
                Capabilities::DISCOVERY => "discovery",
                Capabilities::TRANSFER => "transfer",
                _ => "unknown plane",
            }));
        }
        // Announcements are per connection: not gated (see the pubsub docs).
        if let Header::SubscribeRefused { topic, reason } = header {
            self.refused_by_peer(
                conn,
                crate::secure::UNAUTHORIZED,
                &format!("subscription to {topic:?} refused: {reason}"),
            );
            return Ok(Flow::Continue);
        }
        if let Header::Subscribe { topic } | Header::Unsubscribe { topic } = header {
            let subscribe = matches!(header, Header::Subscribe { .. });
            if subscribe && !self.cfg.security.permissions.may_subscribe(peer_id, topic) {
                self.refuse_subscription(conn, topic);
                return Ok(Flow::Continue);
            }
            let primary = self.session.is_primary(conn);
            let peer = self.conn_peer(conn);
            self.pubsub.on_announce(conn, &peer, primary, topic, subscribe, &mut self.events)?;
            self.wake_pubsub_conns();
            self.discovery_touch();
            return Ok(Flow::Continue);
        }
        // 3. The session gate: which connection carries the peer's session.
        match self.session.gate(conn, peer_id) {
            Gate::Pass => {}
            Gate::Restart => {
                let peer = self.conn_peer(conn);
                self.restart_session(&peer, conn);
            }
            Gate::Stale => {
                let peer = self.conn_peer(conn);
                if matches!(header, Header::Publish { .. }) {
                    self.pubsub.report_drop(&mut self.events, Some(peer.clone()), 1, DropReason::Unprocessed);
                }
                self.session.forget_stale(conn, peer.id);
                self.remove_conn(conn, CloseReason::Duplicate);
                return Ok(Flow::Stop);
            }
        }
        // Message frames of a resumable session carry an implicit sequence
        // number: a duplicate (re-sent after a resume) is dropped here, or,
        // for a Publish, where its credit is spent (one look-up of the peer
        // for both). (An ack this makes due wakes its connection after the
        // batch: see `process_input`.)
        let resume = caps.contains(Capabilities::RESUME);
        if resume
            && !matches!(header, Header::Publish { .. })
            && header.is_sequenced(caps)
            && self.pubsub.take_seq(peer_id, payload.len(), self.now)? == crate::pubsub::Seq::Duplicate
        {
            return Ok(Flow::Continue);
        }
        // 4. The plane (the peer is borrowed from the session, not cloned).
        match header {
            Header::Session(frame) => match frame {
                SessionFrame::Ack { next } => {
                    self.pubsub.on_ack(peer_id, next, &mut self.events)?;
                    self.wake_pubsub_conns();
                }
                SessionFrame::Resume { from } => self.pubsub.on_resume_frame(peer_id, from)?,
                SessionFrame::Credit { topic, messages, bytes } => {
                    self.pubsub.check_topic(topic).map_err(ProtocolError::Limit)?;
                    if let Some(c) = self.pubsub.on_absolute_credit(peer_id, topic, messages, bytes, &mut self.events) {
                        self.session.ready.insert(c);
                    }
                }
            },
            Header::Publish { topic } => {
                let Some(peer) = self.session.conns.get(&conn).and_then(|c| c.peer()) else { return Ok(Flow::Stop) };
                let permitted = self.cfg.security.permissions.may_publish(peer.id, topic);
                let seq = resume.then_some(self.now);
                let deliver = crate::pubsub::Deliver::Yes(None);
                let took =
                    self.pubsub.receive(peer, (topic, local), payload, deliver, permitted, seq, &mut self.events)?;
                if !permitted && took == crate::pubsub::Seq::Take {
                    self.secure.stats.publish_denied += 1;
                }
            }
            Header::Overwritten { topic, count } => {
                self.pubsub.check_topic(topic).map_err(ProtocolError::Limit)?;
                let Some(peer) = self.session.conns.get(&conn).and_then(|c| c.peer()) else { return Ok(Flow::Stop) };
                self.pubsub.on_overwritten(peer, topic, count, &mut self.events);
            }
            Header::Credit { topic, messages, bytes } => {
                if let Some(c) = self.pubsub.on_credit(peer_id, topic, u64::from(messages), bytes, &mut self.events) {
                    self.session.ready.insert(c);
                }
            }
            Header::Stream(frame) => {
                let Some(peer) = self.session.conns.get(&conn).and_then(|c| c.peer()) else { return Ok(Flow::Stop) };
                let (now, closing) = (self.now, self.closing);
                if let Some(c) = self.streams.on_frame(peer, frame, payload, now, closing, &mut self.events)? {
                    self.session.ready.insert(c);
                }
            }
            Header::Membership(frame) => {
                self.membership.on_frame(peer_id, frame, self.now, &mut self.events)?;
                self.membership.flush_wake(&mut self.session);
            }
            Header::Discovery(frame) => self.on_discovery(conn, peer_id, frame, payload, local)?,
            Header::Transfer(frame) => {
                let Some(peer) = self.session.conns.get(&conn).and_then(|c| c.peer()) else { return Ok(Flow::Stop) };
                let r = self.transfer.on_frame(peer, frame, payload, self.now, &mut self.events);
                self.transfer_wake();
                r?
            }
            Header::Hello(_) | Header::Heartbeat | Header::Goodbye { .. } => {}
            Header::Subscribe { .. } | Header::Unsubscribe { .. } | Header::SubscribeRefused { .. } => {}
        }
        Ok(Flow::Continue)
    }

    /// The peer of an open connection (a cheap clone).
    fn conn_peer(&self, conn: ConnId) -> crate::event::PeerInfo {
        self.session.conns.get(&conn).and_then(|c| c.peer()).cloned().expect("an open connection has a peer")
    }

    /// Refuses `conn`: tells the peer why, then closes. Our preamble still
    /// goes first if it has not left yet, but not our Hello: the peer reads
    /// a Goodbye in place of a Hello as a refusal with its code and reason.
    pub(super) fn violation(&mut self, conn: ConnId, error: ProtocolError) -> Flow {
        self.session_stats.malformed += 1;
        let Some(c) = self.session.conns.get_mut(&conn) else { return Flow::Stop };
        let peer = c.peer().cloned();
        self.events.push(Event::ProtocolViolation { conn, peer: peer.clone(), error: error.clone() });
        c.rx.clear();
        if c.in_close_wait() {
            // Our goodbye is out and the socket half-closed: nothing more
            // can be written, not even a refusal.
            self.remove_conn(conn, CloseReason::Protocol(error));
            return Flow::Stop;
        }
        c.control.heartbeat = false;
        c.control.hello = false;
        c.control.goodbye = true;
        c.closing = Some(Closing::Goodbye(CloseReason::Protocol(error)));
        self.session.ready.insert(conn);
        let dropped = self.pubsub.clear_data(conn, peer.as_ref().map(|p| p.id));
        self.streams.clear_data(conn, peer.as_ref().map(|p| p.id));
        self.wake_pubsub_conns();
        self.pubsub.report_drop(&mut self.events, peer, dropped, DropReason::Disconnected);
        Flow::Stop
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello<'_>) -> Flow {
        let caps = match check_hello(&self.cfg, &self.me, &hello) {
            Ok(caps) => caps,
            Err(e) => return self.violation(conn, e),
        };
        let id = NodeId::from_u128(hello.id);
        let late = self.cfg.security.late_hello_check;
        if !late {
            if let Some(flow) = self.check_proven_id(conn, id) {
                return flow;
            }
        }
        let info = match self.session.peers.get(&id) {
            Some(p) => p.info.clone(),
            None => crate::event::PeerInfo { id, name: Arc::from(hello.name) },
        };
        let open = Open { peer: info.clone(), caps };
        // The answer to this node's own dial, claiming the session it holds
        // with the peer, is not stale for having been dialed before that
        // session was suspended: the peer wrote it after reading this
        // node's Hello, and sequence numbers keep older bytes from following
        // newer ones. (An accepted connection that old may come from a
        // process of the peer's that has since died: it stays stale.)
        let target = self.session.conns.get(&conn).and_then(|c| c.target);
        let claims_held = target.is_some()
            && hello
                .session
                .filter(|_| caps.contains(Capabilities::RESUME))
                .is_some_and(|hs| hs.resume.is_some_and(|c| self.holds_claim(id, hs.incarnation, &c)));
        match self.session.on_hello(conn, id, claims_held) {
            HelloOutcome::Stale => {
                // The target this connection was dialed for reaches `id`:
                // it is parked while the session with `id` lives, unparked
                // when that session is lost, and memberships joined through
                // it join on the session's connection (simulator heavy seed
                // 967: a dial whose Hello came after the coordinator's own
                // connection closed as stale, and the member never joined).
                if let Some(t) = target {
                    self.target_peers.insert(t, id);
                }
                if let Some(c) = self.session.conns.get_mut(&conn) {
                    c.phase = Phase::Open(open);
                }
                self.remove_conn(conn, CloseReason::Duplicate);
                self.membership_after_hello(conn, id);
                return Flow::Stop;
            }
            HelloOutcome::Open { close_first } => {
                if let Some(c) = self.session.conns.get_mut(&conn) {
                    c.hello_at = self.now;
                }
                for old in close_first {
                    self.remove_conn(old, CloseReason::Duplicate);
                }
            }
        }
        if late {
            if let Some(flow) = self.check_proven_id(conn, id) {
                return flow;
            }
        }
        if !self.session.conns.contains_key(&conn) {
            return Flow::Stop;
        }
        let perms = &self.cfg.security.permissions;
        let (subs, refused): (Vec<&str>, Vec<&str>) =
            hello.subscriptions.iter().partition(|t| perms.may_subscribe(id, t));
        for t in refused {
            self.refuse_subscription(conn, t);
        }
        self.pubsub.on_hello(conn, &subs, caps.contains(Capabilities::PUBSUB));
        if let Some(l) = hello.listen.as_ref().filter(|_| caps.contains(Capabilities::DISCOVERY)) {
            self.discovery_met(id, PeerAddr::new(l.host, l.port), &subs);
        }
        // Announcements held until the peer's planes were known may leave now.
        self.session.ready.insert(conn);
        let hs = hello.session.filter(|_| caps.contains(Capabilities::RESUME));
        let decision = self.resume_decision(conn, id, hs);
        if let Decision::EndOld(loss) = decision {
            self.end_suspended(id, loss);
        }
        if !self.session.conns.contains_key(&conn) {
            return Flow::Stop;
        }
        if let Some(t) = target {
            self.target_peers.insert(t, id);
        }
        if let Some(l) = hello.listen.as_ref() {
            self.peer_listen.insert(id, (l.host.to_string(), l.port));
        }
        if let Decision::Inconclusive = decision {
            self.close_inconclusive(conn);
            return Flow::Stop;
        }
        if matches!(decision, Decision::Normal) && self.began_unknown_claim(conn, id) {
            if let Some(c) = self.session.conns.get_mut(&conn) {
                c.phase = Phase::Open(open);
            }
            self.remove_conn(conn, CloseReason::Duplicate);
            return Flow::Stop;
        }
        if let Decision::Resume { their_next } = decision {
            self.session.open(conn, open);
            self.resume_session(conn, &info, their_next);
        } else if self.session.open(conn, open) {
            self.start_session(conn, &info, target);
        } else {
            self.settle_session_id(conn, id);
        }
        self.membership_after_hello(conn, id);
        if let Some(t) = target {
            self.dialer.connected(t, self.now);
            self.events.push(Event::Dial(DialEvent::Connected { target: t, peer: info }));
        }
        Flow::Continue
    }

    /// [`Decision::Inconclusive`]: `conn` closes without touching the
    /// suspended session. An acceptor sends its Hello first (so the dialer
    /// learns whom its address reaches), then a goodbye; a dialer closes.
    fn close_inconclusive(&mut self, conn: ConnId) {
        self.session_stats.inconclusive += 1;
        let Some(c) = self.session.conns.get_mut(&conn) else { return };
        if c.target.is_some() {
            self.remove_conn(conn, CloseReason::Duplicate);
            return;
        }
        c.rx.clear();
        c.control.goodbye = true;
        c.closing = Some(crate::session::Closing::Goodbye(CloseReason::Duplicate));
        self.session.ready.insert(conn);
    }

    /// Both ends dialed at once: each began the session on the connection
    /// whose Hello it read first (the one it accepted), so each took that
    /// connection's session id, and the two differ. When the other
    /// connection opens beside it, both ends take the id of the connection
    /// the larger node id dialed, so a later resume claims the same session.
    ///
    /// Only for a simultaneous dial: the new socket opened while the first
    /// connection's handshake was still fresh (within twice its length after
    /// it ended, and within one handshake timeout of the first socket) and
    /// the session carried no message yet. A connection opened later beside
    /// a live session may come from a peer that ended its side of it (its
    /// resume window passed while this node was cut off or paused) and began
    /// a new one, while the old connection still holds that old session's
    /// frames in flight (simulator seed 5288 with sessions: half a second
    /// after the first handshake, three frames of the old session came on
    /// the old connection after the new id was taken, and a resume then
    /// claimed them in the new session). Taking that new session's id here
    /// would make a later resume join two different sessions. Erring the
    /// other way is safe: ids that differ make the next resume fail, and the
    /// session ends with its losses reported.
    fn settle_session_id(&mut self, conn: ConnId, peer: NodeId) {
        let larger_dialed = |c: &crate::session::Conn| c.target.is_some() == (self.me.id > peer);
        let Some(e) = self.session.peers.get(&peer) else { return };
        if e.sid == 0 || e.resumed_at.is_some() || e.suspended.is_some() {
            return;
        }
        let (Some(first), Some(new)) = (self.session.conns.get(&e.primary), self.session.conns.get(&conn)) else {
            return;
        };
        let sid = new.new_sid();
        // The new socket opened before the first connection's handshake
        // was long over: within twice that handshake after it ended (a
        // peer's dial crossing ours opens here at most a one-way delay or
        // so after our session began).
        let handshake = first.hello_at.saturating_since(first.opened_at);
        let simultaneous = new.opened_at <= first.hello_at + handshake * 2
            && new.opened_at <= first.opened_at + self.cfg.session.handshake_timeout
            && !self.pubsub.carried_messages(peer);
        if simultaneous && larger_dialed(new) && !larger_dialed(first) && sid != 0 {
            if let Some(e) = self.session.peers.get_mut(&peer) {
                e.sid = sid;
            }
        }
    }

    /// A Hello on a secure `conn` must claim the id its handshake proved:
    /// `Some` (the connection refused) if it does not.
    fn check_proven_id(&mut self, conn: ConnId, id: NodeId) -> Option<Flow> {
        let proven = self.proven_id(conn)?;
        if proven == id {
            return None;
        }
        let why = format!("unauthorized: the Hello claims id {id} but the handshake proved {proven}");
        self.secure.stats.unauthorized += 1;
        Some(self.violation(conn, ProtocolError::Unauthorized(why)))
    }

    /// A session with `info` begins, on `conn`.
    fn start_session(&mut self, conn: ConnId, info: &crate::event::PeerInfo, target: Option<crate::event::TargetId>) {
        let authenticated = self.is_authenticated(conn);
        self.events.push(Event::PeerUp { peer: info.clone(), conn, target, authenticated });
        let resumable = self.session.peers.get(&info.id).is_some_and(|e| e.sid != 0);
        let caps = self.open_caps(conn);
        let (overwrite, relay) = (caps.contains(Capabilities::OVERWRITE), caps.contains(Capabilities::DISCOVERY));
        self.pubsub.on_peer_up(info, conn, resumable, (overwrite, relay), &mut self.events);
        self.planes_up(conn, info);
    }

    /// The peer moved to `conn` for a new session of its own: ours ends
    /// (PeerDown, its other connections close) and a new one starts on `conn`.
    fn restart_session(&mut self, peer: &crate::event::PeerInfo, conn: ConnId) {
        let resumable = self.session.peers.get(&peer.id).is_some_and(|e| e.sid != 0);
        let Some(first) = self.session.detach_for_restart(conn, peer.id) else { return };
        // The peer left the session behind: it ends here too (a resumable
        // one is not suspended, or the new one would start beside it).
        let reason = match resumable {
            true => CloseReason::Session(crate::resume::LossReason::NotResumed),
            false => CloseReason::Duplicate,
        };
        self.remove_conn(first, reason);
        self.session.restart_on(conn);
        let target = self.session.conns.get(&conn).and_then(|c| c.target);
        self.start_session(conn, peer, target);
        self.membership_conn_up(conn);
    }
}
