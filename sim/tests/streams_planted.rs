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
