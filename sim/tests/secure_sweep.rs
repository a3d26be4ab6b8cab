//! Sweeps with every node on the secure channel (Noise XX, a network key on
//! half the runs, ChaCha20-Poly1305 on a quarter, a rekey every few records).
//! The wire taps read each record's plaintext (the core's plaintext tap), so
//! every invariant of the plaintext sweeps is checked on secure runs too:
//! the accounting of every message, streams' credit on the wire, groups,
//! files. `Options::sweep()` makes a quarter of the CI sweep's runs secure;
//! these tests make them all secure.
//!
//! - `SIM_SEEDS=500` sweeps more, from `SIM_START` (default 0);
//! - `SIM_SEED=<seed>` replays one (`cargo run -p estafeta-sim --release --
//!   run --seed <seed> --heavy --secure 1000` replays it from the command line).

use estafeta_sim::scenario::{Options, Scenario};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seeds() -> Vec<u64> {
    if let Some(s) = env_u64("SIM_SEED") {
        return vec![s];
    }
    let start = env_u64("SIM_START").unwrap_or(0);
    (start..start + env_u64("SIM_SEEDS").unwrap_or(40)).collect()
}

fn secure() -> Options {
    Options { secure_per_mille: 1000, ..Options::sweep() }
}

#[test]
fn secure_runs_keep_every_invariant() {
    let mut delivered = 0;
    for seed in seeds() {
        let sc = Scenario::random(seed, &secure());
        assert!(sc.is_secure(), "seed {seed}");
        let r = sc.run().unwrap_or_else(|e| {
            panic!(
                "seed {seed} ({}):\n{e}\nreplay: cargo run -p estafeta-sim --release -- run --seed {seed} --heavy --secure 1000",
                sc.describe()
            )
        });
        delivered += r.accounting.delivered;
    }
    assert!(delivered > 0, "no message delivered on any secure run");
}

#[test]
fn same_seed_same_trace_hash_on_secure_runs() {
    for seed in [1, 2] {
        let a = Scenario::random(seed, &secure()).run().expect("passes");
        let b = Scenario::random(seed, &secure()).run().expect("passes");
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
    }
}

#[test]
fn the_sweep_makes_a_share_of_runs_secure() {
    let secure = (0..400).filter(|s| Scenario::random(*s, &Options::sweep()).is_secure()).count();
    assert!((60..140).contains(&secure), "{secure} of 400 sweep runs are secure");
    assert!(!(0..50).any(|s| Scenario::random(s, &Options::default()).is_secure()), "the default stays plaintext");
}
