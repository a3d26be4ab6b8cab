//! Sessions that outlive connections, in the simulator's scenarios: the
//! session invariant (sim/src/check/pubsub/resumed.rs) holds with
//! `resume_window` drawn per run, and catches the planted resend bug.
//!
//! Planted bug (`session.planted_resend_bug`, `Options::plant_resend_bug`):
//! a resumed session re-sends from one past the sequence number the peer
//! expects, so one message is skipped while the session goes on. Seed 1
//! catches it (n5 resumes with n0 from message 2 while n0 expects 1):
//! `SIM_SEED=1 cargo test -p estafeta-sim --test resend -- --nocapture`, or
//! `cargo run -p estafeta-sim --release -- run --seed 1 --sessions 1000 --plant-resend-bug`.

use estafeta_sim::scenario::{Options, Scenario};

fn seed() -> u64 {
    std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

fn sessions(plant: bool) -> Options {
    Options { resume_per_mille: 1000, plant_resend_bug: plant, ..Options::default() }
}

#[test]
fn the_planted_seed_passes_without_the_bug() {
    let seed = seed();
    let sc = Scenario::random(seed, &sessions(false));
    assert!(sc.describe().contains("resume window"), "seed {seed}: sessions must be on");
    if let Err(e) = sc.run() {
        panic!("seed {seed} ({}): {e}", sc.describe());
    }
}

#[test]
fn the_session_invariant_catches_the_planted_resend_bug() {
    let seed = seed();
    let sc = Scenario::random(seed, &sessions(true));
    let err = sc.run().expect_err("the planted resend bug must fail the run");
    println!("planted resend bug, seed {seed}: {err}");
    assert!(err.contains("lost while the session goes on"), "seed {seed}: caught by something else: {err}");
}

/// Runs with and without sessions pass the invariant (a few seeds; the
/// sweep runs more: `estafeta-sim sweep --sessions 667`).
#[test]
fn runs_with_sessions_account_for_every_message() {
    for seed in [1u64, 2, 4, 6] {
        let sc = Scenario::random(seed, &sessions(false));
        let r = sc.run().unwrap_or_else(|e| panic!("seed {seed} ({}): {e}", sc.describe()));
        let a = &r.accounting;
        assert_eq!(a.session_unknown, 0, "seed {seed}");
        assert!(a.session_ok > 0, "seed {seed}: no message went through a session: {a:?}");
    }
}
