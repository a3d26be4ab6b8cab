use super::util::{fast_config, Net};
use crate::*;
use std::time::Duration;

fn pair() -> Net {
    let mut net = Net::new(&["a", "b"], |i| fast_config(i as u64));
    net.nodes[1].subscribe("t").unwrap();
    net.nodes[0].connect(Net::addr(1)).unwrap();
    net.settle();
    net
}

#[test]
fn handshake_then_publish_arrives_in_order() {
    let mut net = pair();
    assert_eq!(net.nodes[0].subscriber_count("t"), 1);
    for i in 0..100u32 {
        net.nodes[0].publish("t", Bytes::from(i.to_be_bytes().to_vec()), SendMode::All).unwrap();
    }
    net.settle();
    let got: Vec<u32> = net.messages(1).iter().map(|(_, p)| u32::from_be_bytes(p[..4].try_into().unwrap())).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert!(net.messages(1).iter().all(|(from, _)| from == "a"));
}

#[test]
fn publish_without_subscriber_is_an_error() {
    let mut net = pair();
    let err = net.nodes[0].publish("nobody", Bytes::from_static(b"x"), SendMode::All).unwrap_err();
    assert!(matches!(err, PublishError::NoSubscribers(_)));
    let err = net.nodes[0].publish("t", Bytes::new(), SendMode::To(PeerRef::from("zed"))).unwrap_err();
    assert!(matches!(err, PublishError::UnknownPeer(_)));
}

#[test]
fn heartbeats_keep_an_idle_pair_alive_and_silence_kills_it() {
    let mut net = pair();
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.nodes[0].peers().count(), 1, "idle pair stays up on heartbeats");
    assert!(net.nodes[0].stats().heartbeats > 10);
    // b goes silent: its sockets stay open but it sends nothing.
    net.down[1] = true;
    net.run_for(Duration::from_millis(600));
    let down = net.events[0].iter().any(|e| matches!(e, Event::PeerDown { reason: CloseReason::LivenessTimeout, .. }));
    assert!(down, "silent peer declared down: {:?}", net.events[0]);
}

#[test]
fn reconnects_and_resubscribes_after_restart() {
    let mut net = pair();
    net.crash(1);
    net.run_for(Duration::from_millis(200));
    let mut b = Node::new(fast_config(99), "b2").unwrap();
    b.subscribe("t").unwrap();
    net.restart(1, b);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.nodes[0].subscriber_count("t"), 1);
    net.nodes[0].publish("t", Bytes::from_static(b"again"), SendMode::All).unwrap();
    net.settle();
    assert_eq!(net.messages(1), vec![("a".to_string(), b"again".to_vec())]);
    assert_eq!(net.nodes[0].stats().reconnects, 1);
}

#[test]
fn gives_up_after_bounded_attempts() {
    let mut net = Net::new(&["a", "b"], |i| Config { reconnect_max_attempts: Some(3), ..fast_config(i as u64) });
    net.down[1] = true;
    net.nodes[0].connect(Net::addr(1)).unwrap();
    net.run_for(Duration::from_secs(5));
    let fails = net.events[0].iter().filter(|e| matches!(e, Event::DialFailed { .. })).count();
    assert_eq!(fails, 3);
    assert!(net.events[0].iter().any(|e| matches!(e, Event::GaveUp { .. })));
}

#[test]
fn garbage_is_refused_with_a_reason() {
    let mut net = Net::new(&["a"], |i| fast_config(i as u64));
    let c = net.nodes[0].handle_accepted(net.now).unwrap();
    net.nodes[0].handle_bytes(net.now, c, b"GET / HTTP/1.1\r\n\r\n");
    net.settle();
    assert_eq!(net.nodes[0].stats().malformed, 1);
    assert!(net.events[0].iter().any(|e| matches!(e, Event::ProtocolViolation { .. })));
}

#[test]
fn oversized_length_prefix_is_refused_before_allocation() {
    let mut net = Net::new(&["a"], |i| fast_config(i as u64));
    let c = net.nodes[0].handle_accepted(net.now).unwrap();
    let mut pre = Vec::new();
    wire::write_preamble(&mut pre);
    pre.extend_from_slice(&u32::MAX.to_be_bytes());
    net.nodes[0].handle_bytes(net.now, c, &pre);
    net.settle();
    let ev = net.events[0].iter().find_map(|e| match e {
        Event::ProtocolViolation { error, .. } => Some(error.clone()),
        _ => None,
    });
    assert!(matches!(ev, Some(ProtocolError::Wire(wire::WireError::FrameTooLarge { .. }))), "{ev:?}");
}

#[test]
fn round_robin_splits_evenly() {
    let mut net = Net::new(&["p", "s1", "s2", "s3"], |i| fast_config(i as u64));
    for i in 1..4 {
        net.nodes[i].subscribe("work").unwrap();
        net.nodes[0].connect(Net::addr(i)).unwrap();
    }
    net.settle();
    for _ in 0..300 {
        net.nodes[0].publish("work", Bytes::from_static(b"job"), SendMode::RoundRobin).unwrap();
    }
    net.settle();
    for i in 1..4 {
        assert_eq!(net.messages(i).len(), 100);
    }
}

#[test]
fn full_queue_is_backpressure_then_writable() {
    let mut net = Net::new(&["a", "b"], |i| Config { max_queued_frames_per_peer: 4, ..fast_config(i as u64) });
    net.nodes[1].subscribe("t").unwrap();
    net.nodes[0].connect(Net::addr(1)).unwrap();
    net.settle();
    for _ in 0..4 {
        net.nodes[0].publish("t", Bytes::from_static(b"x"), SendMode::All).unwrap();
    }
    let err = net.nodes[0].publish("t", Bytes::from_static(b"x"), SendMode::All).unwrap_err();
    assert!(err.is_full());
    net.settle();
    assert!(net.events[0].contains(&Event::Writable));
    assert_eq!(net.messages(1).len(), 4);
}

#[test]
fn stalled_application_pauses_input_without_loss() {
    let mut net = Net::new(&["a", "b"], |i| Config { max_pending_events: 8, ..fast_config(i as u64) });
    net.nodes[1].subscribe("t").unwrap();
    net.nodes[0].connect(Net::addr(1)).unwrap();
    net.settle();
    net.app_cap[1] = Some(net.events[1].len() + 5);
    for i in 0..50u8 {
        net.nodes[0].publish("t", Bytes::from(vec![i]), SendMode::All).unwrap();
    }
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(1).len(), 5);
    assert_eq!(net.nodes[0].peers().count(), 1, "a stalled reader is not a dead peer");
    net.app_cap[1] = None;
    net.run_for(Duration::from_millis(10));
    let got: Vec<u8> = net.messages(1).iter().map(|(_, p)| p[0]).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[test]
fn close_flushes_then_says_goodbye() {
    let mut net = pair();
    for _ in 0..10 {
        net.nodes[0].publish("t", Bytes::from_static(b"bye"), SendMode::All).unwrap();
    }
    net.nodes[0].close();
    net.settle();
    assert_eq!(net.messages(1).len(), 10);
    assert!(net.events[0].contains(&Event::Closed));
    let down = net.events[1].iter().find_map(|e| match e {
        Event::PeerDown { reason, .. } => Some(reason.code()),
        _ => None,
    });
    assert_eq!(down, Some(CloseCode::GOING_AWAY));
}

#[test]
fn end_of_stream_still_delivers_what_was_buffered() {
    // b's application is behind: a's messages wait in b's read buffer when a
    // closes gracefully and its socket ends. They must still be delivered.
    let mut net = Net::new(&["a", "b"], |i| Config { max_pending_events: 4, ..fast_config(i as u64) });
    net.nodes[1].subscribe("t").unwrap();
    net.nodes[0].connect(Net::addr(1)).unwrap();
    net.settle();
    net.app_cap[1] = Some(net.events[1].len());
    for i in 0..40u8 {
        net.nodes[0].publish("t", Bytes::from(vec![i]), SendMode::All).unwrap();
    }
    net.nodes[0].close();
    net.settle();
    assert!(net.events[0].contains(&Event::Closed));
    net.app_cap[1] = None;
    net.settle();
    let got: Vec<u8> = net.messages(1).iter().map(|(_, p)| p[0]).collect();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(net.nodes[1].stats().dropped, 0);
}
