//! Drain passes per second on one node with 10,000 idle connections: the
//! cost of a `Drain::run` that finds nothing to do (timers, output, actions
//! and events are each looked up, not scanned).
//!
//! ```text
//! cargo bench --bench drain          # prints case=drain_pass/10000_idle ...
//! DRAIN_CONNS=1000 cargo bench --bench drain
//! ```
//!
//! Without `--bench` (as under `cargo test --benches`) it runs a smoke test
//! with 100 connections.

use estafeta_core::wire::{encode_frame, write_preamble, Capabilities, Header, Hello};
use estafeta_core::{Action, Config, ConnId, Drain, Event, Node, Sink, Timestamp, WriteOutcome};
use std::time::{Duration, Instant};

/// Takes every byte and every event.
struct Null;

impl Sink for Null {
    fn write(&mut self, _conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        WriteOutcome::Wrote(bytes.len())
    }
    fn act(&mut self, _action: Action) {}
    fn deliver(&mut self, _event: Event) -> Result<(), Event> {
        Ok(())
    }
    fn file(&mut self, _request: estafeta_core::FileRequest) {}
}

fn handshake(id: u128) -> Vec<u8> {
    let mut b = Vec::new();
    write_preamble(&mut b);
    let hello = Hello::new(id, "peer", Capabilities::PUBSUB, vec!["t"]);
    encode_frame(&mut b, &Header::Hello(hello), &[]);
    b
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let conns: usize = std::env::var("DRAIN_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let conns = if bench { conns } else { 100 };
    let mut cfg = Config::default();
    cfg.security.mode = estafeta_core::SecurityMode::Plaintext;
    cfg.session.max_connections = conns + 1;
    let mut node = Node::new(cfg, "hub").expect("valid config");
    node.pubsub().subscribe("t").expect("valid topic");
    let now = Timestamp::from_millis(1);
    let mut drain = Drain::default();
    for i in 0..conns {
        let c = node.handle_accepted(now).expect("room");
        node.handle_bytes(now, c, &handshake(1000 + i as u128));
    }
    while let estafeta_core::Step::Yield = drain.run(&mut node, now, &mut Null) {}
    assert_eq!(node.peers().count(), conns, "every handshake completed");
    let dur = if bench { Duration::from_secs(3) } else { Duration::from_millis(50) };
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < dur {
        for _ in 0..100 {
            std::hint::black_box(drain.run(&mut node, now, &mut Null));
        }
        passes += 100;
    }
    let rate = passes as f64 / start.elapsed().as_secs_f64();
    println!("case=drain_pass/{conns}_idle ours={rate:.0} unit=passes/s");
}
