//! Membership on real sockets: a coordinator node and member nodes, with a
//! member that is a real child process killed by SIGKILL.

use super::child::{self, Child};
use super::util::{fast_config, sleep, wait_until};
use estafeta_driver::{Config, GroupMember, Node, NodeId, Runtime};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const G: &str = "shards";
const RENEW: Duration = Duration::from_millis(100);
const LEASE: Duration = Duration::from_millis(600);
const TIMEOUT: Duration = Duration::from_millis(800);

fn cfg() -> Config {
    let mut c = fast_config();
    // Members restart with the same id: plaintext, where ids are chosen,
    // not proven (a secure node keeps its id by keeping its identity key;
    // the CLI tests run groups secure).
    c.security.mode = estafeta_driver::SecurityMode::Plaintext;
    let m = &mut c.membership;
    m.settle = Duration::from_millis(500);
    m.max_settle = Duration::from_secs(2);
    m.renew_interval = RENEW;
    m.lease = LEASE;
    m.drift_margin = Duration::from_millis(100);
    m.member_timeout = TIMEOUT;
    c
}

async fn coordinator<R: Runtime>(bind: &str) -> Node<R> {
    Node::<R>::builder("coord").bind(bind).config(cfg()).coordinator().build().await.expect("coordinator starts")
}

async fn member<R: Runtime>(name: &str, id: u128) -> Node<R> {
    Node::<R>::builder(name).no_listen().config(cfg()).id(NodeId::from_u128(id)).build().await.expect("member starts")
}

/// `(index, total, epoch)` of every member once all report one epoch with
/// the indexes `0..members`.
fn settled(members: &[GroupMember]) -> Option<Vec<(u32, u32, u64)>> {
    let a: Vec<_> = members.iter().map(|m| m.assignment()).collect::<Option<Vec<_>>>()?;
    let n = members.len() as u32;
    let one_epoch = a.iter().all(|x| x.epoch == a[0].epoch && x.total == n);
    let idx: BTreeSet<u32> = a.iter().map(|x| x.index).collect();
    (one_epoch && idx == (0..n).collect()).then(|| a.iter().map(|x| (x.index, x.total, x.epoch)).collect())
}

async fn wait_settled<R: Runtime>(members: &[GroupMember]) -> Vec<(u32, u32, u64)> {
    wait_until::<R>(|| settled(members).is_some(), "the group settles").await;
    settled(members).expect("checked")
}

pub async fn membership_three_members_settle_to_distinct_indexes<R: Runtime>() {
    let c = coordinator::<R>("127.0.0.1:0").await;
    let addr = c.address().unwrap().to_string();
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for i in 0..3 {
        let n = member::<R>(&format!("m{i}"), 10 + i).await;
        members.push(n.join(G, &addr).unwrap());
        nodes.push(n);
    }
    let a = wait_settled::<R>(&members).await;
    assert_eq!(a.iter().map(|x| x.0).collect::<BTreeSet<_>>(), BTreeSet::from([0, 1, 2]));
    let groups = c.groups();
    assert_eq!((groups.len(), groups[0].total, groups[0].members.len()), (1, 3, 3));
    // The stream told each member: settling, then its assignment.
    for (m, want) in members.iter_mut().zip(&a) {
        loop {
            match m.next_change().await.expect("a change") {
                estafeta_driver::MembershipEvent::Settling { .. } => continue,
                estafeta_driver::MembershipEvent::Assigned { assignment, .. } => {
                    assert_eq!((assignment.index, assignment.total, assignment.epoch), *want);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

pub async fn membership_a_killed_member_is_removed_and_at_most_one_moves<R: Runtime>() {
    const TEST: &str = "membership_a_killed_member_is_removed_and_at_most_one_moves";
    if child::role().is_some() {
        let addr = std::env::var("COORD").expect("COORD");
        let n = member::<R>("child", 1).await;
        let m = n.join(G, &addr).unwrap();
        wait_until::<R>(|| m.assignment().is_some(), "the child is assigned").await;
        println!("ASSIGNED {:?}", m.index_total());
        sleep::<R>(Duration::from_secs(50)).await;
        return;
    }
    let c = coordinator::<R>("127.0.0.1:0").await;
    let addr = c.address().unwrap().to_string();
    // The child has the lowest id: among members joining together it takes index 0.
    let mut kid = Child::spawn(TEST, "member", &[("COORD", &addr)]);
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for i in 0..3 {
        let n = member::<R>(&format!("m{i}"), 10 + i).await;
        members.push(n.join(G, &addr).unwrap());
        nodes.push(n);
    }
    kid.wait_line::<R>("ASSIGNED ", Duration::from_secs(20)).await;
    wait_until::<R>(|| c.groups().first().is_some_and(|g| g.total == 4 && !g.settling), "four members").await;
    // The coordinator settles before its assignments reach the members.
    let all_four = || members.iter().all(|m| m.assignment().is_some_and(|a| a.total == 4));
    wait_until::<R>(all_four, "every member assigned among four").await;
    let before: Vec<u32> = members.iter().map(|m| m.assignment().expect("assigned").index).collect();
    assert!(!before.contains(&0), "the child holds index 0: {before:?}");
    assert!(kid.kill(), "SIGKILL");
    let killed = Instant::now();
    let gone = || c.groups().first().is_some_and(|g| !g.members.iter().any(|(id, _)| *id == NodeId::from_u128(1)));
    wait_until::<R>(gone, "the killed member is removed").await;
    let took = killed.elapsed();
    assert!(took <= TIMEOUT + RENEW, "removed after {took:?} (timeout {TIMEOUT:?} + one interval {RENEW:?})");
    let after = wait_settled::<R>(&members).await;
    let moved = before.iter().zip(&after).filter(|(b, a)| **b != a.0).count();
    assert_eq!(moved, 1, "only the holder of the last index moves: {before:?} -> {after:?}");
}

pub async fn membership_a_member_cut_from_its_coordinator_reports_none_within_its_lease<R: Runtime>() {
    let c = coordinator::<R>("127.0.0.1:0").await;
    let addr = c.address().unwrap().to_string();
    let n = member::<R>("m", 10).await;
    let m = n.join(G, &addr).unwrap();
    wait_settled::<R>(std::slice::from_ref(&m)).await;
    // Confirmations keep coming while connected.
    sleep::<R>(LEASE * 2).await;
    assert!(m.assignment().is_some());
    c.abort().await;
    let cut = Instant::now();
    wait_until::<R>(|| m.assignment().is_none(), "the lease lapses").await;
    let took = cut.elapsed();
    assert!(took <= LEASE + Duration::from_millis(100), "reported for {took:?} after the cut (lease {LEASE:?})");
}

pub async fn membership_a_restarted_coordinator_keeps_indexes_with_a_higher_epoch<R: Runtime>() {
    let c = coordinator::<R>("127.0.0.1:0").await;
    let addr = c.address().unwrap();
    let bind = format!("{}:{}", addr.host, addr.port);
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for i in 0..3 {
        let n = member::<R>(&format!("m{i}"), 10 + i).await;
        members.push(n.join(G, &addr.to_string()).unwrap());
        nodes.push(n);
    }
    let before = wait_settled::<R>(&members).await;
    c.abort().await;
    drop(c);
    // A new process on the same address, knowing nothing.
    let c2 = coordinator::<R>(&bind).await;
    wait_until::<R>(|| settled(&members).is_some_and(|a| a[0].2 > before[0].2), "settled again in a higher epoch")
        .await;
    let after = settled(&members).expect("checked");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.0, a.0, "same index: {before:?} -> {after:?}");
    }
    assert_eq!(c2.groups()[0].total, 3);
}

pub async fn membership_200_members_on_one_coordinator_settle<R: Runtime>() {
    let c = coordinator::<R>("127.0.0.1:0").await;
    let addr = c.address().unwrap().to_string();
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    for i in 0..200u128 {
        let n = member::<R>(&format!("m{i}"), 1000 + i).await;
        members.push(n.join(G, &addr).unwrap());
        nodes.push(n);
    }
    let a = wait_settled::<R>(&members).await;
    assert_eq!(a.len(), 200);
    assert_eq!(c.groups()[0].total, 200);
}
