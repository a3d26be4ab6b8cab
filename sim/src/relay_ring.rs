//! A ring of relays under saturation: every node relays one topic to its
//! two neighbours and publishes on it as fast as its queues take, so the
//! relays' credit could chain around the ring. The run checks that the ring
//! keeps making progress and that every loss is reported.
//!
//! A run:
//! 1. **saturation**: each node relay-publishes until its queues are full,
//!    every millisecond, for `saturate_us`; in every `progress_us` slice
//!    every node must deliver new relayed messages (a credit cycle that
//!    stops the ring fails here);
//! 2. **tail**: the ring goes quiet, then each node publishes `tail` more,
//!    one at a time, each delivered everywhere before the next, so every
//!    receiver's de-duplication window moves past all the saturation
//!    messages;
//! 3. **accounting**: for every receiver and origin, messages delivered
//!    plus those reported lost as `RelayLoss::Skipped` equal the messages
//!    the origin published from the start of the receiver's window (the
//!    first message it got, less the window: a receiver cannot tell
//!    earlier losses from messages published before it subscribed; the
//!    relays that dropped those copies reported `RelayLoss::QueueFull`).
//!
//! The discovery observer checks the rest as it happens (at most once per
//! node, never back to the origin, origin visible, `relay_lost` equals the
//! events).

use crate::config::{NodeSetup, SimConfig};
use crate::rng::{self, Rng};
use crate::sim::Sim;
use estafeta_core::{DiscoveryEvent, Event, PublishError, RelayLoss};

/// One ring run, drawn from a seed.
#[derive(Clone, Debug)]
pub struct RingScenario {
    /// The simulator setup.
    pub sim: SimConfig,
    /// Nodes on the ring.
    pub nodes: usize,
    /// Payload bytes per message.
    pub len: usize,
    /// How long every node publishes as fast as it can, microseconds.
    pub saturate_us: u64,
    /// Every node delivers something within each slice this long.
    pub progress_us: u64,
    /// Messages each node publishes after saturation (more than the relay window).
    pub tail: usize,
}

/// What a passing ring run measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingReport {
    /// The seed.
    pub seed: u64,
    /// Messages published in all.
    pub published: u64,
    /// Deliveries in all (each message at up to `nodes - 1` nodes).
    pub delivered: u64,
    /// Deliveries missed, each reported as `RelayLoss::Skipped`.
    pub skipped: u64,
}

impl RingScenario {
    /// The scenario for `seed`: 3 to 8 nodes, small credit windows, queues
    /// that hold several windows, some slow readers.
    ///
    /// ```
    /// let s = estafeta_sim::relay_ring::RingScenario::random(1);
    /// assert!((3..=8).contains(&s.nodes));
    /// ```
    pub fn random(seed: u64) -> RingScenario {
        RingScenario::random_with(seed, false)
    }

    /// [`RingScenario::random`], with the planted bug if `planted`: relayed
    /// copies hold their upstream's whole credit window, so the credit
    /// waits chain around the ring.
    pub fn random_with(seed: u64, planted: bool) -> RingScenario {
        let mut r = Rng::derive(seed, &[rng::STREAM_SCENARIO, 60]);
        let nodes = r.range(3, 8) as usize;
        let mut sim = SimConfig::uniform(seed, nodes, 1);
        let window = [4u32, 8, 16, 32][r.below(4) as usize];
        let queue = window as usize * r.range(2, 8) as usize;
        for s in sim.nodes.iter_mut() {
            *s = setup(window, queue);
            s.config.discovery.planted_full_relay_hold = planted;
            if r.chance(300) {
                s.read_rate = Some(r.range(200_000, 2_000_000));
            }
        }
        let relay_window = sim.nodes[0].config.discovery.relay_window as usize;
        RingScenario { sim, nodes, len: 64, saturate_us: 1_000_000, progress_us: 200_000, tail: relay_window + 16 }
    }

    /// A one-line description.
    pub fn describe(&self) -> String {
        let c = &self.sim.nodes[0].config.pubsub;
        let slow = self.sim.nodes.iter().filter(|s| s.read_rate.is_some()).count();
        format!(
            "{} nodes, window {} msgs, queue {} msgs, {slow} slow readers",
            self.nodes, c.window_messages, c.max_queued_frames_per_subscription
        )
    }

    /// Runs the scenario; on failure returns what broke.
    pub fn run(&self) -> Result<RingReport, String> {
        Sim::run_scenario(self.sim.clone(), |sim| self.drive(sim))
    }

    fn drive(&self, sim: &mut Sim) -> Result<RingReport, String> {
        let n = self.nodes;
        sim.keep_events();
        for s in 0..n {
            sim.subscribe(s, 0);
            sim.relay(s, 0);
        }
        for s in 0..n {
            sim.connect(s, (s + 1) % n);
        }
        let deadline = sim.now() + 3_000_000;
        while (0..n).any(|s| !sim.connected(s, (s + 1) % n)) {
            if sim.now() >= deadline {
                return Err("the ring did not connect within 3 s".into());
            }
            sim.run_for(10_000)?;
        }
        // Neighbours must see each other's subscription before publishing.
        sim.run_for(50_000)?;
        let mut sent: Vec<Vec<u64>> = vec![Vec::new(); n];
        // 1. Saturation, with progress checked slice by slice.
        let end = sim.now() + self.saturate_us;
        let mut slice_start = sim.now();
        let mut before = self.delivered_matrix(sim, &sent);
        while sim.now() < end {
            for (s, ids) in sent.iter_mut().enumerate() {
                for _ in 0..64 {
                    match sim.relay_publish(s, 0, self.len) {
                        Ok(g) => ids.push(g),
                        Err(PublishError::Full(_)) => break,
                        Err(e) => return Err(format!("n{s} cannot relay-publish: {e}")),
                    }
                }
            }
            sim.run_for(1_000)?;
            if sim.now() >= slice_start + self.progress_us {
                let now = self.delivered_matrix(sim, &sent);
                for x in 0..n {
                    if now[x].iter().sum::<u64>() == before[x].iter().sum::<u64>() {
                        return Err(format!(
                            "liveness: the ring stalled: n{x} delivered nothing in {} (published so far: {:?})",
                            crate::trace::fmt_time(self.progress_us),
                            sent.iter().map(Vec::len).collect::<Vec<_>>()
                        ));
                    }
                }
                before = now;
                slice_start = sim.now();
            }
        }
        // 2. Quiet, then the tail: one message per node at a time, each
        // delivered everywhere before the next, so none is dropped and
        // every receiver's window moves past the saturation messages.
        sim.run_for(2_000_000)?;
        for round in 0..self.tail {
            let mut batch = Vec::new();
            for (s, ids) in sent.iter_mut().enumerate() {
                let give_up = sim.now() + 2_000_000;
                let g = loop {
                    match sim.relay_publish(s, 0, self.len) {
                        Ok(g) => break g,
                        Err(PublishError::Full(_)) if sim.now() < give_up => sim.run_for(1_000)?,
                        Err(e) => return Err(format!("liveness: n{s} cannot publish tail message {round}: {e}")),
                    }
                };
                ids.push(g);
                batch.push((s, g));
            }
            let give_up = sim.now() + 2_000_000;
            loop {
                let missing: Vec<String> = batch
                    .iter()
                    .filter_map(|(o, g)| {
                        let got = sim.relay_delivered_to(*g);
                        (got.len() < n - 1).then(|| format!("#{g} of n{o} reached {got:?}"))
                    })
                    .collect();
                if missing.is_empty() {
                    break;
                }
                if sim.now() >= give_up {
                    return Err(format!(
                        "liveness: quiet ring, tail round {round} not delivered: {}",
                        missing.join("; ")
                    ));
                }
                sim.run_for(1_000)?;
            }
        }
        // 3. Accounting: delivered + reported Skipped = published.
        let got = self.delivered_matrix(sim, &sent);
        let ids: Vec<_> = (0..n).map(|s| sim.node_id(s)).collect();
        let mut skipped = vec![vec![0u64; n]; n];
        for (x, row) in skipped.iter_mut().enumerate() {
            for (_, ev) in sim.events(x) {
                if let Event::Discovery(DiscoveryEvent::RelayLost {
                    origin, count, reason: RelayLoss::Skipped, ..
                }) = ev
                {
                    if let Some(o) = ids.iter().position(|i| i == origin) {
                        row[o] += count;
                    }
                }
            }
        }
        let relay_window = u64::from(self.sim.nodes[0].config.discovery.relay_window);
        let (mut delivered, mut lost) = (0, 0);
        for x in 0..n {
            for o in (0..n).filter(|o| *o != x) {
                // A node's window on an origin starts with the first message
                // it gets (in time, not the lowest number), reaching `relay_window` numbers back; messages
                // before that it cannot tell from those published before it
                // subscribed (the relays that dropped them reported
                // QueueFull).
                let first_g = sim.relay_first_delivered(x, o);
                let first = sent[o].iter().position(|g| Some(*g) == first_g).unwrap_or(0) as u64;
                let published = sent[o].len() as u64 - (first + 1).saturating_sub(relay_window);
                if got[x][o] + skipped[x][o] != published {
                    return Err(format!(
                        "n{x} from n{o}: {} delivered + {} reported skipped != {published} published from its first",
                        got[x][o], skipped[x][o]
                    ));
                }
                delivered += got[x][o];
                lost += skipped[x][o];
            }
        }
        sim.check()?;
        Ok(RingReport {
            seed: sim.seed(),
            published: sent.iter().map(|s| s.len() as u64).sum(),
            delivered,
            skipped: lost,
        })
    }

    /// `m[x][o]`: messages published by `o` that `x` delivered.
    fn delivered_matrix(&self, sim: &mut Sim, sent: &[Vec<u64>]) -> Vec<Vec<u64>> {
        let mut m = vec![vec![0u64; self.nodes]; self.nodes];
        for (o, ids) in sent.iter().enumerate() {
            for g in ids {
                for x in sim.relay_delivered_to(*g) {
                    m[x][o] += 1;
                }
            }
        }
        m
    }
}

/// A ring node: small credit windows, queues of `queue` messages, a relay
/// window of 64.
fn setup(window: u32, queue: usize) -> NodeSetup {
    let mut s = NodeSetup::default();
    let c = &mut s.config;
    c.pubsub.window_messages = window;
    c.pubsub.max_queued_frames_per_subscription = queue;
    c.pubsub.max_queued_frames_per_peer = queue * 2;
    c.discovery.relay_window = 64;
    c.discovery.relay_hop_limit = 64;
    s
}
