//! Credit flow control, the receiving side: what this node granted each
//! peer per topic, what arrived and what the application consumed; grants
//! after about half a window was consumed (yamux's rule); messages that
//! arrive past the credit are a protocol violation.

use super::session::{AckSide, Seq};
use super::{DropReason, Message, PubSubEvent, PubSubState};
use crate::event::{Event, Events, PeerInfo, ProtocolError};
use crate::id::{ConnId, NodeId, Topic};
use crate::time::Timestamp;
use crate::wire::{encode_frame, Header, SessionFrame};
use bytes::Bytes;

/// Messages one [`PubSubEvent::Messages`] takes at most: it bounds how
/// long a consumer spends on one event and how much of a subscription
/// queue's room one takes.
const MAX_RUN: u64 = 1024;

/// What [`PubSubState::receive`] does with a message once its credit is spent.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deliver {
    /// Consume it at once (a relayed duplicate).
    No,
    /// Hand it to the application if subscribed, with its relay identity.
    Yes(Option<super::Relayed>),
}

/// Messages and payload bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Amount {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
}

impl Amount {
    pub(crate) fn is_zero(self) -> bool {
        self.msgs == 0 && self.bytes == 0
    }
}

/// One (peer, topic) of the current session, receiving side. All counts
/// are totals since the session started.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecvCredit {
    /// Granted: decided by this node (the peer may send up to this).
    granted: Amount,
    /// Of that, announced in Credit frames so far.
    announced: Amount,
    received: Amount,
    consumed: Amount,
    /// Copies of this peer's relayed messages this node queued for others
    /// and has not written yet: they hold part of the window like messages
    /// the application has not consumed, so a relay slows its upstream down
    /// towards its slowest downstream's pace.
    relay_held: Amount,
}

impl RecvCredit {
    /// The part of the window relayed copies hold: at most half of it.
    ///
    /// Never all of it: a relay's grant to its upstream would then wait for
    /// its downstream's grant, and around a ring of relays those waits form
    /// a cycle that stops every node for good once the windows fill
    /// (`sim/src/relay_ring.rs` shows it). Capped at half, a relay still
    /// grants at least half a window each time its application catches up,
    /// whatever its downstreams do; copies past the cap wait in the
    /// bounded send queues, and those that find a queue full are dropped
    /// and reported (`RelayLoss::QueueFull` where they were dropped,
    /// `RelayLoss::Skipped` at the receivers that miss them).
    fn relay_hold(&self, window_msgs: u64, window_bytes: u64, planted_full: bool) -> Amount {
        let (cap_msgs, cap_bytes) =
            if planted_full { (window_msgs, window_bytes) } else { (window_msgs / 2, window_bytes / 2) };
        Amount { msgs: self.relay_held.msgs.min(cap_msgs), bytes: self.relay_held.bytes.min(cap_bytes) }
    }
}

impl RecvCredit {
    /// Announce the whole grant again (absolute grants, after a resume).
    pub(crate) fn reannounce(&mut self) {
        self.announced = Amount::default();
    }

    /// Received and not consumed yet: held by the application.
    pub(crate) fn held(&self) -> Amount {
        Amount {
            msgs: self.received.msgs - self.consumed.msgs,
            bytes: self.received.bytes.saturating_sub(self.consumed.bytes),
        }
    }
}

/// What the application still holds of ended sessions with one peer on one topic.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Debt(Amount);

impl Debt {
    pub(crate) fn add(&mut self, a: Amount) {
        self.0.msgs += a.msgs;
        self.0.bytes += a.bytes;
    }
}

impl PubSubState {
    /// A message from `from` on `topic` (through the session gate) spends
    /// the credit this node granted it (a relayed one too). `deliver`: hand
    /// it to the application if subscribed (with its relay identity, if
    /// any); `Deliver::No` (a relayed duplicate): it is consumed at once.
    /// `permitted`: the security permissions let `from` publish on `topic`
    /// (if not, the message is dropped and counted as `NotPermitted`).
    /// `seq`: `Some(now)` if the message takes its sequence number here (a
    /// Publish in a resumable session: one look-up of the peer for both); a
    /// duplicate (re-sent after a resume) is dropped and says so. `topic`:
    /// its name, and the local subscription if the caller knows it is one
    /// (saves looking it up).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn receive(
        &mut self,
        from: &PeerInfo,
        (topic, local): (&str, Option<&Topic>),
        payload: Bytes,
        deliver: Deliver,
        permitted: bool,
        seq: Option<Timestamp>,
        events: &mut Events,
    ) -> Result<Seq, ProtocolError> {
        let len = payload.len() as u64;
        let Some(p) = self.peers.get_mut(&from.id) else { return Ok(Seq::Take) };
        if let Some(now) = seq.filter(|_| p.resumable) {
            let took = p.rx.take(len as usize)?;
            let side = AckSide::of(&mut self.stats, &mut self.wake, &mut self.ack_timers);
            if side.apply(took, from.id, p.conn, now, self.ack_delay) == Seq::Duplicate {
                return Ok(Seq::Duplicate);
            }
        }
        let subscribed = match (permitted, local) {
            (false, _) => None,
            (true, Some(t)) => Some(t.clone()),
            (true, None) => self.local.get(topic).cloned(),
        };
        let r = match p.recv.get_mut(topic) {
            Some(r) => r,
            None => {
                return Err(ProtocolError::CreditExceeded(format!("a message on {topic:?} with no credit granted")))
            }
        };
        if r.received.msgs >= r.granted.msgs || r.received.bytes >= r.granted.bytes {
            return Err(ProtocolError::CreditExceeded(format!(
                "a message on {topic:?} past the {} messages / {} bytes granted",
                r.granted.msgs, r.granted.bytes
            )));
        }
        r.received.msgs += 1;
        r.received.bytes += len;
        let Deliver::Yes(relayed) = deliver else {
            // A copy consumed at once: its credit may make a grant due.
            r.consumed.msgs += 1;
            r.consumed.bytes += len;
            if let Some(c) = self.consumed(from.id, topic, 0, 0) {
                self.wake.push(c);
            }
            return Ok(Seq::Take);
        };
        match subscribed {
            Some(topic) => {
                self.stats.received += 1;
                events.push(Event::PubSub(PubSubEvent::Message(Message {
                    topic,
                    from: from.clone(),
                    payload,
                    relayed,
                })));
            }
            None => {
                // Gone at once: it no longer holds any of the window.
                r.consumed.msgs += 1;
                r.consumed.bytes += len;
                let reason = if permitted { DropReason::NotSubscribed } else { DropReason::NotPermitted };
                self.report_drop(events, Some(from.clone()), 1, reason);
            }
        }
        Ok(Seq::Take)
    }

    /// After a Publish from `from` on `topic` (a local subscription) was
    /// taken from `conn`'s read buffer `rx` and passed every gate: takes the
    /// run of further whole Publish frames on `topic` that follow it, as far
    /// as the credit granted goes, as one [`PubSubEvent::Messages`]. The
    /// gates hold for them as for the first (same connection, peer and
    /// topic); `permitted` is the publish permission, checked by the caller.
    /// Returns how many messages it took (0: none, or fewer than two, left
    /// for the one-by-one path, which also reports any violation).
    pub(crate) fn receive_run(
        &mut self,
        from: &PeerInfo,
        topic: &Topic,
        rx: &mut bytes::BytesMut,
        max_frame: usize,
        now: Option<Timestamp>,
        events: &mut Events,
    ) -> usize {
        let Some(p) = self.peers.get_mut(&from.id) else { return 0 };
        let resume = now.filter(|_| p.resumable);
        if resume.is_some() && !p.rx.in_order() {
            return 0;
        }
        let Some(r) = p.recv.get_mut(topic.as_str()) else { return 0 };
        let limit = crate::wire::RunLimit {
            msgs: r.granted.msgs.saturating_sub(r.received.msgs).min(MAX_RUN),
            bytes: r.granted.bytes.saturating_sub(r.received.bytes),
        };
        let Some(run) = crate::wire::take_publish_run(rx, topic.as_str(), max_frame, limit) else { return 0 };
        let (n, len) = (run.count as u64, run.payload_bytes);
        r.received.msgs += n;
        r.received.bytes += len;
        if let Some(now) = resume {
            let took = p.rx.take_run(n, len);
            let side = AckSide::of(&mut self.stats, &mut self.wake, &mut self.ack_timers);
            side.apply(took, from.id, p.conn, now, self.ack_delay);
        }
        self.stats.received += n;
        self.stats.received_in_runs += n;
        self.stats.runs += 1;
        let mut run = super::MessageRun::new(topic.clone(), from.clone(), run);
        if self.planted_run_bug {
            // Test only: the run's last message is lost (its credit and
            // sequence number spent, and not counted as received): a silent
            // loss the simulator's checker must catch.
            run = run.split_to(run.len() - 1);
            self.stats.received -= 1;
            self.stats.received_in_runs -= 1;
        }
        events.push(Event::PubSub(PubSubEvent::Messages(run)));
        n as usize
    }

    /// The application consumed `msgs` messages (`bytes` payload bytes) of
    /// `peer` on `topic`. Debts of ended sessions are paid first (those
    /// messages came first). Returns the connection to wake if a grant is due.
    pub(crate) fn consumed(&mut self, peer: NodeId, topic: &str, msgs: u64, bytes: u64) -> Option<ConnId> {
        let mut left = Amount { msgs, bytes };
        if !self.debts.is_empty() {
            let key = (peer, Topic::from(topic));
            if let Some(d) = self.debts.get_mut(&key) {
                // Whole messages: the first ones reported are the oldest, so
                // the debt's messages go first, with their bytes.
                let paid = if d.0.msgs >= left.msgs {
                    Amount { msgs: left.msgs, bytes: left.bytes.min(d.0.bytes) }
                } else {
                    Amount { msgs: d.0.msgs, bytes: d.0.bytes.min(left.bytes) }
                };
                d.0.msgs -= paid.msgs;
                d.0.bytes -= paid.bytes;
                left.msgs -= paid.msgs;
                left.bytes -= paid.bytes;
                if d.0.msgs == 0 {
                    self.debts.remove(&key);
                }
            }
        }
        let (window_msgs, window_bytes) = (u64::from(self.cfg.window_messages), self.cfg.window_bytes);
        let debt = match self.debts.is_empty() {
            true => Amount::default(),
            false => self.debts.get(&(peer, Topic::from(topic))).map_or(Amount::default(), |d| d.0),
        };
        let full_hold = self.planted_full_relay_hold;
        let p = self.peers.get_mut(&peer)?;
        let r = p.recv.get_mut(topic)?;
        r.consumed.msgs = (r.consumed.msgs + left.msgs).min(r.received.msgs);
        r.consumed.bytes = (r.consumed.bytes + left.bytes).min(r.received.bytes);
        // Grant again once about half the window is free (yamux's rule):
        // the window holds what the peer may still send, what the
        // application holds of this session and what it still holds of
        // older ones (so paying a debt can make a grant due too).
        let hold = r.relay_hold(window_msgs, window_bytes, full_hold);
        let outstanding_msgs = r.granted.msgs - r.consumed.msgs + debt.msgs + hold.msgs;
        let outstanding_bytes = r.granted.bytes.saturating_sub(r.consumed.bytes) + debt.bytes + hold.bytes;
        if outstanding_msgs <= window_msgs / 2 || outstanding_bytes <= window_bytes / 2 {
            return self.grant(peer, topic);
        }
        None
    }

    /// Decides a grant to `peer` on `topic` if this node subscribes to it:
    /// the peer may send up to a window past what the application consumed,
    /// less what it still holds of ended sessions. The grant counts from
    /// now; it is announced when bytes are pulled. Returns the connection
    /// to wake.
    pub(crate) fn grant(&mut self, peer: NodeId, topic: &str) -> Option<ConnId> {
        let t = self.local.get(topic)?.clone();
        let (window_msgs, window_bytes) = (u64::from(self.cfg.window_messages), self.cfg.window_bytes);
        let debt = self.debts.get(&(peer, t.clone())).map_or(Amount::default(), |d| d.0);
        let full_hold = self.planted_full_relay_hold;
        let p = self.peers.get_mut(&peer)?;
        let r = p.recv.entry(t.clone()).or_default();
        // The window covers what the peer may send, what the application
        // holds of this session, and what it still holds of older ones.
        let hold = r.relay_hold(window_msgs, window_bytes, full_hold);
        let target = Amount {
            msgs: (r.consumed.msgs + window_msgs).saturating_sub(debt.msgs + hold.msgs),
            bytes: (r.consumed.bytes + window_bytes).saturating_sub(debt.bytes + hold.bytes),
        };
        r.granted.msgs = r.granted.msgs.max(target.msgs);
        r.granted.bytes = r.granted.bytes.max(target.bytes);
        if r.granted == r.announced {
            return None;
        }
        p.grants.insert(t);
        Some(p.conn)
    }

    /// Encodes the grants decided for `peer` and not announced yet, on
    /// `conn` (its session's primary).
    pub(super) fn write_grants(&mut self, conn: ConnId, peer: NodeId, buf: &mut Vec<u8>) {
        let Some(p) = self.peers.get_mut(&peer).filter(|p| p.conn == conn && !p.grants.is_empty()) else { return };
        for t in std::mem::take(&mut p.grants) {
            let Some(r) = p.recv.get_mut(&t) else { continue };
            let more = Amount { msgs: r.granted.msgs - r.announced.msgs, bytes: r.granted.bytes - r.announced.bytes };
            if more.is_zero() {
                continue;
            }
            if p.resumable {
                // Absolute: idempotent, so it survives a resume.
                r.announced = r.granted;
                let f = SessionFrame::Credit { topic: t.as_str(), messages: r.granted.msgs, bytes: r.granted.bytes };
                encode_frame(buf, &Header::Session(f), &[]);
                self.stats.credit_grants += 1;
                continue;
            }
            // A grant larger than a frame carries is announced in parts.
            let messages = u32::try_from(more.msgs).unwrap_or(u32::MAX);
            r.announced.msgs += u64::from(messages);
            r.announced.bytes += more.bytes;
            encode_frame(buf, &Header::Credit { topic: t.as_str(), messages, bytes: more.bytes }, &[]);
            self.stats.credit_grants += 1;
            if r.announced != r.granted {
                p.grants.insert(t);
            }
        }
    }

    /// `copies` forwarded copies (of `bytes` payload bytes in all) of a
    /// message `upstream` sent on `topic` were queued: they hold its credit.
    pub(crate) fn relay_hold(&mut self, upstream: NodeId, topic: &str, copies: u64, bytes: u64) {
        if let Some(r) = self.peers.get_mut(&upstream).and_then(|p| p.recv.get_mut(topic)) {
            r.relay_held.msgs += copies;
            r.relay_held.bytes += bytes;
        }
    }

    /// `copies` forwarded copies (of `bytes` payload bytes in all) of
    /// messages `upstream` sent on `topic` were written or discarded: their
    /// hold goes, and a grant may be due (the connection to wake is kept in
    /// `wake`).
    pub(crate) fn relay_release(&mut self, upstream: NodeId, topic: &str, copies: u64, bytes: u64) {
        let Some(r) = self.peers.get_mut(&upstream).and_then(|p| p.recv.get_mut(topic)) else { return };
        r.relay_held.msgs = r.relay_held.msgs.saturating_sub(copies);
        r.relay_held.bytes = r.relay_held.bytes.saturating_sub(bytes);
        if let Some(c) = self.consumed(upstream, topic, 0, 0) {
            self.wake.push(c);
        }
    }

    /// Local subscribe: every peer in session is granted credit for `topic`.
    /// Returns the connections to wake.
    pub(crate) fn grant_all(&mut self, topic: &Topic) -> Vec<ConnId> {
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        peers.into_iter().filter_map(|id| self.grant(id, topic)).collect()
    }

    /// What `peer` may still send on `topic` by this node's count (granted
    /// minus received), for tests and the simulator.
    pub(crate) fn credit_left(&self, peer: NodeId, topic: &str) -> Option<(u64, i64)> {
        let r = self.peers.get(&peer)?.recv.get(topic)?;
        Some((r.granted.msgs - r.received.msgs, r.granted.bytes as i64 - r.received.bytes as i64))
    }
}
