//! What applications ask of the discovery plane: join through known peers,
//! relay a topic, publish with a relay identity. The application's choices
//! are kept on the host and re-applied on restart.

use super::Sim;
use crate::ev::kind;
use crate::host::{addr_of, HostState};
use estafeta_core::PublishError;

impl Sim {
    /// The application of `slot` discovers through machine `to`
    /// (`Discovery::join`; kept across restarts).
    pub fn discover_via(&mut self, slot: usize, to: usize) {
        if !self.hosts[slot].discover_via.contains(&to) {
            self.hosts[slot].discover_via.push(to);
        }
        if self.hosts[slot].state != HostState::Down {
            self.node_discover_via(slot, to);
            self.drain(slot);
        }
    }

    /// The application of `slot` relays `topic` (kept across restarts).
    /// Messages on a relayed topic are checked by the discovery observer.
    pub fn relay(&mut self, slot: usize, topic: usize) {
        self.hosts[slot].relay.insert(topic);
        self.oracle.discovery().relay_topics.insert(topic);
        self.oracle.planes.pubsub.relayed.insert(topic);
        if self.hosts[slot].state != HostState::Down {
            self.node_relay(slot, topic);
            self.drain(slot);
        }
    }

    fn node_discover_via(&mut self, slot: usize, to: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let r = node.discovery().join(addr_of(to));
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 6, to as u64], || {
                format!("n{slot} joins through n{to}: {r:?}")
            });
        }
    }

    fn node_relay(&mut self, slot: usize, topic: usize) {
        let name = self.topics[topic].clone();
        if let Some(node) = self.hosts[slot].node.as_mut() {
            let r = node.discovery().set_relay(&name, true);
            self.trace.record(self.now, kind::COMMAND, &[slot as u64, 7, topic as u64], || {
                format!("n{slot} relays {name}: {r:?}")
            });
        }
    }

    /// A new process re-applies the application's joins and relays.
    pub(crate) fn reapply_discovery(&mut self, slot: usize) {
        if let Some(node) = self.hosts[slot].node.as_mut() {
            node.set_listen_addr("sim", slot as u16);
        }
        for t in self.hosts[slot].relay.clone() {
            self.node_relay(slot, t);
        }
        for to in self.hosts[slot].discover_via.clone() {
            self.node_discover_via(slot, to);
        }
    }

    /// The application of `slot` publishes a `len`-byte message on `topic`
    /// with a relay identity (`Discovery::publish`). Returns its id.
    pub fn relay_publish(&mut self, slot: usize, topic: usize, len: usize) -> Result<u64, PublishError> {
        let proc = self.hosts[slot].proc;
        let name = self.topics[topic].clone();
        let Some(node) = self.hosts[slot].node.as_mut() else { return Err(PublishError::Closed) };
        let g = self.oracle.discovery().next_msg(proc, topic, len.max(crate::payload::HEADER_LEN));
        let payload = crate::payload::make(g, len);
        let r = node.discovery().publish(&name, payload);
        self.trace.record(self.now, kind::PUBLISH, &[slot as u64, g, topic as u64, 1 << 40], || {
            format!("n{slot} relay-publishes #{g} on {name}: {r:?}")
        });
        self.drain(slot);
        r.map(|_| g)
    }

    /// Machines whose processes delivered relayed message `g`.
    pub fn relay_delivered_to(&mut self, g: u64) -> Vec<usize> {
        let procs: Vec<_> = self.oracle.discovery().msgs[g as usize].delivered.iter().copied().collect();
        procs.into_iter().map(|p| self.oracle.slot_of(p)).collect()
    }

    /// The first relayed message the process in `slot` delivered from the
    /// process in `origin` (their current processes).
    pub fn relay_first_delivered(&mut self, slot: usize, origin: usize) -> Option<u64> {
        let (p, o) = (self.hosts[slot].proc, self.hosts[origin].proc);
        self.oracle.discovery().first_from.get(&(p, o)).copied()
    }

    /// True if the node in `slot` runs and reports `topic` paired.
    pub fn is_paired(&self, slot: usize, topic: usize) -> bool {
        self.node(slot).is_some_and(|n| n.discovery_ref().is_paired(&self.topics[topic]))
    }

    /// The last pairing event the node in `slot` reported for `topic`.
    pub fn reported_paired(&mut self, slot: usize, topic: usize) -> Option<bool> {
        let p = self.hosts[slot].proc;
        let name = self.topics[topic].clone();
        self.oracle.discovery().reported_paired(p, &name)
    }

    /// Edges requests crossed both ways in a race (both copies written
    /// before either was read), so far.
    pub fn request_races(&mut self) -> u64 {
        self.oracle.discovery().request_races()
    }

    /// Request frames written so far by every node.
    pub fn request_copies(&mut self) -> u64 {
        self.oracle.discovery().request_copies()
    }
}
