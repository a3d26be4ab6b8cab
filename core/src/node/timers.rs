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
        let mut next = self.closing;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        for c in self.conns.values() {
            match c.phase {
                Phase::Dialing => {}
                Phase::AwaitPreamble | Phase::AwaitHello => {
                    consider(c.opened_at + self.cfg.handshake_timeout);
                }
                Phase::Open => {
                    consider(c.last_recv + self.cfg.liveness_timeout);
                    if c.closing.is_none() {
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
        if let Some(deadline) = self.closing {
            if now >= deadline {
                let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                for id in ids {
                    self.remove_conn(id, CloseReason::Local(crate::wire::CloseCode::GOING_AWAY));
                }
                self.closing = Some(Timestamp::MAX);
                self.check_closed();
            }
        }
        let input_paused = self.events_full();
        let mut expired = Vec::new();
        for c in self.conns.values_mut() {
            // While input is paused for backpressure the peer cannot be heard:
            // that is not silence.
            if input_paused || c.rx.len() >= self.cfg.max_read_buffer {
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
        let due: Vec<TargetId> = self
            .targets
            .iter()
            .filter(|(_, t)| t.next_dial.is_some_and(|at| now >= at))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.dial(id);
        }
    }

    /// A dial target's connection completed its handshake.
    pub(super) fn target_connected(&mut self, id: TargetId) {
        if let Some(t) = self.targets.get_mut(&id) {
            if t.ever_connected {
                self.stats.reconnects += 1;
            }
            t.ever_connected = true;
            t.attempts = 0;
        }
    }

    /// A dial target's connection ended: schedule the next attempt or give up.
    pub(super) fn target_lost(
        &mut self,
        id: TargetId,
        conn: ConnId,
        phase: Phase,
        reason: CloseReason,
    ) {
        if self.closing.is_some() {
            return;
        }
        let (base, cap, max) = (
            self.cfg.reconnect_base,
            self.cfg.reconnect_cap,
            self.cfg.reconnect_max_attempts,
        );
        let Some(t) = self.targets.get_mut(&id) else {
            return;
        };
        if t.conn != Some(conn) {
            return;
        }
        t.conn = None;
        let was_open = phase == Phase::Open;
        t.attempts = if was_open { 1 } else { t.attempts + 1 };
        if !was_open && max.is_some_and(|m| t.attempts >= m) {
            let addr = t.addr.clone();
            t.next_dial = None;
            self.push_event(Event::DialFailed {
                target: id,
                addr: addr.clone(),
                reason,
                retry_in: None,
            });
            self.push_event(Event::GaveUp { target: id, addr });
            return;
        }
        let exp = base
            .saturating_mul(1u32 << (t.attempts - 1).min(20))
            .min(cap);
        let micros = u64::try_from(exp.as_micros()).unwrap_or(u64::MAX);
        let delay = Duration::from_micros(self.rng.between(micros / 2, micros));
        let t = self.targets.get_mut(&id).expect("checked above");
        t.next_dial = Some(self.now + delay);
        if !was_open {
            let addr = t.addr.clone();
            self.push_event(Event::DialFailed {
                target: id,
                addr,
                reason,
                retry_in: Some(delay),
            });
        }
    }
}
