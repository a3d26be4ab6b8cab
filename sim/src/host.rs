//! One machine: its process (node, drain, clock, the application's
//! configuration) and the [`Sink`] its drain writes into, which feeds the
//! network model, the oracle and the trace. This is the one module that
//! handles core's `Action`s and turns core's `Event`s into trace records.
//! The driver that decides when a host reads and drains is `sim/driver.rs`.

use crate::check::Oracle;
use crate::clock::Clock;
use crate::config::NodeSetup;
use crate::ev::kind;
use crate::net::{Net, ProcId};
use crate::rng::{self, Rng};
use crate::trace::Trace;
use estafeta_core::transfer::{FileRequest, MemFs};
use estafeta_core::{
    Action, Budget, Config, ConnId, DialEvent, DiscoveryEvent, Drain, Event, Node, NodeId, PeerAddr, PubSubEvent,
    SessionEvent, Sink, Step, StreamEvent, StreamId, WriteOutcome,
};
use std::collections::BTreeSet;

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
    /// The application's draws for file transfers (a stream of its own).
    pub(crate) file_rng: Rng,
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
    /// Coordinators whose group the application joined.
    pub(crate) joins: Vec<usize>,
    /// Known peers it discovers through (`Discovery::join`), and topics it
    /// relays. Re-applied on restart.
    pub(crate) discover_via: Vec<usize>,
    pub(crate) relay: BTreeSet<usize>,
    pub(crate) id: NodeId,
    pub(crate) restarts: u64,
    /// Stream requests the last drain delivered, for the application.
    pub(crate) requests: Vec<StreamId>,
    /// The machine's disk: survives restarts; a crash loses unsynced writes.
    pub(crate) fs: MemFs,
    /// File operations the node asked for in the current drain.
    files: Vec<FileRequest>,
    /// The plaintext of the records the node sealed (secure runs; see
    /// [`estafeta_core::PlaintextTap`]), for the wire taps.
    pub(crate) sealed: estafeta_core::PlaintextTap,
}

impl Host {
    /// Machine `slot`, with no process yet.
    pub(crate) fn new(seed: u64, slot: usize, s: &NodeSetup) -> Host {
        Host {
            name: format!("n{slot}"),
            state: HostState::Down,
            proc: 0,
            node: None,
            drain: Drain::new(s.budget),
            config: s.config.clone(),
            budget: s.budget,
            clock: Clock::new(s.clock_offset_us, s.drift_ppm),
            rng: Rng::derive(seed, &[rng::STREAM_HOST, slot as u64]),
            file_rng: Rng::derive(seed, &[rng::STREAM_FILES, slot as u64]),
            read_rate: s.read_rate,
            read_ready_at: 0,
            timer_at: None,
            timer_gen: 0,
            wake_at: None,
            in_sync: true,
            targets: Vec::new(),
            subs: Default::default(),
            joins: Vec::new(),
            discover_via: Vec::new(),
            relay: Default::default(),
            id: NodeId::default(),
            restarts: 0,
            requests: Vec::new(),
            fs: MemFs::default(),
            files: Vec::new(),
            sealed: Default::default(),
        }
    }

    /// Runs the node's drain once at `now`, writing into the network and
    /// telling the oracle and the trace. When the run leaves no event behind
    /// (the application is in sync), the oracle checks the node's state.
    /// Returns the step and the dial targets the node gave up, or `None` if
    /// there is no running process.
    pub(crate) fn run_drain(&mut self, now: u64, slot: usize, world: World<'_>) -> Option<(Step, Vec<PeerAddr>)> {
        // A paused process runs nothing; its outputs wait for resume.
        if self.state != HostState::Up {
            return None;
        }
        let node = self.node.as_mut()?;
        let mut sink = SimSink {
            now,
            slot,
            proc: self.proc,
            net: world.net,
            oracle: world.oracle,
            trace: world.trace,
            gave_up: Vec::new(),
            log: world.log,
            requests: &mut self.requests,
            files: &mut self.files,
            fs: &mut self.fs,
            sealed: &self.sealed,
        };
        let mut step = self.drain.run(node, self.clock.timestamp(now), &mut sink);
        // The disk answers at once: run what the node asked for, report the
        // results, and drain again until it asks for nothing more.
        while !sink.files.is_empty() {
            for req in std::mem::take(sink.files) {
                let result = sink.fs.run(req.op);
                node.handle_file(self.clock.timestamp(now), req.id, result);
            }
            step = self.drain.run(node, self.clock.timestamp(now), &mut sink);
        }
        let gave_up = std::mem::take(&mut sink.gave_up);
        self.in_sync = matches!(step, Step::Idle { .. }) && !self.drain.app_blocked();
        if self.in_sync {
            sink.oracle.after_step(now, self.proc, node);
        }
        Some((step, gave_up))
    }
}

/// What a host's drain reaches outside the host.
pub(crate) struct World<'a> {
    pub(crate) net: &'a mut Net,
    pub(crate) oracle: &'a mut Oracle,
    pub(crate) trace: &'a mut Trace,
    /// Every event every node emitted, if the simulation keeps them.
    pub(crate) log: Option<&'a mut Vec<(u64, usize, Event)>>,
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
    log: Option<&'a mut Vec<(u64, usize, Event)>>,
    requests: &'a mut Vec<StreamId>,
    files: &'a mut Vec<FileRequest>,
    fs: &'a mut MemFs,
    sealed: &'a estafeta_core::PlaintextTap,
}

impl Sink for SimSink<'_> {
    fn write(&mut self, conn: ConnId, bytes: &[u8]) -> WriteOutcome {
        // Records sealed since the last write: their plaintext goes to the
        // taps before their bytes.
        for (c, plain) in self.sealed.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default() {
            self.net.sealed(self.slot, c, plain);
        }
        let Some(&(tcp, e)) = self.net.kernels[self.slot].socks.get(&conn) else {
            return WriteOutcome::Failed("not a socket".into());
        };
        let (now, from, to) = (self.now, self.proc, self.net.tcps[tcp].ends[1 - e].proc);
        let oracle = &mut *self.oracle;
        let out = self
            .net
            .write(now, tcp, e, bytes, &mut |header, payload| oracle.on_wire(now, from, tcp, to, header, payload));
        let n = match &out {
            WriteOutcome::Wrote(n) => *n,
            _ => 0,
        };
        let slot = self.slot;
        self.trace.record(self.now, kind::WRITE, &[slot as u64, conn.0, bytes.len() as u64, n as u64], || {
            format!("n{slot} {conn} writes {n}/{} bytes: {out:?}", bytes.len())
        });
        self.trace.bytes(&bytes[..n]);
        out
    }

    fn act(&mut self, action: Action) {
        let slot = self.slot;
        match &action {
            Action::Dial { conn, addr } => {
                let to = (addr.host == "sim").then_some(addr.port as usize);
                self.net.dial(self.now, slot, *conn, to);
            }
            Action::HalfClose { conn } => {
                if let Some(&(tcp, e)) = self.net.kernels[slot].socks.get(conn) {
                    self.net.shutdown_write(self.now, tcp, e);
                }
            }
            Action::Close { conn } => {
                match self.net.kernels[slot].socks.get(conn) {
                    Some(&(tcp, e)) => self.net.close(self.now, tcp, e),
                    // A dial the node abandoned (its dial timeout).
                    None => self.net.cancel_dial(self.now, slot, *conn),
                }
            }
        }
        let (k, c) = match &action {
            Action::Dial { conn, addr } => (1, conn.0 | (addr.port as u64) << 48),
            Action::Close { conn } => (2, conn.0),
            Action::HalfClose { conn } => (3, conn.0),
        };
        self.trace.record(self.now, kind::ACT, &[slot as u64, k, c], || format!("n{slot} action {action:?}"));
    }

    fn deliver(&mut self, event: Event) -> Result<(), Event> {
        // A run is observed message by message, as the application takes it.
        if let Event::PubSub(PubSubEvent::Messages(run)) = event {
            for m in run {
                self.deliver_one(Event::PubSub(PubSubEvent::Message(m)));
            }
            return Ok(());
        }
        self.deliver_one(event);
        Ok(())
    }

    fn file(&mut self, request: FileRequest) {
        self.files.push(request);
    }
}

impl SimSink<'_> {
    /// One event, as the application sees it.
    fn deliver_one(&mut self, event: Event) {
        let slot = self.slot;
        let words = event_words(&event);
        self.trace.record(self.now, kind::EVENT, &words, || format!("n{slot} event {}", short_event(&event)));
        self.oracle.on_event(self.now, self.proc, &event);
        if let Event::Transfer(estafeta_core::TransferEvent::Received(r)) = &event {
            let on_disk = self.fs.read(&r.path).map(|b| *estafeta_core::blake3::hash(b).as_bytes());
            self.oracle.on_file(self.now, self.proc, r, on_disk);
        }
        if let Some(log) = self.log.as_mut() {
            log.push((self.now, slot, event.clone()));
        }
        if let Event::Dial(DialEvent::GaveUp { addr, .. }) = &event {
            self.gave_up.push(addr.clone());
        }
        if let Event::Stream(StreamEvent::Request { stream, .. }) = &event {
            self.requests.push(*stream);
        }
    }
}

fn event_words(ev: &Event) -> [u64; 4] {
    let id = |i: &NodeId| i.as_u128() as u64;
    match ev {
        Event::PubSub(PubSubEvent::Message(m)) => {
            [1, id(&m.from.id), crate::payload::id_of(&m.payload).unwrap_or(u64::MAX), m.payload.len() as u64]
        }
        Event::PubSub(PubSubEvent::Messages(run)) => [45, id(&run.from.id), run.len() as u64, run.payload_bytes()],
        Event::PeerUp { peer, conn, .. } => [2, id(&peer.id), conn.0, 0],
        Event::PeerDown { peer, .. } => [3, id(&peer.id), 0, 0],
        Event::PubSub(PubSubEvent::Subscribed { peer, topic }) => [4, id(&peer.id), topic.as_str().len() as u64, 0],
        Event::PubSub(PubSubEvent::Unsubscribed { peer, topic }) => [5, id(&peer.id), topic.as_str().len() as u64, 0],
        Event::PubSub(PubSubEvent::Dropped { peer, count, .. }) => {
            [6, peer.as_ref().map_or(0, |p| id(&p.id)), *count, 0]
        }
        Event::PubSub(PubSubEvent::Overwritten { peer, count, seq, .. }) => {
            [43, id(&peer.id), *count, seq.unwrap_or(0)]
        }
        Event::PubSub(PubSubEvent::Skipped { peer, count, seq, .. }) => [44, id(&peer.id), *count, seq.unwrap_or(0)],
        Event::Dial(DialEvent::Failed { target, .. }) => [7, target.0, 0, 0],
        Event::Dial(DialEvent::GaveUp { target, .. }) => [8, target.0, 0, 0],
        Event::Dial(DialEvent::Connected { target, peer }) => [9, target.0, id(&peer.id), 0],
        Event::PubSub(PubSubEvent::Writable) => [10, 0, 0, 0],
        Event::ProtocolViolation { conn, .. } => [11, conn.0, 0, 0],
        Event::Closed => [12, 0, 0, 0],
        Event::Session(SessionEvent::Suspended { peer, .. }) => [40, id(&peer.id), 0, 0],
        Event::Session(SessionEvent::Resumed { peer, resent }) => [41, id(&peer.id), *resent, 0],
        Event::Session(SessionEvent::Ended { peer, unacked, .. }) => [42, id(&peer.id), unacked.start, unacked.end],
        Event::Stream(StreamEvent::Request { stream, peer, request, .. }) => {
            [13, stream.0, id(&peer.id), crate::check::stream_number(request).unwrap_or(u64::MAX)]
        }
        Event::Stream(StreamEvent::Data { stream, payload }) => [14, stream.0, payload.len() as u64, 0],
        Event::Stream(StreamEvent::Closed { stream, end, .. }) => [15, stream.0, end.code.0 as u64, end.remote as u64],
        Event::Stream(StreamEvent::Writable { stream }) => [16, stream.0, 0, 0],
        Event::Stream(StreamEvent::Serving { peer, topic, serving }) => {
            [17, id(&peer.id), topic.as_str().len() as u64, *serving as u64]
        }
        Event::Membership(m) => membership_words(m),
        Event::Discovery(DiscoveryEvent::Paired { topic }) => [27, topic.as_str().len() as u64, 0, 0],
        Event::Discovery(DiscoveryEvent::Unpaired { topic }) => [28, topic.as_str().len() as u64, 0, 0],
        Event::Discovery(DiscoveryEvent::RelayLost { origin, count, .. }) => [29, id(origin), *count, 0],
        Event::Discovery(DiscoveryEvent::DialFailed { addr, .. }) => [30, addr.port as u64, 0, 0],
        Event::Transfer(t) => transfer_words(t),
        Event::Refused { conn, code, .. } => [37, conn.0, code.0 as u64, 0],
        // Every event is named: a new plane's events fail to compile here
        // until the simulator traces (and its checker observes) them.
    }
}

fn membership_words(m: &estafeta_core::MembershipEvent) -> [u64; 4] {
    use estafeta_core::MembershipEvent as M;
    match m {
        M::Assigned { assignment: a, .. } => [20, a.index as u64, a.total as u64, a.epoch],
        M::Settling { .. } => [21, 0, 0, 0],
        M::LeaseLost { .. } => [22, 0, 0, 0],
        M::Refused { .. } => [23, 0, 0, 0],
        M::MemberJoined { member, .. } => [24, member.as_u128() as u64, 0, 0],
        M::MemberLeft { member, .. } => [25, member.as_u128() as u64, 0, 0],
        M::Settled { epoch, total, .. } => [26, *epoch, *total as u64, 0],
    }
}

fn transfer_words(ev: &estafeta_core::TransferEvent) -> [u64; 4] {
    use estafeta_core::TransferEvent as T;
    let id = |i: &NodeId| i.as_u128() as u64;
    match ev {
        T::Offered(o) => [31, id(&o.peer.id), o.id, o.size],
        T::Started { peer, id: t, offset, .. } => [32, id(&peer.id), *t, *offset],
        T::Progress { peer, id: t, bytes, .. } => [33, id(&peer.id), *t, *bytes],
        T::Received(r) => [34, id(&r.peer.id), r.id, r.size],
        T::Delivered { peer, id: t } => [35, id(&peer.id), *t, 0],
        T::Failed { peer, id: t, .. } => [36, id(&peer.id), *t, 0],
    }
}

fn short_event(ev: &Event) -> String {
    match ev {
        Event::PubSub(PubSubEvent::Message(m)) => format!(
            "Message #{} on {} from {} ({} bytes)",
            crate::payload::id_of(&m.payload).map_or(-1, |g| g as i64),
            m.topic,
            m.from,
            m.payload.len()
        ),
        other => format!("{other:?}"),
    }
}
