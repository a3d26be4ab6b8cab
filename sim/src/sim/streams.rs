//! Streams in the simulation: what the applications serve, the streams they
//! open and cancel while the workload runs, and how a producer answers each
//! request (a few replies within credit, then a close, usually 1000).
//!
//! Every node serves topic `t` when `slot + t` is even, so some opens find
//! no server and close at once with 4000. Random draws come from a stream of
//! their own per machine, so pub/sub's draws are what they were.
//!
//! The planted bug: with `ESTAFETA_SIM_PLANT_STREAMS=1` in the environment
//! every node's producer ignores its credit (`StreamsConfig::planted_bug`).

use super::Sim;
use crate::ev::kind;
use crate::host::{Host, HostState};
use crate::rng::Rng;
use estafeta_core::{Bytes, CloseCode, PeerRef, StreamId};
use std::time::Duration;

/// The label of the streams' random streams (see `rng.rs`).
const STREAM_STREAMS: u64 = 0x5757;

/// The application side of streams, per machine.
#[derive(Debug, Default)]
pub(crate) struct SimStreams {
    rng: Vec<Rng>,
    /// Consumer streams each application holds (it may cancel them).
    open: Vec<Vec<StreamId>>,
    /// Requests each application has not answered yet.
    pub(crate) requests: Vec<Vec<StreamId>>,
}

/// Sets the streams config of every machine from the seed: small windows
/// (so producers wait for credit), heartbeats shorter than the liveness
/// timeout, and the planted bug if asked for.
pub(crate) fn configure(seed: u64, hosts: &mut [Host]) -> SimStreams {
    let plant = std::env::var("ESTAFETA_SIM_PLANT_STREAMS").is_ok_and(|v| v == "1");
    let mut s = SimStreams::default();
    for (slot, h) in hosts.iter_mut().enumerate() {
        let mut r = Rng::derive(seed, &[STREAM_STREAMS, slot as u64]);
        let c = &mut h.config.streams;
        c.window = r.log_range(64, 256 << 10);
        c.connection_window = c.window * r.range(1, 8);
        c.fragment_size = r.log_range(64, 16 << 10) as usize;
        c.max_open_streams = r.range(4, 64) as usize;
        c.max_served_per_peer = r.range(2, 32) as usize;
        c.heartbeat_interval = h.config.session.heartbeat_interval * r.range(1, 3) as u32;
        c.planted_bug = plant;
        s.rng.push(r);
        s.open.push(Vec::new());
        s.requests.push(Vec::new());
    }
    s
}

impl Sim {
    /// A new process on `slot` serves its topics.
    pub(crate) fn reapply_streams(&mut self, slot: usize) {
        self.streams.open[slot].clear();
        self.streams.requests[slot].clear();
        let topics: Vec<String> =
            self.topics.iter().enumerate().filter(|(t, _)| (slot + t) % 2 == 0).map(|(_, n)| n.clone()).collect();
        if let Some(node) = self.hosts[slot].node.as_mut() {
            for t in topics {
                let _ = node.streams().serve(&t);
            }
        }
    }

    /// The application of `slot` opens a stream on `topic` (to `to`, or
    /// round-robin), with an optional deadline; returns its id.
    pub fn open_stream(&mut self, slot: usize, topic: usize, to: Option<usize>, deadline_us: Option<u64>) -> StreamId {
        let proc = self.hosts[slot].proc;
        let g = self.oracle.planes.streams.next_number();
        let pad = self.streams.rng[slot].below(200) as usize;
        let mut req = g.to_le_bytes().to_vec();
        req.resize(8 + pad, 0xA5);
        let name = self.topics[topic].clone();
        let peer = to.map(|o| PeerRef::Id(self.hosts[o].id));
        let deadline = deadline_us.map(Duration::from_micros);
        let Some(node) = self.hosts[slot].node.as_mut() else { return StreamId(0) };
        let id = node.streams().open(&name, Bytes::from(req), peer, deadline);
        self.oracle.planes.streams.on_open(proc, id, g);
        self.streams.open[slot].push(id);
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 10, g, id.0], || {
            format!("n{slot} opens stream #{g} ({id}) on {name} to {to:?}, deadline {deadline_us:?}")
        });
        self.drain(slot);
        id
    }

    /// The application of `slot` cancels its consumer stream `id`.
    pub fn cancel_stream(&mut self, slot: usize, id: StreamId) {
        let Some(node) = self.hosts[slot].node.as_mut() else { return };
        let r = node.streams().cancel(id, CloseCode::CANCELLED, "cancelled by the application");
        self.trace.record(self.now, kind::COMMAND, &[slot as u64, 11, id.0], || format!("n{slot} cancels {id}: {r}"));
        self.drain(slot);
    }

    /// One streams action of the application of `slot` during the workload:
    /// open a stream (half of the time), sometimes cancel one.
    pub(crate) fn streams_tick(&mut self, slot: usize) {
        if self.hosts[slot].state != HostState::Up {
            return;
        }
        let n = self.hosts.len() as u64;
        let topics = self.topics.len() as u64;
        let r = &mut self.streams.rng[slot];
        if r.chance(100) {
            let open = &mut self.streams.open[slot];
            if let Some(i) = r.index(open.len()) {
                let id = open.swap_remove(i);
                self.cancel_stream(slot, id);
            }
            return;
        }
        if !r.chance(500) {
            return;
        }
        let topic = r.below(topics) as usize;
        let to = r.chance(200).then(|| r.below(n) as usize).filter(|o| *o != slot);
        let deadline = r.chance(300).then(|| r.log_range(1_000, 300_000));
        self.open_stream(slot, topic, to, deadline);
        // Forget streams that ended (the list stays short).
        if let Some(node) = self.hosts[slot].node.as_ref() {
            let s = node.streams_ref();
            self.streams.open[slot].retain(|id| s.stream_peer(*id).is_some());
        }
    }

    /// The application of `slot` answers the requests its node delivered:
    /// up to a few replies while credit lasts, then a close (1000, sometimes
    /// 5000 as a failed handler or 4000 as a refused request).
    pub(crate) fn answer_requests(&mut self, slot: usize) {
        let pending = std::mem::take(&mut self.streams.requests[slot]);
        if pending.is_empty() || self.hosts[slot].state != HostState::Up {
            return;
        }
        let max = self.workload.as_ref().map_or(4096, |w| w.max_payload);
        for id in pending {
            let r = &mut self.streams.rng[slot];
            let replies = r.below(6);
            let lens: Vec<usize> = (0..replies).map(|_| r.log_range(1, max as u64) as usize).collect();
            let code = match r.below(20) {
                0 => CloseCode::INTERNAL_ERROR,
                1 => CloseCode::BAD_REQUEST,
                _ => CloseCode::NORMAL,
            };
            let proc = self.hosts[slot].proc;
            let Some(node) = self.hosts[slot].node.as_mut() else { return };
            let mut wrote = 0;
            for len in lens {
                // Reply k is bytes of value k: the observer checks order.
                let byte = self.oracle.planes.streams.reply_byte(proc, id);
                if node.streams().write(id, Bytes::from(vec![byte; len])).is_err() {
                    break;
                }
                self.oracle.planes.streams.on_reply(proc, id);
                wrote += 1;
            }
            let closed = node.streams().close(id, code, "answered");
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 12, id.0, wrote], || {
                format!("n{slot} answers {id}: {wrote}/{replies} replies, close {code}: {closed}")
            });
        }
        self.drain(slot);
    }
}

impl Sim {
    /// Streams the applications opened, terminals the observer saw, and
    /// streams whose two ends' codes it compared.
    pub fn stream_counts(&self) -> (u64, u64, u64) {
        let s = &self.oracle.planes.streams;
        (s.opened, s.closed, s.matched)
    }
}
