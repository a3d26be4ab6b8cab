//! The driver of every machine, as the runtimes drive a real node: start a
//! process, accept, finish dials, read the sockets in a seeded order, and
//! run the drain after every input, then arm the node's timer.

use super::Sim;
use crate::ev::{kind, Ev};
use crate::host::{HostState, World};
use crate::net::{EndState, SockState};
use crate::rng::{self, Rng};
use estafeta_core::{CloseReason, ConnId, Drain, Node, Step};

/// Reads one wake-up may do before yielding to other events.
const READS_PER_WAKE: usize = 64;

impl Sim {
    /// Starts a process on `slot`: a new node (the same id as before unless
    /// `fresh`), then the application subscribes and connects as configured.
    pub(crate) fn start_process(&mut self, slot: usize, fresh: bool) {
        let h = &mut self.hosts[slot];
        let mut cfg = h.config.clone();
        cfg.seed = Rng::derive(self.seed, &[rng::STREAM_NODE_SEED, slot as u64, h.restarts]).next_u64();
        let node = if cfg.security.mode == estafeta_core::SecurityMode::Noise {
            // Keys from their own stream of the run seed: the same identity
            // across restarts, fresh entropy per process.
            let mut entropy = crate::security::entropy(self.seed, slot, h.restarts + 1);
            let identity = if fresh && h.restarts > 0 {
                // A fresh node is a new identity.
                estafeta_core::Identity::generate(&mut entropy)
            } else {
                crate::security::identity_of(self.seed, slot)
            };
            Node::with_identity(cfg, identity, Box::new(entropy), &h.name).map(|mut node| {
                // The wire taps read secure connections' frames from the
                // plaintext of their records.
                h.sealed = Default::default();
                node.set_plaintext_tap(h.sealed.clone());
                node
            })
        } else if h.restarts > 0 && !fresh {
            Node::with_id(cfg, h.id, &h.name)
        } else {
            Node::new(cfg, &h.name)
        }
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
        self.reapply_app(slot);
        self.drain(slot);
        if let Some(w) = &self.workload {
            let at = self.now + w.first_tick(&mut self.hosts[slot].rng);
            self.agenda.push(at, Ev::App { slot, proc });
        }
    }

    /// Runs the drain of `slot` after an input or command, then arms its
    /// timer. The host has the oracle check the application's picture when
    /// it is in sync.
    pub(crate) fn drain(&mut self, slot: usize) {
        loop {
            let now = self.now;
            let world = World {
                net: &mut self.net,
                oracle: &mut self.oracle,
                trace: &mut self.trace,
                log: self.event_log.as_mut(),
            };
            let Some((step, gave_up)) = self.hosts[slot].run_drain(now, slot, world) else { return };
            let h = &mut self.hosts[slot];
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
            if !self.hosts[slot].requests.is_empty() {
                let r = std::mem::take(&mut self.hosts[slot].requests);
                self.streams.requests[slot].extend(r);
                self.answer_requests(slot);
            }
            if gave_up.is_empty() {
                return;
            }
            // The application reacts to a target given up by connecting again.
            for addr in gave_up {
                self.redial(slot, addr);
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
            if self.net.tcps[tcp].ends[1].state != EndState::Open {
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
                        let watch = self.watch_actor(slot, tcp, e);
                        let node = self.hosts[slot].node.as_mut().expect("up");
                        node.handle_closed(ts, conn, CloseReason::Io(why.into()));
                        self.after_input(slot, watch);
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
                        for w in fed.drain(..) {
                            self.oracle.on_fed(now, proc, tcp, w);
                        }
                        self.trace.record(now, kind::READ, &[slot as u64, conn.0, k as u64], || {
                            format!("n{slot} {conn} reads {k} bytes")
                        });
                        self.trace.bytes(&bytes);
                        let watch = self.watch_actor(slot, tcp, e);
                        let h = &mut self.hosts[slot];
                        let node = h.node.as_mut().expect("up");
                        node.handle_bytes(h.clock.timestamp(now), conn, &bytes);
                        self.after_input(slot, watch);
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

/// An honest machine about to read an actor's socket: the actor's process
/// and the peers the honest node has up.
type ActorWatch = Option<(crate::net::ProcId, Vec<estafeta_core::NodeId>)>;

impl Sim {
    /// Before `slot` reads end `e` of `tcp`: if the other end is a security
    /// actor and `slot` is honest, the peers `slot` has up.
    fn watch_actor(&self, slot: usize, tcp: usize, e: usize) -> ActorWatch {
        let from = self.net.tcps[tcp].ends[1 - e].proc;
        if self.oracle.is_actor(slot) || !self.oracle.is_actor(self.oracle.slot_of(from)) {
            return None;
        }
        let node = self.hosts[slot].node.as_ref()?;
        Some((from, node.peers().map(|p| p.id).collect()))
    }

    /// After the input [`Sim::watch_actor`] watched: the oracle hears of
    /// every peer that was up before and is not now.
    fn after_input(&mut self, slot: usize, watch: ActorWatch) {
        let Some((from, before)) = watch else { return };
        let Some(node) = self.hosts[slot].node.as_ref() else { return };
        let lost: Vec<_> = before.into_iter().filter(|id| !node.peers().any(|p| p.id == *id)).collect();
        if !lost.is_empty() {
            let p = self.hosts[slot].proc;
            self.oracle.after_actor_input(self.now, p, from, &lost);
        }
    }
}
