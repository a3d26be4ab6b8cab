//! The membership plane's frames, carried in `Header::Membership`.
//!
//! A member sends [`MembershipFrame::Join`] when its connection to the
//! coordinator opens and again every `renew_interval` (the membership
//! heartbeat); each Join carries a sequence number the coordinator echoes in
//! its answer, so the member knows which of its requests (and so which send
//! time) an answer confirms. See `docs/protocol.md`, "Membership".

use serde::{Deserialize, Serialize};

/// An assignment a member held before, sent as a hint so a restarted
/// coordinator can keep it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hint {
    /// The index the member held.
    pub index: u32,
    /// The epoch it was assigned in.
    pub epoch: u64,
}

/// Why a coordinator refused a join.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The node does not serve groups (it was not built as a coordinator).
    NotCoordinator,
    /// The group has `max_members` members already.
    GroupFull,
    /// The coordinator serves `max_groups` groups already.
    TooManyGroups,
}

impl std::fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefuseReason::NotCoordinator => "the peer is not a coordinator",
            RefuseReason::GroupFull => "the group is full",
            RefuseReason::TooManyGroups => "the coordinator serves too many groups",
        })
    }
}

/// One frame of the membership plane.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MembershipFrame<'a> {
    /// Member → coordinator: join `group`, or stay in it (the membership
    /// heartbeat). `seq` increases with every Join the member sends.
    Join {
        /// The group.
        group: &'a str,
        /// The request's sequence number, echoed in the answer.
        seq: u64,
        /// The member's last assignment, for a coordinator that restarted.
        hint: Option<Hint>,
    },
    /// Member → coordinator: the member leaves `group` (it stopped reporting
    /// its assignment before sending this).
    Leave {
        /// The group.
        group: &'a str,
    },
    /// Coordinator → member: the join was refused; the membership ends.
    Refused {
        /// The group.
        group: &'a str,
        /// Why.
        reason: RefuseReason,
    },
    /// Coordinator → member: the group is settling; report nothing.
    Settling {
        /// The group.
        group: &'a str,
        /// The Join this answers.
        seq: u64,
    },
    /// Coordinator → member: the member's assignment, confirming Join `seq`
    /// (the member's lease runs from the time it sent that Join).
    Assigned {
        /// The group.
        group: &'a str,
        /// The Join this answers.
        seq: u64,
        /// The member's index, in `0..total`.
        index: u32,
        /// Members in the group.
        total: u32,
        /// The settled epoch (a fencing token: strictly increasing).
        epoch: u64,
    },
}

impl MembershipFrame<'_> {
    /// The group the frame is about.
    pub fn group(&self) -> &str {
        match self {
            MembershipFrame::Join { group, .. }
            | MembershipFrame::Leave { group }
            | MembershipFrame::Refused { group, .. }
            | MembershipFrame::Settling { group, .. }
            | MembershipFrame::Assigned { group, .. } => group,
        }
    }
}
