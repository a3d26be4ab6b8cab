//! The dialer: targets this node keeps connected, redialed with capped
//! exponential backoff and jitter, given up after a bounded number of
//! failed attempts in a row.

use crate::config::DialerConfig;
use crate::event::{CloseReason, DialEvent, Event, Events, TargetId};
use crate::id::{ConnId, PeerAddr};
use crate::rng::Rng;
use crate::stats::DialerStats;
use crate::time::Timestamp;
use crate::timer::Timers;
use std::collections::BTreeMap;
use std::time::Duration;

/// A dial target: an address this node keeps connected to.
#[derive(Debug)]
struct Target {
    addr: PeerAddr,
    conn: Option<ConnId>,
    /// Failed attempts in a row.
    attempts: u32,
    /// A dial is scheduled (the timer is armed).
    scheduled: bool,
    /// Not dialed while its peer's session lives on another connection:
    /// dialed again when that session is lost ([`Dialer::unpark`]).
    parked: bool,
    ever_connected: bool,
    /// When the current connection completed its handshake.
    connected_at: Option<Timestamp>,
}

#[derive(Debug)]
pub(crate) struct Dialer {
    cfg: DialerConfig,
    targets: BTreeMap<TargetId, Target>,
    next_target: u64,
    pub(crate) timers: Timers<TargetId>,
    pub(crate) stats: DialerStats,
}

impl Dialer {
    pub(crate) fn new(cfg: DialerConfig) -> Self {
        Dialer {
            cfg,
            targets: BTreeMap::new(),
            next_target: 1,
            timers: Timers::default(),
            stats: DialerStats::default(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    /// The target with the same host and port as `addr`.
    pub(crate) fn find(&self, addr: &PeerAddr) -> Option<TargetId> {
        self.targets.iter().find(|(_, t)| t.addr.host == addr.host && t.addr.port == addr.port).map(|(id, _)| *id)
    }

    /// Adds a target; the caller dials it at once.
    pub(crate) fn add(&mut self, addr: PeerAddr) -> TargetId {
        let id = TargetId(self.next_target);
        self.next_target += 1;
        let t = Target {
            addr,
            conn: None,
            attempts: 0,
            scheduled: false,
            parked: false,
            ever_connected: false,
            connected_at: None,
        };
        self.targets.insert(id, t);
        id
    }

    /// Restarts a target that had given up; true if it had (dial it now).
    pub(crate) fn revive(&mut self, id: TargetId) -> bool {
        match self.targets.get_mut(&id) {
            Some(t) if t.conn.is_none() && !t.scheduled => {
                t.attempts = 0;
                t.parked = false;
                true
            }
            _ => false,
        }
    }

    /// Removes a target; returns its connection, to close.
    pub(crate) fn remove(&mut self, id: TargetId) -> Option<ConnId> {
        self.timers.cancel(id);
        self.targets.remove(&id)?.conn
    }

    /// Forgets every target (the node is closing).
    pub(crate) fn clear(&mut self) {
        self.targets.clear();
        self.timers = Timers::default();
    }

    /// A dial of `id` starts on `conn`; returns the address to dial.
    pub(crate) fn dialing(&mut self, id: TargetId, conn: ConnId) -> Option<PeerAddr> {
        self.timers.cancel(id);
        let t = self.targets.get_mut(&id)?;
        t.conn = Some(conn);
        t.scheduled = false;
        t.parked = false;
        Some(t.addr.clone())
    }

    /// The address of `id`.
    pub(crate) fn addr(&self, id: TargetId) -> Option<&PeerAddr> {
        self.targets.get(&id).map(|t| &t.addr)
    }

    /// The connection of `id`, if one is open or opening.
    pub(crate) fn conn(&self, id: TargetId) -> Option<ConnId> {
        self.targets.get(&id)?.conn
    }

    /// True if `id` is not dialed while its peer's session lives on
    /// another connection ([`Dialer::park`]).
    pub(crate) fn is_parked(&self, id: TargetId) -> bool {
        self.targets.get(&id).is_some_and(|t| t.parked)
    }

    /// True if `id` used up its attempts and is no longer dialed.
    pub(crate) fn gave_up(&self, id: TargetId) -> bool {
        self.targets.get(&id).is_some_and(|t| t.conn.is_none() && !t.scheduled && !t.parked)
    }

    /// `conn` of `id` closed as a duplicate while the peer's session lives
    /// on another connection: not a failure, and no redial while that
    /// session lives (redialing would only make more duplicates).
    /// Also for a target due to dial (`conn` `None`) whose peer's session
    /// is live on a connection the peer dialed.
    pub(crate) fn park(&mut self, id: TargetId, conn: Option<ConnId>) {
        let Some(t) = self.targets.get_mut(&id).filter(|t| t.conn == conn) else { return };
        t.conn = None;
        t.scheduled = false;
        t.connected_at = None;
        t.attempts = 0;
        t.parked = true;
    }

    /// The session `id` was parked on was lost: dial again after the base
    /// backoff. Returns false if `id` was not parked.
    pub(crate) fn unpark(&mut self, id: TargetId, now: Timestamp, rng: &mut Rng) -> bool {
        let (base, cap) = (self.cfg.reconnect_base, self.cfg.reconnect_cap);
        let Some(t) = self.targets.get_mut(&id).filter(|t| t.parked) else { return false };
        t.parked = false;
        let delay = backoff(base, cap, t.attempts, rng);
        t.scheduled = true;
        self.timers.set(id, now + delay);
        true
    }

    /// A target's connection completed its handshake.
    pub(crate) fn connected(&mut self, id: TargetId, now: Timestamp) {
        if let Some(t) = self.targets.get_mut(&id) {
            if t.ever_connected {
                self.stats.reconnects += 1;
            }
            t.ever_connected = true;
            t.connected_at = Some(now);
        }
    }

    /// A dial of `id` is due but the node is at its connection limit: try
    /// again after the current backoff (not counted as a failed attempt).
    pub(crate) fn defer(&mut self, id: TargetId, now: Timestamp, rng: &mut Rng, events: &mut Events) {
        let (base, cap) = (self.cfg.reconnect_base, self.cfg.reconnect_cap);
        let Some(t) = self.targets.get_mut(&id) else { return };
        let delay = backoff(base, cap, t.attempts, rng);
        t.scheduled = true;
        t.conn = None;
        self.timers.set(id, now + delay);
        let (target, addr, reason) = (id, t.addr.clone(), CloseReason::TooManyConnections);
        events.push(Event::Dial(DialEvent::Failed { target, addr, reason, retry_in: Some(delay) }));
    }

    /// A target's connection ended: schedule the next attempt or give up.
    ///
    /// A connection that stayed up for `stable_after` (the liveness timeout)
    /// counts as a success and resets the attempts, and so does one on which
    /// a resumable session `progressed` (the peer acknowledged messages or
    /// sent new ones), however short: a path that resets every 100 ms but
    /// carries data is never given up. A peer that accepts and then drops or
    /// refuses every connection uses them up like a refused dial.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn lost(
        &mut self,
        id: TargetId,
        conn: ConnId,
        reason: CloseReason,
        now: Timestamp,
        stable_after: Duration,
        progressed: bool,
        rng: &mut Rng,
        events: &mut Events,
    ) {
        let (base, cap, max) = (self.cfg.reconnect_base, self.cfg.reconnect_cap, self.cfg.reconnect_max_attempts);
        let Some(t) = self.targets.get_mut(&id) else { return };
        if t.conn != Some(conn) {
            return;
        }
        t.conn = None;
        let stable = t.connected_at.take().is_some_and(|at| now >= at + stable_after) || progressed;
        t.attempts = if stable { 0 } else { t.attempts + 1 };
        let addr = t.addr.clone();
        if max.is_some_and(|m| t.attempts >= m) {
            events.push(Event::Dial(DialEvent::Failed { target: id, addr: addr.clone(), reason, retry_in: None }));
            events.push(Event::Dial(DialEvent::GaveUp { target: id, addr }));
            return;
        }
        let delay = backoff(base, cap, t.attempts, rng);
        t.scheduled = true;
        self.timers.set(id, now + delay);
        events.push(Event::Dial(DialEvent::Failed { target: id, addr, reason, retry_in: Some(delay) }));
    }
}

/// The wait before attempt `attempts + 1`: `base` doubled per failed
/// attempt up to `cap`, drawn uniformly from its upper half (jitter).
pub(crate) fn backoff(base: Duration, cap: Duration, attempts: u32, rng: &mut Rng) -> Duration {
    rng.upper_half(base.saturating_mul(1u32 << attempts.min(20)).min(cap))
}
