//! Runs of messages: Publish frames on one topic that arrive together are
//! handed out as one event (`PubSubEvent::Messages`), checked frame by frame
//! like single messages: in order, within the credit, never past it.

use estafeta_core::wire::{encode_frame, Header};
use estafeta_core::{ConnId, Event, Message, Node, ProtocolError, PubSubEvent, Timestamp};

mod common;
use common::{config_with, handshake_bytes};

const PEER_ID: u128 = 0x0bad_cafe;

/// A node subscribing to `a` and `b` that grants `window` messages a topic.
fn node(window: u32) -> Node {
    let cfg = config_with(3, |c| c.pubsub.window_messages = window);
    let mut n = Node::new(cfg, "me").unwrap();
    n.pubsub().subscribe("a").unwrap();
    n.pubsub().subscribe("b").unwrap();
    n
}

/// Publish frames on `topic` with payloads `[i]` for `i` in `range`.
fn publishes(out: &mut Vec<u8>, topic: &str, range: std::ops::Range<u8>) {
    for i in range {
        encode_frame(out, &Header::Publish { topic }, &[i]);
    }
}

/// Accepts a connection and feeds it `bytes` in one read; returns the events.
fn feed(node: &mut Node, bytes: &[u8]) -> (ConnId, Vec<Event>) {
    let now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).unwrap();
    node.handle_bytes(now, conn, bytes);
    (conn, std::iter::from_fn(|| node.poll_event()).collect())
}

/// The messages of `events`, one by one, and how many events carried them.
fn messages(events: &[Event]) -> (Vec<Message>, usize) {
    let mut out = Vec::new();
    let mut carriers = 0;
    for e in events {
        match e {
            Event::PubSub(PubSubEvent::Message(m)) => out.push(m.clone()),
            Event::PubSub(PubSubEvent::Messages(run)) => out.extend(run.iter()),
            _ => continue,
        }
        carriers += 1;
    }
    (out, carriers)
}

fn payloads(msgs: &[Message]) -> Vec<(String, u8)> {
    msgs.iter().map(|m| (m.topic.to_string(), m.payload[0])).collect()
}

#[test]
fn frames_that_arrive_together_are_few_events_in_order() {
    let mut n = node(1024);
    let mut bytes = handshake_bytes(PEER_ID, "peer", &[]);
    publishes(&mut bytes, "a", 0..100);
    publishes(&mut bytes, "b", 100..150);
    publishes(&mut bytes, "a", 150..160);
    let (_, events) = feed(&mut n, &bytes);
    let (msgs, carriers) = messages(&events);
    let want: Vec<(String, u8)> =
        (0..160).map(|i| (if (100..150).contains(&i) { "b" } else { "a" }.into(), i)).collect();
    assert_eq!(payloads(&msgs), want, "every message, in order");
    assert!(msgs.iter().all(|m| m.from.id.as_u128() == PEER_ID && m.relayed.is_none()));
    // Each topic starts with one message, then a run of the rest.
    assert_eq!(carriers, 6, "{events:?}");
    assert_eq!(n.stats().pubsub.received, 160);
}

#[test]
fn a_run_stops_at_the_credit_and_the_frame_past_it_is_refused() {
    let mut n = node(8);
    let mut bytes = handshake_bytes(PEER_ID, "peer", &[]);
    publishes(&mut bytes, "a", 0..10);
    let (_, events) = feed(&mut n, &bytes);
    let (msgs, _) = messages(&events);
    assert_eq!(payloads(&msgs).iter().map(|(_, i)| *i).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    let refused = events.iter().find_map(|e| match e {
        Event::ProtocolViolation { error: ProtocolError::CreditExceeded(why), .. } => Some(why.clone()),
        _ => None,
    });
    assert!(refused.is_some_and(|w| w.contains("past the 8 messages")), "{events:?}");
    assert_eq!(n.stats().pubsub.received, 8);
}

#[test]
fn a_full_event_queue_holds_the_rest_back_and_loses_nothing() {
    let cfg = config_with(3, |c| c.session.max_pending_events = 1);
    let mut n = Node::new(cfg, "me").unwrap();
    n.pubsub().subscribe("a").unwrap();
    let mut bytes = handshake_bytes(PEER_ID, "peer", &[]);
    publishes(&mut bytes, "a", 0..20);
    let (_, events) = feed(&mut n, &bytes);
    // One event at a time: never a run while the queue is full.
    let (msgs, carriers) = messages(&events);
    assert_eq!(payloads(&msgs).iter().map(|(_, i)| *i).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    assert_eq!(carriers, 20, "{events:?}");
    assert_eq!(n.stats().pubsub.received, 20);
}
