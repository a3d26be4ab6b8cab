//! Model-based test: random sequences of transitions (publish in every mode,
//! subscribe, unsubscribe, partitions, holds, resets, crashes, restarts,
//! pauses, time passing) applied to a four-node simulation, checked against a
//! reference model of who is up, who can reach whom and who subscribes to
//! what. proptest shrinks a failure to a minimal sequence.
//!
//! After every transition the simulator's safety invariants must hold. A pair
//! the model says has been healthy for [`SETTLE_US`] must be connected, and a
//! node whose neighbours all are must see exactly their subscriptions and
//! publish accordingly. At the end everything is healed: every pair must
//! reconnect, every subscriber must get a probe, and every message must be
//! accounted for.
//!
//! `PROPTEST_CASES=1000 cargo test -p estafeta-sim --test model` runs more cases.

use estafeta_core::{PeerRef, PublishError, SendMode};
use estafeta_sim::{Sim, SimConfig, Topology};
use proptest::prelude::*;
use std::collections::BTreeSet;

const N: usize = 4;
const TOPICS: usize = 2;
/// A pair healthy this long is connected and agrees on subscriptions: a
/// stale connection times out (400 ms), the backoff reaches its cap (300 ms),
/// a dial may time out (1 s), a handshake completes, segments are
/// retransmitted (200 ms); plus margin.
const SETTLE_US: u64 = 2_500_000;
/// A subscription change reaches every connected peer within this.
const PROPAGATE_US: u64 = 300_000;

#[derive(Clone, Debug)]
enum Mode {
    All,
    RoundRobin,
    To(usize),
}

#[derive(Clone, Debug)]
enum Transition {
    Publish { node: usize, topic: usize, mode: Mode, len: usize },
    Subscribe { node: usize, topic: usize },
    Unsubscribe { node: usize, topic: usize },
    Partition { a: usize, b: usize },
    PartitionOneWay { from: usize, to: usize },
    Repair { a: usize, b: usize },
    Hold { a: usize, b: usize },
    Release { a: usize, b: usize },
    Reset { a: usize, b: usize },
    Crash(usize),
    Restart { node: usize, fresh: bool },
    Pause(usize),
    Resume(usize),
    Advance { ms: u64 },
}

fn node() -> impl Strategy<Value = usize> {
    0..N
}

fn pair() -> impl Strategy<Value = (usize, usize)> {
    (0..N, 1..N).prop_map(|(a, d)| (a, (a + d) % N))
}

fn transition() -> impl Strategy<Value = Transition> {
    let mode = prop_oneof![Just(Mode::All), Just(Mode::RoundRobin), node().prop_map(Mode::To)];
    prop_oneof![
        6 => (node(), 0..TOPICS, mode, 14usize..3000)
            .prop_map(|(node, topic, mode, len)| Transition::Publish { node, topic, mode, len }),
        2 => (node(), 0..TOPICS).prop_map(|(node, topic)| Transition::Subscribe { node, topic }),
        1 => (node(), 0..TOPICS).prop_map(|(node, topic)| Transition::Unsubscribe { node, topic }),
        1 => pair().prop_map(|(a, b)| Transition::Partition { a, b }),
        1 => pair().prop_map(|(from, to)| Transition::PartitionOneWay { from, to }),
        2 => pair().prop_map(|(a, b)| Transition::Repair { a, b }),
        1 => pair().prop_map(|(a, b)| Transition::Hold { a, b }),
        2 => pair().prop_map(|(a, b)| Transition::Release { a, b }),
        1 => pair().prop_map(|(a, b)| Transition::Reset { a, b }),
        1 => node().prop_map(Transition::Crash),
        2 => (node(), any::<bool>()).prop_map(|(node, fresh)| Transition::Restart { node, fresh }),
        1 => node().prop_map(Transition::Pause),
        2 => node().prop_map(Transition::Resume),
        4 => (1u64..3000).prop_map(|ms| Transition::Advance { ms }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Running,
    Paused,
    Down,
}

/// The reference model: what the nodes should be able to agree on.
struct Model {
    dials: Vec<(usize, usize)>,
    up: [Life; N],
    subs: [BTreeSet<usize>; N],
    /// `cut[a][b]`: the direction a -> b is partitioned.
    cut: [[bool; N]; N],
    held: [[bool; N]; N],
    /// When each pair last became healthy; `None` while it is not.
    healthy_since: [[Option<u64>; N]; N],
    /// When each node last changed its subscriptions.
    subs_changed: [u64; N],
}

impl Model {
    fn new(topology: Topology) -> Model {
        Model {
            dials: topology.dials(N),
            up: [Life::Running; N],
            subs: Default::default(),
            cut: [[false; N]; N],
            held: [[false; N]; N],
            healthy_since: [[Some(0); N]; N],
            subs_changed: [0; N],
        }
    }

    fn neighbours(&self, a: usize) -> BTreeSet<usize> {
        self.dials
            .iter()
            .filter_map(|&(x, y)| {
                if x == a {
                    Some(y)
                } else if y == a {
                    Some(x)
                } else {
                    None
                }
            })
            .collect()
    }

    fn pair_ok(&self, a: usize, b: usize) -> bool {
        self.up[a] == Life::Running
            && self.up[b] == Life::Running
            && !self.cut[a][b]
            && !self.cut[b][a]
            && !self.held[a][b]
            && !self.held[b][a]
    }

    /// Recomputes which pairs are healthy; `disturbed` pairs start over.
    fn refresh(&mut self, now: u64, disturbed: &[(usize, usize)]) {
        for &(a, b) in disturbed {
            self.healthy_since[a][b] = None;
            self.healthy_since[b][a] = None;
        }
        for a in 0..N {
            for b in 0..N {
                if !self.pair_ok(a, b) {
                    self.healthy_since[a][b] = None;
                } else if self.healthy_since[a][b].is_none() {
                    self.healthy_since[a][b] = Some(now);
                }
            }
        }
    }

    fn settled(&self, a: usize, b: usize, now: u64) -> bool {
        self.healthy_since[a][b].is_some_and(|t| now >= t + SETTLE_US)
    }

    /// True if `a` and all its neighbours have been healthy and quiet long
    /// enough for `a`'s view of their subscriptions to be exact.
    fn view_settled(&self, a: usize, now: u64) -> bool {
        self.up[a] == Life::Running
            && self.neighbours(a).iter().all(|&b| self.settled(a, b, now) && now >= self.subs_changed[b] + PROPAGATE_US)
    }

    fn subscribers(&self, a: usize, topic: usize) -> BTreeSet<usize> {
        self.neighbours(a).into_iter().filter(|b| self.subs[*b].contains(&topic)).collect()
    }
}

fn apply(sim: &mut Sim, m: &mut Model, t: &Transition) -> Result<(), TestCaseError> {
    let now = sim.now();
    match t.clone() {
        Transition::Publish { node, topic, mode, len } => {
            if m.up[node] != Life::Running {
                return Ok(());
            }
            let target = match mode {
                Mode::To(i) => Some(i),
                _ => None,
            };
            let send = match mode {
                Mode::All => SendMode::All,
                Mode::RoundRobin => SendMode::RoundRobin,
                Mode::To(i) => SendMode::To(PeerRef::Id(sim.node_id(i))),
            };
            let r = sim.publish(node, topic, len, send);
            if m.view_settled(node, now) {
                let subs = m.subscribers(node, topic);
                let ok = match (&r, target) {
                    (Err(PublishError::Full(_)), _) => true,
                    (Err(PublishError::UnknownPeer(_)), Some(i)) => !m.neighbours(node).contains(&i),
                    (Err(PublishError::NotSubscribed { .. }), Some(i)) => {
                        m.neighbours(node).contains(&i) && !subs.contains(&i)
                    }
                    (Ok(s), Some(i)) => subs.contains(&i) && s.queued == 1,
                    (Err(PublishError::NoSubscribers(_)), None) => subs.is_empty(),
                    (Ok(s), None) if matches!(mode, Mode::All) => s.queued + s.dropped == subs.len(),
                    (Ok(s), None) => !subs.is_empty() && s.queued == 1,
                    _ => false,
                };
                prop_assert!(ok, "n{node} publish on t{topic} {mode:?} gave {r:?}; model subscribers {subs:?}");
            }
        }
        Transition::Subscribe { node, topic } | Transition::Unsubscribe { node, topic } => {
            if m.up[node] == Life::Paused {
                return Ok(());
            }
            if matches!(t, Transition::Subscribe { .. }) {
                sim.subscribe(node, topic);
                m.subs[node].insert(topic);
            } else {
                sim.unsubscribe(node, topic);
                m.subs[node].remove(&topic);
            }
            m.subs_changed[node] = now;
        }
        Transition::Partition { a, b } => {
            sim.partition(&[a], &[b]);
            m.cut[a][b] = true;
            m.cut[b][a] = true;
        }
        Transition::PartitionOneWay { from, to } => {
            sim.partition_oneway(from, to);
            m.cut[from][to] = true;
        }
        Transition::Repair { a, b } => {
            sim.repair(&[a], &[b]);
            m.cut[a][b] = false;
            m.cut[b][a] = false;
        }
        Transition::Hold { a, b } => {
            sim.hold(a, b);
            m.held[a][b] = true;
            m.held[b][a] = true;
        }
        Transition::Release { a, b } => {
            sim.release(a, b);
            m.held[a][b] = false;
            m.held[b][a] = false;
        }
        Transition::Reset { a, b } => {
            sim.reset(a, b);
            m.refresh(now, &[(a, b)]);
        }
        Transition::Crash(n) => {
            sim.crash(n);
            m.up[n] = Life::Down;
        }
        Transition::Restart { node, fresh } => {
            if m.up[node] == Life::Down {
                sim.restart(node, fresh);
                m.up[node] = Life::Running;
                m.subs_changed[node] = now;
            }
        }
        Transition::Pause(n) => {
            if m.up[n] == Life::Running {
                sim.pause(n);
                m.up[n] = Life::Paused;
            }
        }
        Transition::Resume(n) => {
            if m.up[n] == Life::Paused {
                sim.resume(n);
                m.up[n] = Life::Running;
            }
        }
        Transition::Advance { ms } => {
            sim.run_for(ms * 1000).map_err(TestCaseError::fail)?;
            let now = sim.now();
            for &(a, b) in &m.dials {
                if m.settled(a, b, now) {
                    prop_assert!(
                        sim.connected(a, b),
                        "n{a} and n{b} healthy since {:?} but not connected at {now}",
                        m.healthy_since[a][b]
                    );
                }
            }
            for a in 0..N {
                if m.view_settled(a, now) {
                    for topic in 0..TOPICS {
                        let want = m.subscribers(a, topic).len();
                        let got = sim.node(a).expect("up").pubsub_ref().subscriber_count(&format!("t{topic}"));
                        prop_assert_eq!(
                            got,
                            want,
                            "n{} sees {} subscribers of t{}, model says {}",
                            a,
                            got,
                            topic,
                            want
                        );
                    }
                }
            }
        }
    }
    m.refresh(sim.now(), &[]);
    sim.check().map_err(TestCaseError::fail)?;
    Ok(())
}

fn run(seed: u64, topology: Topology, initial: &[(usize, usize)], steps: &[Transition]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(SimConfig::uniform(seed, N, TOPICS));
    let mut m = Model::new(topology);
    for &(node, topic) in initial {
        sim.subscribe(node, topic);
        m.subs[node].insert(topic);
    }
    for &(a, b) in &m.dials {
        sim.connect(a, b);
    }
    for t in steps {
        apply(&mut sim, &mut m, t)?;
    }
    // Heal everything: every pair reconnects, every subscriber hears a probe.
    sim.heal();
    for n in 0..N {
        m.up[n] = Life::Running;
        m.subs_changed[n] = m.subs_changed[n].min(sim.now());
    }
    m.cut = [[false; N]; N];
    m.held = [[false; N]; N];
    m.refresh(sim.now(), &[]);
    apply(&mut sim, &mut m, &Transition::Advance { ms: SETTLE_US / 1000 + 100 })?;
    for &(a, b) in &m.dials {
        prop_assert!(sim.connected(a, b), "after healing, n{a} and n{b} are not connected");
    }
    let mut probes = Vec::new();
    for a in 0..N {
        for topic in 0..TOPICS {
            let want = m.subscribers(a, topic);
            if !want.is_empty() {
                let sent = sim.publish(a, topic, 50, SendMode::All).map_err(|e| TestCaseError::fail(e.to_string()))?;
                probes.push((sent.id, a, want));
            }
        }
    }
    sim.run_for(500_000).map_err(TestCaseError::fail)?;
    for (id, a, want) in probes {
        let got: BTreeSet<usize> = sim.delivered_to(id).into_iter().collect();
        prop_assert_eq!(&got, &want, "probe #{} from n{}", id, a);
    }
    sim.account();
    sim.check().map_err(TestCaseError::fail)?;
    Ok(())
}

/// 64 cases unless `PROPTEST_CASES` says otherwise.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_transitions_keep_the_invariants(
        seed in any::<u64>(),
        topology in prop_oneof![Just(Topology::FullMesh), Just(Topology::HalfMesh), Just(Topology::Star)],
        initial in prop::collection::vec((0..N, 0..TOPICS), 0..6),
        steps in prop::collection::vec(transition(), 1..40),
    ) {
        run(seed, topology, &initial, &steps)?;
    }
}
