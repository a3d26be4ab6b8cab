//! The membership plane's commands and queries: `node.membership()` and
//! `node.membership_ref()`. Joining is [`Node::join`](crate::Node::join),
//! since it dials the coordinator.

use super::{Assignment, MembershipState};
use crate::id::NodeId;
use crate::session::Session;
use crate::time::Timestamp;
use std::sync::Arc;

/// Commands of the membership plane, borrowed from a node with
/// [`Node::membership`](crate::Node::membership).
///
/// ```
/// use estafeta_core::{Config, Node};
/// let mut node = Node::new(Config::plaintext(), "worker").unwrap();
/// node.join("workers", "coord@127.0.0.1:7000".parse().unwrap()).unwrap();
/// assert_eq!(node.membership_ref().current("workers"), None, "not assigned yet");
/// assert!(node.membership().leave("workers"));
/// ```
#[derive(Debug)]
pub struct Membership<'a> {
    pub(crate) state: &'a mut MembershipState,
    pub(crate) session: &'a mut Session,
}

impl Membership<'_> {
    /// Leaves `group`: from this call on the node reports no assignment for
    /// it, then tells the coordinator (if connected; otherwise the
    /// coordinator times it out). Returns false if not a member.
    pub fn leave(&mut self, group: &str) -> bool {
        let Some(coord) = self.state.members.leave(group) else { return false };
        if let Some(c) = coord {
            self.state.wake.insert(c);
        }
        self.state.flush_wake(self.session);
        true
    }
}

/// One group as its coordinator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: Arc<str>,
    /// The last settled epoch (until the group first settles: the highest
    /// epoch this coordinator settled in any group before, or 0).
    pub epoch: u64,
    /// Members in the last settled epoch.
    pub total: u32,
    /// True while the group is settling.
    pub settling: bool,
    /// Every member with its index in the last settled epoch (None: joined since).
    pub members: Vec<(NodeId, Option<u32>)>,
}

/// Queries of the membership plane, from a shared borrow
/// ([`Node::membership_ref`](crate::Node::membership_ref)).
#[derive(Debug)]
pub struct MembershipRef<'a> {
    pub(crate) state: &'a MembershipState,
    pub(crate) now: Timestamp,
}

impl MembershipRef<'_> {
    /// This node's assignment in `group` if it may act on it at the time the
    /// node last saw (`None` while settling, unassigned, or once the lease lapsed).
    pub fn current(&self, group: &str) -> Option<Assignment> {
        self.current_at(group, self.now)
    }

    /// The same, at `now` (a driver passes its clock's time, so a lease
    /// that lapsed since the node last ran is not reported).
    pub fn current_at(&self, group: &str, now: Timestamp) -> Option<Assignment> {
        self.state.members.current(&self.state.cfg, group, now)
    }

    /// True while this node is connected to the coordinator of `group`
    /// (on a connection dialed for it, or on the session of the coordinator
    /// it was connected to before) and sends it Joins.
    pub fn connected(&self, group: &str) -> bool {
        self.state.members.list.get(group).is_some_and(|m| m.coord.is_some())
    }

    /// The groups this node is a member of.
    pub fn joined(&self) -> Vec<Arc<str>> {
        self.state.members.list.keys().cloned().collect()
    }

    /// The groups this node coordinates, with their members.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.state
            .coord
            .groups
            .values()
            .map(|g| GroupInfo {
                name: g.name().clone(),
                epoch: g.epoch,
                total: g.total,
                settling: g.is_settling(),
                members: g.members.iter().map(|(id, m)| (*id, m.index)).collect(),
            })
            .collect()
    }
}
