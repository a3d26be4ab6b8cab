//! The behaviour suite on smol.

mod suite;

use std::future::Future;

fn run<F: Future<Output = ()>>(f: F) {
    smol::block_on(f)
}

suite::behaviour_suite!(estafeta_smol::Smol, run);
suite::sessions_io::sessions_io_suite!(estafeta_smol::Smol, run);
