//! A graceful close over a slow link, in the simulator: the closing node's
//! goodbye is followed by a half-close and it keeps reading, so the
//! subscriber's heartbeats never meet a closed socket and every message
//! published before `close` is delivered.
//!
//! Planted bug (`session.plant_close_bug`): the old close, which closed the
//! socket right after the goodbye. The subscriber's next heartbeat is
//! answered with a reset and the unread tail is lost; seed 1 catches it:
//! `cargo test -p estafeta-sim --test close the_planted`.

use estafeta_core::SendMode;
use estafeta_sim::{LinkParams, Sim, SimConfig};

const N: usize = 400;

/// n0 publishes N messages of 1 KB to n1 over a 256 KB/s link (n1 reads at
/// 200 KB/s), closes, and the simulation runs until everything settled.
/// Returns how many were delivered, and the checker's verdict.
fn close_over_a_slow_link(seed: u64, plant: bool) -> (usize, Result<(), String>) {
    let mut cfg = SimConfig::uniform(seed, 2, 1);
    cfg.links[1] = LinkParams { bandwidth: 256 << 10, window: 128 << 10, ..LinkParams::default() };
    cfg.nodes[0].config.session.plant_close_bug = plant;
    cfg.nodes[0].config.session.close_timeout = std::time::Duration::from_secs(10);
    let mut sim = Sim::new(cfg);
    sim.subscribe(1, 0);
    sim.connect(0, 1);
    sim.run_for(300_000).unwrap();
    assert!(sim.connected(0, 1));
    sim.slow_reader(1, Some(200_000));
    let ids: Vec<u64> = (0..N).map(|_| sim.publish(0, 0, 1000, SendMode::All).unwrap().id).collect();
    sim.close(0);
    sim.run_for(8_000_000).unwrap();
    let delivered = ids.iter().filter(|id| sim.delivered_to(**id) == [1]).count();
    sim.account();
    (delivered, sim.check())
}

#[test]
fn a_graceful_close_over_a_slow_link_delivers_everything() {
    for seed in 1..=5 {
        let (delivered, check) = close_over_a_slow_link(seed, false);
        assert_eq!(delivered, N, "seed {seed}: lost in the close");
        check.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn the_planted_close_bug_loses_the_tail() {
    let (delivered, _) = close_over_a_slow_link(1, true);
    println!("planted close bug, seed 1: {delivered} of {N} delivered");
    assert!(delivered < N, "the old close must lose the unread tail (delivered {delivered} of {N})");
}
