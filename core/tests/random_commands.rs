//! Random command sequences against 2-4 nodes joined by in-memory pipes and
//! driven with the real `Drain`: nothing panics, and what the applications
//! see stays consistent with what was published and with the counters.
//!
//! Checked after every step:
//! - every received message was published (by that sender, on that topic),
//!   reached at most as many peers as it was queued for, reached only the
//!   named peer in `To` mode and one peer in round-robin mode;
//! - per-publisher order: messages from one sender reach one receiver in
//!   publish order (the harness delivers bytes in write order);
//! - a message arrives only on a topic the receiver subscribed to;
//! - no drain returns a deadline that is already due (a driver would spin).
//!
//! Checked at the end, for every node instance (crashed ones included):
//! - `received` equals the messages handed to the application, `dropped`
//!   the sum of `Dropped` events, `malformed` the `ProtocolViolation` events;
//! - every message an instance queued was handed to its driver, dropped on
//!   a disconnect, or overwritten in a full queue (`DropOldest`; counted and
//!   reported): sent <= queued <= sent + dropped; receivers report no more
//!   overwritten messages (`Skipped`) than publishers did (`Overwritten`);
//! - nothing is received that was not sent: received <= sent;
//! - after healing, every `PublishError::Full` was followed by `Writable`
//!   (see `CHECK_WRITABLE_AFTER_FULL`).

use bytes::Bytes;
use estafeta_core::{
    Config, DropReason, Event, FullQueuePolicy, Node, NodeId, PeerRef, PubSubEvent, SendMode, Stats, TargetId,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

mod common;
use common::{config_with, End, Net};

const TOPICS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Every publish refused with `Full` is followed by `Writable` (a closing
/// subscriber included: that was a core bug, now fixed).
const CHECK_WRITABLE_AFTER_FULL: bool = true;

fn name(slot: usize) -> String {
    format!("n{slot}")
}

#[derive(Clone, Debug)]
enum Mode {
    All,
    RoundRobin,
    ToName(usize),
    ToId(usize),
    ToNobody,
}

#[derive(Clone, Debug)]
enum Cmd {
    Subscribe(usize, usize),
    Unsubscribe(usize, usize),
    /// `count` publishes in a row.
    Publish {
        node: usize,
        topic: usize,
        mode: Mode,
        size: usize,
        count: usize,
    },
    /// Connect to a slot (a slot past the last one refuses; itself is a self-dial).
    Connect(usize, usize),
    Disconnect(usize, usize),
    Close(usize),
    /// Close at once, like a crash, but the instance stays.
    Abort(usize),
    Advance(u64),
    /// Garbage on a new connection, optionally after a valid preamble.
    GarbageConn(usize, bool, Vec<u8>),
    /// Garbage injected into a live stream, at a frame boundary.
    GarbageStream(usize, usize, Vec<u8>),
    /// Reset one socket of a node abruptly.
    Reset(usize, usize),
    Crash(usize),
    Restart(usize),
    Freeze(usize),
    Thaw(usize),
    Stall(usize, bool),
}

fn cmd(n: usize) -> impl Strategy<Value = Cmd> {
    let node = 0..n;
    let mode = prop_oneof![
        3 => Just(Mode::All),
        2 => Just(Mode::RoundRobin),
        1 => (0..n).prop_map(Mode::ToName),
        1 => (0..n).prop_map(Mode::ToId),
        1 => Just(Mode::ToNobody),
    ];
    let size = prop_oneof![8 => 0usize..64, 1 => 0usize..3000];
    prop_oneof![
        4 => (node.clone(), 0..TOPICS.len()).prop_map(|(a, t)| Cmd::Subscribe(a, t)),
        1 => (node.clone(), 0..TOPICS.len()).prop_map(|(a, t)| Cmd::Unsubscribe(a, t)),
        12 => (node.clone(), 0..TOPICS.len(), mode, size, prop_oneof![3 => Just(1usize), 1 => 1usize..40])
            .prop_map(|(node, topic, mode, size, count)| Cmd::Publish { node, topic, mode, size, count }),
        4 => (node.clone(), 0..n + 1).prop_map(|(a, b)| Cmd::Connect(a, b)),
        1 => (node.clone(), 0..4usize).prop_map(|(a, k)| Cmd::Disconnect(a, k)),
        1 => node.clone().prop_map(Cmd::Close),
        1 => node.clone().prop_map(Cmd::Abort),
        4 => prop_oneof![1u64..20, 20u64..200, 200u64..2000].prop_map(Cmd::Advance),
        1 => (node.clone(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(a, p, g)| Cmd::GarbageConn(a, p, g)),
        1 => (node.clone(), 0..4usize, prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(a, k, g)| Cmd::GarbageStream(a, k, g)),
        1 => (node.clone(), 0..4usize).prop_map(|(a, k)| Cmd::Reset(a, k)),
        1 => node.clone().prop_map(Cmd::Crash),
        1 => node.clone().prop_map(Cmd::Restart),
        1 => node.clone().prop_map(Cmd::Freeze),
        1 => node.clone().prop_map(Cmd::Thaw),
        1 => (node, any::<bool>()).prop_map(|(a, s)| Cmd::Stall(a, s)),
    ]
}

/// Knobs drawn per node.
#[derive(Clone, Debug)]
struct Knobs {
    queued_frames: usize,
    queued_bytes: usize,
    pending_events: usize,
    read_buffer: usize,
    policy: FullQueuePolicy,
    attempts: Option<u32>,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        1usize..32,
        prop_oneof![Just(1usize << 20), 200usize..4000],
        1usize..64,
        prop_oneof![Just(256usize << 10), 1024usize..8192],
        prop_oneof![
            Just(FullQueuePolicy::Backpressure),
            Just(FullQueuePolicy::DropForFullPeers),
            Just(FullQueuePolicy::DropOldest)
        ],
        prop_oneof![Just(None), (1u32..6).prop_map(Some)],
    )
        .prop_map(|(queued_frames, queued_bytes, pending_events, read_buffer, policy, attempts)| Knobs {
            queued_frames,
            queued_bytes,
            pending_events,
            read_buffer,
            policy,
            attempts,
        })
}

fn config(k: &Knobs, seed: u64) -> Config {
    config_with(seed, |c| {
        c.pubsub.max_queued_frames_per_peer = k.queued_frames;
        c.pubsub.max_queued_bytes_per_peer = k.queued_bytes;
        c.session.max_pending_events = k.pending_events;
        c.session.max_read_buffer = k.read_buffer;
        c.pubsub.full_queue_policy = k.policy;
        c.dialer.reconnect_max_attempts = k.attempts;
        // Sessions outlive connections for 1 s: within the 2 s heal every
        // suspended session resumes or ends (and reports what it lost).
        c.session.resume_window = Duration::from_secs(1);
    })
}

/// A publish the model remembers.
#[derive(Debug)]
struct Sent {
    topic: usize,
    /// The slot a `To` publish named.
    only: Option<usize>,
    /// Round-robin and `To` reach one peer.
    single: bool,
    queued: usize,
    delivered: usize,
}

/// The model: what was published, what each instance did, and the checks.
struct Model {
    n: usize,
    knobs: Vec<Knobs>,
    generation: Vec<u64>,
    case_seed: u64,
    next_seq: Vec<u64>,
    sent: BTreeMap<(usize, u64), Sent>,
    /// The lowest sequence number still acceptable from (publisher, receiver).
    last: BTreeMap<(usize, usize, usize), u64>,
    /// Events of each slot's current instance already checked.
    cursor: Vec<usize>,
    /// Topics each slot's current instance ever subscribed to.
    ever_subscribed: Vec<BTreeSet<usize>>,
    /// Messages queued by each slot's current instance (sum of `Published::queued`).
    queued_by: Vec<u64>,
    /// Totals of retired instances: (queued, stats).
    retired: Vec<(u64, Stats)>,
    targets: Vec<Vec<TargetId>>,
    /// The current instance of each slot was refused with `Full` and has not
    /// reported `Writable` since.
    awaiting_writable: Vec<bool>,
}

/// Payload: publisher slot, sequence number, topic index, then filler.
fn payload(slot: usize, seq: u64, topic: usize, size: usize) -> Bytes {
    let mut p = Vec::with_capacity(10 + size);
    p.push(slot as u8);
    p.extend_from_slice(&seq.to_be_bytes());
    p.push(topic as u8);
    p.resize(10 + size, 0xA5);
    Bytes::from(p)
}

impl Model {
    fn new_node(&mut self, slot: usize) -> Node {
        self.generation[slot] += 1;
        let seed = self.case_seed.wrapping_mul(1_000_003).wrapping_add(slot as u64 * 1000 + self.generation[slot]);
        Node::new(config(&self.knobs[slot], seed), &name(slot)).expect("valid config")
    }

    fn apply(&mut self, net: &mut Net, c: &Cmd) -> Result<(), TestCaseError> {
        match c {
            Cmd::Subscribe(a, t) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    if node.pubsub().subscribe(TOPICS[*t]).is_ok() {
                        self.ever_subscribed[*a].insert(*t);
                    }
                }
            }
            Cmd::Unsubscribe(a, t) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    let was = node.pubsub_ref().subscriptions().any(|s| s.as_str() == TOPICS[*t]);
                    let r = node.pubsub().unsubscribe(TOPICS[*t]);
                    prop_assert_eq!(r, Ok(was));
                }
            }
            Cmd::Publish { node: a, topic, mode, size, count } => {
                for _ in 0..*count {
                    self.publish(net, *a, *topic, mode, *size)?;
                }
            }
            Cmd::Connect(a, b) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    if let Ok(t) = node.connect(Net::addr(*b)) {
                        if !self.targets[*a].contains(&t) {
                            self.targets[*a].push(t);
                        }
                    }
                }
            }
            Cmd::Disconnect(a, k) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    if let Some(t) = self.targets[*a].get(*k) {
                        node.disconnect(*t);
                    }
                }
            }
            Cmd::Close(a) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    node.close();
                    prop_assert!(node.is_closing());
                }
            }
            Cmd::Abort(a) => {
                if let Some(node) = net.slots[*a].node.as_mut() {
                    node.abort();
                    prop_assert!(node.is_closing());
                }
            }
            Cmd::Advance(ms) => net.run_for(Duration::from_millis(*ms)),
            Cmd::GarbageConn(a, preamble, g) => {
                if let Some(conn) = net.accept_fake(*a) {
                    let mut bytes = Vec::new();
                    if *preamble {
                        estafeta_core::wire::write_preamble(&mut bytes);
                    }
                    bytes.extend_from_slice(g);
                    net.inject(*a, conn, &bytes);
                }
            }
            Cmd::GarbageStream(a, k, g) => {
                // Only at a frame boundary: everything written to this
                // connection has been delivered. A zero length prefix makes
                // sure the garbage cannot pass for a frame.
                let conns: Vec<_> = net.conns_of(*a).into_iter().filter(|(_, e)| matches!(e, End::Node(..))).collect();
                if let Some((conn, _)) = conns.get(*k) {
                    if net.live(*a) && !net.has_inflight_to(*a, *conn) {
                        let mut bytes = vec![0, 0, 0, 0];
                        bytes.extend_from_slice(g);
                        net.inject(*a, *conn, &bytes);
                    }
                }
            }
            Cmd::Reset(a, k) => {
                if let Some((conn, _)) = net.conns_of(*a).get(*k) {
                    net.reset(*a, *conn);
                }
            }
            Cmd::Crash(a) => self.retire(net, *a)?,
            Cmd::Restart(a) => {
                self.retire(net, *a)?;
                let node = self.new_node(*a);
                net.slots[*a].node = Some(node);
            }
            Cmd::Freeze(a) => net.slots[*a].frozen = net.slots[*a].node.is_some(),
            Cmd::Thaw(a) => net.slots[*a].frozen = false,
            Cmd::Stall(a, s) => net.slots[*a].stalled = *s,
        }
        net.settle();
        self.check_events(net)
    }

    fn publish(
        &mut self,
        net: &mut Net,
        a: usize,
        topic: usize,
        mode: &Mode,
        size: usize,
    ) -> Result<(), TestCaseError> {
        let target_id: Option<NodeId> = match mode {
            Mode::ToId(b) => net.slots[*b].node.as_ref().map(|n| n.id()),
            _ => None,
        };
        let Some(node) = net.slots[a].node.as_mut() else {
            return Ok(());
        };
        let seq = self.next_seq[a];
        self.next_seq[a] += 1;
        let (send_mode, only) = match mode {
            Mode::All => (SendMode::All, None),
            Mode::RoundRobin => (SendMode::RoundRobin, None),
            Mode::ToName(b) => (SendMode::To(PeerRef::Name(name(*b))), Some(*b)),
            Mode::ToId(b) => match target_id {
                Some(id) => (SendMode::To(PeerRef::Id(id)), Some(*b)),
                None => return Ok(()),
            },
            Mode::ToNobody => (SendMode::To("nobody".into()), Some(usize::MAX)),
        };
        let single = !matches!(mode, Mode::All);
        let before = node.stats();
        match node.pubsub().publish(TOPICS[topic], payload(a, seq, topic, size), send_mode) {
            Ok(p) => {
                prop_assert!(!single || p.queued + p.dropped == 1, "{:?}", p);
                prop_assert_eq!(
                    node.stats().pubsub.dropped - before.pubsub.dropped,
                    p.dropped as u64,
                    "drops of a publish are counted at once"
                );
                prop_assert!(only != Some(usize::MAX), "a publish to nobody succeeded");
                self.queued_by[a] += p.queued as u64;
                self.sent.insert((a, seq), Sent { topic, only, single, queued: p.queued, delivered: 0 });
            }
            Err(e) => {
                if e.is_full() {
                    self.awaiting_writable[a] = true;
                }
                // Refused publishes change nothing.
                prop_assert_eq!(node.stats(), before);
            }
        }
        Ok(())
    }

    fn retire(&mut self, net: &mut Net, a: usize) -> Result<(), TestCaseError> {
        if net.slots[a].node.is_none() {
            return Ok(());
        }
        net.crash(a);
        let r = net.retired.last().expect("just retired");
        // The crash handed the application what the instance still held.
        for ev in &r.events[self.cursor[a]..] {
            if let Event::PubSub(PubSubEvent::Message(m)) = ev {
                self.check_message(a, m)?;
            }
        }
        self.retired.push((self.queued_by[a], r.stats));
        self.queued_by[a] = 0;
        self.cursor[a] = 0;
        self.ever_subscribed[a].clear();
        self.targets[a].clear();
        self.awaiting_writable[a] = false;
        Ok(())
    }

    fn check_events(&mut self, net: &mut Net) -> Result<(), TestCaseError> {
        for r in 0..self.n {
            let events = &net.slots[r].events;
            for ev in &events[self.cursor[r]..] {
                match ev {
                    Event::PubSub(PubSubEvent::Message(m)) => self.check_message(r, m)?,
                    Event::PubSub(PubSubEvent::Writable) => self.awaiting_writable[r] = false,
                    _ => {}
                }
            }
            self.cursor[r] = events.len();
        }
        prop_assert!(
            net.stale_deadlines.is_empty(),
            "a drain returned a deadline already due: {:?}",
            net.stale_deadlines
        );
        Ok(())
    }

    fn check_message(&mut self, r: usize, m: &estafeta_core::Message) -> Result<(), TestCaseError> {
        prop_assert!(m.payload.len() >= 10, "short payload {:?}", m.payload);
        let p = m.payload[0] as usize;
        let seq = u64::from_be_bytes(m.payload[1..9].try_into().unwrap());
        let topic = m.payload[9] as usize;
        let Some(sent) = self.sent.get_mut(&(p, seq)) else {
            return Err(TestCaseError::fail(format!(
                "slot {r} received a message never published: from {p} seq {seq}"
            )));
        };
        prop_assert_eq!(sent.topic, topic);
        prop_assert_eq!(m.topic.as_str(), TOPICS[topic]);
        prop_assert_eq!(m.from.name.to_string(), name(p));
        prop_assert!(self.ever_subscribed[r].contains(&topic), "slot {} got {:?} without subscribing", r, m.topic);
        if let Some(only) = sent.only {
            prop_assert_eq!(only, r, "a To publish reached another peer");
        }
        sent.delivered += 1;
        prop_assert!(sent.delivered <= sent.queued, "delivered {} times, queued for {}", sent.delivered, sent.queued);
        prop_assert!(!sent.single || sent.delivered == 1);
        // Order holds per publisher, receiver and topic (each topic has its
        // own queue and credit, so topics may overtake each other).
        let last = self.last.entry((p, r, topic)).or_insert(0);
        prop_assert!(seq >= *last, "order broken from slot {} to slot {} on {}: {} after {}", p, r, topic, seq, *last);
        *last = seq + 1;
        Ok(())
    }

    /// The end-of-run accounting over every instance.
    fn check_totals(&mut self, net: &mut Net) -> Result<(), TestCaseError> {
        // (queued, stats, events, crashed)
        let mut all: Vec<(u64, Stats, &[Event], bool)> = Vec::new();
        for (k, r) in net.retired.iter().enumerate() {
            all.push((self.retired[k].0, r.stats, &r.events, true));
        }
        for (i, s) in net.slots.iter().enumerate() {
            if let Some(node) = &s.node {
                all.push((self.queued_by[i], node.stats(), &s.events, false));
            }
        }
        let (mut received, mut sent, mut queued, mut unacked_lost) = (0u64, 0u64, 0u64, 0u64);
        let (mut overwritten, mut skipped) = (0u64, 0u64);
        for (q, stats, events, crashed) in &all {
            let msgs = events.iter().filter(|e| matches!(e, Event::PubSub(PubSubEvent::Message(_)))).count() as u64;
            let dropped: u64 = events.iter().map(Event::dropped).sum();
            let violations = events.iter().filter(|e| matches!(e, Event::ProtocolViolation { .. })).count() as u64;
            prop_assert_eq!(stats.pubsub.received, msgs, "received vs Message events");
            prop_assert_eq!(stats.pubsub.dropped, dropped, "dropped vs Dropped events");
            prop_assert_eq!(stats.session.malformed, violations, "malformed vs violations");
            prop_assert!(stats.pubsub.sent <= *q, "sent {} > queued {}", stats.pubsub.sent, q);
            // Every message queued by this instance was handed to its driver,
            // dropped unsent on a disconnect (counted, reported as
            // `Disconnected`; the receiving side reports `Unprocessed`) or
            // because its subscriber unsubscribed (`PeerUnsubscribed`), or
            // overwritten by a newer one in a full queue (`Overwritten`).
            let unsent: u64 = events
                .iter()
                .map(|e| match e {
                    Event::PubSub(PubSubEvent::Dropped {
                        count,
                        reason: DropReason::Disconnected | DropReason::PeerUnsubscribed,
                        ..
                    }) => *count,
                    Event::PubSub(PubSubEvent::Overwritten { count, .. }) => *count,
                    _ => 0,
                })
                .sum();
            overwritten += events
                .iter()
                .map(|e| if let Event::PubSub(PubSubEvent::Overwritten { count, .. }) = e { *count } else { 0 })
                .sum::<u64>();
            skipped += events
                .iter()
                .map(|e| if let Event::PubSub(PubSubEvent::Skipped { count, .. }) = e { *count } else { 0 })
                .sum::<u64>();
            if *crashed {
                // A crash loses what its send logs held (written, not acknowledged).
                prop_assert!(*q >= stats.pubsub.sent + unsent, "queued < sent + dropped unsent");
                unacked_lost += *q - stats.pubsub.sent - unsent;
            } else {
                prop_assert_eq!(*q, stats.pubsub.sent + unsent, "queued = sent + dropped unsent");
            }
            received += stats.pubsub.received;
            sent += stats.pubsub.sent;
            unacked_lost += stats.pubsub.unacked_lost;
            queued += q;
        }
        // A message taken whose ack never came back (the session ended
        // first, or its sender crashed) counts as lost at its sender, never
        // as sent. Duplicates are ruled out by the order check.
        prop_assert!(
            received <= sent + unacked_lost,
            "received {} > sent {} + unacked {}",
            received,
            sent,
            unacked_lost
        );
        prop_assert!(sent <= queued);
        // A receiver reports only gaps its publisher reported.
        prop_assert!(skipped <= overwritten, "skipped {} > overwritten {}", skipped, overwritten);
        Ok(())
    }
}

fn run(
    n: usize,
    knobs: Vec<Knobs>,
    seed: u64,
    max_piece: usize,
    max_write: usize,
    cmds: Vec<Cmd>,
) -> Result<(), TestCaseError> {
    let mut model = Model {
        n,
        knobs,
        generation: vec![0; n],
        case_seed: seed,
        next_seq: vec![0; n],
        sent: BTreeMap::new(),
        last: BTreeMap::new(),
        cursor: vec![0; n],
        ever_subscribed: vec![BTreeSet::new(); n],
        queued_by: vec![0; n],
        retired: Vec::new(),
        targets: vec![Vec::new(); n],
        awaiting_writable: vec![false; n],
    };
    let nodes: Vec<Node> = (0..n).map(|i| model.new_node(i)).collect();
    let mut net = Net::new(nodes).with_splits(seed, max_piece, max_write);
    for c in &cmds {
        model.apply(&mut net, c)?;
    }
    // Heal: wake everyone, let the applications take their events, let
    // time pass so timers fire, then account.
    for s in net.slots.iter_mut() {
        s.frozen = false;
        s.stalled = false;
    }
    net.run_for(Duration::from_secs(2));
    model.check_events(&mut net)?;
    model.check_totals(&mut net)?;
    // Liveness: every `Full` was followed by `Writable` once the network
    // healed (a node that is still up).
    if CHECK_WRITABLE_AFTER_FULL {
        for (i, waiting) in model.awaiting_writable.iter().enumerate() {
            prop_assert!(!waiting, "slot {} got Full and never Writable", i);
        }
    }
    for s in &net.slots {
        if let Some(node) = &s.node {
            // Getters on any state never panic.
            let _ = (node.peers().count(), node.pubsub_ref().subscriptions().count());
            let _ = node.poll_timeout();
            for t in TOPICS {
                let _ = node.pubsub_ref().subscriber_count(t);
            }
            let _ = node.stats();
        }
    }
    for (i, targets) in model.targets.iter().enumerate() {
        if let Some(node) = &net.slots[i].node {
            for t in targets {
                let _ = (node.target_peer(*t), node.target_gave_up(*t));
            }
        }
    }
    Ok(())
}

fn case() -> impl Strategy<Value = (usize, Vec<Knobs>, u64, usize, usize, Vec<Cmd>)> {
    (2usize..=4).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(knobs(), n),
            any::<u64>(),
            prop_oneof![Just(usize::MAX), 1usize..64, 64usize..2048],
            prop_oneof![Just(usize::MAX), 8usize..256, 256usize..8192],
            prop::collection::vec(cmd(n), 1..150),
        )
    })
}

proptest! {
    #[test]
    fn random_commands_keep_the_invariants((n, knobs, seed, piece, write, cmds) in case()) {
        run(n, knobs, seed, piece, write, cmds)?;
    }
}

/// A busier start: everyone subscribes and connects first, so the random
/// part is mostly traffic and faults on a connected mesh.
fn meshed_case() -> impl Strategy<Value = (usize, Vec<Knobs>, u64, usize, usize, Vec<Cmd>)> {
    case().prop_map(|(n, knobs, seed, piece, write, cmds)| {
        let mut all = Vec::new();
        for a in 0..n {
            for t in 0..TOPICS.len() {
                all.push(Cmd::Subscribe(a, t));
            }
            for b in 0..n {
                if a < b {
                    all.push(Cmd::Connect(a, b));
                }
            }
        }
        all.extend(cmds);
        (n, knobs, seed, piece, write, all)
    })
}

proptest! {
    #[test]
    fn random_traffic_on_a_mesh_keeps_the_invariants((n, knobs, seed, piece, write, cmds) in meshed_case()) {
        run(n, knobs, seed, piece, write, cmds)?;
    }
}
