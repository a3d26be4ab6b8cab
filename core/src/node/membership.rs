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
            let open = self.session.conns.get(&conn).and_then(|c| match &c.phase {
                crate::session::Phase::Open(o) => Some((o.peer.id, o.caps)),
                _ => None,
            });
            if let Some((peer, caps)) = open {
                let capable = caps.contains(Capabilities::MEMBERSHIP);
                self.membership.on_target_up(target, peer, capable, self.now, &mut self.events);
                self.membership.flush_wake(&mut self.session);
            }
        }
        Ok(target)
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
