//! The session plane: connections, the handshake, the peer table and
//! session epochs (which connection carries a peer's current session).
//!
//! A session with a peer starts when the first of its connections completes
//! the handshake (`PeerUp`) and ends when any of its connections is lost
//! (`PeerDown`). This node sends every plane frame on the session's
//! *primary* (the connection that started it); the peer's plane frames
//! arrive on the peer's own primary, its *data connection* here. A plane
//! frame on another connection is the session gate's business
//! ([`Session::gate`]): a newer connection means the peer started a new
//! session of its own, an older one carries leftovers of a session already
//! over.

mod conn;
pub(crate) mod handshake;

pub(crate) use conn::{Closing, Conn, Open, Phase};

use crate::config::SessionConfig;
use crate::event::{PeerInfo, TargetId};
use crate::id::{ConnId, NodeId};
use crate::time::Timestamp;
use crate::timer::{TimerReason, Timers};
use std::collections::{BTreeMap, BTreeSet};

/// A connected peer: its identity and its connections. More than one
/// connection exists only after a simultaneous dial.
#[derive(Debug)]
pub(crate) struct PeerEntry {
    pub(crate) info: PeerInfo,
    /// Where this node's plane frames to the peer leave; fixed for the session.
    pub(crate) primary: ConnId,
    pub(crate) conns: BTreeSet<ConnId>,
    /// Where the peer's plane frames arrive in this session, once one did.
    pub(crate) data_conn: Option<ConnId>,
    /// The peer's incarnation and the session's id (both 0 unless both ends
    /// announced `RESUME`): see [`crate::resume`].
    pub(crate) inc: u64,
    pub(crate) sid: u64,
    /// The connection is lost: the session waits for a resume until then.
    pub(crate) suspended: Option<Timestamp>,
    /// When the session last resumed (on its primary connection).
    pub(crate) resumed_at: Option<Timestamp>,
}

impl PeerEntry {
    /// The session has a connection now (it is not suspended).
    pub(crate) fn is_connected(&self) -> bool {
        self.suspended.is_none() && !self.conns.is_empty()
    }
}

/// What the session gate decided for a plane frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// The frame belongs to the current session.
    Pass,
    /// The peer moved to this newer connection for a new session of its
    /// own: end the current session (its other connections close) and start
    /// one on this connection, then take the frame.
    Restart,
    /// The frame is left over from an older session of the peer's: drop it
    /// (counted) and close this connection.
    Stale,
}

/// What to do with a Hello that passed its checks.
#[derive(Debug)]
pub(crate) enum HelloOutcome {
    /// The connection belongs to an older session: close it as a duplicate.
    Stale,
    /// Open it; first close these older connections the peer dialed (it
    /// dials again only after it lost them).
    Open { close_first: Vec<ConnId> },
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) cfg: SessionConfig,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) peers: BTreeMap<NodeId, PeerEntry>,
    next_conn: u64,
    /// Counts sessions ended (`PeerDown`s); see `Conn::epoch`.
    epoch: u64,
    /// The epoch at which each peer was last reported down, kept while a
    /// connection opened before it may still be handshaking.
    down_epochs: BTreeMap<NodeId, u64>,
    /// Each connection's next deadline (handshake, liveness or heartbeat).
    /// Armed no later than the real deadline, which is recomputed when it fires.
    pub(crate) timers: Timers<ConnId>,
    /// Connections that may have bytes to write.
    pub(crate) ready: BTreeSet<ConnId>,
    /// This process's incarnation (see [`crate::resume`]).
    pub(crate) incarnation: u64,
    /// When each suspended session's resume window passes.
    pub(crate) expiry: Timers<NodeId>,
}

impl Session {
    pub(crate) fn new(cfg: SessionConfig) -> Self {
        Session {
            cfg,
            conns: BTreeMap::new(),
            peers: BTreeMap::new(),
            next_conn: 1,
            epoch: 0,
            down_epochs: BTreeMap::new(),
            timers: Timers::default(),
            ready: BTreeSet::new(),
            incarnation: 0,
            expiry: Timers::default(),
        }
    }

    pub(crate) fn new_conn_id(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    /// A socket opened (accepted, or a dial connected): start the handshake.
    pub(crate) fn start_handshake(&mut self, conn: ConnId, now: Timestamp) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.phase = Phase::AwaitPreamble;
        c.epoch = self.epoch;
        c.opened_at = now;
        c.last_recv = now;
        c.last_send = now;
        c.control.preamble = true;
        c.control.hello = true;
        self.ready.insert(conn);
        self.timers.set(conn, now + self.cfg.handshake_timeout);
    }

    /// A new accepted connection.
    pub(crate) fn accept(&mut self, now: Timestamp) -> ConnId {
        let id = self.new_conn_id();
        self.conns.insert(id, Conn::new(None, Phase::Dialing, now));
        self.start_handshake(id, now);
        id
    }

    /// A new dialing connection for `target`, abandoned if it has not
    /// connected within `timeout`.
    pub(crate) fn dial(&mut self, target: TargetId, now: Timestamp, timeout: std::time::Duration) -> ConnId {
        let id = self.new_conn_id();
        let mut c = Conn::new(Some(target), Phase::Dialing, now);
        c.dial_by = now + timeout;
        self.conns.insert(id, c);
        self.timers.set(id, now + timeout);
        id
    }

    /// The connection this node sends `conn`'s peer's plane frames on is `conn`.
    pub(crate) fn is_primary(&self, conn: ConnId) -> bool {
        let peer = self.conns.get(&conn).and_then(|c| c.peer());
        peer.is_some_and(|p| self.peers.get(&p.id).is_some_and(|e| e.primary == conn))
    }

    /// Decides whether `hello` from `id` on `conn` opens the connection
    /// (`claims_held`: the Hello claims the session held with `id`, so the
    /// connection is not stale for having opened before that session was
    /// suspended).
    pub(crate) fn on_hello(&self, conn: ConnId, id: NodeId, claims_held: bool) -> HelloOutcome {
        let Some(c) = self.conns.get(&conn) else { return HelloOutcome::Stale };
        let (accepted, epoch) = (c.target.is_none(), c.epoch);
        let is_accepted = |o: &ConnId| self.conns.get(o).is_some_and(|c| c.target.is_none());
        // A connection opened before this node last lost the peer, or older
        // than another connection the peer dialed, belongs to an older
        // session of the peer's: its late bytes must not follow newer ones.
        let newer_accepted = |p: &PeerEntry| p.conns.iter().any(|o| *o > conn && is_accepted(o));
        let stale = !claims_held && self.down_epochs.get(&id).is_some_and(|e| epoch < *e)
            || accepted && self.peers.get(&id).is_some_and(newer_accepted);
        if stale {
            return HelloOutcome::Stale;
        }
        // The peer dials again only after it lost its connection: an older
        // connection it dialed is stale here. Ending it (and the session)
        // keeps its late bytes from overtaking the new ones.
        let close_first = match self.peers.get(&id) {
            Some(p) if accepted => p.conns.iter().copied().filter(|o| *o < conn && is_accepted(o)).collect(),
            _ => Vec::new(),
        };
        HelloOutcome::Open { close_first }
    }

    /// Marks `conn` open with `open`'s peer. Returns true if this starts a
    /// session (the peer was not connected); otherwise the connection is a
    /// standby of the current session.
    pub(crate) fn open(&mut self, conn: ConnId, open: Open) -> bool {
        let id = open.peer.id;
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        c.phase = Phase::Open(open.clone());
        let (inc, sid) = (c.peer_inc, c.new_sid());
        self.arm(conn);
        match self.peers.get_mut(&id) {
            Some(p) => {
                p.conns.insert(conn);
                false
            }
            None => {
                let conns = BTreeSet::from([conn]);
                let (info, suspended) = (open.peer, None);
                self.peers.insert(
                    id,
                    PeerEntry { info, primary: conn, conns, data_conn: None, inc, sid, suspended, resumed_at: None },
                );
                true
            }
        }
    }

    /// The session gate for a plane frame from `peer` on `conn`.
    pub(crate) fn gate(&mut self, conn: ConnId, peer: NodeId) -> Gate {
        let Some(p) = self.peers.get_mut(&peer) else { return Gate::Stale };
        match p.data_conn {
            None => {
                p.data_conn = Some(conn);
                Gate::Pass
            }
            Some(d) if d == conn => Gate::Pass,
            Some(d) if conn > d => Gate::Restart,
            Some(_) => Gate::Stale,
        }
    }

    /// For [`Gate::Restart`]: takes `conn` out of the current session so the
    /// session can end without it. Returns the connection to close first
    /// (which ends the session), if any.
    pub(crate) fn detach_for_restart(&mut self, conn: ConnId, peer: NodeId) -> Option<ConnId> {
        let p = self.peers.get_mut(&peer)?;
        if p.conns.len() <= 1 {
            return None;
        }
        p.conns.remove(&conn);
        if p.primary == conn {
            // The session keeps a primary that is closing now anyway.
            p.primary = p.conns.iter().next().copied().unwrap_or(conn);
        }
        p.conns.iter().next().copied()
    }

    /// Starts a session on `conn` after a restart (its peer entry is gone).
    pub(crate) fn restart_on(&mut self, conn: ConnId) {
        let Some(Phase::Open(o)) = self.conns.get(&conn).map(|c| c.phase.clone()) else { return };
        let conns = BTreeSet::from([conn]);
        let data_conn = Some(conn);
        let (inc, sid) = self.conns.get(&conn).map_or((0, 0), |c| (c.peer_inc, c.new_sid()));
        let e =
            PeerEntry { info: o.peer, primary: conn, conns, data_conn, inc, sid, suspended: None, resumed_at: None };
        self.peers.insert(e.info.id, e);
    }

    /// For [`Gate::Stale`]: `conn` leaves the session unless this node's own
    /// frames leave on it.
    pub(crate) fn forget_stale(&mut self, conn: ConnId, peer: NodeId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.primary != conn {
                p.conns.remove(&conn);
            }
        }
    }

    /// `conn` (already taken out of `conns`) was lost. If it belonged to
    /// `peer`'s session, the session ends: returns its other connections,
    /// which close too. A standby is never promoted in silence: messages in
    /// flight on the lost connection may be lost, so the application must
    /// hear `PeerDown`; and a standby still carrying older bytes must not
    /// deliver them after newer ones on a later connection.
    pub(crate) fn detach(&mut self, peer: NodeId, conn: ConnId) -> Option<Vec<ConnId>> {
        if !self.peers.get(&peer).is_some_and(|p| p.conns.contains(&conn)) {
            return None;
        }
        self.expiry.cancel(peer);
        let p = self.peers.remove(&peer)?;
        self.epoch += 1;
        self.down_epochs.insert(peer, self.epoch);
        // Only connections still handshaking can be older than an entry.
        let handshaking = |c: &&Conn| matches!(c.phase, Phase::AwaitPreamble | Phase::AwaitHello);
        let oldest = self.conns.values().filter(handshaking).map(|c| c.epoch).min();
        self.down_epochs.retain(|_, e| oldest.is_some_and(|o| o < *e));
        Some(p.conns.into_iter().filter(|c| *c != conn).collect())
    }

    /// `conn` (already taken out of `conns`) was lost and `peer`'s session
    /// outlives it until `until`: the session is suspended. Returns its
    /// other connections, which close (quietly: they do not end it).
    pub(crate) fn suspend(&mut self, peer: NodeId, conn: ConnId, until: Timestamp) -> Option<Vec<ConnId>> {
        let p = self.peers.get_mut(&peer).filter(|p| p.conns.contains(&conn))?;
        let others: Vec<ConnId> = std::mem::take(&mut p.conns).into_iter().filter(|c| *c != conn).collect();
        p.data_conn = None;
        p.suspended = Some(until);
        self.expiry.set(peer, until);
        self.epoch += 1;
        self.down_epochs.insert(peer, self.epoch);
        Some(others)
    }

    /// `peer`'s session resumes on `conn`: its only connection from now on.
    pub(crate) fn resume_on(&mut self, peer: NodeId, conn: ConnId, now: Timestamp) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.conns = BTreeSet::from([conn]);
            p.primary = conn;
            p.data_conn = None;
            p.suspended = None;
            p.resumed_at = Some(now);
        }
        self.expiry.cancel(peer);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.resumed = true;
        }
    }

    /// Takes a session out of the table (it ended while suspended).
    pub(crate) fn forget(&mut self, peer: NodeId) -> Option<PeerEntry> {
        self.expiry.cancel(peer);
        self.peers.remove(&peer)
    }

    /// Takes `conn` out of the table.
    pub(crate) fn take(&mut self, conn: ConnId) -> Option<Conn> {
        self.timers.cancel(conn);
        self.ready.remove(&conn);
        self.conns.remove(&conn)
    }

    /// Arms `conn`'s timer at its next deadline (never later than the real one).
    pub(crate) fn arm(&mut self, conn: ConnId) {
        if let Some((at, _)) = self.deadline(conn) {
            self.timers.set(conn, at);
        } else {
            self.timers.cancel(conn);
        }
    }

    /// `conn`'s next deadline and why. A heartbeat deadline is reported
    /// whether or not the connection is idle: when it fires on a busy
    /// connection, nothing is sent and the timer is armed again.
    pub(crate) fn deadline(&self, conn: ConnId) -> Option<(Timestamp, TimerReason)> {
        let c = self.conns.get(&conn)?;
        match c.phase {
            Phase::Dialing => Some((c.dial_by, TimerReason::DialTimeout(conn))),
            Phase::AwaitPreamble | Phase::AwaitHello => {
                Some((c.opened_at + self.cfg.handshake_timeout, TimerReason::Handshake(conn)))
            }
            Phase::Open(_) => {
                let live = (c.last_recv + self.cfg.liveness_timeout, TimerReason::Liveness(conn));
                if let Some(Closing::CloseWait { until, .. }) = &c.closing {
                    return TimerReason::soonest(Some(live), Some((*until, TimerReason::CloseWait(conn))));
                }
                if let (Some(Closing::Flushing(_)), Some(by), false) = (&c.closing, c.close_by, c.acks_overdue) {
                    return TimerReason::soonest(Some(live), Some((by, TimerReason::CloseWait(conn))));
                }
                if c.closing.is_some() {
                    return Some(live);
                }
                // A heartbeat found due on a busy connection is looked at
                // again an interval later (`hb_retry`), not at once.
                let hb = (c.last_send + self.cfg.heartbeat_interval).max(c.hb_retry);
                TimerReason::soonest(Some(live), Some((hb, TimerReason::Heartbeat(conn))))
            }
        }
    }

    /// The peers, in id order.
    pub(crate) fn peer_infos(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values().map(|p| &p.info)
    }

    /// The peers whose session has a connection now (not suspended).
    pub(crate) fn connected_infos(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values().filter(|p| p.is_connected()).map(|p| &p.info)
    }
}
