//! The planted bug of the streams plane: with `ESTAFETA_SIM_PLANT_STREAMS=1`
//! every producer ignores its credit, and the sweep must catch it (its own
//! binary, as the switch is the process environment).

use estafeta_sim::scenario::{Options, Scenario};

#[test]
fn the_checker_catches_a_producer_that_ignores_credit() {
    std::env::set_var("ESTAFETA_SIM_PLANT_STREAMS", "1");
    let seed = 2;
    let e = Scenario::random(seed, &Options::sweep()).run().expect_err("the planted bug must be caught");
    assert!(e.contains("credit"), "seed {seed} failed for another reason:\n{e}");
}

/// The same planted bug on secure runs: the credit check reads the frames
/// from the plaintext of each record (the wire taps of secure connections),
/// so it must catch it there too. Seed 2 of the all-secure sweep catches it:
/// `ESTAFETA_SIM_PLANT_STREAMS=1 cargo run -p estafeta-sim --release -- run --seed 2 --heavy --secure 1000`.
#[test]
fn the_checker_catches_a_producer_that_ignores_credit_on_a_secure_run() {
    std::env::set_var("ESTAFETA_SIM_PLANT_STREAMS", "1");
    let seed = 2;
    let opts = Options { secure_per_mille: 1000, ..Options::sweep() };
    let sc = Scenario::random(seed, &opts);
    assert!(sc.is_secure());
    let e = sc.run().expect_err("the planted bug must be caught");
    assert!(e.contains("credit"), "seed {seed} failed for another reason:\n{e}");
}
