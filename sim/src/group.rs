//! Membership groups in simulated scenarios: which machine coordinates,
//! which machines join, and the membership timers they all run with.

use crate::config::NodeSetup;
use crate::rng::Rng;
use std::time::Duration;

/// The group name every simulated member joins.
pub const GROUP: &str = "g";

/// One group in a scenario: a coordinator and its members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupPlan {
    /// The coordinator's machine.
    pub coordinator: usize,
    /// The members' machines (never the coordinator).
    pub members: Vec<usize>,
    /// Test only: members ignore their lease (the planted bug).
    pub ignore_lease: bool,
}

/// Membership timers of simulated nodes, microseconds: short, so partitions
/// and pauses of the fault window outlast a member timeout plus a settle.
pub(crate) const RENEW_US: u64 = 50_000;
pub(crate) const LEASE_US: u64 = 300_000;
/// Covers the drift the faults draw (±2% per clock: 4% of the lease is 12 ms).
pub(crate) const DRIFT_MARGIN_US: u64 = 50_000;
pub(crate) const TIMEOUT_US: u64 = LEASE_US + DRIFT_MARGIN_US;
/// At least lease + margin, so a restarted coordinator's wait hides in it.
pub(crate) const SETTLE_US: u64 = 400_000;
pub(crate) const MAX_SETTLE_US: u64 = 1_500_000;

impl GroupPlan {
    /// A group among `n` machines: machine 0 coordinates (every topology
    /// makes it a neighbour of all), a random non-empty subset joins.
    pub(crate) fn draw(r: &mut Rng, n: usize) -> Option<GroupPlan> {
        if n < 2 {
            return None;
        }
        let mut members: Vec<usize> = (1..n).filter(|_| r.chance(700)).collect();
        if members.is_empty() {
            members.push(1 + r.below(n as u64 - 1) as usize);
        }
        Some(GroupPlan { coordinator: 0, members, ignore_lease: false })
    }

    /// Sets the membership configuration of every machine's node.
    pub(crate) fn configure(&self, nodes: &mut [NodeSetup]) {
        for (slot, s) in nodes.iter_mut().enumerate() {
            let m = &mut s.config.membership;
            m.coordinator = slot == self.coordinator;
            m.renew_interval = Duration::from_micros(RENEW_US);
            m.lease = Duration::from_micros(LEASE_US);
            m.drift_margin = Duration::from_micros(DRIFT_MARGIN_US);
            m.member_timeout = Duration::from_micros(TIMEOUT_US);
            m.settle = Duration::from_micros(SETTLE_US);
            m.max_settle = Duration::from_micros(MAX_SETTLE_US);
            m.ignore_lease = self.ignore_lease;
        }
    }

    /// How long after the last change every member must be settled: the
    /// member timeout (a ghost of a restarted member goes), the settle
    /// period, two renewals.
    pub(crate) fn settle_bound_us(&self) -> u64 {
        TIMEOUT_US + MAX_SETTLE_US + 2 * RENEW_US
    }
}
