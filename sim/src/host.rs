//! One machine's process: the node, its drain, its clock, and the driver
//! that feeds it socket input and runs the drain after every input. The sink
//! the drain writes into is the network model.

use crate::check::{Mode, Oracle};
use crate::clock::Clock;
use crate::net::{Net, ProcId, SockState};
use crate::rng::{self, Rng};
use crate::sim::{kind, Ev, Sim};
use crate::tap::Tapped;
use crate::trace::Trace;
use estafeta_core::{
    Action, Budget, CloseReason, Config, ConnId, Drain, Event, Node, NodeId, PeerAddr, PublishError, Published,
    SendMode, Sink, Step, WriteOutcome,
};
use std::collections::BTreeSet;

/// Reads one wake-up may do before yielding to other events.
const READS_PER_WAKE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostState {
    Up,
    /// Alive but processing nothing; the kernel still buffers bytes.
    Paused,
    Down,
}

pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) state: HostState,
    pub(crate) proc: ProcId,
    pub(crate) node: Option<Node>,
    pub(crate) drain: Drain,
    pub(crate) config: Config,
    pub(crate) budget: Budget,
    pub(crate) clock: Clock,
    pub(crate) rng: Rng,
    pub(crate) read_rate: Option<u64>,
    pub(crate) read_ready_at: u64,
    pub(crate) timer_at: Option<u64>,
    pub(crate) timer_gen: u64,
    pub(crate) wake_at: Option<u64>,
    /// The last drain left no event behind: the application saw everything.
    pub(crate) in_sync: bool,
    /// The application's configuration: machines it connects to, topics it
    /// subscribes to. Re-applied on restart.
    pub(crate) targets: Vec<usize>,
    pub(crate) subs: BTreeSet<usize>,
    pub(crate) id: NodeId,
    pub(crate) restarts: u64,
}

/// A message the core accepted: its id, and how many peers it was queued
/// for or dropped for (see [`estafeta_core::Published`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The message id, for [`Sim::delivered_to`].
    pub id: u64,
    /// Peers it was queued for.
    pub queued: usize,
    /// Peers it was dropped for (full queues, by policy).
    pub dropped: usize,
}

/// The address of machine `slot`.
pub fn addr_of(slot: usize) -> PeerAddr {
    PeerAddr { name: Some(format!("n{slot}")), host: "sim".into(), port: slot as u16 }
}

/// The sink a node's drain writes into: the network, the oracle, the trace.
struct SimSink<'a> {
    now: u64,
    slot: usize,
    proc: ProcId,
    net: &'a mut Net,
    oracle: &'a mut Oracle,
    trace: &'a mut Trace,
    gave_up: Vec<PeerAddr>,
    tapped: Vec<Tapped>,
    log: Option<&'a mut Vec<(u64, usize, Event)>>,
}

impl Sink for SimSink<'_> {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        let Some(&(tcp, e)) = self.net.kernels[self.slot].socks.get(&conn) else {
            return WriteOutcome::Failed("not a socket".into());
        };
        let out = self.net.write(self.now, tcp, e, bytes, &mut self.tapped);
        let n = match &out {
            WriteOutcome::Wrote(n) => *n,
            _ => 0,
        };
        let slot = self.slot;
        self.trace.record(self.now, kind::WRITE, &[slot as u64, conn.0, bytes.len() as u64, n as u64], || {
            format!("n{slot} {conn} writes {n}/{} bytes: {out:?}", bytes.len())
        });
        self.trace.bytes(&bytes[..n]);
        let to = self.net.tcps[tcp].ends[1 - e].proc;
        for t in std::mem::take(&mut self.tapped) {
            if let Some(g) = self.oracle.on_handoff(self.now, self.proc, tcp, to, &t) {
                self.net.tcps[tcp].pipes[e].unfed.push_back((t.end, g));
            }
        }
        out
    }

    fn act(&mut self, action: Action) {
        let slot = self.slot;
        match &action {
            Action::Dial { conn, addr } => {
                let to = (addr.host == "sim").then_some(addr.port as usize);
                self.net.dial(self.now, slot, *conn, to);
            }
            Action::Close { conn } => {
                if let Some(&(tcp, e)) = self.net.kernels[slot].socks.get(conn) {
                    self.net.close(self.now, tcp, e);
                }
            }
            _ => {}
        }
        let (k, c) = match &action {
            Action::Dial { conn, addr } => (1, conn.0 | (addr.port as u64) << 48),
            Action::Close { conn } => (2, conn.0),
            _ => (3, 0),
        };
        self.trace.record(self.now, kind::ACT, &[slot as u64, k, c], || format!("n{slot} action {action:?}"));
    }

    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        let slot = self.slot;
        let words = event_words(&event);
        self.trace.record(self.now, kind::EVENT, &words, || format!("n{slot} event {}", short_event(&event)));
        self.oracle.on_event(self.now, self.proc, &event);
        if let Some(log) = self.log.as_mut() {
            log.push((self.now, slot, event.clone()));
        }
        if let Event::GaveUp { addr, .. } = &event {
            self.gave_up.push(addr.clone());
        }
        Ok(())
    }
}

fn event_words(ev: &Event) -> [u64; 4] {
    let id = |i: &NodeId| i.as_u128() as u64;
    match ev {
        Event::Message(m) => {
            [1, id(&m.from.id), crate::payload::id_of(&m.payload).unwrap_or(u64::MAX), m.payload.len() as u64]
        }
        Event::PeerUp { peer, conn, .. } => [2, id(&peer.id), conn.0, 0],
        Event::PeerDown { peer, .. } => [3, id(&peer.id), 0, 0],
        Event::Subscribed { peer, topic } => [4, id(&peer.id), topic.as_str().len() as u64, 0],
        Event::Unsubscribed { peer, topic } => [5, id(&peer.id), topic.as_str().len() as u64, 0],
        Event::Dropped { peer, count, .. } => [6, peer.as_ref().map_or(0, |p| id(&p.id)), *count, 0],
        Event::DialFailed { target, .. } => [7, target.0, 0, 0],
        Event::GaveUp { target, .. } => [8, target.0, 0, 0],
        Event::Connected { target, peer } => [9, target.0, id(&peer.id), 0],
        Event::Writable => [10, 0, 0, 0],
        _ => [11, 0, 0, 0],
    }
}

fn short_event(ev: &Event) -> String {
    match ev {
        Event::Message(m) => format!(
            "Message #{} on {} from {} ({} bytes)",
            crate::payload::id_of(&m.payload).map_or(-1, |g| g as i64),
            m.topic,
            m.from,
            m.payload.len()
        ),
        other => format!("{other:?}"),
    }
}

impl Sim {
    /// Starts a process on `slot`: a new node (the same id as before unless
    /// `fresh`), then the application subscribes and connects as configured.
    pub(crate) fn start_process(&mut self, slot: usize, fresh: bool) {
        let h = &mut self.hosts[slot];
        let mut cfg = h.config.clone();
        cfg.seed = Rng::derive(self.seed, &[rng::STREAM_NODE_SEED, slot as u64, h.restarts]).next_u64();
        let node = if h.restarts > 0 && !fresh { Node::with_id(cfg, h.id, &h.name) } else { Node::new(cfg, &h.name) }
            .expect("valid node config");
        h.restarts += 1;
        h.id = node.id();
        let proc = self.oracle.new_proc(slot, node.id(), &h.name);
        let h = &mut self.hosts[slot];
        h.proc = proc;
        h.node = Some(node);
        h.drain = Drain::new(h.budget);
        h.state = HostState::Up;
        h.timer_at = None;
        h.timer_gen += 1;
        h.wake_at = None;
        h.in_sync = true;
        self.net.boot(slot, proc);
        let id = self.hosts[slot].id;
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 1, id.as_u128() as u64], || {
            format!("n{slot} starts as {id:#} (process {proc})")
        });
        let subs: Vec<usize> = self.hosts[slot].subs.iter().copied().collect();
        for t in subs {
            self.node_subscribe(slot, t, true);
        }
        let targets = self.hosts[slot].targets.clone();
        for to in targets {
            self.node_connect(slot, to);
        }
        self.drain(slot);
        if let Some(w) = &self.workload {
            let at = self.now + w.first_tick(&mut self.hosts[slot].rng);
            self.agenda.push(at, Ev::App { slot, proc });
        }
    }

    fn node_subscribe(&mut self, slot: usize, topic: usize, on: bool) {
        let proc = self.hosts[slot].proc;
        let name = self.oracle.topics[topic].clone();
        let Some(node) = self.hosts[slot].node.as_mut() else {
            return;
        };
        let r = if on { node.subscribe(&name) } else { node.unsubscribe(&name) };
        if r.is_ok() {
            self.oracle.set_subscribed(proc, topic, on);
        }
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 2 + on as u64, topic as u64], || {
            format!("n{slot} {} {name}: {r:?}", if on { "subscribes" } else { "unsubscribes" })
        });
    }

    fn node_connect(&mut self, slot: usize, to: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let r = node.connect(addr_of(to));
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 4, to as u64], || {
                format!("n{slot} connects to n{to}: {r:?}")
            });
        }
    }

    /// The application of `slot` subscribes to `topic` (kept across restarts).
    pub fn subscribe(&mut self, slot: usize, topic: usize) {
        self.hosts[slot].subs.insert(topic);
        if self.hosts[slot].state != HostState::Down {
            self.node_subscribe(slot, topic, true);
            self.drain(slot);
        }
    }

    /// The application of `slot` unsubscribes from `topic`.
    pub fn unsubscribe(&mut self, slot: usize, topic: usize) {
        self.hosts[slot].subs.remove(&topic);
        if self.hosts[slot].state != HostState::Down {
            self.node_subscribe(slot, topic, false);
            self.drain(slot);
        }
    }

    /// The application of `slot` keeps a connection to machine `to` (kept
    /// across restarts).
    pub fn connect(&mut self, slot: usize, to: usize) {
        if !self.hosts[slot].targets.contains(&to) {
            self.hosts[slot].targets.push(to);
        }
        if self.hosts[slot].state != HostState::Down {
            self.node_connect(slot, to);
            self.drain(slot);
        }
    }

    /// The application of `slot` publishes a `len`-byte message on `topic`.
    /// Returns the message id (for [`Sim::delivered_to`]) and the core's
    /// answer, or the core's error.
    pub fn publish(&mut self, slot: usize, topic: usize, len: usize, mode: SendMode) -> Result<Sent, PublishError> {
        let g = self.oracle.next_msg();
        let payload = crate::payload::make(g, len);
        let (proc, in_sync) = (self.hosts[slot].proc, self.hosts[slot].in_sync);
        let name = self.oracle.topics[topic].clone();
        let Some(node) = self.hosts[slot].node.as_mut() else {
            return Err(PublishError::Closed);
        };
        let len = payload.len();
        let r: Result<Published, PublishError> = node.publish(&name, payload, mode.clone());
        self.trace.record(
            self.now,
            kind::PUBLISH,
            &[slot as u64, g, topic as u64, r.as_ref().map_or(u64::MAX, |p| p.queued as u64)],
            || format!("n{slot} publishes #{g} on {name} {mode:?} ({len} bytes): {r:?}"),
        );
        self.oracle.on_publish(self.now, proc, g, topic, Mode::of(&mode), len, r.clone(), in_sync);
        self.drain(slot);
        r.map(|p| Sent { id: g, queued: p.queued, dropped: p.dropped })
    }

    /// Machines (slots) that received message `g`.
    pub fn delivered_to(&self, g: u64) -> Vec<usize> {
        self.oracle.msgs.get(g as usize).map_or(Vec::new(), |m| {
            m.handoffs.iter().filter(|h| h.delivered.is_some()).map(|h| self.oracle.procs[h.to as usize].slot).collect()
        })
    }

    /// True if the nodes in `a` and `b` are both running and each lists the
    /// other among its peers.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        let (Some(na), Some(nb)) = (self.node(a), self.node(b)) else {
            return false;
        };
        let (ia, ib) = (self.hosts[a].id, self.hosts[b].id);
        na.peers().any(|p| p.id == ib) && nb.peers().any(|p| p.id == ia)
    }

    /// Runs the drain of `slot` after an input or command, then arms its
    /// timer, and checks the application's picture when it is in sync.
    pub(crate) fn drain(&mut self, slot: usize) {
        loop {
            let now = self.now;
            let h = &mut self.hosts[slot];
            // A paused process runs nothing; its outputs wait for resume.
            if h.state != HostState::Up {
                return;
            }
            let Some(node) = h.node.as_mut() else { return };
            let mut sink = SimSink {
                now,
                slot,
                proc: h.proc,
                net: &mut self.net,
                oracle: &mut self.oracle,
                trace: &mut self.trace,
                gave_up: Vec::new(),
                tapped: Vec::new(),
                log: self.event_log.as_mut(),
            };
            let step = h.drain.run(node, h.clock.timestamp(now), &mut sink);
            let gave_up = std::mem::take(&mut sink.gave_up);
            h.in_sync = matches!(step, Step::Idle { .. }) && !h.drain.app_blocked();
            if h.in_sync {
                self.oracle.check_node(now, h.proc, node);
            }
            match step {
                Step::Idle { deadline } => {
                    let vt = deadline.map(|d| h.clock.to_virtual(d.as_micros()).max(now + 1));
                    if vt != h.timer_at {
                        h.timer_at = vt;
                        h.timer_gen += 1;
                        if let Some(at) = vt {
                            let (proc, gen) = (h.proc, h.timer_gen);
                            self.agenda.push(at, Ev::Timer { slot, proc, gen });
                        }
                    }
                }
                _ => self.wake(slot, now),
            }
            self.flush_net();
            if gave_up.is_empty() {
                return;
            }
            // The application reacts to a target given up by connecting again.
            for addr in gave_up {
                if let Some(node) = self.hosts[slot].node.as_mut() {
                    let _ = node.connect(addr);
                }
            }
        }
    }

    /// The driver of `slot` wakes: accepts, finished dials, then socket
    /// input in a seeded order, running the drain after every input.
    pub(crate) fn service(&mut self, slot: usize) {
        if self.hosts[slot].state != HostState::Up {
            return;
        }
        let now = self.now;
        while let Some(tcp) = self.net.kernels[slot].backlog.pop_front() {
            if self.net.tcps[tcp].ends[1].state != crate::net::EndState::Open {
                self.net.close(now, tcp, 1);
                continue;
            }
            let h = &mut self.hosts[slot];
            let ts = h.clock.timestamp(now);
            let r = h.node.as_mut().expect("up").handle_accepted(ts);
            self.trace.record(now, kind::INPUT, &[slot as u64, 1, tcp as u64], || {
                format!("n{slot} accepts tcp {tcp}: {r:?}")
            });
            match r {
                Ok(conn) => {
                    self.net.tcps[tcp].ends[1].conn = Some(conn);
                    self.net.kernels[slot].socks.insert(conn, (tcp, 1));
                }
                Err(_) => self.net.abort_end(now, tcp, 1),
            }
            self.drain(slot);
        }
        while let Some((conn, r)) = self.net.kernels[slot].dial_done.pop_front() {
            let h = &mut self.hosts[slot];
            let ts = h.clock.timestamp(now);
            let node = h.node.as_mut().expect("up");
            self.trace.record(now, kind::INPUT, &[slot as u64, 2, conn.0, r.is_ok() as u64], || {
                format!("n{slot} dial {conn}: {r:?}")
            });
            match r {
                Ok(_) => node.handle_connected(ts, conn),
                Err(e) => node.handle_closed(ts, conn, CloseReason::Io(e)),
            }
            self.drain(slot);
        }
        self.read_sockets(slot);
        self.drain(slot);
    }

    fn read_sockets(&mut self, slot: usize) {
        let now = self.now;
        let mut reads = 0;
        let mut fed = Vec::new();
        loop {
            let mut socks: Vec<(ConnId, (usize, usize))> =
                self.net.kernels[slot].socks.iter().map(|(c, s)| (*c, *s)).collect();
            self.hosts[slot].rng.shuffle(&mut socks);
            let mut progressed = false;
            let mut more_later = None;
            for (conn, (tcp, e)) in socks {
                if self.hosts[slot].state != HostState::Up || self.net.kernels[slot].socks.get(&conn) != Some(&(tcp, e))
                {
                    continue;
                }
                let state = self.net.sock_state(tcp, e);
                let h = &mut self.hosts[slot];
                let ts = h.clock.timestamp(now);
                let node = h.node.as_mut().expect("up");
                match state {
                    SockState::Reset | SockState::Eof => {
                        let why = if state == SockState::Reset { "connection reset" } else { "end of stream" };
                        self.trace.record(now, kind::INPUT, &[slot as u64, 3, conn.0], || {
                            format!("n{slot} {conn} closed: {why}")
                        });
                        node.handle_closed(ts, conn, CloseReason::Io(why.into()));
                        self.drain(slot);
                        // The driver drops the socket once it reported it.
                        if self.net.kernels[slot].socks.get(&conn) == Some(&(tcp, e)) {
                            self.net.close(now, tcp, e);
                        }
                        progressed = true;
                    }
                    SockState::Readable(avail) if node.wants_read(conn) => {
                        if reads >= READS_PER_WAKE {
                            more_later = Some(now);
                            continue;
                        }
                        if h.read_rate.is_some() && now < h.read_ready_at {
                            more_later = Some(h.read_ready_at);
                            continue;
                        }
                        let max = match h.read_rate {
                            Some(rate) => (rate / 100).max(1) as usize,
                            None => 64 << 10,
                        };
                        let want = if h.rng.chance(300) { h.rng.range(1, 64) } else { h.rng.range(1, max as u64) };
                        let k = (want as usize).min(avail);
                        let proc = h.proc;
                        let bytes = self.net.read(now, tcp, e, k, &mut fed);
                        let h = &mut self.hosts[slot];
                        if let Some(rate) = h.read_rate {
                            h.read_ready_at = now + (k as u64 * 1_000_000).div_ceil(rate.max(1));
                        }
                        for g in fed.drain(..) {
                            self.oracle.on_fed(now, g, proc);
                        }
                        self.trace.record(now, kind::READ, &[slot as u64, conn.0, k as u64], || {
                            format!("n{slot} {conn} reads {k} bytes")
                        });
                        self.trace.bytes(&bytes);
                        let node = h.node.as_mut().expect("up");
                        node.handle_bytes(h.clock.timestamp(now), conn, &bytes);
                        self.drain(slot);
                        reads += 1;
                        progressed = true;
                    }
                    _ => {}
                }
            }
            if let Some(at) = more_later {
                self.wake(slot, at);
                return;
            }
            if !progressed {
                return;
            }
        }
    }
}
