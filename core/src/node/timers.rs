//! Time: heartbeats, liveness, handshake and close deadlines, and redialing
//! with capped exponential backoff and jitter.

use super::Node;
use crate::conn::Phase;
use crate::event::{CloseReason, Event, TargetId};
use crate::id::ConnId;
use crate::outbound::Out;
use crate::time::Timestamp;
use std::time::Duration;

impl Node {
    /// The next time [`Node::handle_timeout`] must be called, if any. Read it
    /// after draining transmits, actions and events.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next = self.close_deadline;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for c in self.conns.values() {
            match c.phase {
                Phase::Dialing => {}
                Phase::AwaitPreamble | Phase::AwaitHello => {
                    consider(c.opened_at + self.cfg.handshake_timeout);
                }
                Phase::Open => {
                    consider(c.last_recv + self.cfg.liveness_timeout);
                    // A heartbeat is due only on an idle connection; queued
                    // frames (even behind a blocked socket) are not idle.
                    if c.closing.is_none() && c.out.is_empty() {
                        consider(c.last_send + self.cfg.heartbeat_interval);
                    }
                }
            }
        }
        for t in self.targets.values() {
            if let Some(at) = t.next_dial {
                consider(at);
            }
        }
        next
    }

    /// Fires every timer that is due at `now`. Calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.advance(now);
        let now = self.now;
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.close_deadline = None;
            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            for id in ids {
                self.remove_conn(id, CloseReason::Local(crate::wire::CloseCode::GOING_AWAY));
            }
            self.check_closed();
        }
        let paused: Vec<ConnId> = self.conns.values().filter(|c| self.input_paused(c)).map(|c| c.id).collect();
        let mut expired = Vec::new();
        for c in self.conns.values_mut() {
            // While input is paused for backpressure the peer cannot be heard:
            // that is not silence.
            if paused.contains(&c.id) {
                c.last_recv = now;
            }
            match c.phase {
                Phase::Dialing => {}
                Phase::AwaitPreamble | Phase::AwaitHello => {
                    if now >= c.opened_at + self.cfg.handshake_timeout {
                        expired.push((c.id, CloseReason::HandshakeTimeout));
                    }
                }
                Phase::Open => {
                    if now >= c.last_recv + self.cfg.liveness_timeout {
                        expired.push((c.id, CloseReason::LivenessTimeout));
                    } else if c.closing.is_none()
                        && now >= c.last_send + self.cfg.heartbeat_interval
                        && c.out.is_empty()
                    {
                        c.out.push_control(Out::Heartbeat);
                        // Count the heartbeat as sent now so it is not queued twice.
                        c.last_send = now;
                        self.stats.heartbeats += 1;
                    }
                }
            }
        }
        for (id, reason) in expired {
            self.remove_conn(id, reason);
        }
        let due: Vec<TargetId> =
            self.targets.iter().filter(|(_, t)| t.next_dial.is_some_and(|at| now >= at)).map(|(id, _)| *id).collect();
        for id in due {
            self.dial(id);
        }
    }

    /// A dial target's connection completed its handshake.
    pub(super) fn target_connected(&mut self, id: TargetId) {
        let now = self.now;
        if let Some(t) = self.targets.get_mut(&id) {
            if t.ever_connected {
                self.stats.reconnects += 1;
            }
            t.ever_connected = true;
            t.connected_at = Some(now);
        }
    }

    /// A dial target's connection ended: schedule the next attempt or give up.
    ///
    /// Only a connection that stayed up for a liveness timeout counts as a
    /// success and resets the attempts; a peer that accepts and then drops or
    /// refuses every connection uses them up like a refused dial.
    pub(super) fn target_lost(&mut self, id: TargetId, conn: ConnId, reason: CloseReason) {
        if self.closing {
            return;
        }
        let (base, cap, max) = (self.cfg.reconnect_base, self.cfg.reconnect_cap, self.cfg.reconnect_max_attempts);
        let stable_after = self.cfg.liveness_timeout;
        let now = self.now;
        let Some(t) = self.targets.get_mut(&id) else { return };
        if t.conn != Some(conn) {
            return;
        }
        t.conn = None;
        let stable = t.connected_at.take().is_some_and(|at| now >= at + stable_after);
        t.attempts = if stable { 0 } else { t.attempts + 1 };
        let addr = t.addr.clone();
        if max.is_some_and(|m| t.attempts >= m) {
            t.next_dial = None;
            self.push_event(Event::DialFailed { target: id, addr: addr.clone(), reason, retry_in: None });
            self.push_event(Event::GaveUp { target: id, addr });
            return;
        }
        let exp = base.saturating_mul(1u32 << t.attempts.min(20)).min(cap);
        let micros = u64::try_from(exp.as_micros()).unwrap_or(u64::MAX);
        let delay = Duration::from_micros(self.rng.between(micros / 2, micros));
        let t = self.targets.get_mut(&id).expect("checked above");
        t.next_dial = Some(now + delay);
        self.push_event(Event::DialFailed { target: id, addr, reason, retry_in: Some(delay) });
    }
}
