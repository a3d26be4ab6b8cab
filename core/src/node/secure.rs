//! The secure channel's place in the node: keys, the per-connection
//! channel between socket bytes and the frame decoder, admission, and the
//! refusals it produces. Plaintext connections never come here.

use super::Node;
use crate::config::{Config, ConfigError};
use crate::event::{CloseReason, Event, ProtocolError};
use crate::id::{ConnId, NodeId};
use crate::secure::channel::{push_refusal, record_lens, Ctx, Keys};
use crate::secure::{admit, ChanError, Entropy, Identity, PublicKey, SecureConn, SecurityMode, SecurityStats, Stage};
use crate::session::Phase;
use crate::wire::{encode_frame, write_preamble_mode, CloseCode, Header};
use std::fmt;

/// The node's keys, entropy and secure-channel counters.
pub(crate) struct SecureNode {
    /// `None` on a plaintext node made without an identity.
    keys: Option<Keys>,
    entropy: Box<dyn Entropy>,
    pub(crate) stats: SecurityStats,
    /// Subscriptions refused by permission, to answer per connection
    /// (at most `MAX_REFUSALS` each; more are counted, not answered).
    refusals: std::collections::BTreeMap<ConnId, Vec<String>>,
    /// The simulator's plaintext tap, if set.
    tap: Option<crate::secure::PlaintextTap>,
}

/// Refusals of subscriptions waiting to be written on one connection.
const MAX_REFUSALS: usize = 64;

impl fmt::Debug for SecureNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureNode").field("keys", &self.keys).field("stats", &self.stats).finish_non_exhaustive()
    }
}

impl SecureNode {
    /// A plaintext node's: no keys.
    pub(crate) fn plaintext() -> Self {
        SecureNode {
            keys: None,
            entropy: Box::new(crate::secure::SeededEntropy::new([0; 32])),
            stats: SecurityStats::default(),
            refusals: Default::default(),
            tap: None,
        }
    }
}

impl Node {
    /// A node whose identity is `identity` (its id is the key's
    /// [`NodeId`]), drawing its key randomness from `entropy` (the
    /// operating system's in a driver; a [`SeededEntropy`](crate::secure::SeededEntropy)
    /// in a simulation). Works in both security modes; the secure mode
    /// (the default) requires it.
    ///
    /// ```
    /// use estafeta_core::secure::{Identity, SeededEntropy};
    /// use estafeta_core::{Config, Node};
    /// let mut entropy = SeededEntropy::from_seed(1);
    /// let identity = Identity::generate(&mut entropy);
    /// let id = identity.node_id();
    /// let node = Node::with_identity(Config::default(), identity, Box::new(entropy), "alice").unwrap();
    /// assert_eq!(node.id(), id);
    /// ```
    pub fn with_identity(
        cfg: Config,
        identity: Identity,
        mut entropy: Box<dyn Entropy>,
        name: &str,
    ) -> Result<Node, ConfigError> {
        let id = cfg.security.impersonate.map_or(identity.node_id(), |k| k.node_id());
        let keys = Keys::new(identity, &cfg.security, &mut *entropy)
            .map_err(|_| ConfigError("security: cannot make the Noise static key"))?;
        let mut node = Node::build(cfg, id, name)?;
        // The incarnation comes from the entropy input (a restart keeps the
        // id, never the incarnation).
        let mut inc = [0u8; 8];
        entropy.fill(&mut inc);
        node.session.incarnation ^= u64::from_le_bytes(inc) | 1;
        node.secure = SecureNode {
            keys: Some(keys),
            entropy,
            stats: SecurityStats::default(),
            refusals: Default::default(),
            tap: None,
        };
        Ok(node)
    }

    /// Simulator hook: from now on, the plaintext of every record this node
    /// seals goes to `tap` with its connection, in order, so a simulator's
    /// checkers can read the frames of secure connections. Never for
    /// applications: it hands out what the channel protects.
    #[doc(hidden)]
    pub fn set_plaintext_tap(&mut self, tap: crate::secure::PlaintextTap) {
        self.secure.tap = Some(tap);
    }

    /// This node's identity key, if it has one.
    pub fn identity_key(&self) -> Option<PublicKey> {
        self.secure.keys.as_ref().map(|k| k.identity.public_key())
    }

    /// The identity key `peer` proved in its handshake, while it is connected
    /// over a secure connection.
    pub fn peer_key(&self, peer: NodeId) -> Option<PublicKey> {
        let entry = self.session.peers.get(&peer)?;
        self.session.conns.get(&entry.primary)?.secure.as_ref()?.remote
    }

    /// True if `conn` is a secure connection whose peer was admitted by an
    /// allow list, a pinned id or a network key (not merely encrypted).
    pub fn is_authenticated(&self, conn: ConnId) -> bool {
        self.session.conns.get(&conn).and_then(|c| c.secure.as_ref()).is_some_and(|s| s.authenticated)
    }

    /// True if the bytes of `conn`'s receive buffer are frames (a plaintext
    /// connection); false for a secure one, whose buffer holds records.
    /// A driver sizing reads by frame lengths does so only when true.
    pub fn recv_is_framed(&self, conn: ConnId) -> bool {
        self.session.conns.get(&conn).is_some_and(|c| c.secure.is_none())
    }

    /// For a driver reading a secure connection (see
    /// [`Node::recv_is_framed`]): the bytes its receive buffer misses to end
    /// the record it ends in, plus the next record's length prefix, if that
    /// record is at least `long` bytes. Reading exactly these into room kept
    /// at the end of [`Node::recv_buffer`] saves a copy (the record is then
    /// opened in place). `None` otherwise.
    pub fn recv_record_room(&self, conn: ConnId, long: usize) -> Option<usize> {
        self.session.conns.get(&conn)?.secure.as_ref()?.record_room(long)
    }

    /// Gives a new socket its secure channel, in the secure mode.
    pub(super) fn attach_secure(&mut self, conn: ConnId, initiator: bool) {
        if self.cfg.security.mode != SecurityMode::Noise || self.secure.keys.is_none() {
            return;
        }
        if let Some(c) = self.session.conns.get_mut(&conn) {
            c.secure = Some(Box::new(SecureConn::new(initiator, self.cfg.security.rekey_after_records)));
        }
    }

    /// Runs `conn`'s channel on the bytes received. Returns true if
    /// decrypted frames may be processed.
    pub(super) fn secure_input(&mut self, conn: ConnId) -> bool {
        loop {
            let Some(c) = self.session.conns.get_mut(&conn) else { return false };
            let refused = c.refused();
            let Some(sec) = c.secure.as_mut() else { return true };
            if refused {
                sec.crx.clear();
                return false;
            }
            let Some(keys) = self.secure.keys.as_ref() else { return false };
            let mut ctx = Ctx { keys, cfg: &self.cfg.security, entropy: &mut *self.secure.entropy };
            let rekeys = sec.rekeys;
            let result = sec.input(&mut ctx, &mut c.rx);
            self.secure.stats.rekeys += sec.rekeys - rekeys;
            if !sec.out.is_empty() {
                self.session.ready.insert(conn);
            }
            match result {
                Ok(true) => {
                    self.secure.stats.handshakes += 1;
                    let Some(key) = sec.remote else { return false };
                    let pin = c.target.and_then(|t| self.dialer.addr(t)).and_then(|a| a.pinned_id());
                    match admit(&self.cfg.security, key.node_id(), pin) {
                        Ok(authenticated) => {
                            sec.authenticated = authenticated;
                            c.phase = Phase::AwaitHello;
                            self.session.ready.insert(conn);
                        }
                        Err(reason) => {
                            self.secure.stats.unauthorized += 1;
                            self.violation(conn, ProtocolError::Unauthorized(reason));
                            return false;
                        }
                    }
                }
                Ok(false) => return true,
                Err(e) => {
                    self.channel_failed(conn, e);
                    return false;
                }
            }
        }
    }

    fn channel_failed(&mut self, conn: ConnId, e: ChanError) {
        let error = match e {
            ChanError::Preamble(w) => ProtocolError::Wire(w),
            ChanError::Mode(s) => {
                self.secure.stats.mode_mismatch += 1;
                ProtocolError::SecurityMismatch(s)
            }
            ChanError::Handshake(s) => {
                self.secure.stats.handshake_failed += 1;
                ProtocolError::HandshakeFailed(s)
            }
            ChanError::Decrypt(s) => {
                self.secure.stats.decrypt_failed += 1;
                let error = ProtocolError::DecryptFailed(s);
                // Bytes tampered with in transit say nothing against the
                // peer, whose identity its handshake proved: the connection
                // is cut like a reset (no goodbye, which would end the
                // session at the peer) and a resumable session is
                // suspended, to resume on a new, new-keyed connection.
                let peer = self.session.conns.get(&conn).and_then(|c| c.peer()).cloned();
                if peer.as_ref().is_some_and(|p| self.pubsub.is_resumable(p.id)) {
                    self.session_stats.malformed += 1;
                    self.events.push(Event::ProtocolViolation { conn, peer, error: error.clone() });
                    self.remove_conn(conn, CloseReason::Protocol(error));
                    return;
                }
                error
            }
            ChanError::RefusedByPeer { code, reason } => {
                self.refused_by_peer(conn, CloseCode(code), &reason);
                self.remove_conn(conn, CloseReason::Remote { code: CloseCode(code), reason });
                return;
            }
        };
        self.violation(conn, error);
    }

    /// The peer refused `conn` before it was up: count and report it.
    pub(super) fn refused_by_peer(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        self.secure.stats.refused_by_peer += 1;
        self.events.push(Event::Refused { conn, code, reason: reason.to_string() });
    }

    /// `conn`'s peer may not subscribe to `topic`: count it and answer it.
    pub(super) fn refuse_subscription(&mut self, conn: ConnId, topic: &str) {
        self.secure.stats.subscribe_denied += 1;
        let q = self.secure.refusals.entry(conn).or_default();
        if q.len() < MAX_REFUSALS {
            q.push(topic.to_string());
            self.session.ready.insert(conn);
        }
    }

    /// Writes the subscription refusals waiting for `conn`.
    pub(super) fn write_refusals(&mut self, conn: ConnId, buf: &mut Vec<u8>) {
        for topic in self.secure.refusals.remove(&conn).unwrap_or_default() {
            let reason = "not permitted to subscribe to this topic";
            encode_frame(buf, &Header::SubscribeRefused { topic: &topic, reason }, &[]);
        }
    }

    /// Forgets what was queued for a closed connection.
    pub(super) fn secure_conn_closed(&mut self, conn: ConnId) {
        self.secure.refusals.remove(&conn);
    }

    /// The id `conn`'s handshake proved, if it is secure: its Hello must carry it.
    pub(super) fn proven_id(&self, conn: ConnId) -> Option<NodeId> {
        let c = self.session.conns.get(&conn)?;
        c.secure.as_ref().map(|s| s.remote.map_or(NodeId::from_u128(0), |k| k.node_id()))
    }

    /// [`Node::poll_transmit`] for a secure connection: the preamble and
    /// handshake in clear, then the frame stream sealed in records.
    pub(super) fn poll_secure(&mut self, conn: ConnId, buf: &mut Vec<u8>) -> usize {
        let start = buf.len();
        let Some(c) = self.session.conns.get_mut(&conn) else { return 0 };
        if c.control.preamble {
            c.control.preamble = false;
            write_preamble_mode(buf, SecurityMode::Noise.wire_byte());
        }
        let Some(sec) = c.secure.as_mut() else { return 0 };
        buf.extend_from_slice(&sec.out);
        sec.out.clear();
        let stage = sec.stage();
        if stage != Stage::Transport {
            if c.control.goodbye {
                // A refusal before the channel exists goes in clear: a
                // Goodbye frame to a peer whose preamble was wrong (it may
                // run plaintext), a refusal message during the handshake.
                c.control.goodbye = false;
                let reason =
                    c.closing.as_ref().map(|k| k.reason().clone()).unwrap_or(CloseReason::Local(CloseCode::NORMAL));
                let text = reason.to_string();
                match stage {
                    // Refused at accept (over the connection limit), before
                    // anything was read: the dialer runs the secure
                    // transport too, or it refuses our preamble itself.
                    Stage::AwaitPreamble if !matches!(reason, CloseReason::TooManyConnections) => {
                        encode_frame(buf, &Header::Goodbye { code: reason.code().0, reason: &text }, &[]);
                    }
                    _ => push_refusal(buf, reason.code().0, &text),
                }
                let n = buf.len() - start;
                self.session_stats.bytes_out += n as u64;
                self.remove_conn(conn, reason);
                return n;
            }
            let n = buf.len() - start;
            if n == 0 {
                self.session.ready.remove(&conn);
            }
            self.session_stats.bytes_out += n as u64;
            return n;
        }
        let Some(mut sec) = c.secure.take() else { return 0 };
        // The frame stream is written where its records go, after room for
        // the first record's length, and sealed in place.
        let at = buf.len();
        buf.extend_from_slice(&[0, 0]);
        let n = self.poll_plain(conn, buf, Some(sec.initiator));
        let rekeys = sec.rekeys;
        let sealed = if n > 0 {
            if let Some(tap) = &self.secure.tap {
                // The records' plaintexts, split as `seal_in_place` splits them.
                let mut tap = tap.lock().unwrap_or_else(|e| e.into_inner());
                let mut p = at + 2;
                for len in record_lens(buf.len() - p) {
                    tap.push((conn, buf[p..p + len].to_vec()));
                    p += len;
                }
            }
            sec.seal_in_place(buf, at)
        } else {
            buf.truncate(at);
            Ok(())
        };
        self.secure.stats.rekeys += sec.rekeys - rekeys;
        if let Some(c) = self.session.conns.get_mut(&conn) {
            c.secure = Some(sec);
        }
        if sealed.is_err() {
            // Only a nonce running out (2^64 records) fails a seal.
            self.remove_conn(conn, CloseReason::Local(CloseCode::INTERNAL_ERROR));
        }
        buf.len() - start
    }
}
