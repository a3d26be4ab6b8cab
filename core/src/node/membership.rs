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
        // Already connected to the coordinator: join now.
        if let Some(conn) = self.dialer.conn(target) {
            self.membership_conn_up(conn);
        }
        Ok(target)
    }

    /// `conn` is open: memberships whose coordinator it reaches (dialed
    /// for them, or the peer they were last bound to, on whichever
    /// connection its session came back) join there.
    pub(super) fn membership_conn_up(&mut self, conn: crate::id::ConnId) {
        let Some(c) = self.session.conns.get(&conn) else { return };
        let crate::session::Phase::Open(o) = &c.phase else { return };
        let (target, peer, capable) = (c.target, o.peer.id, o.caps.contains(Capabilities::MEMBERSHIP));
        self.membership.on_conn_up(target, peer, capable, self.now, &mut self.events);
        self.membership.flush_wake(&mut self.session);
    }

    /// The membership plane's commands (leave).
    pub fn membership(&mut self) -> Membership<'_> {
        Membership { state: &mut self.membership, session: &mut self.session }
    }

    /// The membership plane's queries: this node's assignments, and the
    /// groups it coordinates.
    pub fn membership_ref(&self) -> MembershipRef<'_> {
        MembershipRef { state: &self.membership, now: self.now }
    }
}
