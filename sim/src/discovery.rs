//! Discovery scenarios: nodes that know only a root (or one neighbour) find
//! the peers that share their topics, under faults, and relay messages to
//! subscribers they are not connected to.
//!
//! A run:
//! 1. **faults**: every node joins through its known peer, subscribes, and
//!    (if the seed relays) relays every topic and publishes relayed
//!    messages now and then, while the fault schedule partitions, holds,
//!    resets, crashes, pauses and slows the nodes; the oracle checks safety
//!    after every event (`check/discovery.rs`: connections within the
//!    limit, each request handled at most once per node, request copies:
//!    each link once per direction and never back to where it was read
//!    from, so within the overlay edges but for races; relayed messages at
//!    most once per node and never back at their origin);
//! 2. **healing**: everything is repaired; within a bound every topic that
//!    two or more nodes subscribe to is paired on each of them, as their
//!    state and their last `Paired`/`Unpaired` event say (a topic only one
//!    node subscribes to is reported unpaired) (the overlay is
//!    one component by construction: every node's known peer leads to the
//!    root, and the root's connection limit is only drawn with
//!    `drop_root_when_paired`, so capacity always allows);
//! 3. **relay probe** (if the seed relays): every subscriber publishes one
//!    relayed message per topic; it must reach every other subscriber of
//!    the topic's component (subscribers connected through subscribers)
//!    exactly once.

use crate::config::{NodeSetup, SimConfig};
use crate::fault::{Fault, FaultPlan};
use crate::rng::{self, Rng};
use crate::sim::Sim;
use estafeta_core::PublishError;
use std::collections::BTreeSet;
use std::time::Duration;

/// How long pairing must hold after healing to count as settled: longer
/// than the liveness timeout (400 ms), so connections that died during the
/// faults are gone.
const STABLE_US: u64 = 600_000;

/// How the nodes know each other at start: who joins through whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlay {
    /// Every node joins through the root (node 0).
    Star,
    /// Node `i` joins through node `i - 1`: only node 1 knows the root.
    Line,
    /// Node `i` joins through a random earlier node (a random tree on the root).
    Random,
    /// A random graph: a random tree, and about half the nodes also join
    /// through a second earlier node, which closes cycles (so requests and
    /// relayed messages reach nodes by more than one path).
    Graph,
}

/// Limits on what [`DiscoveryScenario::random`] draws.
#[derive(Clone, Debug)]
pub struct DiscoveryOptions {
    /// Fewest nodes (the root included).
    pub min_nodes: usize,
    /// Most nodes.
    pub max_nodes: usize,
    /// Fewest faults per run.
    pub min_faults: usize,
    /// Most faults per run.
    pub max_faults: usize,
    /// Virtual time during which faults happen, microseconds.
    pub fault_window_us: u64,
    /// The planted bug: every node forgets the requests it handled.
    pub planted_bug: bool,
    /// The second planted bug: nodes forward requests back to the peer they
    /// came from too.
    pub planted_send_back: bool,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            min_nodes: 5,
            max_nodes: 50,
            min_faults: 0,
            max_faults: 12,
            fault_window_us: 2_000_000,
            planted_bug: false,
            planted_send_back: false,
        }
    }
}

/// Everything one discovery run does, drawn from a seed.
#[derive(Clone, Debug)]
pub struct DiscoveryScenario {
    /// The simulator setup (node 0 is the root).
    pub sim: SimConfig,
    /// Who joins through whom.
    pub overlay: Overlay,
    /// (joiner, known peer) pairs (a joiner may have two known peers).
    pub joins: Vec<(usize, usize)>,
    /// Topics each node subscribes to.
    pub subs: Vec<Vec<usize>>,
    /// The root's connection limit (only with `drop_root`).
    pub root_limit: Option<usize>,
    /// Nodes drop their known peer once paired.
    pub drop_root: bool,
    /// Every node relays every topic, and the applications publish relayed messages.
    pub relay: bool,
    /// The fault schedule.
    pub faults: Vec<(u64, Fault)>,
    /// When faults stop and everything is healed.
    pub heal_at_us: u64,
    /// How long after healing every shared topic must be paired.
    pub settle_bound_us: u64,
}

/// What a passing discovery run measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryReport {
    /// The seed.
    pub seed: u64,
    /// The trace hash.
    pub trace_hash: u64,
    /// Nodes simulated.
    pub nodes: usize,
    /// Virtual time from healing until every shared topic was paired (and
    /// stayed so).
    pub paired_us: u64,
    /// Request frames written in the whole run.
    pub request_copies: u64,
    /// Of those, second crossings of an edge in a race (both ways at once).
    pub request_races: u64,
    /// Relayed messages checked in the probe (each at every subscriber of its component).
    pub relay_probes: usize,
}

/// One node's core configuration for discovery runs.
fn setup(root: bool, root_limit: Option<usize>, drop_root: bool, planted_bug: bool) -> NodeSetup {
    let mut s = NodeSetup::default();
    let d = &mut s.config.discovery;
    d.root = root;
    d.root_max_connections = root_limit.unwrap_or(4096);
    d.drop_root_when_paired = drop_root;
    d.retry_base = Duration::from_millis(20);
    d.retry_cap = Duration::from_millis(300);
    d.root_refresh = Duration::from_secs(1);
    d.request_ttl = 64;
    d.relay_hop_limit = 64;
    d.planted_bug = planted_bug;
    s
}

impl DiscoveryScenario {
    /// The scenario for `seed`.
    ///
    /// ```
    /// use estafeta_sim::discovery::{DiscoveryOptions, DiscoveryScenario};
    /// let s = DiscoveryScenario::random(3, &DiscoveryOptions::default());
    /// assert!((5..=50).contains(&s.sim.nodes.len()));
    /// assert!(s.joins.iter().all(|(a, b)| b < a));
    /// ```
    pub fn random(seed: u64, opts: &DiscoveryOptions) -> DiscoveryScenario {
        let mut r = Rng::derive(seed, &[rng::STREAM_SCENARIO, 11]);
        let n = r.range(opts.min_nodes.max(2) as u64, opts.max_nodes.max(opts.min_nodes) as u64) as usize;
        let topics = r.range(1, 5) as usize;
        let mut sim = SimConfig::uniform(seed, n, topics);
        let overlay = match r.below(3) {
            0 => Overlay::Star,
            1 => Overlay::Line,
            _ => Overlay::Random,
        };
        let joins: Vec<(usize, usize)> = (1..n)
            .map(|i| match overlay {
                Overlay::Star => (i, 0),
                Overlay::Line => (i, i - 1),
                Overlay::Random | Overlay::Graph => (i, r.below(i as u64) as usize),
            })
            .collect();
        // Half the random trees get extra edges (a separate stream, so the
        // other draws of a seed stay as they were).
        let mut g = Rng::derive(seed, &[rng::STREAM_SCENARIO, 13]);
        let (overlay, mut joins) = if overlay == Overlay::Random && g.chance(500) {
            let mut joins = joins;
            for i in 2..n {
                let second = g.below(i as u64) as usize;
                if g.chance(500) && !joins.contains(&(i, second)) {
                    joins.push((i, second));
                }
            }
            (Overlay::Graph, joins)
        } else {
            (overlay, joins)
        };
        joins.sort_unstable();
        let drop_root = overlay == Overlay::Star && r.chance(500);
        let root_limit = (drop_root && r.chance(500)).then(|| r.range(4, 8) as usize);
        let relay = r.chance(500);
        for (i, s) in sim.nodes.iter_mut().enumerate() {
            *s = setup(i == 0, root_limit, drop_root, opts.planted_bug);
            s.config.discovery.planted_send_back = opts.planted_send_back;
        }
        // Every node but the root subscribes to one or two topics.
        let subs = (0..n)
            .map(|i| {
                if i == 0 {
                    return Vec::new();
                }
                let a = r.below(topics as u64) as usize;
                let b = r.below(topics as u64) as usize;
                let mut v = vec![a];
                if b != a && r.chance(300) {
                    v.push(b);
                }
                v
            })
            .collect();
        let budget = if opts.max_faults <= opts.min_faults {
            opts.min_faults
        } else {
            r.range(opts.min_faults as u64, opts.max_faults as u64) as usize
        };
        let plan = FaultPlan {
            budget,
            window_us: opts.fault_window_us,
            max_duration_us: opts.fault_window_us / 2,
            max_drift_ppm: 20_000,
            min_read_rate: 20_000,
        };
        let faults = plan.draw(&mut Rng::derive(seed, &[rng::STREAM_FAULT, 11]), n);
        DiscoveryScenario {
            sim,
            overlay,
            joins,
            subs,
            root_limit,
            drop_root,
            relay,
            faults,
            heal_at_us: opts.fault_window_us,
            settle_bound_us: 10_000_000,
        }
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        format!(
            "{} nodes, {} topics, {:?}, root limit {:?}, drop root {}, relay {}, {} faults",
            self.sim.nodes.len(),
            self.sim.topics.len(),
            self.overlay,
            self.root_limit,
            self.drop_root,
            self.relay,
            self.faults.len()
        )
    }

    /// Runs the scenario; on failure returns what broke.
    pub fn run(&self) -> Result<DiscoveryReport, String> {
        Sim::run_scenario(self.sim.clone(), |sim| self.drive(sim))
    }

    fn drive(&self, sim: &mut Sim) -> Result<DiscoveryReport, String> {
        let n = sim.len();
        let topics = self.sim.topics.len();
        for (slot, ts) in self.subs.iter().enumerate() {
            for t in ts {
                sim.subscribe(slot, *t);
            }
        }
        if self.relay {
            for slot in 0..n {
                for t in 0..topics {
                    sim.relay(slot, t);
                }
            }
        }
        for (a, b) in &self.joins {
            sim.discover_via(*a, *b);
        }
        for (at, f) in &self.faults {
            sim.schedule(*at, f.clone());
        }
        // The fault phase, with relayed messages now and then.
        let mut r = Rng::derive(self.sim.seed, &[rng::STREAM_SCENARIO, 12]);
        while sim.now() < self.heal_at_us {
            sim.run_for(20_000)?;
            if self.relay {
                let slot = 1 + r.below(n as u64 - 1) as usize;
                if let Some(&t) = self.subs[slot].first() {
                    let _ = sim.relay_publish(slot, t, 64);
                }
            }
        }
        sim.apply(Fault::Heal);
        let healed = sim.now();
        let deadline = healed + self.settle_bound_us;
        // Connections left over from before healing may still look alive
        // until their liveness timeout: pairing must hold for a while.
        let mut since: Option<u64> = None;
        let paired_us = loop {
            match self.paired(sim) {
                Ok(()) => {
                    let t = *since.get_or_insert(sim.now());
                    if sim.now() >= t + STABLE_US {
                        break t - healed;
                    }
                }
                Err(why) if sim.now() >= deadline => {
                    return Err(format!(
                        "liveness: not paired (for {}) within {} after healing at {}: {why}",
                        crate::trace::fmt_time(STABLE_US),
                        crate::trace::fmt_time(self.settle_bound_us),
                        crate::trace::fmt_time(healed)
                    ))
                }
                Err(_) => since = None,
            }
            sim.run_for(10_000)?;
        };
        let relay_probes = if self.relay { self.probe(sim)? } else { 0 };
        sim.check()?;
        Ok(DiscoveryReport {
            seed: sim.seed(),
            trace_hash: sim.trace_hash(),
            nodes: n,
            paired_us,
            request_copies: sim.request_copies(),
            request_races: sim.request_races(),
            relay_probes,
        })
    }

    /// Ok once every node that shares a topic with another node is paired on
    /// it, by its state and by its last event.
    fn paired(&self, sim: &mut Sim) -> Result<(), String> {
        for t in 0..self.sim.topics.len() {
            let holders: Vec<usize> = (0..sim.len()).filter(|s| self.subs[*s].contains(&t)).collect();
            if let [alone] = holders[..] {
                // Nobody shares it: reported unpaired, never paired by a timeout.
                if sim.is_up(alone) && (sim.is_paired(alone, t) || sim.reported_paired(alone, t) != Some(false)) {
                    return Err(format!("n{alone} is alone on t{t} but not reported unpaired"));
                }
                continue;
            }
            if holders.len() < 2 {
                continue;
            }
            for &s in &holders {
                if !sim.is_up(s) {
                    return Err(format!("n{s} is not running"));
                }
                if !sim.is_paired(s, t) {
                    return Err(format!("n{s} is not paired on t{t} (shared with {holders:?})"));
                }
                if sim.reported_paired(s, t) != Some(true) {
                    return Err(format!(
                        "n{s} is paired on t{t} but its last event says {:?}",
                        sim.reported_paired(s, t)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every subscriber publishes one relayed message per topic; each must
    /// reach every other subscriber of its component exactly once (and no
    /// other node, but subscribers of a component that merged with it
    /// meanwhile). Returns how many were checked.
    fn probe(&self, sim: &mut Sim) -> Result<usize, String> {
        let n = sim.len();
        let mut probes = Vec::new();
        for t in 0..self.sim.topics.len() {
            let holders: BTreeSet<usize> = (0..n).filter(|s| self.subs[*s].contains(&t)).collect();
            for &s in &holders {
                // The component of `s` among the subscribers of `t`.
                let mut comp = BTreeSet::from([s]);
                let mut todo = vec![s];
                while let Some(a) = todo.pop() {
                    for &b in &holders {
                        if !comp.contains(&b) && sim.connected(a, b) {
                            comp.insert(b);
                            todo.push(b);
                        }
                    }
                }
                comp.remove(&s);
                if comp.is_empty() {
                    continue;
                }
                let give_up = sim.now() + 3_000_000;
                // Components may merge while probes travel (a node that
                // lost a stale link dials a peer it knew): subscribers
                // beyond the component may get a probe too, once.
                let mut may = holders.clone();
                may.remove(&s);
                loop {
                    match sim.relay_publish(s, t, 64) {
                        Ok(g) => {
                            probes.push((g, s, comp, may));
                            break;
                        }
                        Err(PublishError::Full(_)) if sim.now() < give_up => sim.run_for(10_000)?,
                        Err(e) => return Err(format!("liveness: n{s} cannot relay-publish on t{t}: {e}")),
                    }
                }
            }
        }
        let deadline = sim.now() + 3_000_000;
        loop {
            let mut missing = Vec::new();
            for (g, from, want, may) in &probes {
                let got: BTreeSet<usize> = sim.relay_delivered_to(*g).into_iter().collect();
                if !want.is_subset(&got) || !got.is_subset(may) {
                    missing.push(format!(
                        "#{g} from n{from}: reached {got:?}, want {want:?} (and no node beyond {may:?})"
                    ));
                }
            }
            if missing.is_empty() {
                return Ok(probes.len());
            }
            if sim.now() >= deadline {
                return Err(format!("relayed probes not delivered as due: {}", missing.join("; ")));
            }
            sim.run_for(10_000)?;
        }
    }
}
