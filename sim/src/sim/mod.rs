//! The simulator: many nodes in one thread on virtual time, jumping from
//! event to event, each node driven through the production
//! [`estafeta_core::Drain`].
//!
//! `Sim` is the top of the layers below it (hosts, network, oracle); its
//! methods are split by what they do, each file a child of this one:
//! the event loop here, `driver.rs` (processes, sockets, drains),
//! `commands.rs` (what applications ask of their nodes), `faults.rs` (what
//! each fault does) and `app.rs` (the workload's actions). Nothing below
//! `Sim` imports it.

mod app;
mod commands;
mod discovery;
mod driver;
mod faults;
mod membership;
mod streams;

pub use commands::Sent;

use crate::agenda::Agenda;
use crate::check::{Accounting, Oracle, Want};
use crate::config::SimConfig;
use crate::ev::{kind, net_words, Ev};
use crate::fault::Fault;
use crate::host::{Host, HostState};
use crate::net::Net;
use crate::trace::Trace;
use crate::workload::Workload;
use estafeta_core::{Event, Node, NodeId};

/// A deterministic simulation of estafeta nodes on a TCP-like network.
///
/// ```
/// use estafeta_sim::{Sim, SimConfig};
/// let mut sim = Sim::new(SimConfig::uniform(7, 2, 1));
/// sim.subscribe(1, 0);
/// sim.connect(0, 1);
/// sim.run_for(200_000).unwrap();
/// assert!(sim.connected(0, 1));
/// let msg = sim.publish(0, 0, 100, estafeta_core::SendMode::All).unwrap();
/// sim.run_for(50_000).unwrap();
/// assert_eq!(sim.delivered_to(msg.id), vec![1]);
/// ```
pub struct Sim {
    seed: u64,
    now: u64,
    agenda: Agenda<Ev>,
    hosts: Vec<Host>,
    net: Net,
    oracle: Oracle,
    trace: Trace,
    /// Topic names; commands name topics by index.
    topics: Vec<String>,
    steps: u64,
    max_steps: u64,
    /// While set, `App` events make the nodes' applications act.
    workload: Option<Workload>,
    /// Every event every node emitted, if asked for: (time, machine, event).
    event_log: Option<Vec<(u64, usize, Event)>>,
    /// The applications' streams.
    streams: streams::SimStreams,
    /// Security actors and pinned dials.
    security: crate::security::SimSecurity,
}

impl Sim {
    /// Builds the network and starts every node (subscribed to nothing,
    /// connected to nobody).
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes.len();
        assert_eq!(cfg.links.len(), n * n, "one LinkParams per ordered pair");
        let links = cfg.links.clone();
        let net = Net::new(n, cfg.seed, cfg.net.clone(), |a, b| links[a * n + b].clone());
        let mut hosts: Vec<Host> = cfg.nodes.iter().enumerate().map(|(i, s)| Host::new(cfg.seed, i, s)).collect();
        let streams = streams::configure(cfg.seed, &mut hosts);
        let mut sim = Sim {
            seed: cfg.seed,
            now: 0,
            agenda: Agenda::new(),
            hosts,
            net,
            oracle: Oracle::new(cfg.topics.clone()),
            trace: Trace::new(cfg.trace_keep, cfg.trace_echo),
            topics: cfg.topics.clone(),
            steps: 0,
            max_steps: cfg.max_steps,
            workload: None,
            event_log: None,
            streams,
            security: cfg.security.clone(),
        };
        // The largest window a receiver grants, for the transfer checker.
        let chunk = cfg.nodes.iter().map(|n| n.config.transfer.chunk_size as u64).max().unwrap_or(0);
        let window = cfg.nodes.iter().map(|n| n.config.transfer.window_chunks as u64).max().unwrap_or(0);
        sim.oracle.transfer().window = chunk * window;
        sim.oracle.planes.security.setup(cfg.seed, &cfg.security);
        sim.oracle.planes.pubsub.sessions = cfg.nodes.iter().any(|n| !n.config.session.resume_window.is_zero());
        for slot in 0..n {
            sim.start_process(slot, false);
        }
        sim
    }

    /// The master seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time now, in microseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True if the simulation has no nodes.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The node in `slot`, unless it is crashed.
    pub fn node(&self, slot: usize) -> Option<&Node> {
        self.hosts[slot].node.as_ref()
    }

    /// The id of the node in `slot` (of its latest process).
    pub fn node_id(&self, slot: usize) -> NodeId {
        self.hosts[slot].id
    }

    /// True if the node in `slot` is running (not crashed, not paused).
    pub fn is_up(&self, slot: usize) -> bool {
        self.hosts[slot].state == HostState::Up
    }

    /// Keeps every event the nodes emit from now on, for [`Sim::events`].
    pub fn keep_events(&mut self) {
        self.event_log.get_or_insert_with(Vec::new);
    }

    /// The events machine `slot` emitted since [`Sim::keep_events`], with
    /// their virtual times.
    pub fn events(&self, slot: usize) -> impl Iterator<Item = (u64, &Event)> + '_ {
        self.event_log.iter().flatten().filter(move |(_, s, _)| *s == slot).map(|(t, _, e)| (*t, e))
    }

    /// The hash of everything that happened so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The most recent trace records, if the config kept any.
    pub fn trace_tail(&self) -> String {
        self.trace.tail()
    }

    /// Builds a simulation from `cfg` and runs `drive` on it; a failure
    /// comes back with the last trace records appended (the one way every
    /// scenario kind reports what broke).
    pub fn run_scenario<T>(cfg: SimConfig, drive: impl FnOnce(&mut Sim) -> Result<T, String>) -> Result<T, String> {
        let mut sim = Sim::new(cfg);
        drive(&mut sim).map_err(|e| {
            let tail = sim.trace_tail();
            if tail.is_empty() {
                e
            } else {
                format!("{e}\nlast trace records:\n{tail}")
            }
        })
    }

    /// Runs every event up to and including virtual time `t`. Stops at the
    /// first broken invariant and returns it.
    pub fn run_until(&mut self, t: u64) -> Result<(), String> {
        self.flush_net();
        while let Some(at) = self.agenda.peek_time() {
            if at > t {
                break;
            }
            let (at, ev) = self.agenda.pop().expect("peeked");
            assert!(at >= self.now, "simulator bug: event {ev:?} at {at} scheduled in the past ({})", self.now);
            self.now = at;
            self.step(ev);
            self.flush_net();
            self.check_groups();
            self.steps += 1;
            self.check()?;
            if self.steps > self.max_steps {
                return Err(format!(
                    "livelock: {} events by virtual time {} ({} queued)",
                    self.steps,
                    crate::trace::fmt_time(self.now),
                    self.agenda.len()
                ));
            }
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs for `us` microseconds of virtual time.
    pub fn run_for(&mut self, us: u64) -> Result<(), String> {
        self.run_until(self.now + us)
    }

    /// The invariants broken so far, if any, as one report.
    pub fn check(&self) -> Result<(), String> {
        let v: Vec<&String> = self.oracle.violations.iter().chain(self.net.violations.iter()).collect();
        if v.is_empty() {
            return Ok(());
        }
        let mut s = String::new();
        for line in v.iter().take(20) {
            s.push_str(line);
            s.push('\n');
        }
        if v.len() > 20 {
            s.push_str(&format!("... and {} more\n", v.len() - 20));
        }
        Err(s)
    }

    /// Machines (slots) that received message `g`.
    pub fn delivered_to(&self, g: u64) -> Vec<usize> {
        self.oracle.delivered_to(g)
    }

    /// Messages handed to open connections and not yet read by their receivers.
    pub fn in_transit(&self) -> usize {
        self.oracle.in_transit(&self.net)
    }

    /// Classifies every message published so far (see the crate docs) and
    /// records an invariant violation for every unexplained loss.
    pub fn account(&mut self) -> Accounting {
        self.oracle.account(self.now, &self.net)
    }

    /// Liveness: `Ok` once every node runs, every plane has settled as the
    /// applications asked (machine `i` connected to exactly
    /// `neighbours[i]`, seeing their subscriptions), and no connection is
    /// half-open; else what is still missing.
    pub(crate) fn settled(&self, neighbours: &[Vec<usize>]) -> Result<(), String> {
        if let Some(slot) = (0..self.len()).find(|s| !self.is_up(*s)) {
            return Err(format!("n{slot} is not running"));
        }
        let want = Want {
            nodes: self.hosts.iter().map(|h| h.node.as_ref().expect("up")).collect(),
            ids: self.hosts.iter().map(|h| h.id).collect(),
            neighbours,
            subs: self.hosts.iter().map(|h| &h.subs).collect(),
            topics: &self.topics,
        };
        self.oracle.settled(&want)?;
        if let Some((tcp, a, b)) = self.net.half_open() {
            return Err(format!("tcp {tcp} between n{a} and n{b} is half-open"));
        }
        Ok(())
    }

    fn step(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Net(e) => {
                self.trace.record(now, kind::NET, &net_words(&e), || format!("net {e:?}"));
                self.net.handle(now, e);
            }
            Ev::Wake { slot, proc } => {
                if self.hosts[slot].proc == proc {
                    if self.hosts[slot].wake_at.is_some_and(|w| w <= now) {
                        self.hosts[slot].wake_at = None;
                    }
                    self.trace.record(now, kind::WAKE, &[slot as u64], || format!("n{slot} wakes"));
                    self.service(slot);
                }
            }
            Ev::Timer { slot, proc, gen } => {
                let h = &self.hosts[slot];
                if h.proc == proc && h.timer_gen == gen {
                    self.hosts[slot].timer_at = None;
                    self.trace.record(now, kind::TIMER, &[slot as u64], || format!("n{slot} deadline"));
                    self.service(slot);
                }
            }
            Ev::App { slot, proc } => {
                if self.hosts[slot].proc == proc {
                    self.app_tick(slot);
                }
            }
            Ev::Fault(f) => self.apply(f),
        }
    }

    /// Moves what the network scheduled onto the agenda.
    fn flush_net(&mut self) {
        for (at, ev) in std::mem::take(&mut self.net.out) {
            self.agenda.push(at, Ev::Net(ev));
        }
        let wakes = std::mem::take(&mut self.net.wakes);
        for slot in wakes {
            self.wake(slot, self.now);
        }
    }

    /// Makes the driver of `slot` look at its sockets at `at` (at the latest).
    fn wake(&mut self, slot: usize, at: u64) {
        let h = &mut self.hosts[slot];
        if h.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        h.wake_at = Some(at);
        let proc = h.proc;
        self.agenda.push(at, Ev::Wake { slot, proc });
    }

    /// Schedules `fault` at virtual time `at`.
    pub fn schedule(&mut self, at: u64, fault: Fault) {
        self.agenda.push(at, Ev::Fault(fault));
    }

    /// The machine whose latest process has node id `id`.
    fn slot_of(&self, id: NodeId) -> Option<usize> {
        self.hosts.iter().position(|h| h.id == id)
    }
}
