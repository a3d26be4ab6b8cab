//! Membership figures, in the `case=… ours=… baseline=… unit=… ratio=…`
//! form of `benches/e2e.rs`:
//!
//! - `settle_10`, `settle_100`, `settle_1000`: in the simulator, a
//!   coordinator and N members joining one after another; ours = virtual
//!   time from the last join until every member reports its index (all in one
//!   epoch, indexes `0..N`), baseline = the settle period (default 3 s), so the
//!   ratio is how far past `settle` the group lands (expected: 1 + a
//!   renewal and a round trip over `settle`).
//! - `coordinator_heartbeat_1000`: on the core alone, wall-clock cost at the
//!   coordinator of one membership heartbeat (a Join answered with its
//!   assignment) with 1,000 members in the group; baseline = a session
//!   Heartbeat frame through the same path (handle_bytes and the drain).
//!
//! `cargo bench -p estafeta-sim --bench membership`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use estafeta_core::wire::{encode_frame, write_preamble, Capabilities, Header, Hello, MembershipFrame};
use estafeta_core::{Config, ConnId, Event, Node, Timestamp};
use estafeta_sim::group::GROUP;
use estafeta_sim::{Sim, SimConfig};
use std::time::{Duration, Instant};

fn line(case: &str, ours: f64, base: f64, unit: &str) {
    let fmt = |v: f64| if v >= 1000.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    println!("case={case} ours={} baseline={} unit={unit} ratio={:.3}", fmt(ours), fmt(base), ours / base);
}

/// Virtual milliseconds from the last of `n` joins until all members settled.
fn settle(n: usize) -> (f64, f64) {
    let mut cfg = SimConfig::uniform(7, n + 1, 1);
    cfg.max_steps = u64::MAX;
    cfg.nodes[0].config.membership.coordinator = true;
    let settle = cfg.nodes[0].config.membership.settle;
    let mut sim = Sim::new(cfg);
    let members: Vec<usize> = (1..=n).collect();
    // Joins spread over 100 ms.
    let gap = 100_000 / n as u64;
    for &m in &members {
        sim.join(m, 0);
        sim.run_for(gap).expect("no invariant broken");
    }
    let last = sim.now();
    while sim.group_settled(&members).is_err() {
        sim.run_for(1_000).expect("no invariant broken");
        assert!(sim.now() < last + 60_000_000, "settled within a minute");
    }
    ((sim.now() - last) as f64 / 1000.0, settle.as_secs_f64() * 1000.0)
}

fn frame(h: &Header<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(&mut b, h, &[]);
    b
}

/// A coordinator node with `n` members connected (hand-made peers), settled.
fn coordinator(n: usize) -> (Node, Vec<ConnId>, Timestamp) {
    let mut cfg = Config::default();
    cfg.membership.coordinator = true;
    cfg.session.max_connections = n + 8;
    let mut node = Node::new(cfg, "coord").unwrap();
    let mut now = Timestamp::from_millis(1);
    let mut conns = Vec::new();
    for i in 0..n {
        let c = node.handle_accepted(now).unwrap();
        let mut b = Vec::new();
        write_preamble(&mut b);
        let caps = Capabilities::SUPPORTED;
        encode_frame(&mut b, &Header::Hello(Hello::new(1000 + i as u128, "m", caps, vec![])), &[]);
        node.handle_bytes(now, c, &b);
        conns.push(c);
    }
    drain(&mut node, now);
    // Join, then heartbeat every renew interval until the group settled.
    for seq in 1..=12 {
        beat(&mut node, &conns, now, |_| join(seq));
        now += Duration::from_millis(500);
        node.handle_timeout(now);
        drain(&mut node, now);
    }
    let g = node.membership_ref().groups();
    assert!(g.len() == 1 && g[0].total == n as u32 && !g[0].settling, "settled: {g:?}");
    (node, conns, now)
}

fn join(seq: u64) -> Vec<u8> {
    frame(&Header::Membership(MembershipFrame::Join { group: GROUP, seq, hint: None }))
}

fn beat(node: &mut Node, conns: &[ConnId], now: Timestamp, bytes: impl Fn(usize) -> Vec<u8>) {
    for (i, c) in conns.iter().enumerate() {
        node.handle_bytes(now, *c, &bytes(i));
    }
    drain(node, now);
}

/// Writes out every reply and takes every event, as a driver would.
fn drain(node: &mut Node, now: Timestamp) {
    let mut buf = Vec::with_capacity(64 << 10);
    let mut after = None;
    while let Some(c) = node.next_transmit(after) {
        buf.clear();
        while node.poll_transmit(now, c, &mut buf) > 0 {
            buf.clear();
        }
        after = Some(c);
    }
    while node.poll_action().is_some() {}
    while let Some(ev) = node.poll_event() {
        if let Event::ProtocolViolation { error, .. } = ev {
            panic!("refused: {error}");
        }
    }
}

/// Microseconds per frame at the coordinator: membership Joins, then session
/// heartbeats, `rounds` rounds over every member.
fn heartbeat_cost(n: usize, rounds: u64) -> (f64, f64) {
    let (mut node, conns, mut now) = coordinator(n);
    let hb = frame(&Header::Heartbeat);
    let time = |node: &mut Node, membership: bool, now: &mut Timestamp| {
        let start = Instant::now();
        for r in 0..rounds {
            let seq = 100 + r;
            if membership {
                let j = join(seq);
                beat(node, &conns, *now, |_| j.clone());
            } else {
                beat(node, &conns, *now, |_| hb.clone());
            }
            *now += Duration::from_millis(100);
            node.handle_timeout(*now);
        }
        start.elapsed().as_secs_f64() * 1e6 / (rounds as f64 * n as f64)
    };
    // Interleaved, best of three each.
    let (mut ours, mut base) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        ours = ours.min(time(&mut node, true, &mut now));
        base = base.min(time(&mut node, false, &mut now));
    }
    let g = node.membership_ref().groups();
    assert!(g[0].total == n as u32 && !g[0].settling, "still settled: {g:?}");
    (ours, base)
}

fn main() {
    for n in [10, 100, 1000] {
        let (ours, base) = settle(n);
        line(&format!("settle_{n}"), ours, base, "ms");
    }
    let (ours, base) = heartbeat_cost(1000, 20);
    line("coordinator_heartbeat_1000", ours, base, "us");
}
