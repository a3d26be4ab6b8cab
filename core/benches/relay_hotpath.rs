//! The core's per-message cost at a relay, without a driver: a line A–B–C
//! through memory; A publishes 64 B messages with relay identities, B (a
//! subscriber relaying the topic) delivers each to its application and
//! forwards it to C, credit flows back. It prints the nanoseconds per
//! message of B's work; under callgrind it gives B's instructions per
//! message, which do not depend on what else the machine is doing:
//!
//! ```text
//! cargo bench -p estafeta-core --bench relay_hotpath
//! valgrind --tool=callgrind --toggle-collect='relay_hotpath::relay_side' \
//!     target/release/deps/relay_hotpath-* --bench
//! ```
//!
//! Toggle `relay_hotpath::a_side` (the origin's publishing) or
//! `relay_hotpath::c_side` (the last subscriber's receiving) for the
//! other two nodes; `benches/hotpath.rs` gives the same two figures for a
//! plain publish on one connection.
//!
//! `HOTPATH_MESSAGES` (default 1,000,000; 10,000 without `--bench`) and
//! `HOTPATH_SIZE` (default 64) change the run.

// The core reads no clock; this bench, outside it, measures wall time too.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../../benches/support/pair.rs"]
#[allow(dead_code)] // `connected` is the two-node setup; this bench links three
mod support;

use estafeta_core::{Action, Config, ConnId, CreditMode, Event, Node, PubSubEvent, Timestamp};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TOPIC: &str = "bench";

fn env(k: &str, default: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn config(seed: u64) -> Config {
    let mut c = Config { seed, ..Config::plaintext() };
    c.pubsub.credit = CreditMode::OnPoll;
    c
}

/// Dials `to` (listening as `b@mem:1`) from `from`; returns (from's conn, to's conn).
fn link(from: &mut Node, to: &mut Node, now: Timestamp) -> (ConnId, ConnId) {
    from.connect("b@mem:1".parse().expect("valid address")).expect("dials");
    let cf = match from.poll_action() {
        Some(Action::Dial { conn, .. }) => conn,
        other => panic!("expected a dial, got {other:?}"),
    };
    from.handle_connected(now, cf);
    let ct = to.handle_accepted(now).expect("accepts");
    support::pump(from, cf, to, ct, now);
    (cf, ct)
}

/// B's work for one batch: read A's bytes, deliver, forward to C, take
/// C's credit, pull credit for A.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn relay_side(
    b: &mut Node,
    (ba, bc): (ConnId, ConnId),
    from_a: &[u8],
    from_c: &[u8],
    got: &mut usize,
    to_c: &mut Vec<u8>,
    to_a: &mut Vec<u8>,
) {
    let now = Timestamp::from_millis(2);
    b.handle_bytes(now, bc, from_c);
    take_messages(b, ba, from_a, got);
    to_c.clear();
    while b.poll_transmit(now, bc, to_c) > 0 {}
    to_a.clear();
    while b.poll_transmit(now, ba, to_a) > 0 {}
}

/// Feeds `input` to `node` in 64 KiB reads and counts the messages it
/// delivers (black-boxing their payload).
#[inline(always)]
fn take_messages(node: &mut Node, conn: ConnId, input: &[u8], got: &mut usize) {
    let now = Timestamp::from_millis(2);
    for chunk in input.chunks(64 << 10) {
        node.handle_bytes(now, conn, chunk);
        while let Some(ev) = node.poll_event() {
            match ev {
                Event::PubSub(PubSubEvent::Message(m)) => {
                    *got += 1;
                    black_box(m.payload);
                }
                Event::PubSub(PubSubEvent::Messages(run)) => {
                    for m in run {
                        *got += 1;
                        black_box(m.payload);
                    }
                }
                _ => {}
            }
        }
    }
}

/// A's work: publish relayed copies until the queue is full, then pull bytes.
#[inline(never)]
fn a_side(a: &mut Node, ab: ConnId, payload: &bytes::Bytes, left: &mut usize, a_out: &mut Vec<u8>) {
    let now = Timestamp::from_millis(2);
    while *left > 0 && a.discovery().publish(TOPIC, payload.clone()).is_ok() {
        *left -= 1;
    }
    a_out.clear();
    while a.poll_transmit(now, ab, a_out) > 0 {
        if a_out.len() >= 1 << 20 {
            break;
        }
    }
}

/// C's work: take B's bytes, take the messages, pull credit for B.
#[inline(never)]
fn c_side(c: &mut Node, cb: ConnId, from_b: &[u8], got: &mut usize, c_out: &mut Vec<u8>) {
    let now = Timestamp::from_millis(2);
    take_messages(c, cb, from_b, got);
    c_out.clear();
    while c.poll_transmit(now, cb, c_out) > 0 {}
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env("HOTPATH_MESSAGES", if bench { 1_000_000 } else { 10_000 });
    let size = env("HOTPATH_SIZE", 64);
    let now = Timestamp::from_millis(1);
    let mut b = Node::new(config(1), "b").expect("valid config");
    b.pubsub().subscribe(TOPIC).expect("valid topic");
    b.discovery().set_relay(TOPIC, true).expect("relays");
    let mut a = Node::new(config(2), "a").expect("valid config");
    let mut c = Node::new(config(3), "c").expect("valid config");
    c.pubsub().subscribe(TOPIC).expect("valid topic");
    let (ab, ba) = link(&mut a, &mut b, now);
    let (cb, bc) = link(&mut c, &mut b, now);
    support::pump(&mut a, ab, &mut b, ba, now);
    support::pump(&mut c, cb, &mut b, bc, now);
    assert_eq!(b.peers().count(), 2, "both handshakes completed");
    let payload = bytes::Bytes::from(vec![0xA5u8; size]);
    let (mut left, mut at_b, mut at_c) = (n, 0usize, 0usize);
    let (mut a_out, mut c_out, mut to_c, mut to_a) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut t_relay = Duration::ZERO;
    let now = Timestamp::from_millis(2);
    while at_c < n {
        a_side(&mut a, ab, &payload, &mut left, &mut a_out);
        let t = Instant::now();
        relay_side(&mut b, (ba, bc), &a_out, &c_out, &mut at_b, &mut to_c, &mut to_a);
        t_relay += t.elapsed();
        c_side(&mut c, cb, &to_c, &mut at_c, &mut c_out);
        a.handle_bytes(now, ab, &to_a);
        while a.poll_event().is_some() {}
    }
    assert_eq!(at_b, n, "B delivered every message");
    assert_eq!(b.stats().discovery.relay_lost, 0);
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!("relay_hotpath size={size} messages={n} relay_ns_per_msg={:.1}", per(t_relay));
}
