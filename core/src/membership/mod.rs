//! The membership plane: a coordinator settles named groups and hands each
//! member an index in `0..total` with an epoch; a member reports it only
//! while its lease runs.
//!
//! - [`coordinator`]: member table, settle period, epochs, sticky indexes,
//!   and which index may still be held under a lease.
//! - [`member`]: joins and heartbeats (repeated Joins), the lease.
//! - [`assign`]: the sticky assignment, a pure function.
//! - [`api`]: commands and queries through `node.membership()`.
//!
//! State is keyed by node id and group name, never by connection: a member
//! that reconnects within `member_timeout` keeps its index, and only its own
//! session (Leave, or silence) ends its membership.

mod api;
mod assign;
mod coordinator;
mod event;
mod member;

pub use api::{GroupInfo, Membership, MembershipRef};
pub use event::{Assignment, LeftReason, MembershipConfig, MembershipEvent, MembershipStats};

use crate::event::{Events, ProtocolError, TargetId};
use crate::id::NodeId;
use crate::time::Timestamp;
use crate::wire::MembershipFrame;
use coordinator::{Coordinator, Wake};
use member::Members;

/// The membership plane's state, a field of the node.
#[derive(Debug)]
pub(crate) struct MembershipState {
    pub(crate) cfg: MembershipConfig,
    pub(crate) coord: Coordinator,
    pub(crate) members: Members,
    pub(crate) stats: MembershipStats,
    /// Peers with frames to send; the node marks their connections ready.
    pub(crate) wake: Wake,
}

impl MembershipState {
    pub(crate) fn new(cfg: MembershipConfig) -> Self {
        MembershipState {
            cfg,
            coord: Coordinator::default(),
            members: Members::default(),
            stats: MembershipStats::default(),
            wake: Wake::new(),
        }
    }

    /// A membership frame from `from`'s current session.
    pub(crate) fn on_frame(
        &mut self,
        from: NodeId,
        frame: MembershipFrame<'_>,
        now: Timestamp,
        events: &mut Events,
    ) -> Result<(), ProtocolError> {
        let group = frame.group();
        if group.is_empty() || group.len() > self.cfg.max_group_len {
            return Err(ProtocolError::Limit(format!("group name of {} bytes", group.len())));
        }
        if let MembershipFrame::Assigned { index, total, .. } = frame {
            if index >= total {
                return Err(ProtocolError::Limit(format!("assigned index {index} of {total}")));
            }
        }
        match frame {
            MembershipFrame::Join { group, seq, hint } => {
                self.stats.joins_received += 1;
                let join = coordinator::JoinReq { from, group, seq, hint };
                self.coord.on_join(&self.cfg, join, now, events, &mut self.wake)
            }
            MembershipFrame::Leave { group } => {
                self.coord.on_leave(&self.cfg, from, group, now, events, &mut self.wake);
                Ok(())
            }
            MembershipFrame::Refused { .. } | MembershipFrame::Settling { .. } | MembershipFrame::Assigned { .. } => {
                self.members.on_answer(&self.cfg, from, &frame, now, events, &mut self.stats);
                Ok(())
            }
        }
    }

    /// A connection to `peer` opened; `targets`: the dial targets known to
    /// reach `peer` (the one it was dialed for, if any, among them).
    pub(crate) fn on_conn_up(
        &mut self,
        targets: &[TargetId],
        peer: NodeId,
        capable: bool,
        now: Timestamp,
        events: &mut Events,
    ) {
        if self.members.on_conn_up(&self.cfg, targets, peer, capable, now, events) {
            self.wake.insert(peer);
        }
    }

    /// The node closes: it leaves every group it is a member of.
    pub(crate) fn leave_all(&mut self) {
        for g in self.members.list.keys().cloned().collect::<Vec<_>>() {
            if let Some(Some(c)) = self.members.leave(&g) {
                self.wake.insert(c);
            }
        }
    }

    /// `peer`'s session ended.
    pub(crate) fn on_peer_down(&mut self, peer: NodeId) {
        self.coord.on_peer_down(peer);
        self.members.on_peer_down(peer);
    }

    pub(crate) fn next_timer(&self) -> Option<Timestamp> {
        self.coord.next_timer().into_iter().chain(self.members.next_timer()).min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Timestamp, events: &mut Events) {
        self.coord.handle_timeout(&self.cfg, now, events, &mut self.wake);
        self.members.handle_timeout(&self.cfg, now, events, &mut self.stats, &mut self.wake);
    }

    /// Frames owed to `peer` (sent on the connection its session uses).
    pub(crate) fn has_control(&self, peer: NodeId) -> bool {
        self.coord.has_control(peer) || self.members.has_control(peer)
    }

    pub(crate) fn write_control(&mut self, peer: NodeId, now: Timestamp, buf: &mut Vec<u8>) {
        self.coord.write_control(&self.cfg, peer, buf);
        self.members.write_control(peer, now, buf, &mut self.stats);
    }

    /// The counters.
    pub(crate) fn stats(&self) -> MembershipStats {
        MembershipStats { settled: self.coord.settled, ..self.stats }
    }

    /// Marks the connections of the peers with frames to send as ready.
    pub(crate) fn flush_wake(&mut self, session: &mut crate::session::Session) {
        for peer in std::mem::take(&mut self.wake) {
            if let Some(p) = session.peers.get(&peer) {
                session.ready.insert(p.primary);
            }
        }
    }
}
