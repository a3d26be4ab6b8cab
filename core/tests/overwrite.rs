//! `FullQueuePolicy::DropOldest` (issue 14): a full subscriber's queue
//! overwrites its oldest messages, the newest get through, publishing never
//! waits, and both ends report each gap with the same count and (in a
//! resumable session) the same sequence number, exactly once, also across
//! a resume.

mod common;

use common::{config_with, Net};
use estafeta_core::*;
use std::time::Duration;

/// Messages the receiver grants at once, and the queue's limit per subscription.
const WINDOW: u32 = 4;
const QUEUE: usize = 8;

fn cfg(i: usize, resume: bool, caps: Capabilities) -> Config {
    config_with(i as u64, |c| {
        c.pubsub.full_queue_policy = FullQueuePolicy::DropOldest;
        c.pubsub.window_messages = WINDOW;
        c.pubsub.max_queued_frames_per_subscription = QUEUE;
        c.session.resume_window = if resume { Duration::from_secs(2) } else { Duration::ZERO };
        c.capabilities = caps;
    })
}

/// n0 dials n1, which subscribes to `t`; n1 announces `n1_caps`.
fn pair(resume: bool, n1_caps: Capabilities) -> Net {
    let nodes = (0..2)
        .map(|i| {
            let caps = if i == 1 { n1_caps } else { Capabilities::SUPPORTED };
            Node::with_id(cfg(i, resume, caps), NodeId::from_u128(100 + i as u128), &format!("n{i}")).unwrap()
        })
        .collect();
    let mut net = Net::new(nodes);
    net.node(1).pubsub().subscribe("t").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.node(0).pubsub_ref().ready_subscriber_count("t"), 1);
    net
}

/// Publishes `range` to every subscriber of `t`: none may be refused.
fn publish(net: &mut Net, range: std::ops::Range<u32>) -> Vec<Published> {
    let p = |i: u32| Bytes::from(i.to_be_bytes().to_vec());
    range.map(|i| net.node(0).pubsub().publish("t", p(i), SendMode::All).expect("never Full")).collect()
}

fn received(net: &Net, i: usize) -> Vec<u32> {
    net.messages(i).iter().map(|(_, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect()
}

/// The gaps slot `i` reported: (count, seq), as the sender (`Overwritten`)
/// or as the receiver (`Skipped`).
fn gaps(net: &Net, i: usize, sender: bool) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    for e in &net.slots[i].events {
        match e {
            Event::PubSub(PubSubEvent::Overwritten { count, seq, topic, .. }) if sender => {
                assert_eq!(topic.as_str(), "t");
                out.push((*count, *seq));
            }
            Event::PubSub(PubSubEvent::Skipped { count, seq, topic, .. }) if !sender => {
                assert_eq!(topic.as_str(), "t");
                out.push((*count, *seq));
            }
            _ => {}
        }
    }
    out
}

/// The receiver is stalled: the sender writes what the window allows, then
/// its queue holds the newest `QUEUE` messages; the rest is overwritten.
fn stall_and_publish(net: &mut Net, n: u32) {
    net.slots[1].frozen = true;
    let mut published = publish(net, 0..WINDOW);
    net.step();
    published.extend(publish(net, WINDOW..n));
    assert!(published.iter().all(|p| p.queued == 1 && p.dropped == 0), "every publish queued: {published:?}");
    net.step();
}

fn check_gaps(net: &mut Net, n: u32, resume: bool) {
    let overwritten = u64::from(n) - u64::from(WINDOW) - QUEUE as u64;
    let want: Vec<u32> = (0..WINDOW).chain(n - QUEUE as u32..n).collect();
    assert_eq!(received(net, 1), want, "the first window, then the newest");
    let (sent, taken) = (gaps(net, 0, true), gaps(net, 1, false));
    assert_eq!(sent, taken, "both ends name the same gaps, once each");
    assert_eq!(sent.iter().map(|g| g.0).sum::<u64>(), overwritten);
    assert!(sent.iter().all(|g| g.1.is_some() == resume), "a sequence number iff the session resumes: {sent:?}");
    let (s0, s1) = (net.node(0).stats().pubsub, net.node(1).stats().pubsub);
    assert_eq!((s0.overwritten, s0.dropped), (overwritten, overwritten));
    assert_eq!(s1.skipped_by_peer, overwritten);
    let dropped_events: u64 = net.slots[0].events.iter().map(Event::dropped).sum();
    assert_eq!(dropped_events, s0.dropped, "every drop is an event");
}

#[test]
fn a_full_queue_keeps_the_newest_and_both_ends_report_the_gap() {
    for resume in [false, true] {
        let mut net = pair(resume, Capabilities::SUPPORTED);
        stall_and_publish(&mut net, 100);
        net.slots[1].frozen = false;
        net.run_for(Duration::from_millis(200));
        check_gaps(&mut net, 100, resume);
    }
}

#[test]
fn a_gap_is_reported_once_at_each_end_across_a_resume() {
    let mut net = pair(true, Capabilities::SUPPORTED);
    stall_and_publish(&mut net, 100);
    // The markers and the first window are on the wire, unacknowledged:
    // the connection dies with them in flight.
    for (c, _) in net.conns_of(0) {
        net.reset(0, c);
    }
    net.slots[1].frozen = false;
    net.run_for(Duration::from_secs(1));
    let resumed = net.slots[0].events.iter().any(|e| matches!(e, Event::Session(SessionEvent::Resumed { .. })));
    assert!(resumed, "the session resumed");
    assert!(net.node(0).stats().pubsub.resent > 0, "the first window was sent again");
    check_gaps(&mut net, 100, true);
}

#[test]
fn a_peer_that_cannot_be_told_gets_drops_at_admission() {
    let old = Capabilities::from_bits(Capabilities::SUPPORTED.bits() & !Capabilities::OVERWRITE.bits());
    let mut net = pair(false, old);
    net.slots[1].frozen = true;
    let mut published = publish(&mut net, 0..WINDOW);
    net.step();
    published.extend(publish(&mut net, WINDOW..20));
    // The window leaves, the queue fills, the rest is dropped and counted.
    let dropped = published.iter().filter(|p| p.dropped == 1).count();
    assert_eq!(dropped, 20 - WINDOW as usize - QUEUE);
    net.slots[1].frozen = false;
    net.run_for(Duration::from_millis(200));
    assert_eq!(received(&net, 1), (0..WINDOW + QUEUE as u32).collect::<Vec<_>>(), "the oldest, as with drops");
    assert!(gaps(&net, 0, true).is_empty() && gaps(&net, 1, false).is_empty());
    assert_eq!(net.node(0).stats().pubsub.dropped, dropped as u64);
}

#[test]
fn a_send_to_one_peer_overwrites_too() {
    let mut net = pair(true, Capabilities::SUPPORTED);
    net.slots[1].frozen = true;
    let n1 = PeerRef::Id(net.node(1).id());
    for i in 0..50u32 {
        let p = Bytes::from(i.to_be_bytes().to_vec());
        net.node(0).pubsub().publish("t", p, SendMode::To(n1.clone())).expect("never Full");
        if i + 1 == WINDOW {
            net.step();
        }
    }
    net.step();
    net.slots[1].frozen = false;
    net.run_for(Duration::from_millis(200));
    check_gaps(&mut net, 50, true);
}
