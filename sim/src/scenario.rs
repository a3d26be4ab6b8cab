//! Scenarios: a seed turns into nodes, links, subscriptions, a workload and a
//! fault schedule; a run applies the faults, heals, and checks liveness.
//!
//! A run has three phases:
//! 1. **faults**: the applications publish in every mode and change
//!    subscriptions while the schedule partitions, holds, resets, crashes,
//!    pauses and slows the nodes; safety is checked after every event;
//! 2. **healing**: everything is repaired; within a bound (the reconnect
//!    backoff cap plus a margin for liveness timeouts, handshakes and
//!    retransmissions) every pair that should be connected is, with no
//!    half-open connection and every subscription known to every peer;
//! 3. **probe and accounting**: every node publishes once per topic to all
//!    subscribers, every subscriber must get it; then every message ever
//!    published is accounted for (see `check/pubsub.rs`).

use crate::check::Accounting;
use crate::config::{NodeSetup, SimConfig, Timers};
use crate::fault::{Fault, FaultPlan};
use crate::group::GroupPlan;
use crate::link::LinkParams;
use crate::net::NetParams;
use crate::rng::{self, Rng};
use crate::sim::Sim;
use crate::workload::Workload;
use estafeta_core::SendMode;

/// Who dials whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every node dials every other node (simultaneous dials everywhere).
    FullMesh,
    /// Node `i` dials node `j` for `i < j`: one dialer per pair.
    HalfMesh,
    /// Every node dials node 0.
    Star,
}

impl Topology {
    /// The (dialer, callee) pairs for `n` nodes.
    pub fn dials(self, n: usize) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for a in 0..n {
            for b in 0..n {
                let keep = match self {
                    Topology::FullMesh => a != b,
                    Topology::HalfMesh => a < b,
                    Topology::Star => b == 0 && a != 0,
                };
                if keep {
                    v.push((a, b));
                }
            }
        }
        v
    }
}

/// Limits on what [`Scenario::random`] draws.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewest nodes.
    pub min_nodes: usize,
    /// Most nodes.
    pub max_nodes: usize,
    /// Fewest faults drawn per run (each partition, hold, crash, pause with
    /// its undo counts as one).
    pub min_faults: usize,
    /// Most faults drawn per run; each seed draws its budget from
    /// `min_faults..=max_faults` (from a stream of its own, so a fixed budget
    /// draws exactly what it always drew).
    pub max_faults: usize,
    /// Virtual time during which faults happen, microseconds.
    pub fault_window_us: u64,
    /// Some machines join a membership group at machine 0 (see `group.rs`).
    pub groups: bool,
    /// Test only: group members ignore their lease (the planted bug the
    /// membership checker must catch).
    pub plant_lease_bug: bool,
    /// Runs per thousand whose nodes run the secure channel (Noise) instead
    /// of the plaintext mode (drawn from a stream of their own; see
    /// [`crate::security::secure_share`]). 1000: every run.
    pub secure_per_mille: u64,
    /// Runs per thousand whose nodes keep sessions across connections
    /// (`resume_window > 0`, drawn per run from a stream of its own; see
    /// [`crate::config::draw_resume_window`]). 0: none (the default);
    /// [`Options::sweep`] takes [`SWEEP_RESUME_PER_MILLE`].
    pub resume_per_mille: u64,
    /// Test only: a resume re-sends from one past the point the peer
    /// expects (`session.planted_resend_bug`, the bug the session-aware
    /// accounting must catch).
    pub plant_resend_bug: bool,
    /// Runs per thousand whose nodes that drop for full peers overwrite the
    /// oldest queued messages instead (`FullQueuePolicy::DropOldest`, drawn
    /// per run from a stream of its own; see
    /// [`crate::config::draw_overwrite`]). 0: none (the default);
    /// [`Options::sweep`] takes [`SWEEP_OVERWRITE_PER_MILLE`].
    pub overwrite_per_mille: u64,
    /// Test only: overwritten messages' markers are not written
    /// (`session.planted_overwrite_bug`, the bug the gap check must catch).
    pub plant_overwrite_bug: bool,
    /// Test only: a producer drops its queued replies when its session is
    /// suspended (`streams.planted_suspend_bug`, the bug the replies check
    /// must catch).
    pub plant_stream_resume_bug: bool,
    /// Test only: a run of received messages loses its last one
    /// (`session.planted_run_bug`, the bug the delivery accounting must catch).
    pub plant_run_bug: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_nodes: 5,
            max_nodes: 10,
            min_faults: 6,
            max_faults: 6,
            fault_window_us: 2_000_000,
            groups: false,
            plant_lease_bug: false,
            secure_per_mille: 0,
            resume_per_mille: 0,
            plant_resend_bug: false,
            overwrite_per_mille: 0,
            plant_overwrite_bug: false,
            plant_run_bug: false,
            plant_stream_resume_bug: false,
        }
    }
}

impl Options {
    /// What the CI sweep and `estafeta-sim sweep` draw from by default: 2 to
    /// 12 nodes and 0 to 48 faults per run, so the heavy fault budgets that
    /// once hid silent losses (issue: 40 faults per run) are in every sweep.
    pub fn sweep() -> Options {
        Options {
            min_nodes: 2,
            max_nodes: 12,
            min_faults: 0,
            max_faults: 48,
            groups: true,
            secure_per_mille: SWEEP_SECURE_PER_MILLE,
            resume_per_mille: SWEEP_RESUME_PER_MILLE,
            overwrite_per_mille: SWEEP_OVERWRITE_PER_MILLE,
            ..Options::default()
        }
    }

    /// A fixed number of faults per run.
    pub fn with_faults(self, faults: usize) -> Options {
        Options { min_faults: faults, max_faults: faults, ..self }
    }

    /// The fault budget for `seed`.
    fn fault_budget(&self, seed: u64) -> usize {
        if self.max_faults <= self.min_faults {
            return self.min_faults;
        }
        Rng::derive(seed, &[rng::STREAM_FAULT, 2]).range(self.min_faults as u64, self.max_faults as u64) as usize
    }
}

/// The share of [`Options::sweep`] runs that are secure, per thousand.
pub const SWEEP_SECURE_PER_MILLE: u64 = 250;

/// The share of [`Options::sweep`] runs whose sessions outlive connections,
/// per thousand.
pub const SWEEP_RESUME_PER_MILLE: u64 = 500;

/// The share of [`Options::sweep`] runs whose dropping nodes overwrite the
/// oldest queued messages instead, per thousand.
pub const SWEEP_OVERWRITE_PER_MILLE: u64 = 500;

/// Everything one run does, drawn from a seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The simulator setup.
    pub sim: SimConfig,
    /// Who dials whom.
    pub topology: Topology,
    /// Topics each node subscribes to at start.
    pub subs: Vec<Vec<usize>>,
    /// What the applications do during the fault phase.
    pub workload: Workload,
    /// The fault schedule.
    pub faults: Vec<(u64, Fault)>,
    /// When faults stop and everything is healed.
    pub heal_at_us: u64,
    /// How long after healing the nodes have to reconnect and agree.
    pub settle_bound_us: u64,
    /// The membership group, if the scenario has one.
    pub group: Option<GroupPlan>,
}

/// What a passing run measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The trace hash (same seed, same hash).
    pub trace_hash: u64,
    /// Nodes simulated.
    pub nodes: usize,
    /// Virtual time simulated, microseconds.
    pub sim_us: u64,
    /// Events processed.
    pub steps: u64,
    /// Faults applied.
    pub faults: usize,
    /// Time from healing until every pair was connected and agreed.
    pub reconnect_us: u64,
    /// The fate of every message.
    pub accounting: Accounting,
    /// Streams opened, terminals seen, stream ends whose codes were compared.
    pub streams: (u64, u64, u64),
    /// Files the applications sent (one per send, any number of receivers).
    pub files_sent: u64,
    /// Files received, verified on disk by the checker.
    pub files_received: u64,
    /// Transfers that failed (either end), each with a reason.
    pub transfers_failed: u64,
    /// Bytes sent again after resumes (each at most one window).
    pub bytes_resent: u64,
    /// Runs of messages the nodes running at the end received
    /// (`PubSubEvent::Messages`), and the messages in them.
    pub runs: (u64, u64),
}

impl Scenario {
    /// The scenario for `seed`.
    ///
    /// ```
    /// use estafeta_sim::scenario::{Options, Scenario};
    /// let a = Scenario::random(9, &Options::default());
    /// let b = Scenario::random(9, &Options::default());
    /// assert_eq!(a.faults, b.faults);
    /// assert!((5..=10).contains(&a.sim.nodes.len()));
    /// ```
    pub fn random(seed: u64, opts: &Options) -> Scenario {
        let mut r = Rng::derive(seed, &[rng::STREAM_SCENARIO]);
        let n = r.range(opts.min_nodes as u64, opts.max_nodes.max(opts.min_nodes) as u64) as usize;
        let topics = r.range(1, 3) as usize;
        let mut sim = SimConfig::uniform(seed, n, topics);
        let topology = match r.below(10) {
            0..=3 => Topology::FullMesh,
            4..=7 => Topology::HalfMesh,
            _ => Topology::Star,
        };
        let mut worst = Timers::default();
        for s in sim.nodes.iter_mut() {
            *s = NodeSetup::random(&mut r);
            worst = worst.max(s.timers());
        }
        let mut max_latency = 0;
        for l in sim.links.iter_mut() {
            let latency = r.log_range(100, 20_000);
            max_latency = max_latency.max(latency * 3 / 2);
            *l = LinkParams {
                latency_us: latency,
                jitter_us: latency * r.below(50) / 100,
                bandwidth: r.log_range(1 << 20, 1 << 30),
                window: r.log_range(4 << 10, 256 << 10) as usize,
            };
        }
        sim.net = NetParams {
            connect_timeout_us: r.range(200_000, 1_000_000),
            rto_us: r.range(0, 300_000),
            max_segment: r.log_range(64, 16 << 10) as usize,
            short_write_per_mille: 50,
        };
        let subs = (0..n).map(|_| (0..topics).filter(|_| r.chance(500)).collect()).collect();
        let mut files = Rng::derive(seed, &[rng::STREAM_FILES]);
        let workload = Workload {
            mean_gap_us: r.range(5_000, 40_000),
            resubscribe_per_mille: r.range(0, 60),
            max_payload: r.log_range(2 << 10, 64 << 10) as usize,
            file_per_mille: files.range(5, 40),
            max_file: files.log_range(4 << 10, 256 << 10) as usize,
        };
        let plan = FaultPlan {
            budget: opts.fault_budget(seed),
            window_us: opts.fault_window_us,
            max_duration_us: opts.fault_window_us / 2,
            max_drift_ppm: 20_000,
            min_read_rate: 20_000,
        };
        let faults = plan.draw(&mut Rng::derive(seed, &[rng::STREAM_FAULT, 1]), n);
        // Drawn from a stream of its own, so the rest draws what it always drew.
        let group = opts
            .groups
            .then(|| GroupPlan::draw(&mut Rng::derive(seed, &[rng::STREAM_SCENARIO, 0x67]), n))
            .flatten()
            .map(|g| GroupPlan { ignore_lease: opts.plant_lease_bug, ..g });
        if let Some(g) = &group {
            g.configure(&mut sim.nodes);
        }
        crate::security::secure_share(seed, opts.secure_per_mille, &mut sim.nodes);
        let resume_us = crate::config::draw_resume_window(seed, opts, &mut sim.nodes);
        crate::config::draw_overwrite(seed, opts, &mut sim.nodes);
        // Liveness bound: a stale connection times out, the backoff runs to
        // its cap, a dial and a handshake complete, lost segments are
        // retransmitted; plus a margin for drift and scheduling.
        let settle_bound_us = worst.liveness * 11 / 10
            + worst.reconnect_cap
            + worst.handshake
            + sim.net.connect_timeout_us
            + sim.net.rto_us
            + 8 * max_latency
            + 500_000
            + group.as_ref().map_or(0, |g| g.settle_bound_us())
            // A session that cannot resume ends only when its window passes.
            + resume_us
            // A transfer whose peer restarted as a new node waits this long.
            + crate::config::TRANSFER_PEER_TIMEOUT_US;
        Scenario { sim, topology, subs, workload, faults, heal_at_us: opts.fault_window_us, settle_bound_us, group }
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        format!(
            "{}{}{} nodes, {} topics, {:?}, {} faults, heal at {}, settle bound {}{}",
            if self.is_secure() { "secure, " } else { "" },
            match self.sim.nodes.first().map(|n| n.config.session.resume_window) {
                Some(w) if !w.is_zero() => format!("resume window {}, ", crate::trace::fmt_time(w.as_micros() as u64)),
                _ => String::new(),
            },
            self.sim.nodes.len(),
            self.sim.topics.len(),
            self.topology,
            self.faults.len(),
            crate::trace::fmt_time(self.heal_at_us),
            crate::trace::fmt_time(self.settle_bound_us),
            self.group.as_ref().map_or(String::new(), |g| format!(", group of {:?} at n{}", g.members, g.coordinator)),
        )
    }

    /// True if the nodes run the secure channel.
    pub fn is_secure(&self) -> bool {
        self.sim.nodes.iter().any(|n| n.config.security.mode == estafeta_core::SecurityMode::Noise)
    }

    /// Runs the scenario; on failure returns what broke.
    pub fn run(&self) -> Result<Report, String> {
        Sim::run_scenario(self.sim.clone(), |sim| self.drive(sim))
    }

    fn drive(&self, sim: &mut Sim) -> Result<Report, String> {
        let n = sim.len();
        for (slot, topics) in self.subs.iter().enumerate() {
            for t in topics {
                sim.subscribe(slot, *t);
            }
        }
        for (a, b) in self.topology.dials(n) {
            sim.connect(a, b);
        }
        if let Some(g) = &self.group {
            for m in &g.members {
                sim.join(*m, g.coordinator);
            }
        }
        for (at, f) in &self.faults {
            sim.schedule(*at, f.clone());
        }
        sim.start_workload(self.workload.clone());
        sim.run_until(self.heal_at_us)?;
        sim.stop_workload();
        sim.apply(Fault::Heal);
        let healed = sim.now();
        let deadline = healed + self.settle_bound_us;
        // Segments lost to partitions are retransmitted first.
        sim.run_for(self.sim.net.rto_us + 2 * self.max_latency_us())?;
        loop {
            if let Some(g) = &self.group {
                let slack = 4 * self.max_latency_us() + 10_000;
                if let Some(why) = sim.group_late(g.coordinator, &g.members, slack, healed) {
                    return Err(format!("liveness: group {why}"));
                }
            }
            match self.settled(sim) {
                Ok(()) => break,
                Err(why) if sim.now() >= deadline => {
                    return Err(format!(
                        "liveness: not settled {} after healing at {}: {why}",
                        crate::trace::fmt_time(self.settle_bound_us),
                        crate::trace::fmt_time(healed)
                    ))
                }
                Err(_) => sim.run_for(10_000)?,
            }
        }
        let reconnect_us = sim.now() - healed;
        // Probe: every node publishes to all subscribers of every topic.
        let mut probes = Vec::new();
        for slot in 0..n {
            for t in 0..self.sim.topics.len() {
                let want: Vec<usize> = self.neighbours(slot, n).into_iter().filter(|o| sim.subscribes(*o, t)).collect();
                if want.is_empty() {
                    continue;
                }
                // A full queue is backpressure: wait for it to drain and retry.
                let give_up = sim.now() + 3_000_000;
                loop {
                    match sim.publish(slot, t, 100, SendMode::All) {
                        Ok(sent) => {
                            probes.push((sent.id, slot, want));
                            break;
                        }
                        Err(e) if e.is_full() && sim.now() < give_up => sim.run_for(10_000)?,
                        Err(e) => {
                            return Err(format!(
                                "liveness: after settling, n{slot} cannot publish on t{t} to {want:?}: {e}"
                            ))
                        }
                    }
                }
            }
        }
        let probe_deadline = sim.now() + 3_000_000;
        loop {
            let missing: Vec<String> = probes
                .iter()
                .filter_map(|(g, from, want)| {
                    let got = sim.delivered_to(*g);
                    let lost: Vec<&usize> = want.iter().filter(|w| !got.contains(w)).collect();
                    (!lost.is_empty()).then(|| format!("#{g} from n{from} missing at {lost:?}"))
                })
                .collect();
            if missing.is_empty() {
                break;
            }
            if sim.now() >= probe_deadline {
                return Err(format!("liveness: probe messages not delivered: {}", missing.join("; ")));
            }
            sim.run_for(10_000)?;
        }
        // Let every message still travelling on a live connection land.
        let quiet_deadline = sim.now() + 5_000_000;
        while sim.in_transit() > 0 && sim.now() < quiet_deadline {
            sim.run_for(10_000)?;
        }
        sim.run_for(100_000)?;
        let accounting = sim.account();
        sim.check()?;
        let (files_sent, files_received, transfers_failed, bytes_resent) = sim.transfer_counts();
        Ok(Report {
            seed: sim.seed(),
            trace_hash: sim.trace_hash(),
            nodes: n,
            sim_us: sim.now(),
            steps: sim.steps(),
            faults: self.faults.len(),
            reconnect_us,
            accounting,
            streams: sim.stream_counts(),
            files_sent,
            files_received,
            transfers_failed,
            bytes_resent,
            runs: sim.run_counts(),
        })
    }

    fn neighbours(&self, slot: usize, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .topology
            .dials(n)
            .into_iter()
            .filter_map(|(a, b)| {
                if a == slot {
                    Some(b)
                } else if b == slot {
                    Some(a)
                } else {
                    None
                }
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Ok once every node runs, every pair that should be connected is, no
    /// node lists a peer it should not, no connection is half-open, and
    /// every node knows every neighbour's subscriptions (each plane's
    /// observer says what settled means for it).
    fn settled(&self, sim: &Sim) -> Result<(), String> {
        let n = sim.len();
        let neighbours: Vec<Vec<usize>> = (0..n).map(|slot| self.neighbours(slot, n)).collect();
        sim.settled(&neighbours)?;
        match &self.group {
            Some(g) => sim.group_settled(&g.members),
            None => Ok(()),
        }
    }

    fn max_latency_us(&self) -> u64 {
        self.sim.links.iter().map(|l| l.latency_us + l.jitter_us).max().unwrap_or(0)
    }
}
