//! Time: one deadline with a reason, taken as the soonest of each plane's
//! own timers; nothing scans every connection.

use super::Node;
use crate::event::CloseReason;
use crate::session::{Closing, Phase};
use crate::time::Timestamp;
use crate::timer::TimerReason;
use crate::wire::CloseCode;

impl Node {
    /// The next time [`Node::handle_timeout`] must be called, if any. Read it
    /// after draining transmits, actions and events.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines().into_iter().flatten().map(|(t, _)| t).min()
    }

    /// The next deadline and why it was chosen (a connection's deadline is
    /// armed no later than the real one; see [`TimerReason`]).
    pub fn next_timer(&self) -> Option<(Timestamp, TimerReason)> {
        // On a tie the earlier entry of `deadlines` wins.
        let (at, reason) = self.deadlines().into_iter().flatten().reduce(|a, b| if b.0 < a.0 { b } else { a })?;
        let reason = match reason {
            TimerReason::Liveness(c) => self.session.deadline(c).map_or(reason, |(_, r)| r),
            r => r,
        };
        Some((at, reason))
    }

    /// Each sub-state's soonest deadline: the one list both
    /// [`Node::poll_timeout`] and [`Node::next_timer`] read. A connection's
    /// entry says `Liveness` here; working out its real reason takes a
    /// look-up, done only by `next_timer` and only when it wins (the drain
    /// asks `poll_timeout` on every pass).
    fn deadlines(&self) -> [Option<(Timestamp, TimerReason)>; 8] {
        [
            self.close_deadline.map(|t| (t, TimerReason::Close)),
            self.session.timers.next().map(|(t, c)| (t, TimerReason::Liveness(c))),
            self.dialer.timers.next().map(|(t, id)| (t, TimerReason::Redial(id))),
            self.streams.next_timer().map(|t| (t, TimerReason::Streams)),
            self.membership.next_timer().map(|t| (t, TimerReason::Membership)),
            self.discovery_timer().map(|t| (t, TimerReason::Discovery)),
            self.transfer.timers.next().map(|(t, _)| (t, TimerReason::Transfer)),
            self.session_deadline().map(|t| (t, TimerReason::Session)),
        ]
    }

    /// The sessions' soonest deadline: a suspended session's expiry or a
    /// coalesced ack falling due.
    fn session_deadline(&self) -> Option<Timestamp> {
        let expiry = self.session.expiry.next().map(|(t, _)| t);
        match (expiry, self.pubsub.ack_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer that is due at `now`. Calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        let now = self.now;
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.close_deadline = None;
            let ids: Vec<_> = self.session.conns.keys().copied().collect();
            for id in ids {
                self.remove_conn(id, CloseReason::Local(CloseCode::GOING_AWAY));
            }
            self.check_closed();
        }
        while let Some(conn) = self.session.timers.pop_due(now) {
            self.conn_timer(conn, now);
        }
        while let Some(target) = self.dialer.timers.pop_due(now) {
            self.dial(target);
        }
        self.streams.handle_timeout(now, &mut self.session.ready, &mut self.events);
        self.membership.handle_timeout(now, &mut self.events);
        self.membership.flush_wake(&mut self.session);
        if self.discovery_timer().is_some_and(|t| now >= t) {
            self.discovery_timeout(now);
        }
        self.transfer.handle_timeout(now, &mut self.events);
        self.transfer_wake();
        self.pubsub.ack_timeout(now);
        self.wake_pubsub_conns();
        self.expire_sessions(now);
    }

    /// `conn`'s timer fired: time out its handshake or its peer, owe a
    /// heartbeat, or arm it again at the real deadline.
    fn conn_timer(&mut self, conn: crate::id::ConnId, now: Timestamp) {
        let paused = self.input_paused(conn);
        let (hb, live, hs) = (
            self.cfg.session.heartbeat_interval,
            self.cfg.session.liveness_timeout,
            self.cfg.session.handshake_timeout,
        );
        let mut overdue = false;
        let Some(c) = self.session.conns.get_mut(&conn) else { return };
        let peer = c.peer().map(|p| p.id);
        // While input is paused for backpressure the peer cannot be heard:
        // that is not silence.
        if paused {
            c.last_recv = now;
        }
        let expired = match c.phase {
            Phase::Dialing => (now >= c.dial_by).then_some(CloseReason::DialTimeout),
            Phase::AwaitPreamble | Phase::AwaitHello => {
                (now >= c.opened_at + hs).then_some(CloseReason::HandshakeTimeout)
            }
            Phase::Open(_) => {
                if now >= c.last_recv + live {
                    Some(CloseReason::LivenessTimeout)
                } else if let Some(Closing::CloseWait { reason, until }) = &c.closing {
                    (now >= *until).then(|| reason.clone())
                } else if matches!(c.closing, Some(Closing::Flushing(_))) {
                    // The wait for acks is over: the goodbye may leave.
                    if c.close_by.is_some_and(|t| now >= t) && !c.acks_overdue {
                        c.acks_overdue = true;
                        overdue = true;
                    }
                    None
                } else {
                    if c.closing.is_none() && now >= (c.last_send + hb).max(c.hb_retry) {
                        // A heartbeat is due only on an idle connection: one
                        // with frames that may leave (even behind a blocked
                        // socket) is not; one whose messages wait for credit is.
                        let idle = c.control.is_empty()
                            && !self.pubsub.has_sendable(conn, peer)
                            && !self.pubsub.has_control(conn, peer)
                            && !self.streams.has_sendable(conn, peer)
                            && !self.streams.has_control(conn, peer)
                            && !self.discovery.has_control(conn)
                            && !self.transfer.has_control(conn, peer)
                            && !peer.is_some_and(|p| self.transfer.has_data(p));
                        if let Some(p) = peer {
                            // Acks go with heartbeats.
                            self.pubsub.ack_now(p);
                        }
                        if idle {
                            c.control.heartbeat = true;
                            // Count the heartbeat as sent now so it is not queued twice.
                            c.last_send = now;
                            self.session_stats.heartbeats += 1;
                            self.session.ready.insert(conn);
                        } else {
                            c.hb_retry = now + hb;
                        }
                    }
                    None
                }
            }
        };
        if overdue {
            self.session.ready.insert(conn);
        }
        match expired {
            Some(reason) => self.remove_conn(conn, reason),
            None => self.session.arm(conn),
        }
    }
}
