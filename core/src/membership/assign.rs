//! Sticky assignment: a pure function from the members' claims to indexes.
//!
//! Every member gets one index in `0..n` (n = members). A member keeps the
//! index it claims when that index is `< n` and no stronger claim takes it;
//! only the others move, into the holes, lowest hole first; newcomers (no
//! claim) come last, in member order.

use crate::id::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// What a member asks to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Claim {
    /// The index it holds in the coordinator's last settled epoch.
    Current(u32),
    /// The index (and its epoch) it held before the coordinator restarted.
    Hint(u32, u64),
    /// A newcomer.
    None,
}

impl Claim {
    fn index(self) -> Option<u32> {
        match self {
            Claim::Current(i) | Claim::Hint(i, _) => Some(i),
            Claim::None => None,
        }
    }

    /// Higher wins a contested index: a current index over any hint, a hint
    /// of a later epoch over an earlier one.
    fn strength(self) -> (u8, u64) {
        match self {
            Claim::Current(_) => (2, u64::MAX),
            Claim::Hint(_, e) => (1, e),
            Claim::None => (0, 0),
        }
    }
}

/// Assigns `0..members.len()` to `members` (each once), keeping every claim
/// that is below the total and not beaten by a stronger claim (ties go to
/// the lower node id).
pub(crate) fn assign(members: &[(NodeId, Claim)]) -> BTreeMap<NodeId, u32> {
    let total = members.len() as u64;
    // Strongest claims first, so each index goes to its strongest claimant.
    let mut order: Vec<&(NodeId, Claim)> = members.iter().collect();
    order.sort_by(|a, b| b.1.strength().cmp(&a.1.strength()).then(a.0.cmp(&b.0)));
    let mut out = BTreeMap::new();
    let mut taken = BTreeSet::new();
    let mut movers = Vec::new();
    for (id, claim) in order {
        match claim.index() {
            Some(i) if u64::from(i) < total && taken.insert(i) => {
                out.insert(*id, i);
            }
            _ => movers.push((*id, *claim)),
        }
    }
    // Members that had an index move first (in the order of their old
    // index), then newcomers in id order.
    movers.sort_by_key(|(id, c)| (c.index().is_none(), c.index(), *id));
    let mut holes = (0..members.len() as u32).filter(|i| !taken.contains(i));
    for (id, _) in movers {
        if let Some(h) = holes.next() {
            out.insert(id, h);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u64) -> NodeId {
        NodeId::from_u128(u128::from(n) + 1)
    }

    #[test]
    fn newcomer_takes_the_next_free_index_and_others_stay() {
        let m = [(id(5), Claim::Current(0)), (id(1), Claim::Current(1)), (id(9), Claim::None)];
        let a = assign(&m);
        assert_eq!((a[&id(5)], a[&id(1)], a[&id(9)]), (0, 1, 2));
    }

    #[test]
    fn only_members_above_the_new_total_move() {
        // Index 1 left: the holder of 3 moves into the hole, 0 and 2 stay.
        let m = [(id(1), Claim::Current(0)), (id(2), Claim::Current(2)), (id(3), Claim::Current(3))];
        let a = assign(&m);
        assert_eq!((a[&id(1)], a[&id(2)], a[&id(3)]), (0, 2, 1));
    }

    #[test]
    fn the_later_hint_wins_a_contested_index() {
        let m = [(id(1), Claim::Hint(0, 3)), (id(2), Claim::Hint(0, 7))];
        let a = assign(&m);
        assert_eq!((a[&id(1)], a[&id(2)]), (1, 0));
    }

    fn claim() -> impl Strategy<Value = Claim> {
        prop_oneof![
            (0u32..12).prop_map(Claim::Current),
            (0u32..12, 0u64..4).prop_map(|(i, e)| Claim::Hint(i, e)),
            Just(Claim::None),
        ]
    }

    proptest! {
        #[test]
        fn assignment_is_a_permutation_and_sticky(claims in proptest::collection::vec(claim(), 0..10)) {
            let members: Vec<(NodeId, Claim)> = claims.iter().enumerate().map(|(n, c)| (id(n as u64), *c)).collect();
            let a = assign(&members);
            let n = members.len() as u32;
            // Every member gets exactly one index, and 0..n is covered once.
            prop_assert_eq!(a.len(), members.len());
            let got: BTreeSet<u32> = a.values().copied().collect();
            prop_assert_eq!(got, (0..n).collect::<BTreeSet<u32>>());
            // A current index below the total is kept unless another
            // current claim to the same index had a lower id.
            for (m, c) in &members {
                if let Claim::Current(i) = c {
                    let beaten = members.iter().any(|(o, oc)| *oc == Claim::Current(*i) && o < m);
                    if *i < n && !beaten {
                        prop_assert_eq!(a[m], *i);
                    }
                }
            }
            // Nobody moves without a reason: the movers are exactly those
            // whose claim was absent, too high, or beaten.
            let kept = members.iter().filter(|(m, c)| c.index() == Some(a[m])).count();
            let distinct_valid: BTreeSet<u32> = members.iter().filter_map(|(_, c)| c.index()).filter(|i| *i < n).collect();
            prop_assert_eq!(kept, distinct_valid.len());
        }
    }
}
