//! Seed sweeps of the main scenarios: 2 to 12 nodes in a full mesh, a half
//! mesh or a star, publishing in all three send modes and changing their
//! subscriptions under a random fault schedule of 0 to 48 faults (drawn per
//! seed, `Options::sweep()`), then healed and checked for liveness and for
//! the fate of every message. Heavy budgets are in every sweep: a class of
//! silent loss once hid behind a fixed budget of 6 faults.
//!
//! - `cargo test -p estafeta-sim --test sweep` runs 1000 seeds (two tests of
//!   500, so the harness runs them in parallel);
//! - `SIM_SEEDS=5000` sweeps more, from `SIM_START` (default 0);
//! - `SIM_SEED=123` replays one seed and prints its last trace records on
//!   failure; add `SIM_TRACE=1` to print the whole trace as it happens.

use estafeta_sim::scenario::{Options, Scenario};

const DEFAULT_SEEDS: u64 = 1000;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The seeds to run, and whether this is a replay of one seed.
fn seeds() -> (Vec<u64>, bool) {
    if let Some(seed) = env_u64("SIM_SEED") {
        return (vec![seed], true);
    }
    let n = env_u64("SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let start = env_u64("SIM_START").unwrap_or(0);
    ((start..start + n).collect(), false)
}

fn sweep(part: u64, parts: u64) {
    let (seeds, replay) = seeds();
    let opts = Options::sweep();
    let mut failed = Vec::new();
    let mut ran = 0;
    for seed in seeds.into_iter().filter(|s| s % parts == part) {
        ran += 1;
        let mut sc = Scenario::random(seed, &opts);
        if replay {
            sc.sim.trace_keep = 200;
            sc.sim.trace_echo = std::env::var("SIM_TRACE").is_ok();
        }
        if let Err(e) = sc.run() {
            println!(
                "seed {seed} FAILED ({}):\n{e}\n  replay: SIM_SEED={seed} cargo test -p estafeta-sim --test sweep -- --nocapture\n",
                sc.describe()
            );
            failed.push(seed);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} seeds failed: {failed:?}; replay one with SIM_SEED=<seed> cargo test -p estafeta-sim --test sweep -- --nocapture",
        failed.len()
    );
}

#[test]
fn sweep_even_seeds() {
    sweep(0, 2);
}

#[test]
fn sweep_odd_seeds() {
    sweep(1, 2);
}

/// One seed run twice gives the same trace hash; different seeds differ.
#[test]
fn same_seed_same_trace_hash() {
    let opts = Options::sweep();
    let seeds = match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => vec![1, 2, 3],
    };
    let mut hashes = Vec::new();
    for seed in seeds {
        let a = Scenario::random(seed, &opts).run().expect("seed passes");
        let b = Scenario::random(seed, &opts).run().expect("seed passes");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} is not deterministic");
        assert_eq!(a, b, "seed {seed}: same trace, same report");
        hashes.push(a.trace_hash);
    }
    hashes.dedup();
    assert!(hashes.len() > 1 || env_u64("SIM_SEED").is_some(), "different seeds, same trace");
}
