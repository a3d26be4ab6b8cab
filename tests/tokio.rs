//! The behaviour suite on tokio.

mod suite;

use std::future::Future;

fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

suite::behaviour_suite!(estafeta_tokio::Tokio, run);
suite::sessions_io::sessions_io_suite!(estafeta_tokio::Tokio, run);
