//! Received bytes: the preamble, the handshake, and frames.

use super::{Node, PeerEntry};
use crate::conn::Phase;
use crate::event::{CloseReason, DropReason, Event, Message, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::outbound::Out;
use crate::time::Timestamp;
use crate::wire::{check_preamble, decode_frame, CloseCode, Header, Hello, PREAMBLE_LEN};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeSet;
use std::sync::Arc;

/// What one frame did to the connection.
enum Flow {
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
        self.conns.get_mut(&conn).filter(|c| c.phase != Phase::Dialing).map(|c| &mut c.rx)
    }

    /// `n` bytes were appended to [`Node::recv_buffer`]; processes them like
    /// [`Node::handle_bytes`].
    pub fn handle_received(&mut self, now: Timestamp, conn: ConnId, n: usize) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase == Phase::Dialing || n == 0 {
            return;
        }
        c.last_recv = self.now;
        self.stats.bytes_in += n as u64;
        self.process_input(conn, true);
    }

    /// Processes buffered input of connections that stalled on a full event queue.
    pub(super) fn resume_input(&mut self) {
        self.input_stalled = false;
        let ids: Vec<ConnId> = self.conns.iter().filter(|(_, c)| !c.rx.is_empty()).map(|(id, _)| *id).collect();
        for id in ids {
            self.process_input(id, true);
        }
    }

    /// Processes whole frames buffered for `conn`. `bounded`: stop while the
    /// event queue is full (the rest waits in the read buffer).
    pub(super) fn process_input(&mut self, conn: ConnId, bounded: bool) {
        loop {
            if bounded && self.events_full() {
                self.input_stalled = true;
                return;
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if matches!(c.closing, Some(CloseReason::Protocol(_))) {
                // The peer broke the protocol: nothing more it sends is read.
                c.rx.clear();
                return;
            }
            // A graceful close still delivers what the peer sends until the
            // connection is gone.
            if c.phase == Phase::AwaitPreamble {
                if c.rx.len() < PREAMBLE_LEN {
                    return;
                }
                let pre = c.rx.split_to(PREAMBLE_LEN);
                if let Err(e) = check_preamble(&pre) {
                    self.violation(conn, ProtocolError::Wire(e));
                    return;
                }
                c.phase = Phase::AwaitHello;
                continue;
            }
            let frame = match decode_frame(&mut c.rx, self.cfg.max_frame_size) {
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
            if let Flow::Stop = self.on_frame(conn, header, payload) {
                return;
            }
        }
    }

    fn on_frame(&mut self, conn: ConnId, header: Header<'_>, payload: Bytes) -> Flow {
        let phase = self.conns.get(&conn).map(|c| c.phase);
        match (phase, header) {
            (Some(Phase::AwaitHello), Header::Hello(hello)) => self.on_hello(conn, hello),
            (Some(Phase::AwaitHello), _) => {
                self.violation(conn, ProtocolError::UnexpectedFrame("first frame must be Hello"))
            }
            (_, Header::Hello(_)) => self.violation(conn, ProtocolError::UnexpectedFrame("second Hello")),
            (_, Header::Heartbeat) => Flow::Continue,
            (_, Header::Subscribe { topic }) => self.on_subscribe(conn, topic),
            (_, Header::Unsubscribe { topic }) => {
                self.on_unsubscribe(conn, topic);
                Flow::Continue
            }
            (_, Header::Publish { topic }) => self.on_publish(conn, topic, payload),
            (_, Header::Goodbye { code, reason }) => {
                let reason = CloseReason::Remote { code: CloseCode(code), reason: reason.to_string() };
                self.remove_conn(conn, reason);
                Flow::Stop
            }
        }
    }

    fn violation(&mut self, conn: ConnId, error: ProtocolError) -> Flow {
        self.stats.malformed += 1;
        let peer = self.conns.get(&conn).and_then(|c| c.peer.clone());
        self.push_event(Event::ProtocolViolation { conn, peer: peer.clone(), error: error.clone() });
        let mut dropped = 0;
        if let Some(c) = self.conns.get_mut(&conn) {
            // Tell the peer why (our preamble goes first if not sent yet), then close.
            c.rx.clear();
            dropped = c.out.clear();
            c.closing = Some(CloseReason::Protocol(error.clone()));
            c.goodbye_queued = true;
            c.out.push_control(Out::Goodbye(error.close_code().0, error.to_string()));
        }
        self.report_drop(peer, dropped, DropReason::Disconnected);
        Flow::Stop
    }

    fn check_hello(&self, hello: &Hello<'_>) -> Result<(), ProtocolError> {
        let limit = |what: String| Err(ProtocolError::Limit(what));
        if hello.name.len() > self.cfg.max_name_len {
            return limit(format!("name of {} bytes > {}", hello.name.len(), self.cfg.max_name_len));
        }
        if hello.subscriptions.len() > self.cfg.max_subscriptions_per_peer {
            return limit(format!(
                "{} subscriptions > {}",
                hello.subscriptions.len(),
                self.cfg.max_subscriptions_per_peer
            ));
        }
        if let Some(t) = hello.subscriptions.iter().find(|t| self.check_topic(t).is_err()) {
            return limit(format!("bad topic of {} bytes", t.len()));
        }
        if hello.version != crate::wire::VERSION {
            return Err(ProtocolError::Wire(crate::wire::WireError::UnsupportedVersion {
                theirs: hello.version,
                ours: crate::wire::VERSION,
            }));
        }
        if hello.id == self.id.as_u128() {
            return limit("peer has this node's own id (connected to itself?)".into());
        }
        Ok(())
    }

    fn on_hello(&mut self, conn: ConnId, hello: Hello<'_>) -> Flow {
        if let Err(e) = self.check_hello(&hello) {
            return self.violation(conn, e);
        }
        let id = NodeId::from_u128(hello.id);
        let Some(c) = self.conns.get(&conn) else {
            return Flow::Stop;
        };
        let (accepted, epoch) = (c.target.is_none(), c.epoch);
        // A connection opened before this node last lost the peer, or older
        // than another connection the peer dialed, belongs to an older
        // session of the peer's: its late bytes must not follow newer ones.
        let newer_accepted =
            |p: &PeerEntry| p.conns.iter().any(|o| *o > conn && self.conns.get(o).is_some_and(|c| c.target.is_none()));
        let stale = self.down_epochs.get(&id).is_some_and(|e| epoch < *e)
            || accepted && self.peers.get(&id).is_some_and(newer_accepted);
        if stale {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.phase = Phase::Open;
                c.peer = Some(PeerInfo { id, name: Arc::from(hello.name) });
            }
            self.remove_conn(conn, CloseReason::Duplicate);
            return Flow::Stop;
        }
        if accepted {
            // The peer dials again only after it lost its connection: an
            // older connection it dialed is stale here. Ending it (and the
            // session) now keeps its late bytes from overtaking the new ones.
            let older: Vec<ConnId> = self.peers.get(&id).map_or(Vec::new(), |p| {
                p.conns
                    .iter()
                    .copied()
                    .filter(|o| *o < conn && self.conns.get(o).is_some_and(|c| c.target.is_none()))
                    .collect()
            });
            for old in older {
                self.remove_conn(old, CloseReason::Duplicate);
            }
        }
        let info = match self.peers.get(&id) {
            Some(p) => p.info.clone(),
            None => PeerInfo { id, name: Arc::from(hello.name) },
        };
        let subs: BTreeSet<Topic> = hello.subscriptions.iter().map(|t| Topic::from(*t)).collect();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Flow::Stop;
        };
        c.phase = Phase::Open;
        c.peer = Some(info.clone());
        c.peer_subs = subs;
        let target = c.target;
        match self.peers.get_mut(&id) {
            Some(p) => {
                // A second connection to a connected peer (simultaneous dial):
                // keep it as a standby; messages stay on the primary, and
                // the session ends when any of its connections is lost.
                p.conns.insert(conn);
            }
            None => self.start_session(conn, info.clone()),
        }
        if let Some(t) = target {
            self.target_connected(t);
            self.push_event(Event::Connected { target: t, peer: info });
        }
        Flow::Continue
    }

    /// A session with the peer of `conn` begins, on `conn`.
    fn start_session(&mut self, conn: ConnId, info: PeerInfo) {
        let target = self.conns.get(&conn).and_then(|c| c.target);
        let conns = BTreeSet::from([conn]);
        self.peers.insert(info.id, PeerEntry { info: info.clone(), primary: conn, conns, data_conn: None });
        self.index_topics(conn, true);
        self.push_event(Event::PeerUp { peer: info.clone(), conn, target });
        let topics: Vec<Topic> = self.conns[&conn].peer_subs.iter().cloned().collect();
        for topic in topics {
            self.push_event(Event::Subscribed { peer: info.clone(), topic });
        }
    }

    /// Adds (or removes) `conn`'s announced topics to the subscriber index.
    pub(super) fn index_topics(&mut self, conn: ConnId, add: bool) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        for t in &c.peer_subs {
            if add {
                self.topics.entry(t.clone()).or_default().insert(conn);
            } else if let Some(set) = self.topics.get_mut(t) {
                set.remove(&conn);
                if set.is_empty() {
                    self.topics.remove(t);
                    self.rr_cursor.remove(t);
                }
            }
        }
    }

    fn is_primary(&self, conn: ConnId, peer: &PeerInfo) -> bool {
        self.peers.get(&peer.id).is_some_and(|p| p.primary == conn)
    }

    fn on_subscribe(&mut self, conn: ConnId, topic: &str) -> Flow {
        if let Err(e) = self.check_topic(topic) {
            return self.violation(conn, ProtocolError::Limit(e));
        }
        let max = self.cfg.max_subscriptions_per_peer;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Flow::Stop;
        };
        if c.peer_subs.contains(topic) {
            return Flow::Continue;
        }
        if c.peer_subs.len() >= max {
            return self.violation(conn, ProtocolError::Limit(format!("more than {max} subscriptions")));
        }
        let t = self.topics.get_key_value(topic).map_or_else(|| Topic::from(topic), |(t, _)| t.clone());
        c.peer_subs.insert(t.clone());
        let peer = c.peer.clone().expect("open connections have a peer");
        if self.is_primary(conn, &peer) {
            self.topics.entry(t.clone()).or_default().insert(conn);
            self.push_event(Event::Subscribed { peer, topic: t });
        }
        Flow::Continue
    }

    fn on_unsubscribe(&mut self, conn: ConnId, topic: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(t) = c.peer_subs.take(topic) else {
            return;
        };
        let peer = c.peer.clone().expect("open connections have a peer");
        if self.is_primary(conn, &peer) {
            if let Some(set) = self.topics.get_mut(topic) {
                set.remove(&conn);
                if set.is_empty() {
                    self.topics.remove(topic);
                    self.rr_cursor.remove(topic);
                }
            }
            self.push_event(Event::Unsubscribed { peer, topic: t });
        }
    }

    fn on_publish(&mut self, conn: ConnId, topic: &str, payload: Bytes) -> Flow {
        let from = self.conns.get(&conn).and_then(|c| c.peer.clone()).expect("open connections have a peer");
        // A peer sends on one connection per session of its own. Messages on
        // another connection mean it started a new session (the connection
        // is newer: end ours and follow it), or they are left over from an
        // older one (the connection is older: they must not follow newer
        // messages, so they are dropped, counted, with their connection).
        let data_conn = self.peers.get(&from.id).and_then(|p| p.data_conn);
        match data_conn {
            None => {
                if let Some(p) = self.peers.get_mut(&from.id) {
                    p.data_conn = Some(conn);
                }
            }
            Some(d) if d == conn => {}
            Some(d) if conn > d => {
                self.restart_session(&from, conn);
                if let Some(p) = self.peers.get_mut(&from.id) {
                    p.data_conn = Some(conn);
                }
            }
            Some(_) => {
                self.report_drop(Some(from.clone()), 1, DropReason::Unprocessed);
                self.drop_stale(&from, conn);
                return Flow::Stop;
            }
        }
        match self.local_subs.get(topic) {
            Some(t) => {
                let topic = t.clone();
                self.stats.received += 1;
                self.push_event(Event::Message(Message { topic, from, payload }));
            }
            None => self.report_drop(Some(from), 1, DropReason::NotSubscribed),
        }
        Flow::Continue
    }

    /// The peer moved to `conn` for a new session of its own: ours ends
    /// (PeerDown, its other connections close) and a new one starts on `conn`.
    fn restart_session(&mut self, peer: &PeerInfo, conn: ConnId) {
        let others: Vec<ConnId> = match self.peers.get_mut(&peer.id) {
            Some(p) if p.conns.len() > 1 => {
                p.conns.remove(&conn);
                if p.primary == conn {
                    // Our messages leave on `conn`; the session keeps a
                    // primary that is closing now anyway.
                    p.primary = p.conns.iter().next().copied().unwrap_or(conn);
                }
                p.conns.iter().copied().collect()
            }
            _ => return,
        };
        self.index_topics(conn, false);
        if let Some(first) = others.first() {
            self.remove_conn(*first, CloseReason::Duplicate);
        }
        self.start_session(conn, peer.clone());
    }

    /// `conn` carries a peer's older session: close it without ending ours,
    /// unless our own messages leave on it.
    fn drop_stale(&mut self, peer: &PeerInfo, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&peer.id) {
            if p.primary != conn {
                p.conns.remove(&conn);
            }
        }
        self.remove_conn(conn, CloseReason::Duplicate);
    }

    /// Removes `conn` from its peer and ends the session: the peer is reported
    /// down and its other connections close too.
    ///
    /// A standby is never promoted in silence: messages in flight on the lost
    /// connection may be lost, so the application must hear `PeerDown`; and a
    /// standby still carrying older bytes from the peer must not deliver them
    /// after newer ones on a later connection. Dial targets reconnect.
    pub(super) fn detach_from_peer(&mut self, info: &PeerInfo, conn: ConnId, reason: CloseReason) {
        if !self.peers.get(&info.id).is_some_and(|p| p.conns.contains(&conn)) {
            return;
        }
        let p = self.peers.remove(&info.id).expect("checked above");
        self.epoch += 1;
        self.down_epochs.insert(info.id, self.epoch);
        // Only connections still handshaking can be older than an entry.
        let oldest =
            self.conns.values().filter(|c| !matches!(c.phase, Phase::Open | Phase::Dialing)).map(|c| c.epoch).min();
        self.down_epochs.retain(|_, e| oldest.is_some_and(|o| o < *e));
        // The primary's topics leave the index; it may already be out of
        // `self.conns`, so remove by scanning the entries.
        let mut emptied = Vec::new();
        for (t, set) in self.topics.iter_mut() {
            if set.remove(&p.primary) && set.is_empty() {
                emptied.push(t.clone());
            }
        }
        for t in emptied {
            self.topics.remove(&t);
            self.rr_cursor.remove(&t);
        }
        self.push_event(Event::PeerDown { peer: info.clone(), reason: reason.clone() });
        for other in p.conns.into_iter().filter(|c| *c != conn) {
            self.remove_conn(other, reason.clone());
        }
    }
}

/// Counts the whole Publish frames in `rx`: messages received but never
/// processed when a connection ends, so they can be reported as dropped.
pub(super) fn unprocessed_messages(rx: &[u8]) -> u64 {
    let mut rest = rx;
    let mut n = 0;
    while let Some(p) = rest.get(..crate::wire::LEN_PREFIX) {
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let Some(frame) = rest.get(crate::wire::LEN_PREFIX..crate::wire::LEN_PREFIX + len) else { break };
        if let Ok((Header::Publish { .. }, _)) = postcard::take_from_bytes::<Header<'_>>(frame) {
            n += 1;
        }
        rest = &rest[crate::wire::LEN_PREFIX + len..];
    }
    n
}
