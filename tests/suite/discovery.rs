//! Discovery and relay on real sockets: nodes that know only a root find the
//! peers that share their topics; the connection limit refuses with a
//! reason; relay delivers exactly once.

use super::util::{fast_config, sleep, wait_until};
use estafeta_driver::{CloseCode, CloseReason, Config, DialEvent, Error, Event, Node, NodeId, Runtime};
use std::collections::BTreeSet;
use std::time::Duration;

fn discovery_config() -> Config {
    let mut c = fast_config();
    c.discovery.retry_base = Duration::from_millis(20);
    c.discovery.retry_cap = Duration::from_millis(300);
    c
}

async fn root<R: Runtime>(limit: usize) -> Node<R> {
    Node::<R>::builder("root").config(discovery_config()).root(limit).build().await.unwrap()
}

async fn member<R: Runtime>(i: usize, root: &Node<R>, topic: &str, drop_root: bool) -> Node<R> {
    Node::<R>::builder(format!("m{i}"))
        .config(discovery_config())
        .subscribe(topic)
        .discover_via(root.address().unwrap().to_string())
        .drop_root_when_paired(drop_root)
        .build()
        .await
        .unwrap()
}

pub async fn thirty_nodes_knowing_only_a_root_pair_up_on_five_topics<R: Runtime>() {
    let root = root::<R>(64).await;
    let mut nodes = Vec::new();
    for i in 0..30 {
        nodes.push(member::<R>(i, &root, &format!("t{}", i % 5), false).await);
    }
    for (i, n) in nodes.iter().enumerate() {
        n.wait_paired(&format!("t{}", i % 5), Duration::from_secs(20)).await.unwrap();
    }
    assert!(nodes.iter().all(|n| n.unpaired().is_empty()));
    // A topic nobody else has is never paired, however long one waits.
    let alone = member::<R>(99, &root, "nobody-else", false).await;
    match alone.wait_paired("nobody-else", Duration::from_millis(500)).await {
        Err(Error::NotPaired(t)) => assert_eq!(t.as_str(), "nobody-else"),
        other => panic!("expected NotPaired, got {other:?}"),
    }
    assert!(!alone.is_paired("nobody-else"));
    for n in nodes.iter().chain([&alone, &root]) {
        n.close().await;
    }
}

pub async fn a_root_limited_to_four_connections_still_gets_everyone_paired<R: Runtime>() {
    let root = root::<R>(4).await;
    let mut nodes = Vec::new();
    for i in 0..12 {
        nodes.push(member::<R>(i, &root, &format!("t{}", i % 3), true).await);
    }
    let mut most = 0;
    for _ in 0..2000 {
        most = most.max(root.peers().len());
        if nodes.iter().all(|n| n.unpaired().is_empty()) {
            break;
        }
        sleep::<R>(Duration::from_millis(10)).await;
    }
    let unpaired: Vec<_> = nodes.iter().map(|n| n.unpaired()).collect();
    assert!(unpaired.iter().all(|u| u.is_empty()), "unpaired: {unpaired:?}");
    assert!(most <= 4, "the root held {most} peers");
    assert!(root.stats().session.refused_over_limit > 0, "joiners past the limit were refused with a goodbye");
    for n in nodes.iter().chain([&root]) {
        n.close().await;
    }
}

pub async fn the_root_dropped_after_pairing_traffic_keeps_flowing<R: Runtime>() {
    let root = root::<R>(16).await;
    let a = member::<R>(1, &root, "t", true).await;
    let b = member::<R>(2, &root, "t", true).await;
    let mut sub = b.subscribe("t").unwrap();
    a.wait_paired("t", Duration::from_secs(10)).await.unwrap();
    b.wait_paired("t", Duration::from_secs(10)).await.unwrap();
    wait_until::<R>(|| root.peers().is_empty(), "both dropped the root").await;
    assert!(a.stats().discovery.roots_dropped >= 1);
    a.wait_for_subscribers("t", 1).await.unwrap();
    for i in 0..100u32 {
        a.publish("t", i.to_be_bytes().to_vec()).await.unwrap();
    }
    for i in 0..100u32 {
        let m = sub.recv().await.unwrap();
        assert_eq!(m.payload[..], i.to_be_bytes());
    }
    assert!(a.is_paired("t") && b.is_paired("t"));
    for n in [&a, &b, &root] {
        n.close().await;
    }
}

pub async fn a_triangle_with_relay_delivers_each_message_once_and_never_back<R: Runtime>() {
    const N: u32 = 10_000;
    let mut nodes = Vec::new();
    let mut subs = Vec::new();
    for i in 0..3 {
        let n = Node::<R>::builder(format!("r{i}")).config(fast_config()).build().await.unwrap();
        subs.push(n.subscribe_relay("t").unwrap());
        nodes.push(n);
    }
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        nodes[a].connect(nodes[b].address().unwrap().to_string()).await.unwrap();
    }
    for n in &nodes {
        n.wait_for_subscribers("t", 2).await.unwrap();
    }
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id()).collect();
    let ids = &ids;
    // Every node publishes N with relay identities, all at once.
    let publish = |i: usize| {
        let n = nodes[i].clone();
        async move {
            for s in 0..N {
                let mut p = vec![i as u8];
                p.extend_from_slice(&s.to_be_bytes());
                n.publish_relayed("t", p).await.unwrap();
            }
        }
    };
    let receive = |i: usize, mut sub: estafeta_driver::Subscription| async move {
        let mut next = [0u32; 3];
        let mut seen = BTreeSet::new();
        while seen.len() < 2 * N as usize {
            let m = sub.recv().await.unwrap();
            let origin = m.payload[0] as usize;
            let s = u32::from_be_bytes(m.payload[1..5].try_into().unwrap());
            assert_eq!(m.origin(), ids[origin], "r{i}: the origin is visible, whichever path it came by");
            assert_ne!(origin, i, "r{i} got its own message {s} back");
            assert!(seen.insert((origin, s)), "r{i} got r{origin}'s {s} twice");
            // Each origin's messages arrive in its order.
            assert_eq!(s, next[origin], "r{i}: r{origin}'s messages in order");
            next[origin] += 1;
        }
        sub
    };
    let mut it = subs.into_iter();
    let (s0, s1, s2) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let pubs = async {
        super::util::join(publish(0), super::util::join(publish(1), publish(2))).await;
    };
    let recvs = async { super::util::join(receive(0, s0), super::util::join(receive(1, s1), receive(2, s2))).await };
    let ((), (mut s0, (mut s1, mut s2))) = super::util::join(pubs, recvs).await;
    sleep::<R>(Duration::from_millis(300)).await;
    for (i, s) in [&mut s0, &mut s1, &mut s2].into_iter().enumerate() {
        assert!(s.try_next().is_none(), "r{i} got more than each message once");
    }
    let dup: u64 = nodes.iter().map(|n| n.stats().discovery.relay_duplicates).sum();
    assert!(dup > 0, "copies came by both paths and were dropped");
    assert_eq!(nodes.iter().map(|n| n.stats().discovery.relay_returned).sum::<u64>(), 0);
    for n in &nodes {
        n.close().await;
    }
}

pub async fn an_accept_over_the_limit_is_refused_with_a_reason_the_dialler_reports<R: Runtime>() {
    let hub = Node::<R>::builder("hub").config(fast_config()).max_connections(1).build().await.unwrap();
    let a = Node::<R>::builder("a").config(fast_config()).build().await.unwrap();
    a.connect(hub.address().unwrap().to_string()).await.unwrap();
    let mut cfg = fast_config();
    cfg.dialer.reconnect_max_attempts = Some(1);
    let b = Node::<R>::builder("b").config(cfg).build().await.unwrap();
    let mut events = b.events();
    let r = b.connect(hub.address().unwrap().to_string()).await;
    assert!(matches!(r, Err(Error::ConnectFailed(_))), "{r:?}");
    let mut reason = None;
    while let Some(ev) = events.try_next() {
        if let Event::Dial(DialEvent::Failed { reason: r, .. }) = ev {
            reason = Some(r);
        }
    }
    match reason {
        Some(CloseReason::Remote { code, reason }) => {
            assert_eq!(code, CloseCode::TRY_AGAIN_LATER);
            assert!(reason.contains("connection limit"), "{reason}");
        }
        other => panic!("expected the hub's refusal, got {other:?}"),
    }
    assert_eq!(hub.peers().len(), 1);
    assert_eq!(hub.stats().session.refused_over_limit, 1);
    for n in [&a, &b, &hub] {
        n.close().await;
    }
}

pub async fn relay_carries_messages_through_one_intermediate_node<R: Runtime>() {
    const N: u32 = 20_000;
    let mut cfg = fast_config();
    cfg.pubsub.window_messages = 256;
    let (a, b, c) = (
        Node::<R>::builder("a").config(cfg.clone()).build().await.unwrap(),
        Node::<R>::builder("b").config(cfg.clone()).build().await.unwrap(),
        Node::<R>::builder("c").config(cfg.clone()).build().await.unwrap(),
    );
    let _a_sub = a.subscribe_relay("r").unwrap();
    let b_sub = b.subscribe_relay("r").unwrap();
    let c_sub = c.subscribe_relay("r").unwrap();
    a.connect(b.address().unwrap().to_string()).await.unwrap();
    c.connect(b.address().unwrap().to_string()).await.unwrap();
    b.wait_for_subscribers("r", 2).await.unwrap();
    a.wait_for_subscribers("r", 1).await.unwrap();
    let publish = async {
        for i in 0..N {
            a.publish_relayed("r", i.to_be_bytes().to_vec()).await.unwrap();
        }
    };
    // Each receiver sees the origin (a) and the neighbour it came through:
    // b gets it from a directly, c through b after one relay.
    let (a_id, b_id) = (a.id(), b.id());
    let read = |mut sub: estafeta_driver::Subscription, via: NodeId, hops: u8| async move {
        for i in 0..N {
            let m = sub.recv().await.unwrap();
            assert_eq!(m.payload[..], i.to_be_bytes());
            assert_eq!(m.from.id, via, "the neighbour it came through");
            assert_eq!(m.origin(), a_id, "the origin, not the neighbour");
            let r = m.relayed.expect("a relayed message carries its identity");
            assert_eq!((r.origin, r.seq, r.hops), (a_id, u64::from(i) + 1, hops));
        }
    };
    super::util::join(publish, super::util::join(read(b_sub, a_id, 0), read(c_sub, b_id, 1))).await;
    assert_eq!(b.stats().discovery.relay_forwarded, N as u64);
    for n in [&a, &b, &c] {
        n.close().await;
    }
}
