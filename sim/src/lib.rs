//! # estafeta-sim: a deterministic network simulator for estafeta-core
//!
//! Many [`estafeta_core::Node`]s run in one thread on virtual time. The
//! simulator jumps from event to event (a queue ordered by time, then by
//! insertion), and drives every node through the same
//! [`estafeta_core::Drain`] the runtimes use, with a sink that feeds a model
//! of TCP: bytes in order, cut at seeded boundaries, with latency, jitter,
//! bandwidth and a bounded window that makes writes block. No async, no
//! sockets, no clock: every random choice derives from one seed, and the same
//! seed gives the same trace hash.
//!
//! Faults ([`Fault`]): partitions (both ways and one way), repair, hold and
//! release, connection resets, crash and restart (same id or fresh), pause
//! and resume, clock drift, slow readers. A [`Scenario`] draws nodes, links,
//! subscriptions, a workload and a fault schedule from a seed, runs it, heals,
//! and checks liveness; an oracle checks safety after every event and
//! accounts for every message at the end (see `sim/README.md`).
//!
//! ```
//! use estafeta_sim::scenario::{Options, Scenario};
//! let opts = Options { min_nodes: 3, max_nodes: 3, min_faults: 2, max_faults: 2, fault_window_us: 500_000,
//!                     groups: false, plant_lease_bug: false, secure_per_mille: 0,
//!                     resume_per_mille: 0, plant_resend_bug: false, overwrite_per_mille: 0,
//!                     plant_overwrite_bug: false, plant_stream_resume_bug: false,
//!                     plant_run_bug: false };
//! let report = Scenario::random(1, &opts).run().expect("seed 1 passes");
//! assert_eq!(report.nodes, 3);
//! let again = Scenario::random(1, &opts).run().unwrap();
//! assert_eq!(report.trace_hash, again.trace_hash);
//! ```

#![forbid(unsafe_code)]

// The layers, bottom first: a module imports only from groups above its
// own, never from its own group or below (sim/README.md, "Layout").
mod agenda;
mod clock;
pub mod payload;
mod rng;
mod tap;
mod trace;

mod link;

mod net;
#[cfg(test)]
mod net_tests;

mod config;
mod fault;
mod workload;

mod check;
mod ev;

mod host;

pub mod group;

mod sim;

pub mod discovery;
pub mod relay_ring;
pub mod scenario;
pub mod security;

pub use check::Accounting;
pub use clock::Clock;
pub use config::{fast_config, NodeSetup, SimConfig};
pub use fault::{Fault, FaultPlan};
pub use host::addr_of;
pub use link::LinkParams;
pub use net::{NetParams, ProcId};
pub use rng::Rng;
pub use scenario::{Report, Scenario, Topology};
pub use security::{identity_of, secure_scenario, Actor, SecureOptions, SimSecurity};
pub use sim::{Sent, Sim};
pub use trace::{fmt_time, Trace, TraceHasher};
pub use workload::Workload;
