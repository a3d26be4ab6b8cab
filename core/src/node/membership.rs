//! The node's side of the membership plane: joining (which dials the
//! coordinator) and the plane's accessors.

use super::Node;
use crate::error::CommandError;
use crate::event::TargetId;
use crate::id::PeerAddr;
use crate::membership::{Membership, MembershipRef};
use crate::wire::Capabilities;

impl Node {
    /// Joins `group` at the coordinator at `addr`, which is dialed and kept
    /// connected (redialed) like [`Node::connect`]. The assignment arrives as
    /// [`MembershipEvent::Assigned`](crate::MembershipEvent::Assigned) and
    /// is read with [`MembershipRef::current`]; the node reports it only
    /// while its lease runs.
    pub fn join(&mut self, group: &str, addr: PeerAddr) -> Result<TargetId, CommandError> {
        let cfg = &self.membership.cfg;
        if group.is_empty() || group.len() > cfg.max_group_len {
            return Err(CommandError::BadGroup(format!("{} bytes (1..={})", group.len(), cfg.max_group_len)));
        }
        if self.membership.members.list.contains_key(group) {
            return Err(CommandError::AlreadyJoined(group.to_string()));
        }
        if self.membership.members.list.len() >= cfg.max_joined {
            return Err(CommandError::TooManyGroups);
        }
        let target = self.connect(addr)?;
        self.membership.members.join(group, target);
        // Already connected to the coordinator (through this target, or
        // through the coordinator's own dial): join now.
        if let Some(conn) = self.target_conn(target) {
            self.membership_conn_up(conn);
        }
        Ok(target)
    }

    /// `conn` is open: memberships whose coordinator it reaches (dialed
    /// for them, a target known to reach that peer, or the peer they were
    /// last bound to, on whichever connection its session came back) join
    /// there.
    pub(super) fn membership_conn_up(&mut self, conn: crate::id::ConnId) {
        let Some(c) = self.session.conns.get(&conn) else { return };
        let crate::session::Phase::Open(o) = &c.phase else { return };
        let (peer, capable) = (o.peer.id, o.caps.contains(Capabilities::MEMBERSHIP));
        let mut targets: Vec<TargetId> =
            self.target_peers.iter().filter(|(_, p)| **p == peer).map(|(t, _)| *t).collect();
        targets.extend(c.target);
        self.membership.on_conn_up(&targets, peer, capable, self.now, &mut self.events);
        self.membership.flush_wake(&mut self.session);
    }

    /// [`Node::membership_conn_up`] after a Hello on `conn`: on `conn`, or,
    /// if it closed as a duplicate of the session with `peer` (the peer's
    /// own connection won), on the session's connection, which the target
    /// `conn` was dialed for now reaches too.
    pub(super) fn membership_after_hello(&mut self, conn: crate::id::ConnId, peer: crate::id::NodeId) {
        let live = match self.session.conns.contains_key(&conn) {
            true => Some(conn),
            false => self.session.peers.get(&peer).filter(|e| e.is_connected()).map(|e| e.primary),
        };
        if let Some(c) = live {
            self.membership_conn_up(c);
        }
    }

    /// The membership plane's commands (leave).
    pub fn membership(&mut self) -> Membership<'_> {
        self.report_consumed();
        Membership { state: &mut self.membership, session: &mut self.session }
    }

    /// The membership plane's queries: this node's assignments, and the
    /// groups it coordinates.
    pub fn membership_ref(&self) -> MembershipRef<'_> {
        MembershipRef { state: &self.membership, now: self.now }
    }
}
