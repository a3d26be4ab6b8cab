//! The applications at work: while a [`Workload`] runs, each node's
//! application acts at random times (see `workload.rs` for what it does and
//! how often).

use super::Sim;
use crate::ev::Ev;
use crate::host::HostState;
use crate::workload::Workload;
use estafeta_core::{PeerRef, SendMode};

impl Sim {
    /// Starts the applications: every running node acts from now on.
    pub fn start_workload(&mut self, w: Workload) {
        for slot in 0..self.hosts.len() {
            let at = self.now + w.first_tick(&mut self.hosts[slot].rng);
            let proc = self.hosts[slot].proc;
            self.agenda.push(at, Ev::App { slot, proc });
        }
        self.workload = Some(w);
    }

    /// Stops the applications (they no longer publish or resubscribe).
    pub fn stop_workload(&mut self) {
        self.workload = None;
    }

    /// One action of the application on `slot`, then the next is scheduled.
    pub(crate) fn app_tick(&mut self, slot: usize) {
        let Some(w) = self.workload.clone() else { return };
        let proc = self.hosts[slot].proc;
        let next = self.now + w.first_tick(&mut self.hosts[slot].rng).max(1);
        self.agenda.push(next, Ev::App { slot, proc });
        if self.hosts[slot].state != HostState::Up {
            return;
        }
        self.streams_tick(slot);
        if self.hosts[slot].state != HostState::Up {
            return;
        }
        let topics = self.topics.len();
        if w.file_per_mille > 0 && self.hosts[slot].file_rng.chance(w.file_per_mille) {
            let r = &mut self.hosts[slot].file_rng;
            let topic = r.below(topics as u64) as usize;
            let len = r.log_range(1, w.max_file.max(2) as u64) as usize;
            let _ = self.send_file(slot, topic, len);
            return;
        }
        let rng = &mut self.hosts[slot].rng;
        let topic = rng.below(topics as u64) as usize;
        if rng.chance(w.resubscribe_per_mille) {
            if self.hosts[slot].subs.contains(&topic) {
                self.unsubscribe(slot, topic);
            } else {
                self.subscribe(slot, topic);
            }
            return;
        }
        let len = w.payload_len(rng);
        let mode = match rng.below(4) {
            0 | 1 => SendMode::All,
            2 => SendMode::RoundRobin,
            _ => {
                // Pick a peer the application believes subscribes; sometimes
                // any node at all, by id or by name.
                let subs: Vec<_> = self.oracle.planes.pubsub.subscribers(proc, topic).collect();
                let n = self.hosts.len() as u64;
                let rng = &mut self.hosts[slot].rng;
                let id = match rng.index(subs.len()) {
                    Some(i) if !rng.chance(100) => subs[i],
                    _ => {
                        let other = rng.below(n) as usize;
                        self.hosts[other].id
                    }
                };
                let rng = &mut self.hosts[slot].rng;
                if rng.chance(300) {
                    let other = self.slot_of(id).unwrap_or(slot);
                    SendMode::To(PeerRef::Name(format!("n{other}")))
                } else {
                    SendMode::To(PeerRef::Id(id))
                }
            }
        };
        let _ = self.publish(slot, topic, len, mode);
    }
}
