//! What each fault does: the fault methods on [`Sim`], each a plain verb on
//! the network or on a machine's process. Every applied fault is written to
//! the trace.

use super::Sim;
use crate::ev::kind;
use crate::fault::{fault_words, Fault};
use crate::host::HostState;

impl Sim {
    /// Applies `fault` now.
    pub fn apply(&mut self, fault: Fault) {
        let words = fault_words(&fault);
        self.trace.record(self.now, kind::FAULT, &words, || format!("FAULT {fault:?}"));
        match fault {
            Fault::Partition { a, b } => self.partition(&a, &b),
            Fault::PartitionOneWay { from, to } => self.partition_oneway(from, to),
            Fault::Repair { a, b } => self.repair(&a, &b),
            Fault::Hold { a, b } => self.hold(a, b),
            Fault::Release { a, b } => self.release(a, b),
            Fault::Reset { a, b } => self.reset(a, b),
            Fault::Crash(n) => self.crash(n),
            Fault::Restart { node, fresh } => self.restart(node, fresh),
            Fault::Pause(n) => self.pause(n),
            Fault::Resume(n) => self.resume(n),
            Fault::Drift { node, ppm } => self.set_drift(node, ppm),
            Fault::SlowReader { node, rate } => self.slow_reader(node, rate),
            Fault::Heal => self.heal(),
        }
        self.flush_net();
    }

    /// Cuts both directions between every node of `a` and every node of `b`.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        self.set_cut(a, b, true);
    }

    /// Cuts (or repairs) both directions between every node of `a` and
    /// every node of `b`.
    fn set_cut(&mut self, a: &[usize], b: &[usize], on: bool) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.net.set_partitioned(self.now, x, y, on);
                    self.net.set_partitioned(self.now, y, x, on);
                }
            }
        }
    }

    /// Cuts the direction `from -> to` only.
    pub fn partition_oneway(&mut self, from: usize, to: usize) {
        if from != to {
            self.net.set_partitioned(self.now, from, to, true);
        }
    }

    /// Repairs both directions between the nodes of `a` and of `b`; segments
    /// lost meanwhile are retransmitted.
    pub fn repair(&mut self, a: &[usize], b: &[usize]) {
        self.set_cut(a, b, false);
        self.flush_net();
    }

    /// Clogs both directions between `a` and `b`.
    pub fn hold(&mut self, a: usize, b: usize) {
        self.set_held(a, b, true);
    }

    /// Unclogs both directions between `a` and `b`.
    pub fn release(&mut self, a: usize, b: usize) {
        self.set_held(a, b, false);
        self.flush_net();
    }

    /// Clogs (or unclogs) both directions between `a` and `b`.
    fn set_held(&mut self, a: usize, b: usize, on: bool) {
        if a != b {
            self.net.set_held(self.now, a, b, on);
            self.net.set_held(self.now, b, a, on);
        }
    }

    /// Resets every open connection between `a` and `b`.
    pub fn reset(&mut self, a: usize, b: usize) {
        for tcp in self.net.open_between(a, b) {
            self.net.reset(self.now, tcp);
        }
        self.flush_net();
    }

    /// How many connections between `a` and `b` are open at both ends.
    pub fn open_connections(&self, a: usize, b: usize) -> usize {
        self.net.open_between(a, b).len()
    }

    /// Resets only the `nth` open connection between `a` and `b` (oldest
    /// first); returns false if there is no such connection.
    pub fn reset_connection(&mut self, a: usize, b: usize, nth: usize) -> bool {
        let Some(tcp) = self.net.open_between(a, b).get(nth).copied() else {
            return false;
        };
        self.trace.record(self.now, kind::FAULT, &[14, tcp as u64], || format!("FAULT reset tcp {tcp}"));
        self.net.reset(self.now, tcp);
        self.flush_net();
        true
    }

    /// Crashes the node in `slot`: its state is gone and its sockets reset.
    pub fn crash(&mut self, slot: usize) {
        let h = &mut self.hosts[slot];
        if h.state == HostState::Down {
            return;
        }
        h.state = HostState::Down;
        h.node = None;
        // The disk keeps only what was synced.
        h.fs.crash();
        h.timer_at = None;
        h.timer_gen += 1;
        h.wake_at = None;
        let proc = h.proc;
        self.oracle.crashed(proc, self.now);
        self.net.crash(self.now, slot);
        self.flush_net();
    }

    /// Restarts a crashed node, with its old id unless `fresh`.
    pub fn restart(&mut self, slot: usize, fresh: bool) {
        if self.hosts[slot].state != HostState::Down {
            return;
        }
        self.start_process(slot, fresh);
        self.flush_net();
    }

    /// Pauses the node in `slot`: alive, sockets open, but it does nothing.
    pub fn pause(&mut self, slot: usize) {
        if self.hosts[slot].state == HostState::Up {
            self.hosts[slot].state = HostState::Paused;
        }
    }

    /// Resumes a paused node; it catches up with everything that waited.
    pub fn resume(&mut self, slot: usize) {
        let h = &mut self.hosts[slot];
        if h.state == HostState::Paused {
            h.state = HostState::Up;
            h.timer_at = None;
            h.timer_gen += 1;
            h.wake_at = None;
            self.wake(slot, self.now);
        }
    }

    /// Sets the clock drift of the node in `slot`.
    pub fn set_drift(&mut self, slot: usize, ppm: i64) {
        let now = self.now;
        self.hosts[slot].clock.set_drift(now, ppm);
        // Deadlines were converted with the old rate.
        if self.hosts[slot].state == HostState::Up {
            self.hosts[slot].timer_at = None;
            self.hosts[slot].timer_gen += 1;
            self.wake(slot, now);
        }
    }

    /// Limits how fast the node in `slot` reads the network.
    pub fn slow_reader(&mut self, slot: usize, rate: Option<u64>) {
        self.hosts[slot].read_rate = rate.map(|r| r.max(1));
        self.wake(slot, self.now);
    }

    /// Repairs and releases every link, resumes paused nodes and restarts
    /// crashed ones with their old ids.
    pub fn heal(&mut self) {
        let n = self.hosts.len();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    self.net.set_partitioned(self.now, a, b, false);
                    self.net.set_held(self.now, a, b, false);
                }
            }
        }
        for slot in 0..n {
            match self.hosts[slot].state {
                HostState::Paused => self.resume(slot),
                HostState::Down => self.restart(slot, false),
                HostState::Up => {}
            }
        }
        self.flush_net();
    }
}
