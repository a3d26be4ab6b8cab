//! The discovery plane over the in-memory network: pairing through a root,
//! the connection limit on accept and on dial, relay exactly once.

mod common;

use common::{config_with, fast_config, Net};
use estafeta_core::*;
use std::time::Duration;

/// Slot 0 is the root (with `root_max` connections); slots 1.. subscribe to
/// `topic(i)` and join through the root only.
fn star(n: usize, root_max: usize, drop_root: bool, topic: impl Fn(usize) -> String) -> Net {
    star_with(n, root_max, drop_root, topic, |_| {})
}

/// [`star`], with `f` applied to every node's configuration.
fn star_with(
    n: usize,
    root_max: usize,
    drop_root: bool,
    topic: impl Fn(usize) -> String,
    f: impl Fn(&mut Config),
) -> Net {
    let nodes = (0..n)
        .map(|i| {
            let cfg = config_with(i as u64 + 1, |c| {
                c.discovery.root = i == 0;
                c.discovery.root_max_connections = root_max;
                c.discovery.drop_root_when_paired = drop_root;
                f(c);
            });
            let mut node = Node::new(cfg, &format!("n{i}")).unwrap();
            node.set_listen_addr("mem", i as u16);
            if i > 0 {
                node.pubsub().subscribe(&topic(i)).unwrap();
            }
            node
        })
        .collect();
    let mut net = Net::new(nodes);
    for i in 1..n {
        net.node(i).discovery().join(Net::addr(0)).unwrap();
    }
    net
}

fn conns(net: &mut Net, i: usize) -> usize {
    net.node(i).peers().count()
}

fn all_paired(net: &mut Net, from: usize) -> bool {
    (from..net.slots.len()).all(|i| {
        let n = net.node(i);
        n.discovery_ref().unpaired().is_empty()
    })
}

#[test]
fn nodes_that_know_only_the_root_pair_up_on_their_topics() {
    let mut net = star(16, 64, false, |i| format!("t{}", i % 5));
    net.run_for(Duration::from_secs(3));
    assert!(all_paired(&mut net, 1), "every topic has a peer");
    for i in 1..16 {
        let t = format!("t{}", i % 5);
        let n = net.node(i);
        assert!(n.discovery_ref().is_paired(&t));
        let ev = net.slots[i]
            .events
            .iter()
            .filter(|e| matches!(e, Event::Discovery(DiscoveryEvent::Paired { topic }) if topic.as_str() == t))
            .count();
        assert!(ev >= 1, "n{i} reported Paired");
    }
    // The root shares nothing: it only forwarded.
    assert_eq!(net.node(0).stats().discovery.dials, 0);
    assert!(net.node(0).stats().discovery.requests_forwarded > 0);
}

#[test]
fn a_root_limited_to_four_connections_still_gets_everyone_paired() {
    let n = 13;
    let mut net = star(n, 4, true, |i| format!("t{}", i % 3));
    let mut max_seen = 0;
    for _ in 0..300 {
        net.run_for(Duration::from_millis(100));
        max_seen = max_seen.max(conns(&mut net, 0));
        if all_paired(&mut net, 1) {
            break;
        }
    }
    assert!(
        all_paired(&mut net, 1),
        "unpaired: {:?}",
        (1..n).map(|i| net.node(i).discovery_ref().unpaired()).collect::<Vec<_>>()
    );
    assert!(max_seen <= 4, "the root held {max_seen} connections");
    assert!(net.node(0).stats().session.refused_over_limit > 0, "the limit was reached and refused with a goodbye");
}

#[test]
fn the_root_is_dropped_once_paired_and_traffic_keeps_flowing() {
    let mut net = star(3, 16, true, |_| "t".to_string());
    net.run_for(Duration::from_secs(3));
    assert!(all_paired(&mut net, 1));
    assert_eq!(conns(&mut net, 0), 0, "both dropped the root");
    assert!(net.node(1).stats().discovery.roots_dropped == 1);
    net.node(1).pubsub().publish("t", Bytes::from_static(b"hello"), SendMode::All).unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.messages(2), vec![("n1".to_string(), b"hello".to_vec())]);
}

/// The peers of slot `i` (other than the root, slot 0), by slot.
fn peer_slots(net: &mut Net, i: usize) -> Vec<usize> {
    let ids: Vec<NodeId> = net.node(i).peers().map(|p| p.id).collect();
    (1..net.slots.len()).filter(|&j| net.live(j) && ids.contains(&net.node(j).id())).collect()
}

#[test]
fn a_node_cut_off_after_its_root_restarted_finds_its_peers_again() {
    // n1..n4 share `t`, pair through the root and drop it. The root
    // restarts knowing nobody; then one node loses every link while the
    // others stay paired among themselves, so none of them asks for `t`
    // again and the root learns of nobody. The lone node must pair again
    // with the peers it met (it knows their addresses). Without sessions,
    // so that the lost links are not resumed.
    let no_sessions = |c: &mut Config| c.session.resume_window = Duration::ZERO;
    let mut tried = Vec::new();
    for lone in 1..5 {
        let mut net = star_with(5, 16, true, |_| "t".to_string(), no_sessions);
        net.run_for(Duration::from_secs(3));
        assert!(all_paired(&mut net, 1));
        let others_stay_paired =
            (1..5).filter(|&j| j != lone).all(|j| peer_slots(&mut net, j).iter().any(|&k| k != lone));
        if !others_stay_paired {
            continue;
        }
        tried.push(lone);
        let cfg = config_with(1, |c| {
            c.discovery.root = true;
            c.discovery.drop_root_when_paired = true;
            no_sessions(c);
        });
        let mut root = Node::new(cfg, "n0").unwrap();
        root.set_listen_addr("mem", 0);
        net.restart(0, root);
        for (c, _) in net.conns_of(lone) {
            net.reset(lone, c);
        }
        net.run_for(Duration::from_secs(5));
        assert!(
            net.node(lone).discovery_ref().is_paired("t"),
            "n{lone} is paired again (it dialed {} peers before)",
            net.node(lone).stats().discovery.dials
        );
        assert!(!peer_slots(&mut net, lone).is_empty());
    }
    eprintln!("cut off in turn: {tried:?}");
    assert!(tried.len() >= 2, "the pairing left few nodes to cut off: {tried:?}");
}

#[test]
fn a_restarted_root_learns_of_paired_nodes_again_and_refers_them() {
    // n1..n4 share `t`, pair and drop the root, which then restarts knowing
    // nobody. A new node comes for `t` through the root: the root can refer
    // it only to nodes that came back to refresh what it knows
    // (`root_refresh`), since paired nodes ask for nothing.
    let refresh = |every: Duration| {
        move |c: &mut Config| {
            c.discovery.root_refresh = every;
            c.session.resume_window = Duration::ZERO;
        }
    };
    for every in [Duration::from_secs(1), Duration::ZERO] {
        let mut net = star_with(6, 16, true, |i| if i == 5 { "other" } else { "t" }.to_string(), refresh(every));
        net.run_for(Duration::from_secs(3));
        assert!((1..5).all(|i| net.node(i).discovery_ref().is_paired("t")));
        let cfg = config_with(1, |c| {
            c.discovery.root = true;
            refresh(every)(c);
        });
        let mut root = Node::new(cfg, "n0").unwrap();
        root.set_listen_addr("mem", 0);
        net.restart(0, root);
        net.run_for(Duration::from_secs(3));
        // A new process in slot 5 (it never saw the others' requests).
        let mut n5 = Node::new(config_with(77, refresh(every)), "n5").unwrap();
        n5.set_listen_addr("mem", 5);
        n5.pubsub().subscribe("t").unwrap();
        n5.discovery().join(Net::addr(0)).unwrap();
        net.restart(5, n5);
        net.run_for(Duration::from_secs(3));
        let paired = net.node(5).discovery_ref().is_paired("t");
        assert_eq!(paired, !every.is_zero(), "with root_refresh {every:?}");
    }
}

#[test]
fn a_topic_is_never_paired_by_a_timeout_and_requests_back_off() {
    let mut net = star(3, 16, false, |i| format!("alone{i}"));
    net.run_for(Duration::from_secs(60));
    for i in 1..3 {
        let n = net.node(i);
        assert!(!n.discovery_ref().is_paired(&format!("alone{i}")));
        let sent = n.stats().discovery.requests_sent;
        // 250 ms doubling to a 10 s cap (with jitter down to half) over a
        // minute: a handful to about twenty, never one per tick.
        assert!((3..=25).contains(&sent), "n{i} sent {sent} requests");
    }
    let unpaired =
        net.slots[1].events.iter().filter(|e| matches!(e, Event::Discovery(DiscoveryEvent::Unpaired { .. }))).count();
    assert_eq!(unpaired, 1, "reported unpaired once");
}

#[test]
fn an_accept_over_the_limit_gets_a_goodbye_the_dialler_reports() {
    let mut net = Net::new(vec![
        Node::new(config_with(1, |c| c.session.max_connections = 1), "hub").unwrap(),
        Node::new(fast_config(2), "a").unwrap(),
        Node::new(fast_config(3), "b").unwrap(),
    ]);
    net.node(1).connect(Net::addr(0)).unwrap();
    net.settle();
    net.node(2).connect(Net::addr(0)).unwrap();
    net.settle();
    assert_eq!(conns(&mut net, 0), 1);
    let failed = net.slots[2].events.iter().find_map(|e| match e {
        Event::Dial(DialEvent::Failed { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    match failed {
        Some(CloseReason::Remote { code, reason }) => {
            assert_eq!(code, CloseCode::TRY_AGAIN_LATER);
            assert!(reason.contains("connection limit"), "{reason}");
        }
        other => panic!("expected a remote refusal, got {other:?}"),
    }
    assert_eq!(net.node(0).stats().session.refused_over_limit, 1);
    assert!(!net.slots[0].events.iter().any(|e| matches!(e, Event::PeerUp { peer, .. } if &*peer.name == "b")));
}

#[test]
fn a_redial_waits_while_the_node_is_at_its_limit() {
    let t = Timestamp::from_millis;
    let mut node = Node::new(config_with(1, |c| c.session.max_connections = 1), "x").unwrap();
    let target = node.connect("a@10.0.0.1:1".parse().unwrap()).unwrap();
    let Some(Action::Dial { conn, .. }) = node.poll_action() else { panic!("a dial") };
    node.handle_closed(t(1), conn, CloseReason::Io("refused".into()));
    // The one slot goes to an accepted connection before the redial is due.
    node.handle_accepted(t(2)).unwrap();
    node.handle_timeout(t(300));
    while let Some(a) = node.poll_action() {
        assert!(!matches!(a, Action::Dial { .. }), "dialled past the limit");
    }
    let deferred = std::iter::from_fn(|| node.poll_event()).any(|e| {
        matches!(e, Event::Dial(DialEvent::Failed { target: tg, reason: CloseReason::TooManyConnections, retry_in: Some(_), .. }) if tg == target)
    });
    assert!(deferred, "the redial is put off, with the reason");
    assert_eq!(node.connect("b@10.0.0.2:1".parse().unwrap()), Err(CommandError::TooManyConnections));
}

/// Three nodes subscribing to `t`, connected as `edges`, relaying `t`.
fn relay_net(edges: &[(usize, usize)], window: u32) -> Net {
    let nodes = (0..3)
        .map(|i| {
            let cfg = config_with(i as u64 + 10, |c| {
                c.pubsub.window_messages = window;
                c.pubsub.max_queued_frames_per_subscription = 2 * window as usize;
            });
            let mut n = Node::new(cfg, &format!("n{i}")).unwrap();
            n.pubsub().subscribe("t").unwrap();
            n.discovery().set_relay("t", true).unwrap();
            n
        })
        .collect();
    let mut net = Net::new(nodes);
    for (a, b) in edges {
        net.node(*a).connect(Net::addr(*b)).unwrap();
    }
    net.run_for(Duration::from_millis(50));
    net
}

/// Publishes `n` messages from slot 0 with relay identities, waiting for room.
fn relay_publish(net: &mut Net, n: u32) {
    let mut i = 0;
    while i < n {
        match net.node(0).discovery().publish("t", Bytes::from(i.to_be_bytes().to_vec())) {
            Ok(_) => i += 1,
            Err(PublishError::Full(_)) => net.run_for(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
    net.run_for(Duration::from_millis(200));
}

fn numbers(net: &Net, i: usize) -> Vec<u32> {
    net.messages(i).into_iter().map(|(_, p)| u32::from_be_bytes(p.try_into().unwrap())).collect()
}

#[test]
fn in_a_triangle_with_relay_each_message_arrives_once_and_never_back_at_its_origin() {
    let mut net = relay_net(&[(0, 1), (1, 2), (2, 0)], 64);
    relay_publish(&mut net, 3000);
    let want: Vec<u32> = (0..3000).collect();
    assert_eq!(numbers(&net, 1), want, "in origin order, once each");
    assert_eq!(numbers(&net, 2), want);
    assert!(numbers(&net, 0).is_empty());
    let (s1, s2) = (net.node(1).stats().discovery, net.node(2).stats().discovery);
    assert!(s1.relay_duplicates + s2.relay_duplicates > 0, "copies came by both paths");
    assert_eq!(net.node(0).stats().discovery.relay_returned, 0);
    assert_eq!(s1.relay_lost + s2.relay_lost, 0);
    for i in 0..3 {
        assert_eq!(net.node(i).stats().session.malformed, 0, "nobody sent past credit");
    }
}

#[test]
fn relay_reaches_a_subscriber_that_is_not_directly_connected() {
    // A line: n0 - n1 - n2, a window of 8 messages so relayed sends must wait for credit.
    let mut net = relay_net(&[(0, 1), (1, 2)], 8);
    relay_publish(&mut net, 500);
    let want: Vec<u32> = (0..500).collect();
    assert_eq!(numbers(&net, 2), want);
    assert!(net.slots[2].events.iter().all(|e| !matches!(e, Event::ProtocolViolation { .. })));
    assert_eq!(net.node(1).stats().discovery.relay_forwarded, 500);
}

#[test]
fn relayed_copies_resent_after_a_resume_keep_their_relay_identity() {
    // A line n0 - n1 - n2. n1 relays n0's messages to n2; their link is
    // cut while copies are written and not acknowledged, so n1 sends them
    // again after the resume: still copies relayed from n0, each with its
    // own number (the send log keeps their identity beside the payloads).
    let mut net = relay_net(&[(0, 1), (1, 2)], 64);
    let origin = net.node(0).id();
    let link =
        |net: &Net, i, j| net.conns_of(i).into_iter().find(|(_, e)| matches!(e, common::End::Node(k, _) if *k == j));
    let (to_n2, _) = link(&net, 2, 1).expect("n2 - n1");
    // What n1 writes to n2 stays in flight until the cut, which loses it.
    net.hold(2, to_n2, true);
    for i in 0..120u32 {
        net.node(0).discovery().publish("t", Bytes::from(i.to_be_bytes().to_vec())).unwrap();
    }
    net.settle();
    assert!(net.has_inflight_to(2, to_n2), "n1 wrote copies to n2 before the cut");
    net.reset(2, to_n2);
    net.hold(2, to_n2, false);
    net.run_for(Duration::from_secs(2));
    assert!(net.node(1).stats().pubsub.resent > 0, "copies were sent again after the resume");
    let got: Vec<(u32, Option<Relayed>)> = net.slots[2]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PubSub(PubSubEvent::Message(m)) => {
                Some((u32::from_be_bytes(m.payload[..].try_into().unwrap()), m.relayed))
            }
            _ => None,
        })
        .collect();
    assert_eq!(got.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..120).collect::<Vec<_>>(), "in order, once each");
    for (i, relayed) in got {
        let r = relayed.unwrap_or_else(|| panic!("message {i} arrived as a plain message"));
        assert_eq!((r.origin, r.seq, r.hops), (origin, u64::from(i) + 1, 1), "message {i}");
    }
    assert!(net.slots[2].events.iter().all(|e| !matches!(e, Event::ProtocolViolation { .. })));
}

#[test]
fn without_relay_a_subscriber_out_of_reach_gets_nothing() {
    let mut net = relay_net(&[(0, 1), (1, 2)], 64);
    net.node(1).discovery().set_relay("t", false).unwrap();
    relay_publish(&mut net, 10);
    assert_eq!(numbers(&net, 1).len(), 10);
    assert!(numbers(&net, 2).is_empty());
}

#[test]
fn a_peer_without_the_discovery_plane_gets_relayed_publishes_as_plain_messages() {
    let mut net = Net::new(vec![
        Node::new(fast_config(1), "a").unwrap(),
        Node::new(config_with(2, |c| c.capabilities = Capabilities::PUBSUB), "old").unwrap(),
    ]);
    net.node(1).pubsub().subscribe("t").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.run_for(Duration::from_millis(50));
    net.node(0).discovery().publish("t", Bytes::from_static(b"x")).unwrap();
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.messages(1), vec![("a".to_string(), b"x".to_vec())]);
    assert!(!net.slots.iter().flat_map(|s| &s.events).any(|e| matches!(e, Event::ProtocolViolation { .. })));
}

#[test]
fn a_relay_slows_its_upstream_and_reports_what_a_stalled_downstream_missed() {
    // A line n0 - n1 - n2 with small windows and a small queue at the
    // relay; n2's application stops reading for a while. The relay's
    // copies hold up to half of n0's window, so n0 must wait; they never
    // hold all of it (around a ring of relays that would stop everyone:
    // sim/tests/relay_ring.rs), so what n2 cannot take in time overflows
    // the relay's queue and is reported lost there.
    let mut net = relay_net(&[(0, 1), (1, 2)], 8);
    net.slots[2].stalled = true;
    let mut i = 0u32;
    let mut full = 0;
    while i < 200 {
        match net.node(0).discovery().publish("t", Bytes::from(i.to_be_bytes().to_vec())) {
            Ok(_) => i += 1,
            Err(PublishError::Full(_)) => {
                full += 1;
                net.run_for(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
        if i == 150 {
            net.slots[2].stalled = false;
        }
    }
    net.run_for(Duration::from_millis(300));
    assert!(full > 0, "the publisher had to wait");
    assert_eq!(numbers(&net, 1), (0..200).collect::<Vec<_>>(), "the relay itself got everything");
    let got = numbers(&net, 2);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in origin order, once each");
    assert!(!got.is_empty() && got.last() == Some(&199), "delivery went on after the stall");
    let lost = net.node(1).stats().discovery.relay_lost;
    assert!(lost > 0, "the stall outlasted what the relay's queue holds");
    assert_eq!(got.len() as u64 + lost, 200, "every copy the relay could not pass on is reported");
}
