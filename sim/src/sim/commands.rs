//! What the applications ask of their nodes: subscribe, connect, publish,
//! close. This is the one module that calls core's commands (and tells the
//! oracle what was asked); the queries on a node's state are here too.

use super::Sim;
use crate::check::Mode;
use crate::ev::kind;
use crate::host::{addr_of, HostState};
use crate::SimConfig;
use estafeta_core::{PeerAddr, PublishError, Published, SendMode};

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

impl Sim {
    fn node_subscribe(&mut self, slot: usize, topic: usize, on: bool) {
        let proc = self.hosts[slot].proc;
        let name = self.topics[topic].clone();
        let Some(node) = self.hosts[slot].node.as_mut() else {
            return;
        };
        let r = if on { node.pubsub().subscribe(&name) } else { node.pubsub().unsubscribe(&name) };
        // The application receives files on the topics it subscribes to.
        if on {
            let _ = node.transfer().receive(&name, format!("/in/{name}"));
        } else {
            node.transfer().stop_receiving(&name);
        }
        if r.is_ok() {
            self.oracle.planes.pubsub.set_subscribed(proc, topic, on);
        }
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 2 + on as u64, topic as u64], || {
            format!("n{slot} {} {name}: {r:?}", if on { "subscribes" } else { "unsubscribes" })
        });
    }

    fn node_connect(&mut self, slot: usize, to: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let mut addr = addr_of(to);
            if let Some(pin) = self.security.pin(self.seed, slot, to) {
                addr.name = Some(pin.to_string());
            }
            let r = node.connect(addr);
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 4, to as u64], || {
                format!("n{slot} connects to n{to}: {r:?}")
            });
        }
    }

    /// A new process on `slot` gets the application's configuration: its
    /// subscriptions, then its connections.
    pub(crate) fn reapply_app(&mut self, slot: usize) {
        self.reapply_streams(slot);
        let subs: Vec<usize> = self.hosts[slot].subs.iter().copied().collect();
        for t in subs {
            self.node_subscribe(slot, t, true);
        }
        let targets = self.hosts[slot].targets.clone();
        for to in targets {
            self.node_connect(slot, to);
        }
        self.rejoin(slot);
        self.reapply_discovery(slot);
    }

    /// The application of `slot` reacts to a target its node gave up by
    /// connecting again.
    pub(crate) fn redial(&mut self, slot: usize, addr: PeerAddr) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let _ = node.connect(addr);
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

    /// True if the application of `slot` subscribes to `topic` (whether or
    /// not its process runs).
    pub fn subscribes(&self, slot: usize, topic: usize) -> bool {
        self.hosts[slot].subs.contains(&topic)
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
        let g = self.oracle.planes.pubsub.next_msg();
        let payload = crate::payload::make(g, len);
        let (proc, in_sync) = (self.hosts[slot].proc, self.hosts[slot].in_sync);
        let name = self.topics[topic].clone();
        let Some(node) = self.hosts[slot].node.as_mut() else {
            return Err(PublishError::Closed);
        };
        let len = payload.len();
        let r: Result<Published, PublishError> = node.pubsub().publish(&name, payload, mode.clone());
        self.trace.record(
            self.now,
            kind::PUBLISH,
            &[slot as u64, g, topic as u64, r.as_ref().map_or(u64::MAX, |p| p.queued as u64)],
            || format!("n{slot} publishes #{g} on {name} {mode:?} ({len} bytes): {r:?}"),
        );
        let (pubsub, mut cx) = self.oracle.pubsub(self.now);
        pubsub.on_publish(&mut cx, proc, g, topic, Mode::of(&mode), len, r.clone(), in_sync);
        self.drain(slot);
        r.map(|p| Sent { id: g, queued: p.queued, dropped: p.dropped })
    }

    /// The application of `slot` sends a `len`-byte file on `topic` to every
    /// subscriber. Returns the transfer id, or the core's refusal.
    pub fn send_file(
        &mut self,
        slot: usize,
        topic: usize,
        len: usize,
    ) -> Result<u64, estafeta_core::transfer::TransferError> {
        use estafeta_core::transfer::{SendOptions, TransferError, TransferSource};
        let n = self.oracle.transfer().sent;
        let data = file_content(self.seed ^ (slot as u64) << 32 ^ n, len);
        let hash = *estafeta_core::blake3::hash(&data).as_bytes();
        let name = self.topics[topic].clone();
        let file = format!("f{slot}-{n}.bin");
        let id = self.hosts[slot].id;
        let Some(node) = self.hosts[slot].node.as_mut() else {
            return Err(TransferError::Closed);
        };
        let r = node.transfer().send(&name, &file, TransferSource::Bytes(data), SendOptions::default());
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 6, topic as u64, len as u64], || {
            format!("n{slot} sends {file} ({len} bytes) on {name}: {r:?}")
        });
        if let Ok(t) = r {
            self.oracle.transfer().on_send(id, t, hash);
        }
        self.drain(slot);
        r
    }

    /// Files sent, files received (checked on disk), transfers failed, bytes
    /// re-sent after resumes, as the transfer checker counted them.
    pub fn transfer_counts(&mut self) -> (u64, u64, u64, u64) {
        let t = self.oracle.transfer();
        (t.sent, t.received, t.failed, t.resent)
    }

    /// Runs of messages the running nodes received, and the messages in
    /// them (their stats: a crash takes its node's counts with it).
    pub fn run_counts(&self) -> (u64, u64) {
        let stats = self.hosts.iter().filter_map(|h| h.node.as_ref()).map(|n| n.stats().pubsub);
        stats.fold((0, 0), |(r, m), s| (r + s.runs, m + s.received_in_runs))
    }

    /// The application of `slot` closes its node gracefully
    /// ([`estafeta_core::Node::close`]): queued messages are flushed, every
    /// connection says goodbye. The process stays (a closed node) until
    /// crashed or restarted.
    pub fn close(&mut self, slot: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            node.close();
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 5], || format!("n{slot} closes"));
            self.drain(slot);
        }
    }

    /// True if the nodes in `a` and `b` are both running and each lists the
    /// other among its connected peers (a suspended session is not connected).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        let (Some(na), Some(nb)) = (self.node(a), self.node(b)) else {
            return false;
        };
        let (ia, ib) = (self.hosts[a].id, self.hosts[b].id);
        na.connected_peers().any(|p| p.id == ib) && nb.connected_peers().any(|p| p.id == ia)
    }

    /// Two nodes from `cfg`: n1 subscribes to t0, n0 dials n1, both keep
    /// their events; returns once they are connected (300 ms of sim time).
    ///
    /// # Panics
    /// If they are not connected by then.
    pub fn connected_pair(cfg: SimConfig) -> Sim {
        let mut sim = Sim::new(cfg);
        sim.keep_events();
        sim.subscribe(1, 0);
        sim.connect(0, 1);
        sim.run_for(300_000).expect("no invariant breaks while two nodes connect");
        assert!(sim.connected(0, 1), "n0 and n1 connect within 300 ms");
        sim
    }
}

/// Deterministic file content.
fn file_content(seed: u64, len: usize) -> estafeta_core::Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}
