//! The simulator: many nodes in one thread on virtual time, jumping from
//! event to event, each node driven through the production [`Drain`].

use crate::agenda::Agenda;
use crate::check::Oracle;
use crate::clock::Clock;
use crate::host::{Host, HostState};
use crate::link::LinkParams;
use crate::net::{Net, NetEv, NetParams, ProcId};
use crate::rng::{self, Rng};
use crate::trace::Trace;
use estafeta_core::{Budget, Config, Node, NodeId};

/// Trace record kinds (hashed with their fields).
pub(crate) mod kind {
    pub const NET: u64 = 1;
    pub const WAKE: u64 = 2;
    pub const TIMER: u64 = 3;
    pub const FAULT: u64 = 5;
    pub const WRITE: u64 = 6;
    pub const READ: u64 = 7;
    pub const ACT: u64 = 8;
    pub const EVENT: u64 = 9;
    pub const INPUT: u64 = 10;
    pub const PUBLISH: u64 = 11;
    pub const COMMAND: u64 = 12;
}

/// Something scheduled on the agenda.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
    Net(NetEv),
    /// The node's driver looks at its sockets.
    Wake {
        slot: usize,
        proc: ProcId,
    },
    /// The node's deadline.
    Timer {
        slot: usize,
        proc: ProcId,
        gen: u64,
    },
    /// The node's application does its next thing.
    App {
        slot: usize,
        proc: ProcId,
    },
    /// A scheduled fault.
    Fault(crate::fault::Fault),
}

/// How one node is set up.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    /// The core configuration (its `seed` is replaced by one drawn from the
    /// simulator's seed).
    pub config: Config,
    /// The drain's work budget per run.
    pub budget: Budget,
    /// Clock drift in parts per million.
    pub drift_ppm: i64,
    /// The clock's reading at virtual time zero, in microseconds.
    pub clock_offset_us: u64,
    /// Bytes per second the driver reads from the network (`None`: as fast as
    /// bytes come).
    pub read_rate: Option<u64>,
}

impl Default for NodeSetup {
    fn default() -> Self {
        NodeSetup {
            config: crate::scenario::fast_config(),
            budget: Budget::default(),
            drift_ppm: 0,
            clock_offset_us: 0,
            read_rate: None,
        }
    }
}

/// Everything a [`Sim`] is built from.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The master seed: every random choice derives from it.
    pub seed: u64,
    /// One entry per node; node `i` is named `n{i}` and listens at `sim:{i}`.
    pub nodes: Vec<NodeSetup>,
    /// Topic names; topics are referred to by index.
    pub topics: Vec<String>,
    /// Link shape per ordered pair, `links[from * n + to]`.
    pub links: Vec<LinkParams>,
    /// Transport knobs.
    pub net: NetParams,
    /// Trace records kept readable for failure reports.
    pub trace_keep: usize,
    /// Print every trace record to stderr.
    pub trace_echo: bool,
    /// Give up (livelock) after this many events.
    pub max_steps: u64,
}

impl SimConfig {
    /// `n` nodes with default setups and links, topics `t0..t{topics}`.
    ///
    /// ```
    /// let cfg = estafeta_sim::SimConfig::uniform(1, 3, 2);
    /// assert_eq!(cfg.nodes.len(), 3);
    /// assert_eq!(cfg.topics, ["t0", "t1"]);
    /// assert_eq!(cfg.links.len(), 9);
    /// ```
    pub fn uniform(seed: u64, n: usize, topics: usize) -> SimConfig {
        SimConfig {
            seed,
            nodes: (0..n).map(|_| NodeSetup::default()).collect(),
            topics: (0..topics).map(|i| format!("t{i}")).collect(),
            links: vec![LinkParams::default(); n * n],
            net: NetParams::default(),
            trace_keep: 0,
            trace_echo: false,
            max_steps: 20_000_000,
        }
    }
}

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
    pub(crate) seed: u64,
    pub(crate) now: u64,
    pub(crate) agenda: Agenda<Ev>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) net: Net,
    pub(crate) oracle: Oracle,
    pub(crate) trace: Trace,
    pub(crate) steps: u64,
    pub(crate) max_steps: u64,
    /// While set, `App` events make the nodes' applications act.
    pub(crate) workload: Option<crate::workload::Workload>,
    /// Every event every node emitted, if asked for: (time, machine, event).
    pub(crate) event_log: Option<Vec<(u64, usize, estafeta_core::Event)>>,
}

impl Sim {
    /// Builds the network and starts every node (subscribed to nothing,
    /// connected to nobody).
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes.len();
        assert_eq!(cfg.links.len(), n * n, "one LinkParams per ordered pair");
        let links = cfg.links.clone();
        let net = Net::new(n, cfg.seed, cfg.net.clone(), |a, b| links[a * n + b].clone());
        let hosts = cfg
            .nodes
            .iter()
            .enumerate()
            .map(|(i, s)| Host {
                name: format!("n{i}"),
                state: HostState::Down,
                proc: 0,
                node: None,
                drain: estafeta_core::Drain::new(s.budget),
                config: s.config.clone(),
                budget: s.budget,
                clock: Clock::new(s.clock_offset_us, s.drift_ppm),
                rng: Rng::derive(cfg.seed, &[rng::STREAM_HOST, i as u64]),
                read_rate: s.read_rate,
                read_ready_at: 0,
                timer_at: None,
                timer_gen: 0,
                wake_at: None,
                in_sync: true,
                targets: Vec::new(),
                subs: Default::default(),
                id: NodeId::default(),
                restarts: 0,
            })
            .collect();
        let mut sim = Sim {
            seed: cfg.seed,
            now: 0,
            agenda: Agenda::new(),
            hosts,
            net,
            oracle: Oracle::new(cfg.topics.clone()),
            trace: Trace::new(cfg.trace_keep, cfg.trace_echo),
            steps: 0,
            max_steps: cfg.max_steps,
            workload: None,
            event_log: None,
        };
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
    pub fn events(&self, slot: usize) -> impl Iterator<Item = (u64, &estafeta_core::Event)> + '_ {
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
    pub(crate) fn flush_net(&mut self) {
        for (at, ev) in std::mem::take(&mut self.net.out) {
            self.agenda.push(at, Ev::Net(ev));
        }
        let wakes = std::mem::take(&mut self.net.wakes);
        for slot in wakes {
            self.wake(slot, self.now);
        }
    }

    /// Makes the driver of `slot` look at its sockets at `at` (at the latest).
    pub(crate) fn wake(&mut self, slot: usize, at: u64) {
        let h = &mut self.hosts[slot];
        if h.wake_at.is_some_and(|w| w <= at) {
            return;
        }
        h.wake_at = Some(at);
        let proc = h.proc;
        self.agenda.push(at, Ev::Wake { slot, proc });
    }

    /// Schedules `fault` at virtual time `at`.
    pub fn schedule(&mut self, at: u64, fault: crate::fault::Fault) {
        self.agenda.push(at, Ev::Fault(fault));
    }

    /// Machines whose node ids are `ids`, for reports.
    pub(crate) fn slot_of(&self, id: NodeId) -> Option<usize> {
        self.hosts.iter().position(|h| h.id == id)
    }
}

fn net_words(e: &NetEv) -> [u64; 3] {
    match *e {
        NetEv::Arrive { tcp, dir, .. } => [1, tcp as u64, dir as u64],
        NetEv::Credit { tcp, dir, bytes } => [2, tcp as u64, ((dir as u64) << 32) | bytes as u64],
        NetEv::Syn { dial } => [3, dial as u64, 0],
        NetEv::SynAck { dial, tcp } => [4, dial as u64, tcp.map_or(u64::MAX, |t| t as u64)],
        NetEv::DialTimeout { dial } => [5, dial as u64, 0],
    }
}
