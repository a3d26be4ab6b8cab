//! The secure channel's cost: the same e2e cases with encryption on and off
//! in one run (ratio = encrypted / plaintext), and handshakes per second.
//!
//! ```text
//! case=secure/throughput_64B    ours=<encrypted msg/s> baseline=<plaintext msg/s> ratio=<enc/plain>
//! case=secure/throughput_1KiB   ...
//! case=secure/throughput_64KiB  ours=<MB/s> ...
//! case=secure/rtt_p50           ours=<encrypted us> baseline=<plaintext us> ratio=<enc/plain>
//! case=secure/handshakes        ours=<secure handshakes/s> baseline=<plaintext handshakes/s>
//! ```
//!
//! On smol the first four are `secure/smol/throughput_64B` and so on; the
//! handshakes (two in-memory nodes on one thread) are measured once.
//!
//! Each side is sampled in turn (plaintext, encrypted, plaintext, ...),
//! `E2E_SAMPLES_PRECISE` times for the throughput and RTT lines, and the
//! line gives the medians (see `samples.rs`).
//!
//! Every other case of this bench runs its nodes in the plaintext mode
//! (`SECURE` is off; build them with [`builder`]): a case that sets a node
//! against plain TCP compares like with like, and the figures stay
//! comparable across runs. Only these `secure/` lines measure encryption,
//! against the same node in plaintext.

use super::{ours_and_baseline, ratio_line, rtt_once, throughput_once, warmup, Impl, Length, Rt, Run, Settings, CASES};
use estafeta_core::secure::{Identity, SeededEntropy};
use estafeta_core::{Action, Config, Node, Timestamp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether the nodes of "ours" run the secure mode.
pub(crate) static SECURE: AtomicBool = AtomicBool::new(false);

/// Whether the nodes of "ours" run without sessions (`E2E_RESUME=0`, for profiling).
pub(crate) static NO_RESUME: AtomicBool = AtomicBool::new(false);

/// A builder for one of "ours" nodes, in the mode `SECURE` says, with
/// sessions unless `NO_RESUME` is set.
pub(crate) fn builder<R: estafeta_driver::Runtime>(name: &str) -> estafeta_driver::NodeBuilder<R> {
    builder_with(name, !NO_RESUME.load(Ordering::Relaxed))
}

/// The same, with sessions on or off (`resume_window` 0) as `resume` says.
pub(crate) fn builder_with<R: estafeta_driver::Runtime>(name: &str, resume: bool) -> estafeta_driver::NodeBuilder<R> {
    let mut b = estafeta_driver::Node::<R>::builder(name);
    if !resume {
        let mut cfg = estafeta_driver::Config::default();
        cfg.session.resume_window = Duration::ZERO;
        b = b.config(cfg);
    }
    if SECURE.load(Ordering::Relaxed) {
        b
    } else {
        b.plaintext()
    }
}

/// Runs `f` with `SECURE` set to `secure`, then puts back what it was
/// (`E2E_SECURE=1` sets it for the whole run).
fn with_mode<T>(secure: bool, f: impl FnOnce() -> T) -> T {
    let before = SECURE.swap(secure, Ordering::Relaxed);
    let out = f();
    SECURE.store(before, Ordering::Relaxed);
    out
}

pub(crate) fn run_secure(s: &Settings, rt: Rt) {
    let on = if rt == Rt::Smol { "smol/" } else { "" };
    for case in &CASES {
        let name = format!("secure/{on}{}", case.name);
        if !s.wants(&name) {
            continue;
        }
        let n = s.count(case.count);
        let run = Run { size: case.size, warm: warmup(n), n };
        let (rate, unit) = case.rate(n);
        let (enc, plain) = ours_and_baseline(s.samples(Length::Precise), |secure| {
            rate / with_mode(secure, || throughput_once(rt, Impl::Ours, run, 1)).as_secs_f64()
        });
        ratio_line(&name, &enc, &plain, unit);
    }
    if s.wants(&format!("secure/{on}rtt")) {
        let (enc, plain) = ours_and_baseline(s.samples(Length::Precise), |secure| {
            with_mode(secure, || rtt_once(rt, Impl::Ours, s.rounds).0).as_secs_f64() * 1e6
        });
        ratio_line(&format!("secure/{on}rtt_p50"), &enc, &plain, "us");
    }
    // In memory, on this thread: the same on either runtime.
    if rt == Rt::Tokio && s.wants("secure/handshakes") {
        let n = s.count(2_000).min(5_000);
        let (enc, plain) =
            ours_and_baseline(s.samples(Length::Short), |secure| n as f64 / handshakes(n, secure).as_secs_f64());
        ratio_line("secure/handshakes", &enc, &plain, "handshakes/s");
    }
}

/// `n` complete handshakes between two in-memory nodes (both sides' work on
/// this thread), until each side has its peer up.
fn handshakes(n: usize, secure: bool) -> Duration {
    let mut entropy = SeededEntropy::from_seed(7);
    let make = |name: &str, entropy: &mut SeededEntropy| {
        let mut cfg = Config::default();
        cfg.session.max_connections = n + 4;
        if secure {
            let id = Identity::generate(entropy);
            Node::with_identity(cfg, id, Box::new(entropy.clone()), name).expect("valid")
        } else {
            let seed = name.len() as u64 + name.as_bytes()[0] as u64;
            let mut cfg = Config { seed, ..Config::plaintext() };
            cfg.session.max_connections = n + 4;
            Node::new(cfg, name).expect("valid")
        }
    };
    let mut a = make("a", &mut entropy);
    let mut b = make("b", &mut SeededEntropy::from_seed(8));
    let now = Timestamp::from_millis(1);
    let (mut ab, mut ba) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for _ in 0..n {
        let target = a.connect("b@mem:1".parse().expect("address")).expect("connects");
        let Some(Action::Dial { conn: ca, .. }) = a.poll_action() else { panic!("dials") };
        a.handle_connected(now, ca);
        let cb = b.handle_accepted(now).expect("accepts");
        while a.target_peer(target).is_none() {
            ab.clear();
            ba.clear();
            while a.poll_transmit(now, ca, &mut ab) > 0 {}
            while b.poll_transmit(now, cb, &mut ba) > 0 {}
            assert!(!ab.is_empty() || !ba.is_empty(), "the handshake stalled");
            b.handle_bytes(now, cb, &ab);
            a.handle_bytes(now, ca, &ba);
        }
        a.disconnect(target);
        while a.poll_action().is_some() {}
        b.handle_closed(now, cb, estafeta_core::CloseReason::Io("done".into()));
        while a.poll_event().is_some() {}
        while b.poll_event().is_some() {}
        while b.poll_action().is_some() {}
    }
    started.elapsed()
}
