//! The streams plane over the in-memory network: opens, replies, credit,
//! fragments, and every way a stream ends, at both ends.

mod common;

use common::{config_with, fast_config, Net};
use estafeta_core::wire::{encode_frame, Header, StreamFrame};
use estafeta_core::*;
use std::time::Duration;

fn node(i: usize, cfg: Config) -> Node {
    Node::new(cfg, &format!("n{i}")).expect("valid config")
}

/// `n0` (consumer) dials `n1`, which serves `logs`; connected and announced.
fn pair_with(cfg: impl Fn(usize) -> Config) -> Net {
    let mut net = Net::new((0..2).map(|i| node(i, cfg(i))).collect());
    net.node(1).streams().serve("logs").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    assert_eq!(net.node(0).streams_ref().server_count("logs"), 1);
    net
}

fn pair() -> Net {
    pair_with(|i| fast_config(i as u64 + 1))
}

fn requests(net: &Net, i: usize) -> Vec<(StreamId, Bytes)> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(StreamEvent::Request { stream, request, .. }) => Some((*stream, request.clone())),
            _ => None,
        })
        .collect()
}

fn data(net: &Net, i: usize, s: StreamId) -> Vec<Bytes> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(StreamEvent::Data { stream, payload }) if *stream == s => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

/// The terminal events of stream `s` at slot `i` (a test asserts there is one).
fn ends(net: &Net, i: usize, s: StreamId) -> Vec<StreamEnd> {
    net.slots[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(StreamEvent::Closed { stream, end, .. }) if *stream == s => Some(end.clone()),
            _ => None,
        })
        .collect()
}

fn one_end(net: &Net, i: usize, s: StreamId) -> StreamEnd {
    let e = ends(net, i, s);
    assert_eq!(e.len(), 1, "exactly one terminal for {s} at n{i}: {e:?}");
    e[0].clone()
}

/// Opens a stream from n0 and returns (consumer id, producer id).
fn open(net: &mut Net, req: &'static [u8]) -> (StreamId, StreamId) {
    let before = requests(net, 1).len();
    let c = net.node(0).streams().open("logs", Bytes::from_static(req), None, None);
    net.settle();
    let r = requests(net, 1);
    assert_eq!(r.len(), before + 1, "the producer got the request");
    assert_eq!(r[before].1, Bytes::from_static(req));
    (c, r[before].0)
}

#[test]
fn replies_arrive_in_order_then_one_close_at_each_end() {
    let mut net = pair();
    let (c, p) = open(&mut net, b"tail -f");
    for i in 0..50u32 {
        net.node(1).streams().write(p, Bytes::from(i.to_be_bytes().to_vec())).unwrap();
    }
    assert!(net.node(1).streams().close(p, CloseCode::NORMAL, "done"));
    assert!(!net.node(1).streams().close(p, CloseCode::INTERNAL_ERROR, "again"), "the first close wins");
    assert_eq!(net.node(1).streams().write(p, Bytes::new()), Err(WriteError::Ended));
    net.settle();
    let got: Vec<u32> = data(&net, 0, c).iter().map(|b| u32::from_be_bytes(b[..4].try_into().unwrap())).collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    let e = one_end(&net, 0, c);
    assert_eq!((e.code, e.text.as_str(), e.remote), (CloseCode::NORMAL, "done", true));
    assert_eq!(one_end(&net, 1, p).code, CloseCode::NORMAL);
    assert_eq!(net.node(0).streams_ref().open_counts(), (0, 0));
    assert_eq!(net.node(1).streams_ref().open_counts(), (0, 0));
    // Nothing after the terminal: the last stream event of n0 is the close.
    let last = net.slots[0].events.iter().rev().find(|e| matches!(e, Event::Stream(_))).unwrap();
    assert!(matches!(last, Event::Stream(StreamEvent::Closed { .. })));
}

#[test]
fn no_server_oversized_request_and_limits_close_at_once_with_a_reason() {
    let mut net = pair_with(|i| config_with(i as u64 + 1, |c| c.streams.max_open_streams = 2));
    let s = net.node(0).streams().open("nobody", Bytes::new(), None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!(e.code, CloseCode::BAD_REQUEST);
    assert!(e.text.contains("no connected peer serves"), "{}", e.text);
    let big = Bytes::from(vec![0; 65 << 10]);
    let s = net.node(0).streams().open("logs", big, None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!(e.code, CloseCode::BAD_REQUEST);
    assert!(e.text.contains("exceeds"), "{}", e.text);
    let _a = net.node(0).streams().open("logs", Bytes::new(), None, None);
    let _b = net.node(0).streams().open("logs", Bytes::new(), None, None);
    let s = net.node(0).streams().open("logs", Bytes::new(), None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!(e.code, CloseCode::TRY_AGAIN_LATER);
    assert!(e.text.contains("too many"), "{}", e.text);
}

#[test]
fn a_producer_over_its_concurrent_limit_refuses_with_1013() {
    let mut net = pair_with(|i| config_with(i as u64 + 1, |c| c.streams.max_served_per_peer = 1));
    let (_c, _p) = open(&mut net, b"first");
    let s = net.node(0).streams().open("logs", Bytes::new(), None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!((e.code, e.remote), (CloseCode::TRY_AGAIN_LATER, true));
    assert!(e.text.contains("too many concurrent streams"), "{}", e.text);
    assert_eq!(net.node(1).stats().streams.refused, 1);
}

#[test]
fn a_topic_no_longer_served_is_refused_with_4000() {
    let mut net = pair();
    // The consumer still believes n1 serves the topic when it opens.
    net.node(1).streams().unserve("logs");
    let s = net.node(0).streams().open("logs", Bytes::new(), None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!(e.code, CloseCode::BAD_REQUEST);
    assert_eq!(net.node(0).streams_ref().server_count("logs"), 0);
}

#[test]
fn a_long_message_arrives_whole_from_fragments() {
    let mut net = pair();
    let (c, p) = open(&mut net, b"");
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    net.node(1).streams().write(p, Bytes::from(big.clone())).unwrap();
    net.node(1).streams().close(p, CloseCode::NORMAL, "");
    net.settle();
    let got = data(&net, 0, c);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0][..], &big[..]);
}

#[test]
fn a_stalled_stream_waits_for_credit_while_another_flows() {
    let window = 128 << 10;
    let cfg = |i: usize| {
        config_with(i as u64 + 1, |c| {
            c.streams.credit = CreditMode::Manual;
            c.streams.window = window;
        })
    };
    let mut net = pair_with(cfg);
    let (slow_c, slow) = open(&mut net, b"slow");
    let (fast_c, fast) = open(&mut net, b"fast");
    let msg = Bytes::from(vec![7u8; 1000]);
    // The slow consumer never reports consumption: its producer runs out.
    let mut written = 0;
    while net.node(1).streams().write(slow, msg.clone()).is_ok() {
        written += 1;
        assert!(written < 1000, "credit never ran out");
    }
    assert_eq!(net.node(1).streams().write(slow, msg.clone()), Err(WriteError::NoCredit));
    assert!(written as u64 * 1016 >= window && (written as u64 - 1) * 1016 < window);
    // The other stream goes on: 10 windows' worth, consumed as it arrives.
    let mut sent = 0;
    let mut seen = 0;
    while seen < 1300 {
        while sent < 1300 && net.node(1).streams().write(fast, msg.clone()).is_ok() {
            sent += 1;
        }
        net.settle();
        let now = data(&net, 0, fast_c).len();
        net.node(0).streams().consumed(fast_c, (now - seen) as u64, ((now - seen) * 1000) as u64);
        assert!(now > seen || sent < 1300, "the live stream stopped");
        seen = now;
    }
    assert_eq!(data(&net, 0, slow_c).len(), written);
    // Consuming the slow one gives credit back: Writable.
    net.node(0).streams().consumed(slow_c, written as u64, written as u64 * 1000);
    net.settle();
    assert!(net.slots[1].events.iter().any(|e| *e == Event::Stream(StreamEvent::Writable { stream: slow })));
    assert!(net.node(1).streams().write(slow, msg).is_ok());
}

#[test]
fn the_connection_window_caps_what_all_streams_hold() {
    let cfg = |i: usize| {
        config_with(i as u64 + 1, |c| {
            c.streams.credit = CreditMode::Manual;
            c.streams.window = 1000;
            c.streams.connection_window = 2500;
        })
    };
    let mut net = pair_with(cfg);
    let streams: Vec<(StreamId, StreamId)> = (0..4).map(|_| open(&mut net, b"")).collect();
    let credit: Vec<u64> = streams.iter().map(|(_, p)| net.node(1).streams().send_credit(*p).unwrap()).collect();
    // The first grant has a floor (an eighth of the window) past the cap.
    assert_eq!(credit, vec![1000, 1000, 500, 125]);
    // The first stream ends: its credit goes to the starved ones.
    net.node(0).streams().cancel(streams[0].0, CloseCode::CANCELLED, "bye");
    net.settle();
    let credit: Vec<u64> = streams[1..].iter().map(|(_, p)| net.node(1).streams().send_credit(*p).unwrap()).collect();
    assert_eq!(credit.iter().sum::<u64>(), 2500);
    let n1 = net.node(1).id();
    assert_eq!(net.node(0).streams_ref().outstanding(n1), Some(2500));
}

#[test]
fn a_cancel_reaches_the_producer_whose_next_write_fails() {
    let mut net = pair();
    let (c, p) = open(&mut net, b"");
    net.node(1).streams().write(p, Bytes::from_static(b"one")).unwrap();
    net.settle();
    assert!(net.node(0).streams().cancel(c, CloseCode::CANCELLED, "dropped"));
    assert!(!net.node(0).streams().cancel(c, CloseCode::CANCELLED, "twice"));
    net.settle();
    assert_eq!(one_end(&net, 0, c).code, CloseCode::CANCELLED);
    let e = one_end(&net, 1, p);
    assert_eq!((e.code, e.remote), (CloseCode::CANCELLED, true));
    assert_eq!(net.node(1).streams().write(p, Bytes::from_static(b"two")), Err(WriteError::Ended));
    assert_eq!(net.node(1).streams_ref().open_counts(), (0, 0));
}

#[test]
fn a_deadline_closes_the_consumer_and_cancels_the_producer() {
    let mut net = pair();
    let c = net.node(0).streams().open("logs", Bytes::new(), None, Some(Duration::from_millis(50)));
    net.settle();
    let (p, deadline) = net.slots[1]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Stream(StreamEvent::Request { stream, deadline, .. }) => Some((*stream, *deadline)),
            _ => None,
        })
        .unwrap();
    assert!(deadline.is_some_and(|d| d <= Duration::from_millis(50)));
    net.run_for(Duration::from_millis(60));
    let e = one_end(&net, 0, c);
    assert_eq!((e.code, e.remote), (CloseCode::DEADLINE_EXCEEDED, false));
    let e = one_end(&net, 1, p);
    assert_eq!((e.code, e.remote), (CloseCode::DEADLINE_EXCEEDED, true));
}

#[test]
fn a_lost_connection_ends_every_stream_with_1006_at_both_ends() {
    // Without resumption the session ends with its connection. (With it,
    // streams wait for the resume: core/tests/sessions.rs.)
    let mut net = pair_with(|i| config_with(i as u64 + 1, |c| c.session.resume_window = Duration::ZERO));
    let (c, p) = open(&mut net, b"");
    let (c2, p2) = open(&mut net, b"");
    let conn = net.conns_of(0)[0].0;
    net.reset(0, conn);
    net.settle();
    for (i, s) in [(0, c), (0, c2), (1, p), (1, p2)] {
        let e = one_end(&net, i, s);
        assert_eq!((e.code, e.remote), (CloseCode::ABNORMAL, false));
    }
    assert_eq!(net.node(0).streams_ref().open_counts(), (0, 0));
    assert_eq!(net.node(1).streams_ref().open_counts(), (0, 0));
}

#[test]
fn a_closing_node_ends_its_streams_with_1001_at_both_ends() {
    let mut net = pair();
    let (c, p) = open(&mut net, b"");
    net.node(1).streams().write(p, Bytes::from_static(b"x")).unwrap();
    net.node(1).close();
    net.settle();
    assert_eq!(one_end(&net, 1, p).code, CloseCode::GOING_AWAY);
    let e = one_end(&net, 0, c);
    assert_eq!((e.code, e.remote), (CloseCode::GOING_AWAY, true));
    // A consumer that closes tells its producers too.
    let mut net = pair();
    let (c, p) = open(&mut net, b"");
    net.node(0).close();
    net.settle();
    assert_eq!(one_end(&net, 0, c).code, CloseCode::GOING_AWAY);
    let e = one_end(&net, 1, p);
    assert_eq!((e.code, e.remote), (CloseCode::GOING_AWAY, true));
}

#[test]
fn a_stream_the_peer_no_longer_holds_is_closed_by_the_heartbeat() {
    let mut net =
        pair_with(|i| config_with(i as u64 + 1, |c| c.streams.heartbeat_interval = Duration::from_millis(50)));
    let (c, p) = open(&mut net, b"");
    // The peer's heartbeats list the stream: it stays open.
    net.run_for(Duration::from_millis(300));
    assert!(ends(&net, 0, c).is_empty() && ends(&net, 1, p).is_empty());
    assert!(net.node(0).stats().streams.heartbeats >= 3);
    // A heartbeat (as if from n1) that no longer lists it closes it at n0.
    let conn = net.conns_of(0)[0].0;
    let wid = net.node(0).streams_ref().wire_id(c).unwrap();
    let mut b = Vec::new();
    encode_frame(&mut b, &Header::Stream(StreamFrame::Heartbeat { reply: false, seen: 0, held: vec![] }), &[]);
    net.inject(0, conn, &b);
    assert!(ends(&net, 0, c).is_empty(), "an open the peer has not seen is never an orphan");
    let mut b = Vec::new();
    encode_frame(&mut b, &Header::Stream(StreamFrame::Heartbeat { reply: false, seen: wid, held: vec![] }), &[]);
    net.inject(0, conn, &b);
    net.settle();
    let e = one_end(&net, 0, c);
    assert_eq!((e.code, e.remote), (CloseCode::ABNORMAL, false));
    assert_eq!(net.node(0).stats().streams.orphans_closed, 1);
    // n1 still holds p: its next heartbeat lists it, n0 (holding nothing)
    // answers with its list, and n1 closes it.
    net.run_for(Duration::from_millis(200));
    assert_eq!(one_end(&net, 1, p).code, CloseCode::ABNORMAL);
    let hb = net.node(0).stats().streams.heartbeats;
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.node(0).stats().streams.heartbeats, hb, "no stream, no stream heartbeat");
}

#[test]
fn data_past_credit_or_for_a_stream_never_opened_is_a_violation() {
    let mut net = pair();
    let conn = net.conns_of(0)[0].0;
    // n0 opened nothing: data for one of its ids is a protocol violation.
    let wid = if net.node(0).id() > net.node(1).id() { 3 } else { 2 };
    let mut b = Vec::new();
    encode_frame(&mut b, &Header::Stream(StreamFrame::Data { id: wid, more: false }), b"x");
    net.inject(0, conn, &b);
    net.settle();
    assert_eq!(net.node(0).stats().session.malformed, 1);

    let mut net = pair_with(|i| config_with(i as u64 + 1, |c| c.streams.window = 64));
    let (c, _p) = open(&mut net, b"");
    let conn = net.conns_of(0)[0].0;
    let wid = net.node(0).streams_ref().wire_id(c).unwrap();
    let mut b = Vec::new();
    for _ in 0..3 {
        encode_frame(&mut b, &Header::Stream(StreamFrame::Data { id: wid, more: false }), &[0; 40]);
    }
    net.inject(0, conn, &b);
    net.settle();
    assert!(net.slots[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::ProtocolViolation { error: ProtocolError::CreditExceeded(_), .. })));
    assert_eq!(one_end(&net, 0, c).code, CloseCode::ABNORMAL);
}

#[test]
fn opens_go_round_robin_across_servers_or_to_the_named_one() {
    let mut net = Net::new((0..3).map(|i| node(i, fast_config(i as u64 + 1))).collect());
    net.node(1).streams().serve("logs").unwrap();
    net.node(2).streams().serve("logs").unwrap();
    net.node(0).connect(Net::addr(1)).unwrap();
    net.node(0).connect(Net::addr(2)).unwrap();
    net.settle();
    for _ in 0..4 {
        net.node(0).streams().open("logs", Bytes::new(), None, None);
    }
    net.node(0).streams().open("logs", Bytes::new(), Some(PeerRef::from("n2")), None);
    net.settle();
    assert_eq!((requests(&net, 1).len(), requests(&net, 2).len()), (2, 3));
    let s = net.node(0).streams().open("logs", Bytes::new(), Some(PeerRef::from("n9")), None);
    net.settle();
    assert_eq!(one_end(&net, 0, s).code, CloseCode::BAD_REQUEST);
}

#[test]
fn ten_thousand_streams_on_one_connection_all_finish() {
    let mut net = pair();
    let n = 10_000;
    let cs: Vec<StreamId> =
        (0..n).map(|_| net.node(0).streams().open("logs", Bytes::from_static(b"q"), None, None)).collect();
    net.settle();
    let ps = requests(&net, 1);
    assert_eq!(ps.len(), n);
    assert_eq!(net.node(1).streams_ref().open_counts(), (0, n));
    for (p, _) in &ps {
        net.node(1).streams().write(*p, Bytes::from_static(b"reply")).unwrap();
        net.node(1).streams().close(*p, CloseCode::NORMAL, "");
    }
    net.settle();
    for c in cs.iter().step_by(97) {
        assert_eq!(data(&net, 0, *c), vec![Bytes::from_static(b"reply")]);
        assert_eq!(one_end(&net, 0, *c).code, CloseCode::NORMAL);
    }
    assert_eq!(net.node(0).streams_ref().open_counts(), (0, 0));
    assert_eq!(net.node(1).streams_ref().open_counts(), (0, 0));
}

/// Open/cancel churn: a peer that cancels streams faster than
/// `cancel_rate` (past `cancel_burst`) has its opens refused with 1013 until
/// its bucket refills; streams the producer closes never count.
#[test]
fn a_peer_that_opens_and_cancels_in_a_loop_is_throttled_with_1013() {
    let mut net = pair_with(|i| {
        config_with(i as u64 + 1, |c| {
            c.streams.cancel_rate = 10;
            c.streams.cancel_burst = 5;
        })
    });
    // Request/reply, the producer closing: no limit.
    for _ in 0..20 {
        let (c, p) = open(&mut net, b"q");
        net.node(1).streams().close(p, CloseCode::NORMAL, "");
        net.settle();
        assert_eq!(one_end(&net, 0, c).code, CloseCode::NORMAL);
    }
    // A reply, then the consumer drops its stream (what `request` does): no limit.
    for _ in 0..20 {
        let (c, p) = open(&mut net, b"q");
        net.node(1).streams().write(p, Bytes::from_static(b"r")).unwrap();
        net.settle();
        net.node(0).streams().cancel(c, CloseCode::CANCELLED, "got my reply");
        net.settle();
    }
    assert_eq!(net.node(1).stats().streams.churn_refused, 0);
    // The churn: open, cancel before any reply, five times, all within the burst.
    for _ in 0..5 {
        let (c, _p) = open(&mut net, b"q");
        net.node(0).streams().cancel(c, CloseCode::CANCELLED, "churn");
        net.settle();
    }
    let s = net.node(0).streams().open("logs", Bytes::new(), None, None);
    net.settle();
    let e = one_end(&net, 0, s);
    assert_eq!((e.code, e.remote), (CloseCode::TRY_AGAIN_LATER, true));
    assert!(e.text.contains("too many streams cancelled"), "{}", e.text);
    assert_eq!(net.node(1).stats().streams.churn_refused, 1);
    assert_eq!(requests(&net, 1).len(), 45, "the refused open never reached the application");
    // One token back after 1/rate: one open goes through again.
    net.run_for(Duration::from_millis(110));
    let (c, _p) = open(&mut net, b"again");
    assert!(ends(&net, 0, c).is_empty(), "open");
    assert_eq!(net.node(0).streams_ref().open_counts(), (1, 0));
}
