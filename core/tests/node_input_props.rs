//! Property tests of a node's input path: arbitrary bytes on an accepted
//! connection never panic the node and never make it misbehave, and a valid
//! stream gives the same events however it is split.

use bytes::{Bytes, BytesMut};
use estafeta_core::wire::{decode_frame, encode_frame, write_preamble, Header, PREAMBLE_LEN};
use estafeta_core::{CloseCode, ConnId, Event, Node, NodeId, ProtocolError, PubSubEvent, SendMode, Timestamp};
use proptest::prelude::*;

mod common;
use common::{config_with, handshake_bytes};

/// A time well after any test input.
const LATER: Timestamp = Timestamp::from_millis(2_000);

const PEER_ID: u128 = 0x1234_5678_9abc_def0_1122_3344_5566_7788;

/// Preamble + Hello of a peer named "peer" subscribing to `subs`.
fn handshake(subs: &[&str]) -> Vec<u8> {
    handshake_bytes(PEER_ID, "peer", subs)
}

fn node(max_events: usize) -> Node {
    let cfg = config_with(7, |c| {
        c.session.max_pending_events = max_events;
        c.session.max_frame_size = 4096;
        c.session.max_read_buffer = 2048;
        c.pubsub.max_topic_len = 16;
        c.pubsub.max_subscriptions_per_peer = 8;
    });
    let mut n = Node::new(cfg, "me").unwrap();
    n.pubsub().subscribe("a").unwrap();
    n.pubsub().subscribe("b").unwrap();
    n
}

/// Splits `bytes` at the given fractions.
fn pieces<'a>(bytes: &'a [u8], fractions: &[u16]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> =
        fractions.iter().map(|f| (*f as usize * (bytes.len() + 1)) / (u16::MAX as usize + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// What a driver sees: the events in order, and the frames the node wrote.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    events: Vec<Event>,
    written: Vec<u8>,
}

/// Feeds `chunks` to a fresh accepted connection, reading only while the
/// node wants to and draining events as an application would. Times
/// advance by a millisecond per chunk.
fn feed(node: &mut Node, chunks: &[&[u8]]) -> (ConnId, Seen) {
    let mut seen = Seen::default();
    let mut now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).unwrap();
    let mut pending: Vec<&[u8]> = chunks.iter().rev().copied().collect();
    for _ in 0..100_000 {
        drain(node, now, &mut seen);
        let Some(chunk) = pending.pop() else { break };
        if !node.wants_read(conn) {
            // The node stopped reading: either the connection is gone, or
            // its buffers are full and draining events must make room.
            drain(node, now, &mut seen);
            if !node.wants_read(conn) {
                break;
            }
        }
        node.handle_bytes(now, conn, chunk);
        now += std::time::Duration::from_millis(1);
    }
    drain(node, now, &mut seen);
    (conn, seen)
}

fn drain(node: &mut Node, now: Timestamp, seen: &mut Seen) {
    loop {
        let mut moved = false;
        while let Some(c) = node.next_transmit(None) {
            let mut buf = Vec::new();
            if node.poll_transmit(now, c, &mut buf) == 0 {
                break;
            }
            seen.written.extend_from_slice(&buf);
            moved = true;
        }
        while node.poll_action().is_some() {
            moved = true;
        }
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::PubSub(PubSubEvent::Messages(run)) => {
                    seen.events.extend(run.into_iter().map(|m| Event::PubSub(PubSubEvent::Message(m))))
                }
                ev => seen.events.push(ev),
            }
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// The events with consecutive `Dropped` reports for the same peer and
/// reason merged. The node merges them while they wait in its queue, so how
/// many it merged depends on when the application took events; the sum does
/// not.
fn coalesce_drops(events: &[Event]) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for e in events {
        if let (
            Some(Event::PubSub(PubSubEvent::Dropped { peer: p0, count: n0, reason: r0 })),
            Event::PubSub(PubSubEvent::Dropped { peer, count, reason }),
        ) = (out.last_mut(), e)
        {
            if p0 == peer && r0 == reason {
                *n0 += count;
                continue;
            }
        }
        out.push(e.clone());
    }
    out
}

/// The frames in what the node wrote (after its preamble).
fn written_frames(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(bytes.len() >= PREAMBLE_LEN, "the node writes its preamble first");
    assert_eq!(&bytes[..4], b"ESTF");
    let mut buf = BytesMut::from(&bytes[PREAMBLE_LEN..]);
    let mut out = Vec::new();
    while let Some(f) = decode_frame(&mut buf, 1 << 20).expect("our own output decodes") {
        let (h, p) = f.parse().expect("our own output parses");
        out.push((format!("{h:?}"), p.to_vec()));
    }
    assert!(buf.is_empty(), "the node wrote a partial frame");
    out
}

/// Checks what must hold whatever the bytes were.
fn check_sane(node: &Node, conn: ConnId, seen: &Seen) -> Result<(), TestCaseError> {
    let violations: Vec<&ProtocolError> = seen
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ProtocolViolation { error, conn: c, .. } => {
                assert_eq!(*c, conn);
                Some(error)
            }
            _ => None,
        })
        .collect();
    prop_assert!(violations.len() <= 1, "one violation closes the connection");
    prop_assert_eq!(node.stats().session.malformed, violations.len() as u64);
    let frames = written_frames(&seen.written);
    if let Some(err) = violations.first() {
        // The node said goodbye with the error's code, and nothing after it.
        let (last, _) = frames.last().expect("a goodbye was written");
        let code = err.close_code();
        prop_assert!(code == CloseCode::UNSUPPORTED_DATA || code == CloseCode::BAD_REQUEST, "{:?}", code);
        let expect = format!("Goodbye {{ code: {}", code.0);
        prop_assert!(last.starts_with(&expect), "{} / {:?}", last, err);
        prop_assert!(!node.wants_read(conn), "a refused connection is not read");
    }
    let received = seen.events.iter().filter(|e| matches!(e, Event::PubSub(PubSubEvent::Message(_)))).count() as u64;
    prop_assert_eq!(node.stats().pubsub.received, received);
    let dropped: u64 = seen.events.iter().map(Event::dropped).sum();
    prop_assert_eq!(node.stats().pubsub.dropped, dropped);
    for e in &seen.events {
        if let Event::PubSub(PubSubEvent::Message(m)) = e {
            prop_assert!(m.topic.as_str() == "a" || m.topic.as_str() == "b");
            prop_assert_eq!(m.from.id, NodeId::from_u128(PEER_ID));
        }
    }
    Ok(())
}

/// A frame a peer might send after its handshake.
#[derive(Clone, Debug)]
enum Frame {
    Sub(&'static str),
    Unsub(&'static str),
    Publish(&'static str, Vec<u8>),
    Heartbeat,
}

fn topic() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c")]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        1 => topic().prop_map(Frame::Sub),
        1 => topic().prop_map(Frame::Unsub),
        // Messages only on the node's topics: it granted credit for no other
        // (a message without credit is a violation, tested in scenarios.rs).
        4 => (prop_oneof![Just("a"), Just("b")], prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(t, p)| Frame::Publish(t, p)),
        1 => Just(Frame::Heartbeat),
    ]
}

fn encode(frames: &[Frame], goodbye: bool) -> Vec<u8> {
    let mut out = handshake(&["a"]);
    for f in frames {
        match f {
            Frame::Sub(t) => encode_frame(&mut out, &Header::Subscribe { topic: t }, &[]),
            Frame::Unsub(t) => encode_frame(&mut out, &Header::Unsubscribe { topic: t }, &[]),
            Frame::Publish(t, p) => encode_frame(&mut out, &Header::Publish { topic: t }, p),
            Frame::Heartbeat => encode_frame(&mut out, &Header::Heartbeat, &[]),
        };
    }
    if goodbye {
        encode_frame(&mut out, &Header::Goodbye { code: 1000, reason: "done" }, &[]);
    }
    out
}

proptest! {
    /// Arbitrary bytes, in arbitrary chunks, on an accepted connection.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        fractions in prop::collection::vec(any::<u16>(), 0..16),
        max_events in 1usize..8,
    ) {
        let mut n = node(max_events);
        let (conn, seen) = feed(&mut n, &pieces(&bytes, &fractions));
        check_sane(&n, conn, &seen)?;
        // The node still works: another connection is accepted.
        prop_assert!(n.handle_accepted(LATER).is_ok());
    }

    /// A valid preamble, then arbitrary bytes.
    #[test]
    fn arbitrary_bytes_after_preamble_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        fractions in prop::collection::vec(any::<u16>(), 0..16),
        max_events in 1usize..8,
    ) {
        let mut input = Vec::new();
        write_preamble(&mut input);
        input.extend_from_slice(&bytes);
        let mut n = node(max_events);
        let (conn, seen) = feed(&mut n, &pieces(&input, &fractions));
        check_sane(&n, conn, &seen)?;
    }

    /// A valid preamble and Hello, some valid frames, then arbitrary bytes
    /// (garbage after a frame boundary or cut into a frame).
    #[test]
    fn arbitrary_bytes_after_handshake_never_panic(
        frames in prop::collection::vec(frame(), 0..8),
        cut in any::<u16>(),
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        fractions in prop::collection::vec(any::<u16>(), 0..16),
        max_events in 1usize..8,
    ) {
        let valid = encode(&frames, false);
        let hs = handshake(&["a"]).len();
        // Keep the handshake whole, cut the rest anywhere.
        let keep = hs + (cut as usize * (valid.len() - hs + 1)) / (u16::MAX as usize + 1);
        let mut input = valid[..keep].to_vec();
        input.extend_from_slice(&bytes);
        let mut n = node(max_events);
        let (conn, seen) = feed(&mut n, &pieces(&input, &fractions));
        check_sane(&n, conn, &seen)?;
        let up = seen.events.iter().any(|e| matches!(e, Event::PeerUp { .. }));
        prop_assert!(up, "the handshake completed: {:?}", seen.events);
    }

    /// A valid stream split anywhere gives the node the same events and
    /// makes it write the same bytes.
    #[test]
    fn any_split_gives_the_same_events(
        frames in prop::collection::vec(frame(), 0..40),
        goodbye in any::<bool>(),
        fractions in prop::collection::vec(any::<u16>(), 0..40),
        max_events in 1usize..64,
    ) {
        let stream = encode(&frames, goodbye);
        let mut whole = node(max_events);
        let (c1, seen_whole) = feed(&mut whole, &[&stream]);
        let mut split = node(max_events);
        let (c2, seen_split) = feed(&mut split, &pieces(&stream, &fractions));
        let mut bytewise = node(max_events);
        let singles: Vec<&[u8]> = stream.chunks(1).collect();
        let (c3, seen_bytes) = feed(&mut bytewise, &singles);
        prop_assert_eq!(c1, c2);
        prop_assert_eq!(c1, c3);
        let whole_events = coalesce_drops(&seen_whole.events);
        prop_assert_eq!(&whole_events, &coalesce_drops(&seen_split.events));
        prop_assert_eq!(&whole_events, &coalesce_drops(&seen_bytes.events));
        // Heartbeats and timing aside, the same frames were written back
        // (credit grants leave when bytes are pulled: whether the peer's
        // goodbye came first depends on the split).
        let untimed = |w: &[u8]| -> Vec<(String, Vec<u8>)> {
            written_frames(w).into_iter().filter(|(h, _)| !h.starts_with("Credit")).collect()
        };
        prop_assert_eq!(untimed(&seen_whole.written), untimed(&seen_split.written));
        check_sane(&whole, c1, &seen_whole)?;
        prop_assert_eq!(whole.stats().session.malformed, 0);

        // And the events are what the frames say: messages on subscribed
        // topics in order; the rest dropped and reported.
        let mut expected_msgs = Vec::new();
        let mut not_subscribed = 0u64;
        for f in &frames {
            if let Frame::Publish(t, p) = f {
                if *t == "a" || *t == "b" {
                    expected_msgs.push((t.to_string(), p.clone()));
                } else {
                    not_subscribed += 1;
                }
            }
        }
        let got: Vec<(String, Vec<u8>)> = seen_whole
            .events
            .iter()
            .filter_map(|e| match e {
                Event::PubSub(PubSubEvent::Message(m)) => Some((m.topic.to_string(), m.payload.to_vec())),
                _ => None,
            })
            .collect();
        prop_assert_eq!(got, expected_msgs);
        prop_assert_eq!(whole.stats().pubsub.dropped, not_subscribed);
        let downs = seen_whole.events.iter().filter(|e| matches!(e, Event::PeerDown { .. })).count();
        prop_assert_eq!(downs, usize::from(goodbye));
    }

    /// Subscriptions the peer announces are tracked, whatever the split.
    #[test]
    fn peer_subscriptions_follow_the_stream(
        frames in prop::collection::vec(frame(), 0..40),
        fractions in prop::collection::vec(any::<u16>(), 0..20),
    ) {
        let stream = encode(&frames, false);
        let mut n = node(64);
        let (_, seen) = feed(&mut n, &pieces(&stream, &fractions));
        let mut subs: std::collections::BTreeSet<&str> = ["a"].into();
        for f in &frames {
            match f {
                Frame::Sub(t) => { subs.insert(t); }
                Frame::Unsub(t) => { subs.remove(t); }
                _ => {}
            }
        }
        for t in ["a", "b", "c"] {
            prop_assert_eq!(n.pubsub().subscriber_count(t), usize::from(subs.contains(t)), "{}", t);
        }
        // Publishing to the peer works exactly for its topics.
        for t in ["a", "b", "c"] {
            let r = n.pubsub().publish(t, Bytes::from_static(b"x"), SendMode::To("peer".into()));
            prop_assert_eq!(r.is_ok(), subs.contains(t), "{:?}", r);
        }
        prop_assert_eq!(seen.events.iter().filter(|e| matches!(e, Event::PeerUp { .. })).count(), 1);
    }
}
