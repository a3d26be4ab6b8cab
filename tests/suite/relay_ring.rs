//! A ring of relays under saturation on real sockets: every node relays one
//! topic to its two neighbours and publishes on it as fast as its queues
//! take. With small credit windows the relays' credit could chain around
//! the ring; the ring must keep making progress (every publish returns),
//! and every message a node missed must be reported as lost.

use super::util::{fast_config, join, sleep, test_limit, wait_until, within};
use estafeta_driver::{DiscoveryEvent, Event, Events, Message, Node, RelayLoss, Runtime, Subscription};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const NODES: usize = 4;
/// Messages each node publishes as fast as it can.
const SATURATE: u64 = 3_000;
/// The de-duplication window (sequence numbers).
const RELAY_WINDOW: u64 = 64;
/// Messages each node publishes afterwards, one at a time: they move every
/// receiver's window past the saturation messages.
const TAIL: u64 = RELAY_WINDOW + 16;

/// What one node got from one origin.
#[derive(Default)]
struct FromOrigin {
    /// Sequence numbers delivered, and the first one (in time).
    seqs: BTreeSet<u64>,
    first: Option<u64>,
    /// Reported lost as `RelayLoss::Skipped`.
    skipped: u64,
}

pub async fn a_saturated_ring_of_relays_keeps_making_progress_and_reports_every_loss<R: Runtime>() {
    let mut cfg = fast_config();
    cfg.pubsub.window_messages = 8;
    cfg.pubsub.max_queued_frames_per_subscription = 64;
    cfg.pubsub.max_queued_frames_per_peer = 128;
    cfg.discovery.relay_window = RELAY_WINDOW as u32;
    cfg.discovery.relay_hop_limit = 16;
    let mut nodes = Vec::new();
    let mut subs: Vec<Subscription> = Vec::new();
    let mut events: Vec<Events> = Vec::new();
    for i in 0..NODES {
        let n = Node::<R>::builder(format!("ring{i}")).config(cfg.clone()).build().await.unwrap();
        subs.push(n.subscribe_relay("ring").unwrap());
        events.push(n.events());
        nodes.push(n);
    }
    for i in 0..NODES {
        nodes[i].connect(nodes[(i + 1) % NODES].address().unwrap().to_string()).await.unwrap();
    }
    for n in &nodes {
        n.wait_for_subscribers("ring", 2).await.unwrap();
    }
    let ids: Vec<_> = nodes.iter().map(|n| n.id()).collect();
    let got: RefCell<Vec<BTreeMap<usize, FromOrigin>>> = RefCell::new((0..NODES).map(|_| BTreeMap::new()).collect());
    let done = Cell::new(false);
    let record = |x: usize, m: Message| {
        let r = m.relayed.expect("a relayed message carries its identity");
        let o = ids.iter().position(|id| *id == r.origin).expect("a ring node");
        assert_ne!(o, x, "ring{x} got its own message {} back", r.seq);
        assert_eq!(m.payload[..], payload(o, r.seq)[..], "ring{x}: intact");
        let mut g = got.borrow_mut();
        let f = g[x].entry(o).or_default();
        f.first.get_or_insert(r.seq);
        assert!(f.seqs.insert(r.seq), "ring{x} got ring{o}'s {} twice", r.seq);
    };
    let lost = |x: usize, ev: Event| {
        if let Event::Discovery(DiscoveryEvent::RelayLost { origin, count, reason: RelayLoss::Skipped, .. }) = ev {
            let o = ids.iter().position(|id| *id == origin).expect("a ring node");
            got.borrow_mut()[x].entry(o).or_default().skipped += count;
        }
    };
    // Receives on every node, and takes their events, until `done`.
    let pump = async {
        loop {
            let mut any = false;
            for x in 0..NODES {
                while let Some(m) = subs[x].try_next() {
                    record(x, m);
                    any = true;
                }
                while let Some(ev) = events[x].try_next() {
                    lost(x, ev);
                }
            }
            if done.get() && !any {
                break;
            }
            if !any {
                sleep::<R>(Duration::from_millis(1)).await;
            }
        }
    };
    let has = |x: usize, o: usize, seq: u64| got.borrow()[x].get(&o).is_some_and(|f| f.seqs.contains(&seq));
    let work = async {
        // Saturation: with the credit chained around the ring, these never
        // returned (the windows filled with held copies and stayed full).
        let publish = |i: usize| {
            let n = nodes[i].clone();
            async move {
                for s in 1..=SATURATE {
                    n.publish_relayed("ring", payload(i, s)).await.unwrap();
                }
            }
        };
        join(join(publish(0), publish(1)), join(publish(2), publish(3))).await;
        sleep::<R>(Duration::from_millis(300)).await;
        // The tail, one message per node at a time, each delivered everywhere.
        for seq in SATURATE + 1..=SATURATE + TAIL {
            for (i, n) in nodes.iter().enumerate() {
                n.publish_relayed("ring", payload(i, seq)).await.unwrap();
            }
            let all = || (0..NODES).all(|x| (0..NODES).filter(|o| *o != x).all(|o| has(x, o, seq)));
            wait_until::<R>(all, "a tail message delivered at every node").await;
        }
        sleep::<R>(Duration::from_millis(100)).await;
        done.set(true);
    };
    within::<R, _>(test_limit(), join(pump, work)).await;
    // Every message from the start of a receiver's window was delivered or
    // reported lost (the window starts at the first message it got, less
    // its size: earlier ones it cannot tell from messages published before
    // it subscribed).
    let (mut delivered, mut skipped) = (0, 0);
    for (x, from) in got.borrow().iter().enumerate() {
        assert_eq!(events[x].lagged(), 0, "ring{x}: events were dropped");
        for o in (0..NODES).filter(|o| *o != x) {
            let f = &from[&o];
            let first = f.first.expect("something arrived");
            let published = SATURATE + TAIL - first.saturating_sub(RELAY_WINDOW);
            assert_eq!(
                f.seqs.len() as u64 + f.skipped,
                published,
                "ring{x} from ring{o}: {} delivered + {} reported lost, from its window's start",
                f.seqs.len(),
                f.skipped
            );
            delivered += f.seqs.len() as u64;
            skipped += f.skipped;
        }
    }
    println!("ring: {delivered} delivered, {skipped} reported lost");
    for n in &nodes {
        n.close().await;
    }
}

fn payload(origin: usize, seq: u64) -> Vec<u8> {
    let mut p = vec![origin as u8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.resize(64, 0xab);
    p
}
