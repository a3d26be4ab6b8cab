//! The network: links between machines, simulated TCP connections, and each
//! machine's kernel (listen backlog, finished dials, open sockets).
//!
//! A connection carries bytes in order in each direction. Bytes written are
//! cut into segments of seeded sizes, wait for the link's bandwidth, travel
//! with latency and jitter (never overtaking each other), and land in the
//! receiver's socket buffer until its node reads them. A direction's window
//! counts bytes written and not yet read by the receiver; when it is full a
//! write blocks, and the writer is woken when the receiver's reads come back
//! as credit. A closed end sends FIN (or RST if it left bytes unread); bytes
//! that reach a closed end are answered with RST.

use crate::link::{Block, Link, LinkParams};
use crate::rng::Rng;
use crate::tap::{OnFrame, Tap, Watch};
use bytes::{Bytes, BytesMut};
use estafeta_core::{ConnId, WriteOutcome};
use std::collections::{BTreeMap, VecDeque};

/// Index of a simulated TCP connection.
pub(crate) type TcpId = usize;
/// A process incarnation: every start and restart of a node gets a new one.
pub type ProcId = u32;

/// Knobs of the transport that are not per link.
#[derive(Clone, Debug)]
pub struct NetParams {
    /// A dial with no answer fails after this long.
    pub connect_timeout_us: u64,
    /// Extra delay, up to this, before segments lost to a partition are
    /// retransmitted after repair.
    pub rto_us: u64,
    /// Largest segment; writes are cut into seeded sizes up to this.
    pub max_segment: usize,
    /// Chance (per mille) that a write takes fewer bytes than it could.
    pub short_write_per_mille: u64,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams { connect_timeout_us: 1_000_000, rto_us: 200_000, max_segment: 16 << 10, short_write_per_mille: 50 }
    }
}

/// Something that happens inside the network at a scheduled time.
#[derive(Clone, Debug)]
pub(crate) enum NetEv {
    /// Segments of `tcp` direction `dir` may have arrived.
    Arrive { tcp: TcpId, dir: usize, gen: u32 },
    /// The receiver of `tcp` direction `dir` read `bytes`: window credit.
    Credit { tcp: TcpId, dir: usize, bytes: usize },
    /// A dial's SYN reaches the callee.
    Syn { dial: usize },
    /// The callee's answer reaches the caller (`None`: refused).
    SynAck { dial: usize, tcp: Option<TcpId> },
    /// The caller stops waiting.
    DialTimeout { dial: usize },
}

#[derive(Debug)]
enum Seg {
    Data(Vec<u8>),
    Fin,
    Rst,
}

/// One direction of a connection.
#[derive(Debug)]
pub(crate) struct Pipe {
    in_flight: VecDeque<(u64, Seg)>,
    gen: u32,
    arriving: bool,
    last_at: u64,
    rx: BytesMut,
    fin: bool,
    window: usize,
    unacked: usize,
    blocked: bool,
    /// What the writer handed to this direction, frame by frame, and which
    /// frames the receiver has read whole.
    pub(crate) tap: Tap,
}

impl Pipe {
    /// `dialer`: the dialing end writes this direction (the secure channel's initiator).
    fn new(window: usize, dialer: bool) -> Pipe {
        Pipe {
            in_flight: VecDeque::new(),
            gen: 0,
            arriving: false,
            last_at: 0,
            rx: BytesMut::new(),
            fin: false,
            window,
            unacked: 0,
            blocked: false,
            tap: Tap::new(dialer),
        }
    }
}

/// The state of one end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndState {
    Open,
    /// A reset arrived; the node has not been told yet.
    Reset,
    /// The node closed it, or its process died.
    Closed,
}

#[derive(Debug)]
pub(crate) struct End {
    pub(crate) slot: usize,
    pub(crate) proc: ProcId,
    pub(crate) conn: Option<ConnId>,
    pub(crate) state: EndState,
    /// When this end stopped being open.
    pub(crate) died_at: Option<u64>,
    /// Its process crashed while its node still held it (open, or reset
    /// and not yet reported to the node): nobody was left to tell.
    pub(crate) held_at_crash: bool,
    rst_sent: bool,
    /// The node shut this end down for writing (FIN sent); it still reads.
    wr_shut: bool,
}

/// A simulated TCP connection: end 0 dialed, end 1 accepted.
#[derive(Debug)]
pub(crate) struct Tcp {
    pub(crate) ends: [End; 2],
    /// `pipes[d]` carries bytes written by `ends[d]`.
    pub(crate) pipes: [Pipe; 2],
    pub(crate) opened_at: u64,
}

impl Tcp {
    /// When the connection first stopped working at either end.
    pub(crate) fn died_at(&self) -> Option<u64> {
        match (self.ends[0].died_at, self.ends[1].died_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug)]
struct Dial {
    from: usize,
    proc: ProcId,
    conn: ConnId,
    to: usize,
    pending: bool,
    tcp: Option<TcpId>,
}

/// One machine's kernel: what its process has not picked up yet, and its sockets.
#[derive(Debug, Default)]
pub(crate) struct Kernel {
    pub(crate) up: bool,
    pub(crate) proc: ProcId,
    pub(crate) backlog: VecDeque<TcpId>,
    pub(crate) dial_done: VecDeque<(ConnId, Result<TcpId, String>)>,
    /// The node's connection ids and the (connection, end) they name.
    pub(crate) socks: BTreeMap<ConnId, (TcpId, usize)>,
    dialing: Vec<usize>,
}

/// What a socket has for its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockState {
    /// Reset by the peer or the network: report it closed.
    Reset,
    /// All bytes read and the peer closed: report end of stream.
    Eof,
    /// This many bytes wait to be read.
    Readable(usize),
    /// Nothing to do.
    Idle,
}

/// The whole network.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) n: usize,
    links: Vec<Link>,
    pub(crate) tcps: Vec<Tcp>,
    dials: Vec<Dial>,
    pub(crate) kernels: Vec<Kernel>,
    params: NetParams,
    /// Events to schedule, filled by every call.
    pub(crate) out: Vec<(u64, NetEv)>,
    /// Machines whose process should look at its sockets now.
    pub(crate) wakes: Vec<usize>,
    /// Broken expectations about what nodes wrote.
    pub(crate) violations: Vec<String>,
}

impl Net {
    pub(crate) fn new(n: usize, seed: u64, params: NetParams, link: impl Fn(usize, usize) -> LinkParams) -> Net {
        let mut links = Vec::with_capacity(n * n);
        for a in 0..n {
            for b in 0..n {
                let rng = Rng::derive(seed, &[crate::rng::STREAM_LINK, a as u64, b as u64]);
                links.push(Link::new(link(a, b), rng));
            }
        }
        Net {
            n,
            links,
            tcps: Vec::new(),
            dials: Vec::new(),
            kernels: (0..n).map(|_| Kernel::default()).collect(),
            params,
            out: Vec::new(),
            wakes: Vec::new(),
            violations: Vec::new(),
        }
    }

    pub(crate) fn link(&self, from: usize, to: usize) -> &Link {
        &self.links[from * self.n + to]
    }

    pub(crate) fn link_mut(&mut self, from: usize, to: usize) -> &mut Link {
        &mut self.links[from * self.n + to]
    }

    /// The link an event crosses, if any.
    fn route(&self, ev: &NetEv) -> Option<(usize, usize)> {
        match *ev {
            NetEv::Arrive { tcp, dir, .. } => {
                let t = &self.tcps[tcp];
                Some((t.ends[dir].slot, t.ends[1 - dir].slot))
            }
            NetEv::Credit { tcp, dir, .. } => {
                let t = &self.tcps[tcp];
                Some((t.ends[1 - dir].slot, t.ends[dir].slot))
            }
            NetEv::Syn { dial } => Some((self.dials[dial].from, self.dials[dial].to)),
            NetEv::SynAck { dial, .. } => Some((self.dials[dial].to, self.dials[dial].from)),
            NetEv::DialTimeout { .. } => None,
        }
    }

    /// Runs a network event at `now`.
    pub(crate) fn handle(&mut self, now: u64, ev: NetEv) {
        if let NetEv::Arrive { tcp, dir, gen } = ev {
            if self.tcps[tcp].pipes[dir].gen != gen {
                return;
            }
        }
        if let Some((from, to)) = self.route(&ev) {
            match self.link(from, to).block() {
                Some(Block::Partition) => {
                    // A lost SYN is not retransmitted here: the dial times out.
                    if !matches!(ev, NetEv::Syn { .. } | NetEv::SynAck { .. }) {
                        self.link_mut(from, to).stash.push((ev, true));
                    }
                    return;
                }
                Some(Block::Hold) => {
                    self.link_mut(from, to).stash.push((ev, false));
                    return;
                }
                None => {}
            }
        }
        match ev {
            NetEv::Arrive { tcp, dir, .. } => self.on_arrive(now, tcp, dir),
            NetEv::Credit { tcp, dir, bytes } => self.on_credit(tcp, dir, bytes),
            NetEv::Syn { dial } => self.on_syn(now, dial),
            NetEv::SynAck { dial, tcp } => self.on_synack(now, dial, tcp),
            NetEv::DialTimeout { dial } => self.on_dial_timeout(now, dial),
        }
    }

    // ----- links -------------------------------------------------------

    /// Partitions (or repairs) the direction `from -> to`.
    pub(crate) fn set_partitioned(&mut self, now: u64, from: usize, to: usize, on: bool) {
        self.link_mut(from, to).partitioned = on;
        if !on {
            self.unblock(now, from, to);
        }
    }

    /// Holds (or releases) the direction `from -> to`.
    pub(crate) fn set_held(&mut self, now: u64, from: usize, to: usize, on: bool) {
        self.link_mut(from, to).held = on;
        if !on {
            self.unblock(now, from, to);
        }
    }

    fn unblock(&mut self, now: u64, from: usize, to: usize) {
        let rto = self.params.rto_us;
        let link = self.link_mut(from, to);
        if link.block().is_some() {
            return;
        }
        let stash = std::mem::take(&mut link.stash);
        for (ev, retransmit) in stash {
            let link = self.link_mut(from, to);
            let delay = link.delay() + if retransmit { link.rng.below(rto + 1) } else { 0 };
            match ev {
                NetEv::Arrive { tcp, dir, gen } => {
                    let pipe = &mut self.tcps[tcp].pipes[dir];
                    if pipe.gen != gen {
                        continue;
                    }
                    let mut prev = now + delay;
                    for (at, _) in pipe.in_flight.iter_mut() {
                        *at = (*at).max(prev);
                        prev = *at;
                    }
                    pipe.last_at = pipe.last_at.max(prev);
                    match pipe.in_flight.front() {
                        Some((at, _)) => self.out.push((*at, ev)),
                        None => pipe.arriving = false,
                    }
                }
                other => self.out.push((now + delay, other)),
            }
        }
    }

    // ----- dials -------------------------------------------------------

    /// Node `slot` dials machine `to` (`None`: an address that is no machine).
    pub(crate) fn dial(&mut self, now: u64, slot: usize, conn: ConnId, to: Option<usize>) {
        let Some(to) = to.filter(|t| *t < self.n) else {
            self.kernels[slot].dial_done.push_back((conn, Err("no route to host".into())));
            self.wakes.push(slot);
            return;
        };
        let id = self.dials.len();
        self.dials.push(Dial { from: slot, proc: self.kernels[slot].proc, conn, to, pending: true, tcp: None });
        self.kernels[slot].dialing.push(id);
        let at = now + self.link_mut(slot, to).delay();
        self.out.push((at, NetEv::Syn { dial: id }));
        self.out.push((now + self.params.connect_timeout_us, NetEv::DialTimeout { dial: id }));
    }

    fn on_syn(&mut self, now: u64, id: usize) {
        let (from, to) = (self.dials[id].from, self.dials[id].to);
        if !self.dials[id].pending {
            return;
        }
        let back = now + self.link_mut(to, from).delay();
        if !self.kernels[to].up {
            self.out.push((back, NetEv::SynAck { dial: id, tcp: None }));
            return;
        }
        let tcp = self.tcps.len();
        let end = |slot, proc, conn| End {
            slot,
            proc,
            conn,
            state: EndState::Open,
            died_at: None,
            held_at_crash: false,
            rst_sent: false,
            wr_shut: false,
        };
        self.tcps.push(Tcp {
            ends: [end(from, self.dials[id].proc, Some(self.dials[id].conn)), end(to, self.kernels[to].proc, None)],
            pipes: [
                Pipe::new(self.link(from, to).params.window, true),
                Pipe::new(self.link(to, from).params.window, false),
            ],
            opened_at: now,
        });
        self.dials[id].tcp = Some(tcp);
        self.kernels[to].backlog.push_back(tcp);
        self.wakes.push(to);
        self.out.push((back, NetEv::SynAck { dial: id, tcp: Some(tcp) }));
    }

    fn on_synack(&mut self, now: u64, id: usize, tcp: Option<TcpId>) {
        let d = &self.dials[id];
        let k = &self.kernels[d.from];
        if d.pending && k.up && k.proc == d.proc {
            let (from, conn) = (d.from, d.conn);
            self.dials[id].pending = false;
            let result = match tcp {
                Some(t) => {
                    self.kernels[from].socks.insert(conn, (t, 0));
                    Ok(t)
                }
                None => Err("connection refused".to_string()),
            };
            self.kernels[from].dial_done.push_back((conn, result));
            self.kernels[from].dialing.retain(|d| *d != id);
            self.wakes.push(from);
        } else if let Some(t) = tcp {
            // The caller gave up: its kernel answers with a reset.
            self.abort_end(now, t, 0);
        }
    }

    fn on_dial_timeout(&mut self, now: u64, id: usize) {
        let d = &self.dials[id];
        if !d.pending {
            return;
        }
        let (from, conn, tcp) = (d.from, d.conn, d.tcp);
        self.dials[id].pending = false;
        self.kernels[from].dial_done.push_back((conn, Err("connect timed out".into())));
        self.kernels[from].dialing.retain(|d| *d != id);
        self.wakes.push(from);
        if let Some(t) = tcp {
            self.abort_end(now, t, 0);
        }
    }

    // ----- bytes -------------------------------------------------------

    fn send(&mut self, now: u64, tcp: TcpId, e: usize, seg: Seg) {
        let (from, to) = (self.tcps[tcp].ends[e].slot, self.tcps[tcp].ends[1 - e].slot);
        let len = match &seg {
            Seg::Data(b) => b.len(),
            _ => 0,
        };
        let at = self.link_mut(from, to).transmit(now, len);
        let pipe = &mut self.tcps[tcp].pipes[e];
        let at = at.max(pipe.last_at);
        pipe.last_at = at;
        pipe.in_flight.push_back((at, seg));
        if !pipe.arriving {
            pipe.arriving = true;
            let gen = pipe.gen;
            self.out.push((at, NetEv::Arrive { tcp, dir: e, gen }));
        }
    }

    /// The node of machine `slot` sealed a record with plaintext `plain` on
    /// `conn` (secure connections): the tap of its direction pairs it with
    /// the record when its bytes are offered. A connection with no socket
    /// any more writes nothing: the plaintext is dropped.
    pub(crate) fn sealed(&mut self, slot: usize, conn: ConnId, plain: Vec<u8>) {
        if let Some(&(tcp, e)) = self.kernels[slot].socks.get(&conn) {
            self.tcps[tcp].pipes[e].tap.sealed(plain);
        }
    }

    /// End `e` of `tcp` writes `bytes`. Frames seen whole for the first time
    /// go to `on_frame`.
    pub(crate) fn write(
        &mut self,
        now: u64,
        tcp: TcpId,
        e: usize,
        bytes: &[u8],
        on_frame: &mut OnFrame<'_>,
    ) -> WriteOutcome {
        // Bytes offered to a socket left the node, even if the write fails.
        let pipe = &mut self.tcps[tcp].pipes[e];
        if let Err(v) = pipe.tap.offer(bytes, on_frame) {
            self.violations.push(format!("tcp {tcp}: {v}"));
        }
        if self.tcps[tcp].ends[e].wr_shut {
            self.violations.push(format!("tcp {tcp}: end {e} wrote after shutting down writing"));
            return WriteOutcome::Failed("broken pipe: shut down for writing".into());
        }
        match self.tcps[tcp].ends[e].state {
            EndState::Open => {}
            EndState::Reset => return WriteOutcome::Failed("connection reset by peer".into()),
            EndState::Closed => return WriteOutcome::Failed("socket closed".into()),
        }
        let (from, to) = (self.tcps[tcp].ends[e].slot, self.tcps[tcp].ends[1 - e].slot);
        let pipe = &mut self.tcps[tcp].pipes[e];
        let space = pipe.window.saturating_sub(pipe.unacked);
        if space == 0 || bytes.is_empty() {
            pipe.blocked = space == 0;
            if space == 0 {
                self.link_mut(from, to).last_full = now;
            }
            return WriteOutcome::Blocked;
        }
        let (short, max_seg) = (self.params.short_write_per_mille, self.params.max_segment);
        let rng = &mut self.link_mut(from, to).rng;
        let mut n = bytes.len().min(space);
        if n > 1 && rng.chance(short) {
            n = rng.range(1, n as u64) as usize;
        }
        let mut cuts = Vec::new();
        let mut left = n;
        while left > 0 {
            let seg = match rng.below(100) {
                0..=9 => rng.range(1, 16) as usize,
                10..=39 => rng.range(1, max_seg as u64) as usize,
                _ => max_seg,
            }
            .min(left);
            cuts.push(seg);
            left -= seg;
        }
        let pipe = &mut self.tcps[tcp].pipes[e];
        pipe.tap.accept(n);
        pipe.unacked += n;
        let mut off = 0;
        for len in cuts {
            self.send(now, tcp, e, Seg::Data(bytes[off..off + len].to_vec()));
            off += len;
        }
        WriteOutcome::Wrote(n)
    }

    fn on_arrive(&mut self, now: u64, tcp: TcpId, dir: usize) {
        let recv = 1 - dir;
        loop {
            let t = &mut self.tcps[tcp];
            let Some((at, _)) = t.pipes[dir].in_flight.front() else {
                t.pipes[dir].arriving = false;
                return;
            };
            if *at > now {
                let (at, gen) = (*at, t.pipes[dir].gen);
                self.out.push((at, NetEv::Arrive { tcp, dir, gen }));
                return;
            }
            let (_, seg) = t.pipes[dir].in_flight.pop_front().expect("front exists");
            let state = t.ends[recv].state;
            let slot = t.ends[recv].slot;
            match (seg, state) {
                (Seg::Data(b), EndState::Open) => {
                    t.pipes[dir].rx.extend_from_slice(&b);
                    self.wakes.push(slot);
                }
                (Seg::Data(_), EndState::Closed) if !t.ends[recv].rst_sent && t.ends[dir].state == EndState::Open => {
                    t.ends[recv].rst_sent = true;
                    self.send(now, tcp, recv, Seg::Rst);
                }
                (Seg::Fin, EndState::Open) => {
                    t.pipes[dir].fin = true;
                    self.wakes.push(slot);
                }
                (Seg::Rst, EndState::Open) => {
                    t.ends[recv].state = EndState::Reset;
                    t.ends[recv].died_at = Some(now);
                    t.pipes[dir].rx.clear();
                    self.wakes.push(slot);
                }
                _ => {}
            }
        }
    }

    fn on_credit(&mut self, tcp: TcpId, dir: usize, bytes: usize) {
        let t = &mut self.tcps[tcp];
        let pipe = &mut t.pipes[dir];
        pipe.unacked = pipe.unacked.saturating_sub(bytes);
        if pipe.blocked && pipe.unacked < pipe.window {
            pipe.blocked = false;
            if t.ends[dir].state == EndState::Open {
                self.wakes.push(t.ends[dir].slot);
            }
        }
    }

    /// What end `e` of `tcp` has for its node.
    pub(crate) fn sock_state(&self, tcp: TcpId, e: usize) -> SockState {
        let t = &self.tcps[tcp];
        let incoming = &t.pipes[1 - e];
        match t.ends[e].state {
            EndState::Reset => SockState::Reset,
            EndState::Closed => SockState::Idle,
            EndState::Open if !incoming.rx.is_empty() => SockState::Readable(incoming.rx.len()),
            EndState::Open if incoming.fin => SockState::Eof,
            EndState::Open => SockState::Idle,
        }
    }

    /// End `e` reads up to `max` bytes; the window credit travels back to the
    /// writer. The watches of frames now wholly read go to `fed`.
    pub(crate) fn read(&mut self, now: u64, tcp: TcpId, e: usize, max: usize, fed: &mut Vec<Watch>) -> Bytes {
        let (me, peer) = (self.tcps[tcp].ends[e].slot, self.tcps[tcp].ends[1 - e].slot);
        let pipe = &mut self.tcps[tcp].pipes[1 - e];
        let k = pipe.rx.len().min(max);
        if k == 0 {
            return Bytes::new();
        }
        let chunk = pipe.rx.split_to(k).freeze();
        pipe.tap.fed(k, fed);
        let at = now + self.link_mut(me, peer).delay();
        self.out.push((at, NetEv::Credit { tcp, dir: 1 - e, bytes: k }));
        chunk
    }

    /// The node at end `e` shut its socket down for writing: FIN after the
    /// bytes written; the end stays open for reading.
    pub(crate) fn shutdown_write(&mut self, now: u64, tcp: TcpId, e: usize) {
        let end = &mut self.tcps[tcp].ends[e];
        if end.state == EndState::Open && !end.wr_shut {
            end.wr_shut = true;
            self.send(now, tcp, e, Seg::Fin);
        }
    }

    /// The node on `slot` abandoned its dial `conn` before it connected: the
    /// dial stops, and a connection the callee already accepted is reset.
    pub(crate) fn cancel_dial(&mut self, now: u64, slot: usize, conn: ConnId) {
        let k = &self.kernels[slot];
        let Some(pos) = k.dialing.iter().position(|d| self.dials[*d].conn == conn && self.dials[*d].proc == k.proc)
        else {
            return;
        };
        let id = self.kernels[slot].dialing.remove(pos);
        self.dials[id].pending = false;
        if let Some(t) = self.dials[id].tcp {
            self.abort_end(now, t, 0);
        }
    }

    /// The node at end `e` closed its socket: FIN after the bytes written, or
    /// RST if it left bytes unread.
    pub(crate) fn close(&mut self, now: u64, tcp: TcpId, e: usize) {
        let t = &mut self.tcps[tcp];
        let (slot, conn) = (t.ends[e].slot, t.ends[e].conn);
        if let Some(c) = conn {
            if self.kernels[slot].socks.get(&c) == Some(&(tcp, e)) {
                self.kernels[slot].socks.remove(&c);
            }
        }
        let t = &mut self.tcps[tcp];
        match t.ends[e].state {
            EndState::Open => {
                let unread = !t.pipes[1 - e].rx.is_empty();
                t.ends[e].state = EndState::Closed;
                t.ends[e].died_at = Some(now);
                t.pipes[1 - e].rx.clear();
                if unread {
                    t.ends[e].rst_sent = true;
                    self.send(now, tcp, e, Seg::Rst);
                } else if !t.ends[e].wr_shut {
                    self.send(now, tcp, e, Seg::Fin);
                }
            }
            EndState::Reset => t.ends[e].state = EndState::Closed,
            EndState::Closed => {}
        }
    }

    /// End `e` dies without its node (process crash, refused accept, a dial
    /// given up): RST to the peer.
    pub(crate) fn abort_end(&mut self, now: u64, tcp: TcpId, e: usize) {
        let t = &mut self.tcps[tcp];
        match t.ends[e].state {
            EndState::Open => {
                t.ends[e].state = EndState::Closed;
                t.ends[e].died_at = Some(now);
                t.ends[e].rst_sent = true;
                t.pipes[1 - e].rx.clear();
                self.send(now, tcp, e, Seg::Rst);
            }
            EndState::Reset => t.ends[e].state = EndState::Closed,
            EndState::Closed => {}
        }
    }

    /// A middlebox kills `tcp`: bytes in flight are lost and both ends are reset.
    pub(crate) fn reset(&mut self, now: u64, tcp: TcpId) {
        let t = &mut self.tcps[tcp];
        for e in 0..2 {
            let p = &mut t.pipes[e];
            p.in_flight.clear();
            p.gen += 1;
            p.arriving = false;
            p.rx.clear();
            p.fin = false;
            if t.ends[e].state == EndState::Open {
                t.ends[e].state = EndState::Reset;
                t.ends[e].died_at = Some(now);
                self.wakes.push(t.ends[e].slot);
            }
        }
    }

    /// The process on `slot` died: its sockets reset their peers.
    pub(crate) fn crash(&mut self, now: u64, slot: usize) {
        let k = &mut self.kernels[slot];
        k.up = false;
        let mut ends: Vec<(TcpId, usize)> = k.socks.values().copied().collect();
        ends.extend(k.backlog.iter().map(|t| (*t, 1)));
        k.socks.clear();
        k.backlog.clear();
        k.dial_done.clear();
        for id in std::mem::take(&mut k.dialing) {
            self.dials[id].pending = false;
            if let Some(t) = self.dials[id].tcp {
                ends.push((t, 0));
            }
        }
        for (tcp, e) in ends {
            self.tcps[tcp].ends[e].held_at_crash = true;
            self.abort_end(now, tcp, e);
        }
    }

    /// A new process `proc` starts on `slot`.
    pub(crate) fn boot(&mut self, slot: usize, proc: ProcId) {
        let k = &mut self.kernels[slot];
        k.up = true;
        k.proc = proc;
    }

    /// The first connection open at one end only: (tcp, dialer's machine,
    /// callee's machine).
    pub(crate) fn half_open(&self) -> Option<(TcpId, usize, usize)> {
        self.tcps.iter().enumerate().find_map(|(i, t)| {
            let open = [0, 1].map(|e| t.ends[e].state == EndState::Open);
            (open[0] != open[1]).then_some((i, t.ends[0].slot, t.ends[1].slot))
        })
    }

    /// Connections between machines `a` and `b` whose ends are both still open.
    pub(crate) fn open_between(&self, a: usize, b: usize) -> Vec<TcpId> {
        self.tcps
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                let s = (t.ends[0].slot, t.ends[1].slot);
                (s == (a, b) || s == (b, a)) && t.ends.iter().all(|e| e.state == EndState::Open)
            })
            .map(|(i, _)| i)
            .collect()
    }
}
