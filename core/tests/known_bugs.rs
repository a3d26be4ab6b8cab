//! Regression tests for defects found in estafeta-core while writing its
//! integration tests. Each test states what should happen and what the core
//! did before the fix. A test still marked `#[ignore]` reproduces a defect
//! that is not fixed yet: run those with
//! `cargo test -p estafeta-core --test known_bugs -- --ignored`, and drop the
//! `#[ignore]` with the fix.

use bytes::Bytes;
use estafeta_core::wire::{encode_frame, Header};
use estafeta_core::{
    Action, Config, ConnId, DialEvent, Drain, Event, Node, PubSubEvent, SendMode, Sink, Timestamp, WriteOutcome,
};
use std::time::Duration;

mod common;
use common::{config_with, credit_bytes, fast_config, handshake_bytes, Net};

fn pair(cfg: impl Fn(usize) -> Config) -> Net {
    let a = Node::new(cfg(0), "a").unwrap();
    let mut b = Node::new(cfg(1), "b").unwrap();
    b.pubsub().subscribe("t").unwrap();
    let mut net = Net::new(vec![a, b]);
    net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    assert_eq!(net.node(0).pubsub().subscriber_count("t"), 1);
    net
}

/// Fixed: messages queued for a peer that then broke the protocol vanished
/// without being counted or reported.
///
/// `Node::violation` (core/src/node/input.rs) calls `c.out.clear()` and
/// ignores the number of data frames it discarded, so they never reach
/// `Stats::dropped` nor an `Event::PubSub(PubSubEvent::Dropped)`. Every other path that discards
/// queued messages (`remove_conn`) reports them as `DropReason::Disconnected`.
/// Expected: 3 dropped, reported. Before the fix: `dropped == 0`, `sent == 0`.
#[test]
fn protocol_violation_reports_the_messages_it_discards() {
    let mut net = pair(|i| fast_config(i as u64));
    for _ in 0..3 {
        net.node(0).pubsub().publish("t", Bytes::from_static(b"x"), SendMode::All).unwrap();
    }
    // Before a's drain runs, b's side of the stream turns to garbage.
    let (conn, _) = net.conns_of(0)[0];
    net.inject(0, conn, &[0, 0, 0, 0]);
    net.settle();
    let a = net.node(0);
    assert_eq!(a.stats().session.malformed, 1);
    assert_eq!(
        a.stats().pubsub.sent + a.stats().pubsub.dropped,
        3,
        "every queued message is either sent or counted as dropped: {:?}",
        a.stats()
    );
}

/// Fixed: a frame larger than `max_read_buffer` (but within
/// `max_frame_size`) was never read: the connection hung forever.
///
/// `Node::wants_read` returns false once `rx.len() >= max_read_buffer`, even
/// when `rx` holds only part of one frame. A driver that honours it stops
/// reading, so the frame never completes. `handle_timeout` then refreshes
/// `last_recv` every time because the buffer is full, so the liveness timeout
/// never fires either: nothing more arrives on that connection, and nothing
/// reports it. `Config::max_read_buffer` is documented as "on top of one
/// frame". With the defaults (256 KiB buffer, 8 MiB frames) any message over
/// 256 KiB does this. Expected: the message arrives. Before the fix: it never did,
/// and the peer stayed "up".
#[test]
fn a_frame_larger_than_the_read_buffer_is_still_read() {
    let mut net =
        pair(|i| config_with(i as u64, |c| c.session.max_read_buffer = 4096)).with_splits(1, 1000, usize::MAX);
    net.node(0).pubsub().publish("t", Bytes::from(vec![7u8; 10_000]), SendMode::All).unwrap();
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(1).len(), 1, "the big message arrived");
}

/// A sink that takes everything until told to block.
struct Blocking {
    block: bool,
}

impl Sink for Blocking {
    fn write(&mut self, _conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        if self.block {
            WriteOutcome::Blocked
        } else {
            WriteOutcome::Wrote(bytes.len())
        }
    }
    fn act(&mut self, _action: Action) {}
    fn deliver(&mut self, _event: Event) -> Result<(), Event> {
        Ok(())
    }
    fn file(&mut self, _request: estafeta_core::FileRequest) {}
}

/// Fixed: while a socket stayed write-blocked with messages queued behind
/// it, the node reported a deadline in the past after every wake-up: a
/// driver that sleeps until `poll_timeout()` spun.
///
/// `poll_timeout` offers `last_send + heartbeat_interval` for every open
/// connection, but `handle_timeout` queues a heartbeat only when the
/// connection's queue is empty, and `last_send` moves only when
/// `poll_transmit` hands out bytes, which the drain does not do while the
/// connection's tail is blocked. Expected: after `handle_timeout(now)` (or a
/// `Drain::run` at `now`) the deadline is later than `now`. Before the fix: it was
/// `last_send + heartbeat_interval`, already past, until the socket drains
/// or the liveness timeout fires.
#[test]
fn deadline_is_in_the_future_while_a_socket_is_blocked() {
    let cfg = fast_config(3);
    let heartbeat = cfg.session.heartbeat_interval;
    let mut node = Node::new(cfg, "me").unwrap();
    let mut now = Timestamp::from_millis(1);
    let conn = node.handle_accepted(now).unwrap();
    node.handle_bytes(now, conn, &handshake_bytes(42, "peer", &["t"]));
    node.handle_bytes(now, conn, &credit_bytes("t", 100, 1 << 20));
    let mut drain = Drain::default();
    let mut sink = Blocking { block: false };
    drain.run(&mut node, now, &mut sink);
    // The socket fills up: one message is taken and blocked in the drain's
    // tail, the next stays queued in the node.
    sink.block = true;
    for _ in 0..2 {
        node.pubsub().publish("t", Bytes::from_static(b"m"), SendMode::All).unwrap();
        drain.run(&mut node, now, &mut sink);
    }
    assert!(drain.is_write_blocked(conn));
    // Still within the liveness timeout: the peer's bytes keep arriving.
    now += heartbeat + Duration::from_millis(20);
    let mut hb = Vec::new();
    encode_frame(&mut hb, &Header::Heartbeat, &[]);
    node.handle_bytes(now, conn, &hb);
    let step = drain.run(&mut node, now, &mut sink);
    match step {
        estafeta_core::Step::Idle { deadline: Some(deadline) } => {
            assert!(deadline > now, "deadline {deadline} is not after now {now}: the driver would spin")
        }
        other => panic!("{other:?}"),
    }
}

/// Fixed: a peer that refuses this node after every handshake was redialed
/// forever, at the base delay, however `reconnect_max_attempts` was set.
///
/// When the dialed side accepts the TCP connection, sends its Hello, then
/// refuses ours (here: our name is longer than its `max_name_len`; the same
/// happens for too many subscriptions or a bad topic), the dialer reaches
/// `Phase::Open`, reports `PeerUp` and `Connected`, then `PeerDown` on the
/// peer's Goodbye(1003). `target_lost` treats the loss of an open connection
/// as a fresh start (`attempts = 1`, no `DialFailed`), so the attempts never
/// accumulate and the backoff never grows. Expected: after
/// `reconnect_max_attempts` refusals in a row, `GaveUp` (or at least a
/// growing backoff). Before the fix: a PeerUp/PeerDown pair every 25-50 ms
/// forever.
#[test]
fn a_peer_that_always_refuses_is_given_up() {
    let dialer = Node::new(config_with(1, |c| c.dialer.reconnect_max_attempts = Some(3)), "a-long-name").unwrap();
    let picky = Node::new(config_with(2, |c| c.session.max_name_len = 4), "srv").unwrap();
    let mut net = Net::new(vec![dialer, picky]);
    net.node(0).connect(Net::addr(1)).unwrap();
    net.run_for(Duration::from_secs(5));
    let ups = net.slots[0].events.iter().filter(|e| matches!(e, Event::PeerUp { .. })).count();
    let gave_up = net.slots[0].events.iter().any(|e| matches!(e, Event::Dial(DialEvent::GaveUp { .. })));
    assert!(gave_up && ups <= 3, "{ups} handshakes with a peer that refuses every one, gave up: {gave_up}");
}

/// Fixed: once `close_timeout` had passed after `close()`, `poll_timeout()`
/// returned `Some(Timestamp::MAX)` forever instead of `None`, even when the
/// close finished cleanly long before.
///
/// `handle_timeout` sets `closing = Some(Timestamp::MAX)` once the close
/// deadline passed, and `poll_timeout` starts from `closing`. A driver that
/// turns the deadline into an `Instant` (`origin + Duration`) panics on
/// overflow; `Timestamp::MAX` is documented as "never reached", so a driver
/// has to special-case it. Expected: `None` once the node is closed (it
/// was `Some(Timestamp::MAX)` before the fix).
#[test]
fn a_closed_node_has_no_deadline() {
    let mut net = pair(|i| fast_config(i as u64));
    net.node(0).pubsub().publish("t", Bytes::from(vec![0u8; 100]), SendMode::All).unwrap();
    net.node(0).close();
    net.run_for(Duration::from_secs(2));
    let a = net.node(0);
    assert!(a.is_closed());
    assert_eq!(a.poll_timeout(), None);
}

/// Fixed: messages that arrived on a connection this node was closing
/// gracefully are discarded without being counted or reported.
///
/// `process_input` (core/src/node/input.rs) clears the read buffer of a
/// connection whose `closing` is set, frames and all. The sender counted
/// those messages as sent; the receiver had them in hand and dropped them
/// silently. Expected: each such message counted in `Stats::dropped` and
/// reported by `Event::PubSub(PubSubEvent::Dropped)` (for instance as `Disconnected`), or still
/// delivered. Actual: `received == 0` and `dropped == 0` at the receiver.
#[test]
fn messages_arriving_while_closing_are_counted() {
    // a dials b (so a has a target to disconnect); both subscribe.
    let mut a = Node::new(fast_config(10), "a").unwrap();
    a.pubsub().subscribe("t").unwrap();
    let mut b = Node::new(fast_config(11), "b").unwrap();
    b.pubsub().subscribe("t").unwrap();
    // Small writes: a's flush takes several rounds.
    let mut net = Net::new(vec![a, b]).with_splits(5, usize::MAX, 64);
    let target = net.node(0).connect(Net::addr(1)).unwrap();
    net.settle();
    assert_eq!(net.node(1).pubsub().subscriber_count("t"), 1);
    // a has a lot to flush to b; b sends a three messages.
    for _ in 0..20 {
        net.node(0).pubsub().publish("t", Bytes::from(vec![1u8; 100]), SendMode::All).unwrap();
    }
    for _ in 0..3 {
        net.node(1).pubsub().publish("t", Bytes::from_static(b"in flight"), SendMode::All).unwrap();
    }
    // a closes the connection gracefully: it flushes its 20 messages, says
    // goodbye, then closes. b's three messages arrive meanwhile.
    net.node(0).disconnect(target);
    // Time passes for the acks (`ack_delay`): `sent` counts acknowledged messages.
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.messages(1).len(), 20, "a's queue was flushed");
    let stats = net.node(0).stats();
    let b_stats = net.node(1).stats();
    assert_eq!(b_stats.pubsub.sent, 3);
    assert_eq!(stats.session.bytes_in, b_stats.session.bytes_out, "all b wrote reached a");
    assert_eq!(
        stats.pubsub.received + stats.pubsub.dropped,
        3,
        "the three messages b sent are received or counted as dropped: {stats:?}"
    );
}

/// Open: a publish to every subscriber refused with `Full` because one
/// subscriber's connection is closing gets no `Event::PubSub(PubSubEvent::Writable)` afterwards.
///
/// `publish_all` (core/src/node/publish.rs) counts a closing connection as
/// full (`room` is false while `closing` is set) and, under
/// `FullQueuePolicy::Backpressure`, returns `PublishError::Full`; but it
/// sets `want_writable` only on connections whose queue has no room, not on
/// the closing one. When that connection is removed, nobody wanted
/// `Writable`, so none is emitted. `PublishError::Full` documents "wait for
/// `Event::PubSub(PubSubEvent::Writable)` and retry": an application that does so waits forever.
/// Expected: `Writable` once the closing connection is gone. Actual: none.
#[test]
fn full_because_a_subscriber_is_closing_is_followed_by_writable() {
    let mut net = pair(|i| fast_config(i as u64));
    let target = net.slots[0]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Dial(DialEvent::Connected { target, .. }) => Some(*target),
            _ => None,
        })
        .expect("a dialed b");
    // Something queued, then a graceful disconnect: the connection stays
    // closing until the queue is flushed.
    net.node(0).pubsub().publish("t", Bytes::from_static(b"first"), SendMode::All).unwrap();
    net.node(0).disconnect(target);
    let err = net.node(0).pubsub().publish("t", Bytes::from_static(b"second"), SendMode::All).unwrap_err();
    assert!(err.is_full(), "{err:?}");
    net.settle();
    assert!(
        net.slots[0].events.contains(&Event::PubSub(PubSubEvent::Writable)),
        "Full must be followed by Writable: {:?}",
        net.slots[0].events
    );
}
