//! The core's dial timeout in the simulator: with a kernel that retries SYNs
//! for two minutes (as Linux does), a dial into a silent partition is
//! abandoned by the node at `dial_timeout`, and the reconnect follows the
//! heal within `dial_timeout + reconnect_cap` (plus a handshake), not when
//! the kernel gives up.

use estafeta_core::{CloseReason, DialEvent, Event};
use estafeta_sim::{Sim, SimConfig};
use std::time::Duration;

const DIAL_TIMEOUT_US: u64 = 300_000;
const CAP_US: u64 = 300_000;

fn sim(seed: u64) -> Sim {
    let mut cfg = SimConfig::uniform(seed, 2, 1);
    // The kernel's own connect timeout: about Linux's 127 s of SYN retries.
    cfg.net.connect_timeout_us = 127_000_000;
    for n in cfg.nodes.iter_mut() {
        n.config.dialer.dial_timeout = Duration::from_micros(DIAL_TIMEOUT_US);
        n.config.dialer.reconnect_cap = Duration::from_micros(CAP_US);
    }
    Sim::connected_pair(cfg)
}

/// (time, reason) of every failed dial of n0.
fn dial_failures(sim: &Sim) -> Vec<(u64, CloseReason)> {
    sim.events(0)
        .filter_map(|(t, e)| match e {
            Event::Dial(DialEvent::Failed { reason, .. }) => Some((t, reason.clone())),
            _ => None,
        })
        .collect()
}

fn connects_after(sim: &Sim, after: u64) -> Option<u64> {
    sim.events(0).find_map(|(t, e)| matches!(e, Event::Dial(DialEvent::Connected { .. }) if t >= after).then_some(t))
}

#[test]
fn a_dial_into_a_silent_partition_times_out_and_the_reconnect_follows_the_heal() {
    for seed in 1..=8 {
        let mut sim = sim(seed);
        sim.partition(&[0], &[1]);
        sim.run_for(3_000_000).unwrap();
        let timeouts = dial_failures(&sim).iter().filter(|(_, r)| *r == CloseReason::DialTimeout).count();
        assert!(timeouts >= 3, "seed {seed}: dials into the partition time out in the node: {:?}", dial_failures(&sim));
        let healed = sim.now();
        sim.repair(&[0], &[1]);
        sim.run_for(3_000_000).unwrap();
        let at = connects_after(&sim, healed).unwrap_or_else(|| panic!("seed {seed}: no reconnect after the heal"));
        // A dial in flight at the heal is either answered (its SYN was lost,
        // and the sim's kernel does not retry it) or abandoned at
        // dial_timeout; then the backoff (at most the cap), a handshake.
        let bound = DIAL_TIMEOUT_US + CAP_US + 200_000;
        assert!(at - healed <= bound, "seed {seed}: reconnected {} us after the heal (bound {bound})", at - healed);
        assert!(sim.connected(0, 1));
        sim.account();
        sim.check().unwrap();
    }
}
