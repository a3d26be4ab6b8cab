//! Scenarios of the core over the in-memory network (`common`), driven by
//! the production `Drain`: the basics of each plane, and the scheduler,
//! credit and capability rules.

mod common;

use common::{config_with, fast_config, handshake_bytes, Net};
use estafeta_core::wire::{decode_frame, encode_frame, Capabilities, Header, WireError};
use estafeta_core::*;
use std::time::Duration;

fn node(i: usize, cfg: Config) -> Node {
    Node::new(cfg, &format!("n{i}")).expect("valid config")
}

/// Two nodes (`n0` dials `n1`, which subscribes to `t`), connected.
fn pair_with(cfg: impl Fn(usize) -> Config) -> Net {
    let mut net = Net::new((0..2).map(|i| node(i, cfg(i))).collect());
    net.node(1).pubsub().subscribe("t").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    net
}

fn pair() -> Net {
    pair_with(|i| fast_config(i as u64))
}

/// Slot `i`'s `Dropped` events: (peer, count, reason).
fn drops(net: &Net, i: usize) -> Vec<(Option<NodeId>, u64, DropReason)> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PubSub(PubSubEvent::Dropped { peer, count, reason }) => {
                Some((peer.as_ref().map(|p| p.id), *count, *reason))
            }
            _ => None,
        })
        .collect()
}

/// n0 publishes messages 0, 1, .. `n - 1` (one byte each) on `t`.
fn publish_numbered(net: &mut Net, n: u8) {
    for i in 0..n {
        net.node(0).pubsub().publish("t", Bytes::from(vec![i]), SendMode::All).unwrap();
    }
}

fn count(net: &Net, i: usize, f: impl Fn(&Event) -> bool) -> usize {
    net.slots[i].events.iter().filter(|e| f(e)).count()
}

#[test]
fn handshake_then_publish_arrives_in_order() {
    let mut net = pair();
    assert_eq!(net.node(0).pubsub().subscriber_count("t"), 1);
    for i in 0..100u32 {
        net.node(0).pubsub().publish("t", Bytes::from(i.to_be_bytes().to_vec()), SendMode::All).unwrap();
    }
    net.settle();
    let got: Vec<u32> = net.messages(1).iter().map(|(_, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(net.messages(1).iter().all(|(from, _)| from == "n0"));
}

#[test]
fn publish_without_subscriber_is_an_error() {
    let mut net = pair();
    let err = net.node(0).pubsub().publish("nobody", Bytes::from_static(b"x"), SendMode::All).unwrap_err();
    assert!(matches!(err, PublishError::NoSubscribers(_)));
    let err = net.node(0).pubsub().publish("t", Bytes::new(), SendMode::To(PeerRef::from("zed"))).unwrap_err();
    assert!(matches!(err, PublishError::UnknownPeer(_)));
}

#[test]
fn heartbeats_keep_an_idle_pair_alive_and_silence_kills_it() {
    let mut net = pair();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.node(0).peers().count(), 1, "idle pair stays up on heartbeats");
    assert!(net.node(0).stats().session.heartbeats > 10);
    // n1 goes silent: its sockets stay open but it sends nothing.
    net.slots[1].frozen = true;
    net.run_for(Duration::from_millis(600));
    // The session outlives the connection (see `reconnects_resume_...` in
    // core/tests/sessions.rs): the peer is suspended, not down.
    let down = count(&net, 0, |e| {
        matches!(e, Event::Session(SessionEvent::Suspended { reason: CloseReason::LivenessTimeout, .. }))
    });
    assert_eq!(down, 1, "silent peer's connection declared dead");
}

#[test]
fn reconnects_and_resubscribes_after_restart() {
    // Without resumption: the crashed node's session ends with its connection.
    let mut net = pair_with(|i| config_with(i as u64, |c| c.session.resume_window = Duration::ZERO));
    net.crash(1);
    net.run_for(Duration::from_millis(200));
    let mut b = Node::new(config_with(99, |c| c.session.resume_window = Duration::ZERO), "b2").unwrap();
    b.pubsub().subscribe("t").unwrap();
    net.restart(1, b);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.node(0).pubsub().subscriber_count("t"), 1);
    net.node(0).pubsub().publish("t", Bytes::from_static(b"again"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1), vec![("n0".to_string(), b"again".to_vec())]);
    assert_eq!(net.node(0).stats().dialer.reconnects, 1);
}

#[test]
fn gives_up_after_bounded_attempts() {
    let mut net = Net::new(vec![node(0, config_with(0, |c| c.dialer.reconnect_max_attempts = Some(3)))]);
    net.node(0).connect(PeerAddr::new("mem", 7)).unwrap();
    net.run_for(Duration::from_secs(5));
    assert_eq!(count(&net, 0, |e| matches!(e, Event::Dial(DialEvent::Failed { .. }))), 3);
    assert_eq!(count(&net, 0, |e| matches!(e, Event::Dial(DialEvent::GaveUp { .. }))), 1);
}

#[test]
fn garbage_is_refused_with_a_reason() {
    let mut net = Net::new(vec![node(0, fast_config(0))]);
    let c = net.accept_fake(0).unwrap();
    net.inject(0, c, b"GET / HTTP/1.1\r\n\r\n");
    net.settle();
    assert_eq!(net.node(0).stats().session.malformed, 1);
    assert_eq!(count(&net, 0, |e| matches!(e, Event::ProtocolViolation { .. })), 1);
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    let mut net = Net::new(vec![node(0, fast_config(0))]);
    let c = net.accept_fake(0).unwrap();
    let mut pre = Vec::new();
    wire::write_preamble(&mut pre);
    pre.extend_from_slice(&u32::MAX.to_be_bytes());
    net.inject(0, c, &pre);
    net.settle();
    let ev = net.slots[0].events.iter().find_map(|e| match e {
        Event::ProtocolViolation { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(matches!(ev, Some(ProtocolError::Wire(WireError::FrameTooLarge { .. }))), "{ev:?}");
}

#[test]
fn round_robin_splits_evenly() {
    let mut net = Net::new((0..4).map(|i| node(i, fast_config(i as u64))).collect());
    for i in 1..4 {
        net.node(i).pubsub().subscribe("work").unwrap();
        net.node(0).connect(Net::addr(i)).unwrap();
    }
    net.settle();
    for _ in 0..300 {
        net.node(0).pubsub().publish("work", Bytes::from_static(b"job"), SendMode::RoundRobin).unwrap();
    }
    net.settle();
    for i in 1..4 {
        assert_eq!(net.messages(i).len(), 100);
    }
}

#[test]
fn full_queue_is_backpressure_then_writable() {
    let mut net = pair_with(|i| config_with(i as u64, |c| c.pubsub.max_queued_frames_per_peer = 4));
    net.round_budget = 0; // n0's socket takes nothing: its queue fills
    for _ in 0..4 {
        net.node(0).pubsub().publish("t", Bytes::from_static(b"x"), SendMode::All).unwrap();
    }
    let err = net.node(0).pubsub().publish("t", Bytes::from_static(b"x"), SendMode::All).unwrap_err();
    assert!(err.is_full());
    net.slots[0].events.clear();
    net.round_budget = usize::MAX;
    net.settle();
    assert!(count(&net, 0, |e| matches!(e, Event::PubSub(PubSubEvent::Writable))) >= 1, "Full is followed by Writable");
    assert_eq!(net.messages(1).len(), 4);
}

#[test]
fn a_stalled_driver_pauses_input_without_loss() {
    // The backstop for a driver that stops taking events at all.
    let mut net = pair_with(|i| config_with(i as u64, |c| c.session.max_pending_events = 8));
    net.slots[1].stalled = true;
    publish_numbered(&mut net, 50);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(1).len(), 0);
    assert_eq!(net.node(0).peers().count(), 1, "a stalled reader is not a dead peer");
    net.slots[1].stalled = false;
    net.run_for(Duration::from_millis(10));
    let got: Vec<u8> = net.messages(1).iter().map(|(_, p)| p[0]).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn close_flushes_then_says_goodbye() {
    let mut net = pair();
    for _ in 0..10 {
        net.node(0).pubsub().publish("t", Bytes::from_static(b"bye"), SendMode::All).unwrap();
    }
    net.node(0).close();
    net.settle();
    assert_eq!(net.messages(1).len(), 10);
    assert!(net.slots[0].events.contains(&Event::Closed));
    let down = net.slots[1].events.iter().find_map(|e| match e {
        Event::PeerDown { reason, .. } => Some(reason.code()),
        _ => None,
    });
    assert_eq!(down, Some(CloseCode::GOING_AWAY));
}

#[test]
fn end_of_stream_still_delivers_what_was_buffered() {
    // n1's driver is behind: n0's messages wait in n1's read buffer when n0
    // closes gracefully and its socket ends. They must still be delivered.
    // One pending event: the messages after the first (a run would be one
    // event for all of them) stay in the read buffer.
    let mut net = pair_with(|i| config_with(i as u64, |c| c.session.max_pending_events = 1));
    net.slots[1].stalled = true;
    publish_numbered(&mut net, 40);
    net.node(0).close();
    net.settle();
    // n0 waits in its close wait (goodbye out, socket half-closed) until n1
    // reads up to the goodbye and closes too.
    assert!(!net.slots[0].events.contains(&Event::Closed));
    net.slots[1].stalled = false;
    net.settle();
    assert!(net.slots[0].events.contains(&Event::Closed));
    let got: Vec<u8> = net.messages(1).iter().map(|(_, p)| p[0]).collect();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(net.node(1).stats().pubsub.dropped, 0);
}

// ----- the scheduler ------------------------------------------------------

/// Frames in `bytes` (whole frames, after the preamble), as header kinds.
fn frame_kinds(bytes: &[u8]) -> Vec<&'static str> {
    let mut buf = bytes::BytesMut::from(bytes);
    let mut kinds = Vec::new();
    while let Ok(Some(f)) = decode_frame(&mut buf, usize::MAX) {
        kinds.push(match f.parse().map(|(h, _)| h) {
            Ok(Header::Subscribe { .. }) => "subscribe",
            Ok(Header::Publish { .. }) => "publish",
            Ok(Header::Credit { .. }) => "credit",
            Ok(Header::Heartbeat) => "heartbeat",
            Ok(_) => "other",
            Err(_) => "bad",
        });
    }
    kinds
}

#[test]
fn control_frames_leave_ahead_of_a_100_mib_backlog() {
    let big = |i: usize| {
        config_with(i as u64, |c| {
            c.pubsub.max_queued_bytes_per_peer = 256 << 20;
            c.pubsub.max_queued_bytes_per_subscription = 256 << 20;
            c.pubsub.window_bytes = 1 << 30;
        })
    };
    let mut net = pair_with(big);
    let mib = Bytes::from(vec![7u8; 1 << 20]);
    for _ in 0..100 {
        net.node(0).pubsub().publish("t", mib.clone(), SendMode::All).unwrap();
    }
    let n1 = net.node(1).id();
    assert!(net.node(0).pubsub().queued_bytes(n1).unwrap() >= 100 << 20);
    // A subscription change now must not wait behind the 100 MiB.
    net.node(0).pubsub().subscribe("news").unwrap();
    let conn = net.conns_of(0)[0].0;
    let mut buf = Vec::new();
    let now = net.now;
    let n = net.node(0).poll_transmit(now, conn, &mut buf);
    assert!(n > 0);
    assert_eq!(frame_kinds(&buf).first(), Some(&"subscribe"), "{:?}", &frame_kinds(&buf)[..3]);
    assert!(n <= (64 << 10) + (1 << 20) + 64, "one pull is one quantum (plus one whole frame): {n}");
}

/// A sink that records which connection each write went to.
#[derive(Default)]
struct Recorder {
    writes: Vec<(ConnId, usize)>,
}

impl Sink for Recorder {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        self.writes.push((conn, bytes.len()));
        WriteOutcome::Wrote(bytes.len())
    }
    fn act(&mut self, _action: Action) {}
    fn deliver(&mut self, _event: Event) -> Result<(), Event> {
        Ok(())
    }
    fn file(&mut self, _request: estafeta_core::FileRequest) {}
}

#[test]
fn two_connections_share_the_drain_fairly() {
    // n0 is connected to n1 and n2; n1 has a 1 GiB backlog queued (one
    // shared buffer, not copied); a small message for n2 then goes out
    // after at most one quantum of n1's bytes.
    let cfg = |i: usize| {
        config_with(i as u64, |c| {
            c.pubsub.max_queued_bytes_per_peer = 2 << 30;
            c.pubsub.max_queued_bytes_per_subscription = 2 << 30;
            c.pubsub.window_bytes = 4 << 30;
            c.pubsub.window_messages = 1 << 20;
        })
    };
    let mut net = Net::new((0..3).map(|i| node(i, cfg(i))).collect());
    net.node(1).pubsub().subscribe("bulk").unwrap();
    net.node(2).pubsub().subscribe("ping").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.node(0).connect(Net::addr(2)).unwrap();
    net.settle();
    let chunk = Bytes::from(vec![1u8; 64 << 10]);
    for _ in 0..(1 << 14) {
        net.node(0).pubsub().publish("bulk", chunk.clone(), SendMode::All).unwrap();
    }
    net.node(0).pubsub().publish("ping", Bytes::from_static(b"hi"), SendMode::All).unwrap();
    let mut drain = Drain::new(Budget { bytes: 4 << 20, ..Budget::default() });
    let mut rec = Recorder::default();
    let now = net.now;
    drain.run(net.node(0), now, &mut rec);
    // Bytes written to the bulk connection before the ping's connection got its turn.
    let ping_conn = rec.writes.iter().map(|(c, _)| *c).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(ping_conn.len(), 2, "both connections were served in one run: {:?}", &rec.writes[..4]);
    let mut bulk_before = 0;
    let bulk = rec.writes[0].0;
    for (c, n) in &rec.writes {
        if *c != bulk {
            break;
        }
        bulk_before += n;
    }
    let quantum = fast_config(0).session.transmit_chunk + (64 << 10) + 64;
    assert!(bulk_before <= quantum, "{bulk_before} bytes of the backlog went first");
}

// ----- credit flow control ------------------------------------------------

/// n1 reports consumption by hand and consumes only what `take` lets through.
fn manual_pair(window: u32) -> Net {
    pair_with(move |i| {
        config_with(i as u64, |c| {
            c.pubsub.window_messages = window;
            if i == 1 {
                c.pubsub.credit = CreditMode::Manual;
            }
        })
    })
}

/// Reports as consumed what n1's application received on `topic`.
fn consume(net: &mut Net, topic: &str) {
    let from = net.node(0).id();
    let (n, bytes) = net.slots[1].events.iter().fold((0, 0), |(n, b), e| match e {
        Event::PubSub(PubSubEvent::Message(m)) if &*m.topic == topic => (n + 1, b + m.payload.len() as u64),
        _ => (n, b),
    });
    net.slots[1].events.retain(|e| !matches!(e, Event::PubSub(PubSubEvent::Message(m)) if &*m.topic == topic));
    net.node(1).pubsub().consumed(from, topic, n, bytes);
}

#[test]
fn a_stalled_subscription_stops_neither_other_topics_nor_heartbeats() {
    let mut net = manual_pair(8);
    net.node(1).pubsub().subscribe("b").unwrap();
    net.settle();
    // Topic t is never consumed: its window (8) fills and stays full.
    publish_numbered(&mut net, 20);
    let live = fast_config(0).session.liveness_timeout;
    let mut got_b = 0;
    for round in 0..30u8 {
        net.node(0).pubsub().publish("b", Bytes::from(vec![round]), SendMode::All).unwrap();
        net.run_for(live / 10);
        got_b += net.slots[1]
            .events
            .iter()
            .filter(|e| matches!(e, Event::PubSub(PubSubEvent::Message(m)) if &*m.topic == "b"))
            .count();
        consume(&mut net, "b");
    }
    // 30 × liveness/10 = 3 liveness timeouts with t stalled.
    assert_eq!(got_b, 30, "topic b kept flowing");
    let t_msgs = net.slots[1].events.iter().filter(|e| matches!(e, Event::PubSub(PubSubEvent::Message(_)))).count();
    assert_eq!(t_msgs, 8, "topic t got exactly its window");
    assert_eq!(count(&net, 0, |e| matches!(e, Event::PeerDown { .. })), 0, "no liveness timeout");
    assert_eq!(count(&net, 1, |e| matches!(e, Event::PeerDown { .. })), 0);
    // Consuming t lets the rest through.
    consume(&mut net, "t");
    net.settle();
    consume(&mut net, "t");
    // Time for the last ack (`ack_delay`): the queue counts what is unacknowledged.
    net.run_for(Duration::from_millis(50));
    let n1 = net.node(1).id();
    assert_eq!(net.node(0).pubsub().queued_bytes(n1), Some(0));
}

#[test]
fn round_robin_sends_nothing_to_a_subscriber_without_credit() {
    // n1 never consumes (window 4); n2 consumes as it polls.
    let cfg = |i: usize| {
        config_with(i as u64, |c| {
            c.pubsub.window_messages = 4;
            if i == 1 {
                c.pubsub.credit = CreditMode::Manual;
            }
        })
    };
    let mut net = Net::new((0..3).map(|i| node(i, cfg(i))).collect());
    for i in 1..3 {
        net.node(i).pubsub().subscribe("work").unwrap();
        net.node(0).connect(Net::addr(i)).unwrap();
    }
    net.settle();
    for _ in 0..100 {
        loop {
            match net.node(0).pubsub().publish("work", Bytes::from_static(b"job"), SendMode::RoundRobin) {
                Ok(_) => break,
                Err(e) if e.is_full() => net.settle(),
                Err(e) => panic!("{e}"),
            }
        }
    }
    net.settle();
    assert_eq!(net.messages(1).len(), 4, "the stalled subscriber got its window and no more");
    assert_eq!(net.messages(2).len(), 96);
}

#[test]
fn a_peer_exceeding_its_credit_is_cut_with_a_reason() {
    let mut net = Net::new(vec![node(0, config_with(0, |c| c.pubsub.window_messages = 2))]);
    net.node(0).pubsub().subscribe("t").unwrap();
    let c = net.accept_fake(0).unwrap();
    net.inject(0, c, &handshake_bytes(42, "greedy", &[]));
    net.settle(); // the node grants its window of 2
    let mut bytes = Vec::new();
    for _ in 0..3 {
        encode_frame(&mut bytes, &Header::Publish { topic: "t" }, b"x");
    }
    net.inject(0, c, &bytes);
    net.settle();
    assert_eq!(net.messages(0).len(), 2, "the window was delivered");
    let err = net.slots[0].events.iter().find_map(|e| match e {
        Event::ProtocolViolation { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(matches!(err, Some(ProtocolError::CreditExceeded(_))), "{err:?}");
    assert_eq!(err.unwrap().close_code(), CloseCode::BAD_REQUEST);
    assert_eq!(count(&net, 0, |e| matches!(e, Event::PeerDown { .. })), 1);
}

// ----- capabilities and the handshake ---------------------------------------

#[test]
fn a_node_announcing_fewer_capabilities_works_with_one_announcing_more() {
    // n0 announces every plane and an unknown future bit; n1 only pub/sub.
    let more = Capabilities::from_bits(Capabilities::KNOWN.bits() | 1 << 40);
    let mut net = Net::new(vec![
        node(0, config_with(0, |c| c.capabilities = more)),
        node(1, config_with(1, |c| c.capabilities = Capabilities::PUBSUB)),
    ]);
    net.node(0).pubsub().subscribe("up").unwrap();
    net.node(1).pubsub().subscribe("down").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    net.node(0).pubsub().publish("down", Bytes::from_static(b"a"), SendMode::All).unwrap();
    net.node(1).pubsub().publish("up", Bytes::from_static(b"b"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1), vec![("n0".into(), b"a".to_vec())]);
    assert_eq!(net.messages(0), vec![("n1".into(), b"b".to_vec())]);
    assert_eq!(net.node(0).stats().session.malformed + net.node(1).stats().session.malformed, 0);
}

#[test]
fn a_node_without_pubsub_connects_and_is_sent_no_messages() {
    let mut net =
        Net::new(vec![node(0, fast_config(0)), node(1, config_with(1, |c| c.capabilities = Capabilities::NONE))]);
    net.node(0).pubsub().subscribe("t").unwrap();
    net.node(1).connect(Net::addr(0)).unwrap();
    net.settle();
    assert_eq!(net.node(0).peers().count(), 1);
    assert_eq!(net.node(1).peers().count(), 1);
    let r = net.node(1).pubsub().publish("t", Bytes::from_static(b"x"), SendMode::All);
    assert!(matches!(r, Err(PublishError::NoSubscribers(_))), "it never learned of the subscription: {r:?}");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.node(0).stats().session.malformed + net.node(1).stats().session.malformed, 0);
}

#[test]
fn a_frame_of_a_plane_the_peer_did_not_announce_is_refused() {
    let mut net = Net::new(vec![node(0, fast_config(0))]);
    let c = net.accept_fake(0).unwrap();
    let mut bytes = Vec::new();
    wire::write_preamble(&mut bytes);
    let hello = wire::Hello {
        version: wire::VERSION,
        min_version: wire::MIN_VERSION,
        id: 9,
        name: "bare",
        capabilities: 0,
        listen: None,
        subscriptions: vec![],
        session: None,
    };
    encode_frame(&mut bytes, &Header::Hello(hello), &[]);
    encode_frame(&mut bytes, &Header::Subscribe { topic: "t" }, &[]);
    net.inject(0, c, &bytes);
    net.settle();
    let err = net.slots[0].events.iter().find_map(|e| match e {
        Event::ProtocolViolation { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(matches!(err, Some(ProtocolError::NotAnnounced(_))), "{err:?}");
}

#[test]
fn the_listen_address_travels_in_hello() {
    // With resumption an acceptor's Hello waits for the dialer's: off here.
    let mut a = node(0, config_with(0, |c| c.session.resume_window = Duration::ZERO));
    a.set_listen_addr("10.1.2.3", 7000);
    let conn = a.handle_accepted(Timestamp::from_millis(1)).unwrap();
    let mut buf = Vec::new();
    a.poll_transmit(Timestamp::from_millis(1), conn, &mut buf);
    let mut rx = bytes::BytesMut::from(&buf[wire::PREAMBLE_LEN..]);
    let frame = decode_frame(&mut rx, 1 << 20).unwrap().unwrap();
    match frame.parse().unwrap().0 {
        Header::Hello(h) => assert_eq!(h.listen, Some(wire::ListenAddr { host: "10.1.2.3", port: 7000 })),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refusal_during_the_handshake_reaches_the_refused_side_with_its_reason() {
    // n1 refuses names longer than 4 bytes; n0's name is longer.
    let mut net = Net::new(vec![
        Node::new(config_with(0, |c| c.dialer.reconnect_max_attempts = Some(1)), "a-long-name").unwrap(),
        node(1, config_with(1, |c| c.session.max_name_len = 4)),
    ]);
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    let reason = net.slots[0].events.iter().find_map(|e| match e {
        Event::Dial(DialEvent::Failed { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    match reason {
        Some(CloseReason::Remote { code, reason }) => {
            assert_eq!(code, CloseCode::UNSUPPORTED_DATA);
            assert!(reason.contains("name of 11 bytes"), "{reason}");
        }
        other => panic!("the refused side saw {other:?}"),
    }
    assert_eq!(net.node(0).stats().session.malformed, 0, "the refused side saw no violation of its own");
    // n1's Hello may have left before it read n0's: then n0 saw the
    // handshake complete, and the refusal ends that session with the reason.
    if count(&net, 0, |e| matches!(e, Event::PeerUp { .. })) > 0 {
        let down = net.slots[0].events.iter().find_map(|e| match e {
            Event::PeerDown { reason, .. } => Some(reason.code()),
            _ => None,
        });
        assert_eq!(down, Some(CloseCode::UNSUPPORTED_DATA));
    }
}

#[test]
fn a_message_sent_within_credit_after_an_unsubscribe_is_dropped_and_counted_not_refused() {
    let mut net = pair();
    net.node(0).pubsub().publish("t", Bytes::from_static(b"in flight"), SendMode::All).unwrap();
    // n1 unsubscribes before the message arrives; n0 sent it within the
    // credit n1 had granted, so it is no violation.
    net.node(1).pubsub().unsubscribe("t").unwrap();
    net.settle();
    assert_eq!(net.messages(1).len(), 0);
    let n0 = net.node(0).id();
    assert_eq!(drops(&net, 1), vec![(Some(n0), 1, DropReason::NotSubscribed)]);
    assert_eq!(net.node(1).stats().session.malformed, 0);
    assert_eq!(net.node(0).peers().count(), 1, "the session goes on");
}

#[test]
fn after_an_unsubscribe_the_receivers_shortcut_delivers_nothing_more_on_the_topic() {
    let mut net = pair();
    // The first message makes "t" the receiver's shortcut topic.
    net.node(0).pubsub().publish("t", Bytes::from_static(b"first"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1).len(), 1);
    // The next one is in flight when n1 unsubscribes: it arrives through
    // the shortcut on a topic that is no longer subscribed.
    net.node(0).pubsub().publish("t", Bytes::from_static(b"second"), SendMode::All).unwrap();
    net.node(1).pubsub().unsubscribe("t").unwrap();
    net.settle();
    assert_eq!(net.messages(1).len(), 1, "nothing delivered after the unsubscribe");
    let n0 = net.node(0).id();
    assert_eq!(drops(&net, 1), vec![(Some(n0), 1, DropReason::NotSubscribed)]);
    // Subscribed again, the topic is delivered again.
    net.node(1).pubsub().subscribe("t").unwrap();
    net.settle();
    net.node(0).pubsub().publish("t", Bytes::from_static(b"third"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1).len(), 2);
}

#[test]
fn credit_taken_on_poll_flows_across_interleaved_sources() {
    // Consumption counted on poll is reported to the plane once per run of
    // events from one peer and topic. Two publishers on two topics, their
    // messages interleaved in the subscriber's queue, a window of 4: every
    // change of peer or topic must still report what was taken, or a grant
    // is never made and a flow stalls.
    let mut net = Net::new(
        (0..3)
            .map(|i| {
                node(
                    i,
                    config_with(i as u64, |c| {
                        c.pubsub.window_messages = 4;
                    }),
                )
            })
            .collect(),
    );
    for t in ["a", "b"] {
        net.node(0).pubsub().subscribe(t).unwrap();
    }
    for i in 1..3 {
        net.node(i).connect(Net::addr(0)).unwrap();
    }
    net.settle();
    let mut sent = 0;
    for round in 0..200u8 {
        for i in 1..3 {
            for t in ["a", "b"] {
                // Queued whatever the credit: a stalled flow shows in the count.
                net.node(i).pubsub().publish(t, Bytes::from(vec![round]), SendMode::All).unwrap();
                sent += 1;
            }
        }
        net.step();
    }
    net.settle();
    assert_eq!(net.messages(0).len(), sent);
    // Each publisher's flow on each topic arrived whole and in order.
    let mut flows: std::collections::BTreeMap<(String, String), Vec<u8>> = Default::default();
    for e in &net.slots[0].events {
        if let Event::PubSub(PubSubEvent::Message(m)) = e {
            flows.entry((m.from.name.to_string(), m.topic.to_string())).or_default().push(m.payload[0]);
        }
    }
    assert_eq!(flows.len(), 4);
    for (flow, got) in flows {
        assert_eq!(got, (0..200).collect::<Vec<u8>>(), "{flow:?}");
    }
}

#[test]
fn messages_queued_for_a_subscriber_that_unsubscribes_are_reported_by_the_publisher() {
    // n1 grants a window of 2 and takes nothing: 3 of 5 messages wait at n0
    // for credit when n1 unsubscribes. n0 drops them, counts them and says why.
    let mut net = pair_with(|i| config_with(i as u64, |c| c.pubsub.window_messages = 2));
    net.slots[1].stalled = true;
    publish_numbered(&mut net, 5);
    net.settle();
    net.node(1).pubsub().unsubscribe("t").unwrap();
    net.settle();
    let n1 = net.node(1).id();
    assert_eq!(drops(&net, 0), vec![(Some(n1), 3, DropReason::PeerUnsubscribed)]);
    assert_eq!(net.node(0).stats().pubsub.dropped, 3);
}
