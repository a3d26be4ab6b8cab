//! A small in-memory network for estafeta-core's integration tests.
//!
//! Nodes live in numbered slots; slot `i` "listens" on port `i` of host
//! `mem`. Every node is driven by the production [`Drain`], exactly as a real
//! driver does. What this harness adds over a plain pipe:
//!
//! - bytes are delivered in pieces of random size (a seeded generator), so a
//!   node sees arbitrary TCP-like splits;
//! - writes may be partial and may block (the sink takes a bounded number of
//!   bytes per call and per round), so the drain's unwritten tails are used;
//! - reading honours [`Node::wants_read`]: bytes for a node that does not
//!   want to read wait in the pipe, in order;
//! - faults: abrupt socket resets, crashes (a node vanishes and its peers see
//!   resets), restarts, freezing (a node is silent but its sockets stay open),
//!   a stalled application (events are refused), and garbage injected into a
//!   live stream or sent on a fresh connection.
//!
//! Delivery is one global FIFO (skipping nodes that do not want to read), so
//! bytes arrive in the order they were written, across connections too.

#![allow(dead_code)]

pub mod files;

use estafeta_core::transfer::{FileRequest, MemFs};
use estafeta_core::{
    Action, CloseReason, Config, ConnId, Drain, Event, Node, PeerAddr, PubSubEvent, Sink, Stats, Step, Timestamp,
    WriteOutcome,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// A tiny deterministic generator (xorshift64*) for split points.
#[derive(Clone, Debug)]
pub struct SplitRng(u64);

impl SplitRng {
    /// A generator; a zero seed is replaced by a constant.
    pub fn new(seed: u64) -> Self {
        SplitRng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `1..=max` (1 if `max` is 0).
    pub fn size(&mut self, max: usize) -> usize {
        if max <= 1 {
            1
        } else {
            1 + (self.next_u64() % max as u64) as usize
        }
    }
}

/// The far end of a pipe: a node's connection, or a black hole standing in
/// for a hand-made peer that only sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// Slot and connection.
    Node(usize, ConnId),
    /// Bytes written here vanish.
    Hole,
}

#[derive(Debug)]
enum Wire {
    Bytes(Vec<u8>),
    Eof,
}

#[derive(Debug)]
struct Item {
    to: usize,
    conn: ConnId,
    wire: Wire,
}

/// One slot: the current node instance and what its application saw.
pub struct Slot {
    /// The node; `None` while the slot is crashed.
    pub node: Option<Node>,
    drain: Drain,
    /// Events the application received from the current instance.
    pub events: Vec<Event>,
    /// A frozen node runs nothing and reads nothing; its sockets stay open.
    pub frozen: bool,
    /// A stalled application refuses events (the drain parks them).
    pub stalled: bool,
    /// The machine's disk (kept across restarts; a crash loses unsynced writes).
    pub fs: MemFs,
    /// File operations asked for and not yet run.
    pub files: Vec<FileRequest>,
    /// Hold file operations instead of running them (a slow disk).
    pub disk_paused: bool,
}

/// A node instance that was crashed: its final counters and everything its
/// application received.
pub struct Retired {
    /// The slot it lived in.
    pub slot: usize,
    /// Counters at the end.
    pub stats: Stats,
    /// All events it delivered.
    pub events: Vec<Event>,
}

/// The network.
pub struct Net {
    /// The slots.
    pub slots: Vec<Slot>,
    /// Crashed instances.
    pub retired: Vec<Retired>,
    /// Virtual time.
    pub now: Timestamp,
    pipes: BTreeMap<(usize, ConnId), End>,
    inflight: VecDeque<Item>,
    dials: VecDeque<(usize, ConnId, PeerAddr)>,
    rng: SplitRng,
    /// Largest piece handed to `handle_bytes` at once.
    pub max_piece: usize,
    /// Largest write the sink accepts per call (partial writes below that).
    pub max_write: usize,
    /// Bytes a node may write per settle round before its sockets block.
    pub round_budget: usize,
    /// Connections whose incoming bytes wait (see [`Net::hold`]).
    held: BTreeSet<(usize, ConnId)>,
    /// Slots whose dials wait (not yet connected) while held.
    held_dials: BTreeSet<usize>,
    /// Deadlines a drain returned that were not in the future (a driver
    /// would spin on them): (slot, deadline, now).
    pub stale_deadlines: Vec<(usize, Timestamp, Timestamp)>,
    /// Sees (and may change) every write: (from slot, to slot, bytes).
    pub tap: Option<Tap>,
}

/// A hook on every write of the network: (from slot, to slot, bytes).
pub type Tap = Box<dyn FnMut(usize, usize, &mut Vec<u8>)>;

struct NetSink<'a> {
    me: usize,
    pipes: &'a BTreeMap<(usize, ConnId), End>,
    inflight: &'a mut VecDeque<Item>,
    events: &'a mut Vec<Event>,
    dials: &'a mut VecDeque<(usize, ConnId, PeerAddr)>,
    closed: Vec<ConnId>,
    stalled: bool,
    max_write: usize,
    budget: usize,
    files: &'a mut Vec<FileRequest>,
    tap: &'a mut Option<Tap>,
}

impl Sink for NetSink<'_> {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        let Some(end) = self.pipes.get(&(self.me, conn)) else {
            return WriteOutcome::Failed("connection reset".into());
        };
        if self.budget == 0 {
            return WriteOutcome::Blocked;
        }
        let n = bytes.len().min(self.max_write).min(self.budget);
        self.budget -= n;
        if let End::Node(to, c) = *end {
            let mut bytes = bytes[..n].to_vec();
            if let Some(tap) = self.tap.as_mut() {
                tap(self.me, to, &mut bytes);
            }
            self.inflight.push_back(Item { to, conn: c, wire: Wire::Bytes(bytes) });
        }
        WriteOutcome::Wrote(n)
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Dial { conn, addr } => self.dials.push_back((self.me, conn, addr)),
            // The peer reads the end of stream after our bytes; our end
            // stays open for reading.
            Action::HalfClose { conn } => {
                if let Some(End::Node(to, c)) = self.pipes.get(&(self.me, conn)) {
                    self.inflight.push_back(Item { to: *to, conn: *c, wire: Wire::Eof });
                }
            }
            Action::Close { conn } => {
                if let Some(End::Node(to, c)) = self.pipes.get(&(self.me, conn)) {
                    self.inflight.push_back(Item { to: *to, conn: *c, wire: Wire::Eof });
                }
                self.closed.push(conn);
            }
        }
    }

    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        if self.stalled {
            return Err(event);
        }
        // Tests look at messages one by one, as the application takes them.
        match event {
            Event::PubSub(PubSubEvent::Messages(run)) => {
                self.events.extend(run.into_iter().map(|m| Event::PubSub(PubSubEvent::Message(m))))
            }
            event => self.events.push(event),
        }
        Ok(())
    }

    fn file(&mut self, request: FileRequest) {
        self.files.push(request);
    }
}

/// Timers short enough that tests run in little virtual time.
pub fn fast_config(seed: u64) -> Config {
    let mut c = Config { seed, ..Config::default() };
    // Ids are chosen by the tests: the plaintext mode (the secure mode has
    // its own tests, core/tests/security*.rs).
    c.security.mode = estafeta_core::SecurityMode::Plaintext;
    c.session.heartbeat_interval = Duration::from_millis(100);
    c.session.liveness_timeout = Duration::from_millis(400);
    c.session.handshake_timeout = Duration::from_millis(500);
    c.session.close_timeout = Duration::from_millis(300);
    c.dialer.reconnect_base = Duration::from_millis(50);
    c.dialer.reconnect_cap = Duration::from_millis(400);
    c
}

/// `fast_config(seed)` changed by `f`.
pub fn config_with(seed: u64, f: impl FnOnce(&mut Config)) -> Config {
    let mut c = fast_config(seed);
    f(&mut c);
    c
}

/// A Credit frame granting `messages` and `bytes` on `topic`.
pub fn credit_bytes(topic: &str, messages: u32, bytes: u64) -> Vec<u8> {
    let mut b = Vec::new();
    estafeta_core::wire::encode_frame(&mut b, &estafeta_core::wire::Header::Credit { topic, messages, bytes }, &[]);
    b
}

/// The preamble and a Hello from a hand-made peer with id `id` announcing
/// pub/sub and `subs`.
pub fn handshake_bytes(id: u128, name: &str, subs: &[&str]) -> Vec<u8> {
    use estafeta_core::wire::{encode_frame, write_preamble, Capabilities, Header, Hello};
    let mut b = Vec::new();
    write_preamble(&mut b);
    let hello = Hello::new(id, name, Capabilities::PUBSUB, subs.to_vec());
    encode_frame(&mut b, &Header::Hello(hello), &[]);
    b
}

impl Net {
    /// A network of these nodes, with whole deliveries and unlimited writes.
    pub fn new(nodes: Vec<Node>) -> Net {
        Net {
            slots: nodes
                .into_iter()
                .map(|n| Slot {
                    node: Some(n),
                    drain: Drain::default(),
                    events: Vec::new(),
                    frozen: false,
                    stalled: false,
                    fs: MemFs::default(),
                    files: Vec::new(),
                    disk_paused: false,
                })
                .collect(),
            retired: Vec::new(),
            now: Timestamp::from_millis(1),
            pipes: BTreeMap::new(),
            inflight: VecDeque::new(),
            dials: VecDeque::new(),
            rng: SplitRng::new(1),
            max_piece: usize::MAX,
            max_write: usize::MAX,
            round_budget: usize::MAX,
            stale_deadlines: Vec::new(),
            tap: None,
            held: BTreeSet::new(),
            held_dials: BTreeSet::new(),
        }
    }

    /// Makes deliveries and writes split at random points drawn from `seed`.
    pub fn with_splits(mut self, seed: u64, max_piece: usize, max_write: usize) -> Net {
        self.rng = SplitRng::new(seed);
        self.max_piece = max_piece.max(1);
        self.max_write = max_write.max(1);
        self.round_budget = max_write.max(1).saturating_mul(4);
        self
    }

    /// The address of slot `i`.
    pub fn addr(i: usize) -> PeerAddr {
        PeerAddr::new("mem", i as u16)
    }

    /// The node in slot `i`. Panics if the slot is crashed.
    pub fn node(&mut self, i: usize) -> &mut Node {
        self.slots[i].node.as_mut().expect("slot is up")
    }

    /// True if slot `i` has a running (not crashed, not frozen) node.
    pub fn live(&self, i: usize) -> bool {
        self.slots[i].node.is_some() && !self.slots[i].frozen
    }

    /// Connections of slot `i` that have a pipe, in order.
    pub fn conns_of(&self, i: usize) -> Vec<(ConnId, End)> {
        self.pipes.range((i, ConnId(0))..=(i, ConnId(u64::MAX))).map(|((_, c), e)| (*c, *e)).collect()
    }

    /// True if bytes written to `(slot, conn)` are still on their way.
    pub fn has_inflight_to(&self, slot: usize, conn: ConnId) -> bool {
        self.inflight.iter().any(|it| it.to == slot && it.conn == conn)
    }

    /// Runs drains, dials and deliveries until nothing moves at this time.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            if !self.step() {
                return;
            }
        }
        panic!("livelock: the network did not settle");
    }

    /// One round: every drain, the dials, the deliveries. Returns true if
    /// anything moved.
    pub fn step(&mut self) -> bool {
        let mut busy = false;
        for i in 0..self.slots.len() {
            busy |= self.run_drain(i);
        }
        busy |= self.do_dials();
        busy |= self.deliver();
        busy
    }

    fn run_drain(&mut self, i: usize) -> bool {
        let now = self.now;
        let slot = &mut self.slots[i];
        if slot.frozen {
            return false;
        }
        let Some(node) = slot.node.as_mut() else {
            return false;
        };
        let mut sink = NetSink {
            me: i,
            pipes: &self.pipes,
            inflight: &mut self.inflight,
            events: &mut slot.events,
            dials: &mut self.dials,
            closed: Vec::new(),
            stalled: slot.stalled,
            max_write: self.max_write,
            budget: self.round_budget,
            files: &mut slot.files,
            tap: &mut self.tap,
        };
        let step = slot.drain.run(node, now, &mut sink);
        let closed = std::mem::take(&mut sink.closed);
        let mut ran_files = false;
        if !slot.disk_paused {
            for req in std::mem::take(&mut slot.files) {
                let result = slot.fs.run(req.op);
                node.handle_file(now, req.id, result);
                ran_files = true;
            }
        }
        let tails = slot.drain.pending_bytes() > 0;
        for c in closed {
            self.close_end(i, c);
        }
        match step {
            _ if ran_files => true,
            Step::Yield => true,
            Step::Idle { deadline } => {
                if let Some(d) = deadline {
                    if d <= now {
                        self.stale_deadlines.push((i, d, now));
                    }
                }
                tails
            }
        }
    }

    /// `(slot, conn)` closed its socket: what the far end writes from now
    /// on vanishes (connection ids are reused by a restarted node, so the
    /// far end must not reach whoever gets this id next).
    fn close_end(&mut self, slot: usize, conn: ConnId) {
        // A dial closed before it connected is abandoned (a driver drops
        // the pending connect): it must not connect later.
        self.dials.retain(|(i, c, _)| !(*i == slot && *c == conn));
        if let Some(End::Node(j, cj)) = self.pipes.remove(&(slot, conn)) {
            if self.pipes.get(&(j, cj)) == Some(&End::Node(slot, conn)) {
                self.pipes.insert((j, cj), End::Hole);
            }
        }
    }

    fn do_dials(&mut self) -> bool {
        let mut busy = false;
        let mut waiting = VecDeque::new();
        while let Some((i, conn, addr)) = self.dials.pop_front() {
            if self.held_dials.contains(&i) {
                waiting.push_back((i, conn, addr));
                continue;
            }
            busy = true;
            if self.slots[i].node.is_none() {
                continue;
            }
            let now = self.now;
            let j = addr.port as usize;
            let accepted = if addr.host == "mem" && j < self.slots.len() {
                self.slots[j].node.as_mut().and_then(|n| n.handle_accepted(now).ok())
            } else {
                None
            };
            match accepted {
                Some(cj) => {
                    self.pipes.insert((i, conn), End::Node(j, cj));
                    self.pipes.insert((j, cj), End::Node(i, conn));
                    self.node(i).handle_connected(now, conn);
                }
                None => {
                    self.node(i).handle_closed(now, conn, CloseReason::Io("refused".into()));
                }
            }
        }
        self.dials = waiting;
        busy
    }

    /// While `on`, the dials slot `i` makes wait unconnected (a slow
    /// connect: the rest of the network goes on).
    pub fn hold_dials(&mut self, i: usize, on: bool) {
        if on {
            self.held_dials.insert(i);
        } else {
            self.held_dials.remove(&i);
        }
    }

    fn deliver(&mut self) -> bool {
        let now = self.now;
        let mut progressed = false;
        let mut blocked = BTreeSet::new();
        let mut k = 0;
        while k < self.inflight.len() {
            let (to, conn) = (self.inflight[k].to, self.inflight[k].conn);
            if blocked.contains(&to) || self.held.contains(&(to, conn)) {
                k += 1;
                continue;
            }
            if !self.pipes.contains_key(&(to, conn)) || self.slots[to].node.is_none() {
                // The reader's socket is gone: the bytes are lost.
                self.inflight.remove(k);
                progressed = true;
                continue;
            }
            if self.slots[to].frozen {
                blocked.insert(to);
                k += 1;
                continue;
            }
            let node = self.slots[to].node.as_mut().expect("checked");
            if !node.wants_read(conn) {
                blocked.insert(to);
                k += 1;
                continue;
            }
            match &mut self.inflight[k].wire {
                Wire::Eof => {
                    // The pipe stays until this end closes too (its
                    // `Action::Close` sends the far end its own end of
                    // stream): an end of stream closes one direction only.
                    self.inflight.remove(k);
                    node.handle_closed(now, conn, CloseReason::Io("eof".into()));
                    progressed = true;
                }
                Wire::Bytes(bytes) => {
                    // Hand the bytes over in pieces while the node reads.
                    let mut pos = 0;
                    while pos < bytes.len() && node.wants_read(conn) {
                        let n = self.rng.size(self.max_piece).min(bytes.len() - pos);
                        node.handle_bytes(now, conn, &bytes[pos..pos + n]);
                        pos += n;
                    }
                    progressed = true;
                    if pos == bytes.len() {
                        self.inflight.remove(k);
                    } else {
                        bytes.drain(..pos);
                        blocked.insert(to);
                        k += 1;
                    }
                }
            }
        }
        progressed
    }

    /// While `on`, bytes on their way to `(slot, conn)` wait (a slow path
    /// one way: the rest of the network goes on).
    pub fn hold(&mut self, slot: usize, conn: ConnId, on: bool) {
        if on {
            self.held.insert((slot, conn));
        } else {
            self.held.remove(&(slot, conn));
        }
    }

    /// Advances virtual time to `t`, firing every deadline on the way.
    pub fn run_until(&mut self, t: Timestamp) {
        self.settle();
        for _ in 0..1_000_000 {
            let next = (0..self.slots.len())
                .filter(|i| self.live(*i))
                .filter_map(|i| self.slots[i].node.as_ref().and_then(|n| n.poll_timeout()))
                .min();
            match next {
                Some(d) if d <= t => {
                    if d <= self.now {
                        // A stale deadline: already recorded by the drain.
                        // Step past it so the test can report it.
                        self.now += Duration::from_micros(1);
                    } else {
                        self.now = d;
                    }
                    self.settle();
                }
                _ => {
                    self.now = self.now.max(t);
                    self.settle();
                    return;
                }
            }
        }
        panic!("run_until did not reach {t}");
    }

    /// Advances virtual time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Cuts `(slot, conn)`'s socket abruptly: bytes in flight both ways are
    /// lost and both ends are told the connection reset.
    pub fn reset(&mut self, slot: usize, conn: ConnId) {
        let now = self.now;
        let Some(end) = self.pipes.remove(&(slot, conn)) else {
            return;
        };
        self.inflight.retain(|it| !(it.to == slot && it.conn == conn));
        if let Some(n) = self.slots[slot].node.as_mut() {
            n.handle_closed(now, conn, CloseReason::Io("reset".into()));
        }
        if let End::Node(j, cj) = end {
            self.pipes.remove(&(j, cj));
            self.inflight.retain(|it| !(it.to == j && it.conn == cj));
            if let Some(n) = self.slots[j].node.as_mut() {
                n.handle_closed(now, cj, CloseReason::Io("reset".into()));
            }
        }
    }

    /// Crashes slot `i`: its sockets reset, its dials vanish, and the
    /// instance is retired with what its application had received (events
    /// still queued inside the node are taken too, so counters can be
    /// checked against events).
    pub fn crash(&mut self, i: usize) {
        if self.slots[i].node.is_none() {
            return;
        }
        for (c, _) in self.conns_of(i) {
            self.reset(i, c);
        }
        self.dials.retain(|(n, _, _)| *n != i);
        self.inflight.retain(|it| it.to != i);
        // Sockets whose far end is gone write into the void.
        for end in self.pipes.values_mut() {
            if matches!(end, End::Node(j, _) if *j == i) {
                *end = End::Hole;
            }
        }
        let slot = &mut self.slots[i];
        let mut node = slot.node.take().expect("checked");
        // Flush what the instance still holds into its event log.
        let mut sink = NetSink {
            me: i,
            pipes: &BTreeMap::new(),
            inflight: &mut VecDeque::new(),
            events: &mut slot.events,
            dials: &mut VecDeque::new(),
            closed: Vec::new(),
            stalled: false,
            max_write: usize::MAX,
            budget: usize::MAX,
            files: &mut Vec::new(),
            tap: &mut None,
        };
        for _ in 0..1000 {
            if let Step::Idle { .. } = slot.drain.run(&mut node, self.now, &mut sink) {
                break;
            }
        }
        while let Some(ev) = node.poll_event() {
            slot.events.push(ev);
        }
        self.retired.push(Retired { slot: i, stats: node.stats(), events: std::mem::take(&mut slot.events) });
        slot.drain = Drain::default();
        slot.files.clear();
        slot.fs.crash();
        slot.frozen = false;
        slot.stalled = false;
    }

    /// Puts a new node in slot `i` (crashing the old one first).
    pub fn restart(&mut self, i: usize, node: Node) {
        self.crash(i);
        self.slots[i].node = Some(node);
    }

    /// Opens a connection to slot `i` from a hand-made peer that only sends
    /// (what slot `i` writes back vanishes). Returns the node's connection.
    pub fn accept_fake(&mut self, i: usize) -> Option<ConnId> {
        let now = self.now;
        let c = self.slots[i].node.as_mut()?.handle_accepted(now).ok()?;
        self.pipes.insert((i, c), End::Hole);
        Some(c)
    }

    /// Feeds `bytes` to `(slot, conn)` directly, in random pieces, as if
    /// they had arrived on the socket (ignoring `wants_read`).
    pub fn inject(&mut self, slot: usize, conn: ConnId, bytes: &[u8]) {
        let now = self.now;
        let mut pos = 0;
        while pos < bytes.len() {
            let n = self.rng.size(self.max_piece).min(bytes.len() - pos);
            if let Some(node) = self.slots[slot].node.as_mut() {
                node.handle_bytes(now, conn, &bytes[pos..pos + n]);
            }
            pos += n;
        }
    }

    /// Payloads of the messages slot `i`'s current instance received, with
    /// the sender's name.
    pub fn messages(&self, i: usize) -> Vec<(String, Vec<u8>)> {
        self.slots[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::PubSub(PubSubEvent::Message(m)) => Some((m.from.name.to_string(), m.payload.to_vec())),
                _ => None,
            })
            .collect()
    }
}
