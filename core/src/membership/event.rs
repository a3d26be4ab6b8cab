//! What the membership plane tells the application, and its config.

use crate::config::ConfigError;
use crate::id::NodeId;
use crate::time::Timestamp;
use crate::wire::RefuseReason;
use std::sync::Arc;
use std::time::Duration;

/// A member's assignment: its index in `0..total`, in a settled epoch, and
/// until when (on the member's own clock) it may act on it.
///
/// Indexes are 0-based (the `bloc` seed used 1..=total): a member takes the
/// keys with `hash % total == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// This member's index, `< total`.
    pub index: u32,
    /// Members in the group.
    pub total: u32,
    /// The settled epoch: strictly increasing, usable as a fencing token.
    pub epoch: u64,
    /// The lease ends here (member clock): from then on the member reports
    /// nothing until the coordinator confirms it again.
    pub lease_until: Timestamp,
}

impl Assignment {
    /// True while the lease runs at `now`.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        now < self.lease_until
    }
}

/// Why a member left a group, as the coordinator saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftReason {
    /// The member said so (its own session sent Leave).
    Left,
    /// Nothing was heard from it for `member_timeout`.
    Timeout,
}

/// What the membership plane tells the application ([`Event::Membership`](crate::Event::Membership)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    /// Member side: the coordinator assigned this node an index (new, or
    /// again after settling or a lapsed lease).
    Assigned {
        /// The group.
        group: Arc<str>,
        /// The assignment.
        assignment: Assignment,
    },
    /// Member side: the group is settling; this node reports nothing.
    Settling {
        /// The group.
        group: Arc<str>,
    },
    /// Member side: the lease lapsed without a confirmation; this node
    /// reports nothing until assigned again.
    LeaseLost {
        /// The group.
        group: Arc<str>,
    },
    /// Member side: the coordinator refused the join; the membership ended.
    Refused {
        /// The group.
        group: Arc<str>,
        /// Why.
        reason: RefuseReason,
    },
    /// Coordinator side: a member joined a group.
    MemberJoined {
        /// The group.
        group: Arc<str>,
        /// The member.
        member: NodeId,
    },
    /// Coordinator side: a member left a group or timed out.
    MemberLeft {
        /// The group.
        group: Arc<str>,
        /// The member.
        member: NodeId,
        /// Why.
        reason: LeftReason,
    },
    /// Coordinator side: a group settled in a new epoch.
    Settled {
        /// The group.
        group: Arc<str>,
        /// The new epoch.
        epoch: u64,
        /// Members.
        total: u32,
    },
}

/// Groups, leases and limits of the membership plane.
///
/// Safety rests on `member_timeout >= lease + drift_margin`, with clocks
/// that drift apart by less than `drift_margin` over one `member_timeout`
/// (docs/guarantees.md, "Membership").
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Serve groups as a coordinator (announces the COORDINATOR role). Default false.
    pub coordinator: bool,
    /// Quiet time after a change before a group settles. Default 3 s.
    pub settle: Duration,
    /// Longest a group stays settling while changes keep coming. Default 15 s.
    pub max_settle: Duration,
    /// A member sends a Join (the membership heartbeat) this often. Default 500 ms.
    pub renew_interval: Duration,
    /// A member reports its assignment until this long after it sent the
    /// Join the coordinator last confirmed. Default 2 s.
    pub lease: Duration,
    /// Clock drift allowed between members and coordinator. Default 500 ms.
    pub drift_margin: Duration,
    /// The coordinator removes a member not heard from for this long; at
    /// least `lease + drift_margin`. Default 3 s.
    pub member_timeout: Duration,
    /// Members per group. Default 4096.
    pub max_members: usize,
    /// Groups one coordinator serves. Default 1024.
    pub max_groups: usize,
    /// Groups one node joins as a member (also the refusals a coordinator
    /// keeps owed to one peer). Default 64.
    pub max_joined: usize,
    /// Longest group name in bytes. Default 128.
    pub max_group_len: usize,
    /// Test only: members report their assignment even after the lease
    /// lapsed (the planted bug the simulator must catch).
    #[doc(hidden)]
    pub ignore_lease: bool,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            coordinator: false,
            settle: Duration::from_secs(3),
            max_settle: Duration::from_secs(15),
            renew_interval: Duration::from_millis(500),
            lease: Duration::from_secs(2),
            drift_margin: Duration::from_millis(500),
            member_timeout: Duration::from_secs(3),
            max_members: 4096,
            max_groups: 1024,
            max_joined: 64,
            max_group_len: 128,
            ignore_lease: false,
        }
    }
}

impl MembershipConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(bool, &'static str); 6] = [
            (!self.settle.is_zero(), "membership.settle must be > 0"),
            (self.max_settle >= self.settle, "membership.max_settle must be >= settle"),
            (!self.renew_interval.is_zero(), "membership.renew_interval must be > 0"),
            (self.lease > self.renew_interval, "membership.lease must exceed renew_interval"),
            (
                self.member_timeout >= self.lease + self.drift_margin,
                "membership.member_timeout must be >= lease + drift_margin",
            ),
            (self.max_members > 0 && self.max_group_len > 0, "membership limits must be > 0"),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(ConfigError(why)),
            None => Ok(()),
        }
    }
}

/// Counters of the membership plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MembershipStats {
    /// Join frames sent (first joins and heartbeats).
    pub joins_sent: u64,
    /// Join frames received as a coordinator.
    pub joins_received: u64,
    /// Assignments received as a member.
    pub assigned: u64,
    /// Leases that lapsed unrenewed.
    pub leases_lost: u64,
    /// Epochs settled as a coordinator.
    pub settled: u64,
    /// Frames ignored: answers for a group this node no longer waits on,
    /// or older than an answer already taken.
    pub ignored: u64,
}
