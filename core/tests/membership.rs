//! The membership plane on the in-memory network: settling, sticky indexes,
//! timeouts, leases, coordinator restarts, refusals.

mod common;

use common::{config_with, Net};
use estafeta_core::wire::RefuseReason;
use estafeta_core::{Assignment, CommandError, Config, Event, LeftReason, MembershipEvent, Node, NodeId, Timestamp};
use std::collections::BTreeSet;
use std::time::Duration;

const G: &str = "workers";

fn cfg(seed: u64, coordinator: bool) -> Config {
    config_with(seed, |c| {
        c.membership.coordinator = coordinator;
        c.membership.settle = Duration::from_millis(300);
        c.membership.max_settle = Duration::from_millis(1000);
        c.membership.renew_interval = Duration::from_millis(50);
        c.membership.lease = Duration::from_millis(200);
        c.membership.drift_margin = Duration::from_millis(50);
        c.membership.member_timeout = Duration::from_millis(300);
    })
}

fn node(seed: u64, coordinator: bool) -> Node {
    Node::with_id(cfg(seed, coordinator), NodeId::from_u128(seed as u128 + 100), &format!("n{seed}")).unwrap()
}

/// Coordinator in slot 0, `n` members in slots 1..=n, all joined.
fn group(n: usize) -> Net {
    let mut nodes = vec![node(0, true)];
    nodes.extend((1..=n).map(|i| node(i as u64, false)));
    let mut net = Net::new(nodes);
    for i in 1..=n {
        net.node(i).join(G, Net::addr(0)).unwrap();
    }
    net
}

fn current(net: &mut Net, i: usize) -> Option<Assignment> {
    let now = net.now;
    net.slots[i].node.as_ref()?.membership_ref().current_at(G, now)
}

/// Every listed member reports, all in one epoch and total, indexes 0..total.
fn assert_settled(net: &mut Net, members: &[usize]) -> Vec<Assignment> {
    let a: Vec<Assignment> =
        members.iter().map(|i| current(net, *i).unwrap_or_else(|| panic!("member {i} unassigned"))).collect();
    let total = members.len() as u32;
    assert!(a.iter().all(|x| x.total == total && x.epoch == a[0].epoch), "{a:?}");
    let idx: BTreeSet<u32> = a.iter().map(|x| x.index).collect();
    assert_eq!(idx, (0..total).collect(), "{a:?}");
    a
}

fn view(a: &[Assignment]) -> Vec<(u32, u32, u64)> {
    a.iter().map(|x| (x.index, x.total, x.epoch)).collect()
}

fn member_events(net: &Net, i: usize) -> Vec<MembershipEvent> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| if let Event::Membership(m) = e { Some(m.clone()) } else { None })
        .collect()
}

#[test]
fn three_members_settle_to_distinct_indexes() {
    let mut net = group(3);
    net.run_for(Duration::from_millis(100));
    assert!((1..=3).all(|i| current(&mut net, i).is_none()), "nothing before the group settles");
    net.run_for(Duration::from_millis(500));
    let a = view(&assert_settled(&mut net, &[1, 2, 3]));
    // Kept while the coordinator keeps confirming.
    net.run_for(Duration::from_secs(2));
    assert_eq!(view(&assert_settled(&mut net, &[1, 2, 3])), a);
    let groups = net.node(0).membership_ref().groups();
    assert_eq!((groups.len(), groups[0].total, groups[0].settling), (1, 3, false));
    assert!(member_events(&net, 1).iter().any(|e| matches!(e, MembershipEvent::Assigned { .. })));
}

#[test]
fn a_crashed_member_is_removed_and_at_most_one_member_moves() {
    let mut net = group(4);
    net.run_for(Duration::from_millis(800));
    let before = assert_settled(&mut net, &[1, 2, 3, 4]);
    // Crash the member holding index 1: only the holder of 3 moves.
    let victim = 1 + before.iter().position(|a| a.index == 1).unwrap();
    net.crash(victim);
    let crashed_at = net.now;
    let live: Vec<usize> = (1..=4).filter(|i| *i != victim).collect();
    net.run_for(Duration::from_millis(250));
    let timeout = Duration::from_millis(300);
    net.run_until(crashed_at + timeout + Duration::from_millis(60));
    let left = net.slots[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Membership(MembershipEvent::MemberLeft { reason: LeftReason::Timeout, .. })));
    assert!(left, "removed within timeout + one interval");
    net.run_for(Duration::from_millis(800));
    let after = assert_settled(&mut net, &live);
    assert!(after[0].epoch > before[0].epoch);
    let moved = live.iter().zip(&after).filter(|(i, a)| before[**i - 1].index != a.index).count();
    assert!(moved <= 1, "moved {moved}: {before:?} -> {after:?}");
}

#[test]
fn a_member_cut_from_its_coordinator_reports_none_within_its_lease() {
    let mut net = group(2);
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1, 2]);
    // The coordinator goes silent (its sockets stay open).
    net.slots[0].frozen = true;
    let cut = net.now;
    net.run_until(cut + Duration::from_millis(200));
    assert_eq!(current(&mut net, 1), None, "lease lapsed");
    assert_eq!(current(&mut net, 2), None);
    assert!(member_events(&net, 1).iter().any(|e| matches!(e, MembershipEvent::LeaseLost { .. })));
    // Back: the group is confirmed again with the same indexes.
    net.slots[0].frozen = false;
    net.run_for(Duration::from_secs(2));
    assert_settled(&mut net, &[1, 2]);
}

#[test]
fn a_restarted_coordinator_keeps_indexes_and_raises_the_epoch() {
    let mut net = group(3);
    net.run_for(Duration::from_millis(800));
    let before = assert_settled(&mut net, &[1, 2, 3]);
    // Wiped restart with the same id: no state survives.
    net.restart(0, node(0, true));
    net.run_for(Duration::from_secs(3));
    let after = assert_settled(&mut net, &[1, 2, 3]);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.index, a.index, "{before:?} -> {after:?}");
        assert!(a.epoch > b.epoch);
    }
}

#[test]
fn a_leaving_member_stops_reporting_at_once_and_the_group_resettles() {
    let mut net = group(3);
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1, 2, 3]);
    assert!(net.node(3).membership().leave(G));
    assert_eq!(current(&mut net, 3), None);
    net.run_for(Duration::from_millis(50));
    let left = net.slots[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Membership(MembershipEvent::MemberLeft { reason: LeftReason::Left, .. })));
    assert!(left);
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1, 2]);
}

#[test]
fn joins_over_the_limits_are_refused_with_a_reason() {
    let mut nodes = vec![Node::with_id(
        config_with(0, |c| {
            c.membership.coordinator = true;
            c.membership.max_members = 1;
        }),
        NodeId::from_u128(100),
        "coord",
    )
    .unwrap()];
    nodes.push(node(1, false));
    nodes.push(node(2, false));
    nodes.push(node(3, false));
    let mut net = Net::new(nodes);
    net.node(1).join(G, Net::addr(0)).unwrap();
    net.run_for(Duration::from_millis(50));
    net.node(2).join(G, Net::addr(0)).unwrap();
    // A node that is not a coordinator refuses too.
    net.node(3).join(G, Net::addr(1)).unwrap();
    net.run_for(Duration::from_millis(100));
    let refused = |net: &Net, i: usize| {
        member_events(net, i).into_iter().find_map(|e| match e {
            MembershipEvent::Refused { reason, .. } => Some(reason),
            _ => None,
        })
    };
    assert_eq!(refused(&net, 2), Some(RefuseReason::GroupFull));
    assert_eq!(refused(&net, 3), Some(RefuseReason::NotCoordinator));
    assert_eq!(refused(&net, 1), None);
    assert!(net.node(2).membership_ref().joined().is_empty(), "a refused membership ends");
    // Local limits are command errors.
    assert!(matches!(net.node(1).join("", Net::addr(0)), Err(CommandError::BadGroup(_))));
    assert!(matches!(net.node(1).join(G, Net::addr(0)), Err(CommandError::AlreadyJoined(_))));
    let _ = Timestamp::ZERO;
}

#[test]
fn a_member_restarted_with_its_id_is_assigned_again_at_once() {
    let mut net = group(3);
    net.run_for(Duration::from_millis(800));
    let before = assert_settled(&mut net, &[1, 2, 3]);
    // Let the member's Join numbers grow well past where a new process starts.
    net.run_for(Duration::from_secs(2));
    net.restart(2, node(2, false));
    net.node(2).join(G, Net::addr(0)).unwrap();
    // Back within the member timeout: no change for the coordinator, so the
    // new process is confirmed on its index without a settle.
    net.run_for(Duration::from_millis(150));
    let after = assert_settled(&mut net, &[1, 2, 3]);
    assert_eq!(view(&before), view(&after));
}

#[test]
fn hostile_frames_are_refused_not_obeyed() {
    use estafeta_core::wire::{encode_frame, Header, MembershipFrame};
    let mut net = group(1);
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1]);
    // A hand-made peer claims an index beyond the total to the member.
    let conn = net.accept_fake(1).unwrap();
    let mut b = common::handshake_bytes(999, "evil", &[]);
    let f = MembershipFrame::Assigned { group: G, seq: 1, index: 5, total: 2, epoch: 9 };
    encode_frame(&mut b, &Header::Membership(f), &[]);
    net.inject(1, conn, &b);
    net.settle();
    let refused = net.slots[1].events.iter().any(|e| matches!(e, Event::ProtocolViolation { .. }));
    // The fake announced no membership capability: refused either way.
    assert!(refused);
    assert_eq!(current(&mut net, 1).map(|a| a.index), Some(0));
}

#[test]
fn a_restarted_member_ignores_answers_to_joins_of_its_previous_process() {
    let mut net = group(3);
    net.run_for(Duration::from_millis(800));
    // Many Joins from the first process of member 2.
    net.run_for(Duration::from_secs(2));
    net.restart(2, node(2, false));
    net.node(2).join(G, Net::addr(0)).unwrap();
    // Before the new process's first Join arrives, another member leaves:
    // the coordinator tells every member it settles, echoing the old
    // process's last Join number to the new one.
    assert!(net.node(3).membership().leave(G));
    net.run_for(Duration::from_secs(1));
    assert_settled(&mut net, &[1, 2]);
}

#[test]
fn a_closing_member_leaves_its_groups_before_it_says_goodbye() {
    let mut net = group(2);
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1, 2]);
    net.node(2).close();
    assert_eq!(current(&mut net, 2), None, "nothing reported once closing");
    net.run_for(Duration::from_millis(20));
    let left = net.slots[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Membership(MembershipEvent::MemberLeft { reason: LeftReason::Left, .. })));
    assert!(left, "left, not timed out");
    net.run_for(Duration::from_millis(800));
    assert_settled(&mut net, &[1]);
}

/// The member's dial to its coordinator can lose to the coordinator's own:
/// the answer to it is slow, and by the time it comes the member has had a
/// session on the coordinator's connection, lost it, and begun another, so
/// the dial closes as stale. The membership then joins on the session that
/// won (it never joined: simulator heavy seed 967, with a timing shift),
/// and the member's target, parked while that session lives, dials again
/// once it is gone (it stayed parked: nothing told it whom it reached).
#[test]
fn a_join_whose_dial_turned_stale_joins_on_the_session_that_won_and_redials_later() {
    let mut net = Net::new(vec![node(0, true), node(1, false)]);
    net.node(1).join(G, Net::addr(0)).unwrap();
    net.step();
    let (dialed, _) = net.conns_of(1)[0];
    net.hold(1, dialed, true);
    net.settle();
    let back = net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    let theirs = net.conns_of(1).into_iter().map(|(c, _)| c).find(|c| *c != dialed).expect("the coordinator's dial");
    net.reset(1, theirs);
    net.run_for(Duration::from_millis(400));
    net.hold(1, dialed, false);
    net.run_for(Duration::from_millis(1000));
    assert!(!net.conns_of(1).iter().any(|(c, _)| *c == dialed), "the member's dial closed as stale");
    let a = current(&mut net, 1).expect("joined on the coordinator's connection");
    assert_eq!((a.index, a.total), (0, 1));
    // The coordinator stops dialing: only the member's target can bring
    // the session back.
    net.node(0).disconnect(back);
    net.run_for(Duration::from_millis(3000));
    let a = current(&mut net, 1).expect("the member redialed and joined again");
    assert_eq!((a.index, a.total), (0, 1));
    assert!(net.conns_of(1).iter().any(|(c, _)| *c > theirs), "on a connection the member dialed");
}

/// A member the coordinator already dialed (and which knows where the
/// coordinator listens) joins on that connection at once: its join opens
/// no second connection.
#[test]
fn a_member_the_coordinator_dialed_joins_on_that_connection() {
    let mut net = Net::new(vec![node(0, true), node(1, false)]);
    for i in 0..2 {
        net.node(i).set_listen_addr("mem", i as u16);
    }
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    let target = net.node(1).join(G, Net::addr(0)).unwrap();
    assert_eq!(net.node(1).target_peer(target).map(|p| p.id), Some(net.node(0).id()));
    net.run_for(Duration::from_millis(1000));
    let a = current(&mut net, 1).expect("joined on the coordinator's connection");
    assert_eq!((a.index, a.total), (0, 1));
    assert_eq!(net.conns_of(1).len(), 1, "no second connection");
}
