//! A ring of relays under saturation (`src/relay_ring.rs`): every node
//! relays and publishes as fast as its queues take; the ring must keep
//! making progress, and every message a node missed must be reported.
//!
//! - `cargo test -p estafeta-sim --test relay_ring` runs 12 seeds;
//! - `RING_SEEDS=100` sweeps more, from `RING_START` (default 0);
//! - `RING_SEED=3` replays one seed with its last trace records on failure;
//! - `RING_PLANTED=1` plants the bug (relayed copies hold their upstream's
//!   whole credit window, as before the fix): the ring stalls.

use estafeta_sim::relay_ring::RingScenario;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

#[test]
fn a_saturated_ring_of_relays_keeps_making_progress_and_reports_every_loss() {
    let replay = env_u64("RING_SEED");
    let seeds: Vec<u64> = match replay {
        Some(s) => vec![s],
        None => {
            let start = env_u64("RING_START").unwrap_or(0);
            (start..start + env_u64("RING_SEEDS").unwrap_or(12)).collect()
        }
    };
    let mut failed = Vec::new();
    for seed in seeds {
        let mut sc = RingScenario::random_with(seed, std::env::var("RING_PLANTED").is_ok());
        if replay.is_some() {
            sc.sim.trace_keep = 200;
        }
        match sc.run() {
            Ok(r) => println!("seed {seed} ({}): {r:?}", sc.describe()),
            Err(e) => {
                eprintln!("seed {seed} ({}) failed: {e}", sc.describe());
                eprintln!("replay: RING_SEED={seed} cargo test -p estafeta-sim --test relay_ring -- --nocapture");
                failed.push(seed);
            }
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}

/// The seed the planted bug is caught with (found with
/// `RING_PLANTED=1 cargo test -p estafeta-sim --test relay_ring -- --nocapture`:
/// seeds 1-4, 6, 8-10 of the first 12 fail, 2, 4, 6, 9 and 10 by stalling,
/// the others stuck with full queues).
const PLANTED_SEED: u64 = 4;

#[test]
fn the_planted_full_hold_stalls_the_ring() {
    let sc = RingScenario::random_with(PLANTED_SEED, true);
    match sc.run() {
        Ok(r) => panic!("the planted bug went unnoticed: {r:?}"),
        Err(e) => assert!(e.contains("the ring stalled"), "caught, but not as a stall: {e}"),
    }
}
