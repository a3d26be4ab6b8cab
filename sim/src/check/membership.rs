//! The membership plane's observer.
//!
//! Safety, checked after every simulator step on virtual (real) time, from
//! what each member's node reports at its own clock's reading
//! (`current_at`), paused processes included:
//! - no two members report the same index at once;
//! - members that report one epoch report the same total, and an index
//!   below it (an older epoch may still be reported while its lease runs);
//! - the epochs a member reports never go down, and the epochs a
//!   coordinator settles strictly increase.
//!
//! Liveness (the scenario asks after healing, `Sim::group_settled` and
//! `Sim::group_late`): every member reports, in one epoch, the indexes
//! `0..members`, and does so by `settle` plus two renewals (and a round trip)
//! after the later of the last change at the coordinator and the last
//! member's connection.

use super::{Cx, Observer};
use crate::net::ProcId;
use estafeta_core::{Assignment, Event, MembershipEvent};
use std::collections::BTreeMap;

/// What each process reported and settled.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    /// Per process: the highest epoch it reported as a member.
    reported: Vec<u64>,
    /// Per process: the last epoch it settled as a coordinator.
    settled_epoch: Vec<u64>,
    /// Reports checked (for the sweep's figures).
    pub(crate) checks: u64,
    /// When a coordinator last saw a member join or leave.
    pub(crate) last_change: u64,
    /// Per process: when it last saw a peer come up or a dial connect.
    pub(crate) last_up: Vec<u64>,
}

impl Membership {
    /// The reports of every running member at this instant.
    pub(crate) fn check_reports(&mut self, cx: &mut Cx<'_>, reports: &[(ProcId, Assignment)]) {
        self.checks += 1;
        let mut by_index: BTreeMap<u32, ProcId> = BTreeMap::new();
        let mut totals: BTreeMap<u64, (u32, ProcId)> = BTreeMap::new();
        for (p, a) in reports {
            if let Some(other) = by_index.insert(a.index, *p) {
                cx.fail(format!("{} and {} both report index {} ({a:?})", cx.who(other), cx.who(*p), a.index));
            }
            if a.index >= a.total {
                cx.fail(format!("{} reports index {} of {}", cx.who(*p), a.index, a.total));
            }
            match totals.get(&a.epoch) {
                Some((t, q)) if *t != a.total => cx.fail(format!(
                    "epoch {}: {} reports total {t} but {} reports {}",
                    a.epoch,
                    cx.who(*q),
                    cx.who(*p),
                    a.total
                )),
                _ => {
                    totals.insert(a.epoch, (a.total, *p));
                }
            }
            let seen = &mut self.reported[*p as usize];
            if a.epoch < *seen {
                cx.fail(format!("{} reports epoch {} after {}", cx.who(*p), a.epoch, *seen));
            }
            *seen = (*seen).max(a.epoch);
        }
    }
}

impl Observer for Membership {
    fn on_start(&mut self, _p: ProcId) {
        self.reported.push(0);
        self.settled_epoch.push(0);
        self.last_up.push(0);
    }

    fn on_event(&mut self, cx: &mut Cx<'_>, p: ProcId, ev: &Event) {
        if let Event::PeerUp { .. } | Event::Dial(estafeta_core::DialEvent::Connected { .. }) = ev {
            self.last_up[p as usize] = cx.now;
        }
        let Event::Membership(m) = ev else { return };
        match m {
            MembershipEvent::Settled { epoch, total, .. } => {
                let last = &mut self.settled_epoch[p as usize];
                if *epoch <= *last {
                    cx.fail(format!("{} settled epoch {epoch} after {last}", cx.who(p)));
                }
                *last = *epoch;
                if *total == 0 {
                    cx.fail(format!("{} settled an empty group", cx.who(p)));
                }
            }
            MembershipEvent::Refused { reason, .. } => {
                cx.fail(format!("{} was refused: {reason} (no limit is reached in the simulator)", cx.who(p)));
            }
            MembershipEvent::MemberJoined { .. } | MembershipEvent::MemberLeft { .. } => self.last_change = cx.now,
            MembershipEvent::Assigned { .. } | MembershipEvent::Settling { .. } | MembershipEvent::LeaseLost { .. } => {
            }
        }
    }
}
