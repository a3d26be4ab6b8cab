//! Faults with plain names, as methods on [`Sim`] and as values a random
//! schedule draws from the seed. Every fault is written to the trace.

use crate::host::HostState;
use crate::rng::Rng;
use crate::sim::{kind, Sim};

/// A fault, applied now with [`Sim::apply`] or later with [`Sim::schedule`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cut both directions between every node of `a` and every node of `b`.
    Partition {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
    },
    /// Cut the direction `from -> to` only.
    PartitionOneWay {
        /// Sender side.
        from: usize,
        /// Receiver side.
        to: usize,
    },
    /// Undo a partition between `a` and `b` (both directions).
    Repair {
        /// One side.
        a: Vec<usize>,
        /// The other side.
        b: Vec<usize>,
    },
    /// Clog both directions between two nodes: bytes wait, nothing is lost.
    Hold {
        /// One node.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Unclog: held bytes are delivered, in order.
    Release {
        /// One node.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Reset the open connections between two nodes (both ends see a reset).
    Reset {
        /// One node.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Kill the node's process: state lost, its sockets reset their peers.
    Crash(usize),
    /// Start a crashed node again, with the same id unless `fresh`.
    Restart {
        /// The node.
        node: usize,
        /// A new identity (a wiped disk) instead of the same id.
        fresh: bool,
    },
    /// Stop the node's process without killing it: it processes nothing.
    Pause(usize),
    /// Let a paused node run again.
    Resume(usize),
    /// Set the node's clock drift (parts per million).
    Drift {
        /// The node.
        node: usize,
        /// Parts per million fast (negative: slow).
        ppm: i64,
    },
    /// Make the node read the network at most this many bytes per second
    /// (`None`: as fast as bytes come).
    SlowReader {
        /// The node.
        node: usize,
        /// Bytes per second.
        rate: Option<u64>,
    },
    /// Repair and release every link, resume and restart every node.
    Heal,
}

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
        for &x in a {
            for &y in b {
                if x != y {
                    self.net.set_partitioned(self.now, x, y, true);
                    self.net.set_partitioned(self.now, y, x, true);
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
        for &x in a {
            for &y in b {
                if x != y {
                    self.net.set_partitioned(self.now, x, y, false);
                    self.net.set_partitioned(self.now, y, x, false);
                }
            }
        }
        self.flush_net();
    }

    /// Clogs both directions between `a` and `b`.
    pub fn hold(&mut self, a: usize, b: usize) {
        if a != b {
            self.net.set_held(self.now, a, b, true);
            self.net.set_held(self.now, b, a, true);
        }
    }

    /// Unclogs both directions between `a` and `b`.
    pub fn release(&mut self, a: usize, b: usize) {
        if a != b {
            self.net.set_held(self.now, a, b, false);
            self.net.set_held(self.now, b, a, false);
        }
        self.flush_net();
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

    /// Crashes the node in `slot`: its state is gone and its sockets reset.
    pub fn crash(&mut self, slot: usize) {
        let h = &mut self.hosts[slot];
        if h.state == HostState::Down {
            return;
        }
        h.state = HostState::Down;
        h.node = None;
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

fn fault_words(f: &Fault) -> [u64; 3] {
    let set = |v: &[usize]| v.iter().fold(0u64, |m, i| m | 1 << (i % 64));
    match f {
        Fault::Partition { a, b } => [1, set(a), set(b)],
        Fault::PartitionOneWay { from, to } => [2, *from as u64, *to as u64],
        Fault::Repair { a, b } => [3, set(a), set(b)],
        Fault::Hold { a, b } => [4, *a as u64, *b as u64],
        Fault::Release { a, b } => [5, *a as u64, *b as u64],
        Fault::Reset { a, b } => [6, *a as u64, *b as u64],
        Fault::Crash(n) => [7, *n as u64, 0],
        Fault::Restart { node, fresh } => [8, *node as u64, *fresh as u64],
        Fault::Pause(n) => [9, *n as u64, 0],
        Fault::Resume(n) => [10, *n as u64, 0],
        Fault::Drift { node, ppm } => [11, *node as u64, *ppm as u64],
        Fault::SlowReader { node, rate } => [12, *node as u64, rate.unwrap_or(0)],
        Fault::Heal => [13, 0, 0],
    }
}

/// Weights and sizes of a random fault schedule.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Faults to draw (a partition and its repair count as one).
    pub budget: usize,
    /// Faults start within `0..window_us` of virtual time; all end by then.
    pub window_us: u64,
    /// Longest a paired fault (partition, hold, crash, pause) lasts.
    pub max_duration_us: u64,
    /// Largest clock drift drawn, parts per million.
    pub max_drift_ppm: i64,
    /// Slowest reader drawn, bytes per second.
    pub min_read_rate: u64,
}

impl FaultPlan {
    /// Draws a schedule for `n` nodes: `(time, fault)` pairs, every paired
    /// fault undone before `window_us`.
    ///
    /// ```
    /// use estafeta_sim::{FaultPlan, Rng};
    /// let plan = FaultPlan { budget: 5, window_us: 1_000_000, max_duration_us: 300_000,
    ///                        max_drift_ppm: 20_000, min_read_rate: 50_000 };
    /// let s = plan.draw(&mut Rng::new(3), 4);
    /// assert!(s.len() >= 5);
    /// assert!(s.iter().all(|(t, _)| *t <= 1_000_000));
    /// ```
    pub fn draw(&self, rng: &mut Rng, n: usize) -> Vec<(u64, Fault)> {
        let mut out = Vec::new();
        if n < 2 {
            return out;
        }
        for _ in 0..self.budget {
            let start = rng.below(self.window_us.max(1));
            let dur = rng.range(self.max_duration_us / 10, self.max_duration_us);
            let end = (start + dur).min(self.window_us);
            let a = rng.below(n as u64) as usize;
            let b = (a + 1 + rng.below(n as u64 - 1) as usize) % n;
            match rng.below(100) {
                0..=19 => {
                    let mut nodes: Vec<usize> = (0..n).collect();
                    rng.shuffle(&mut nodes);
                    let cut = rng.range(1, n as u64 - 1) as usize;
                    let (x, y) = nodes.split_at(cut);
                    out.push((start, Fault::Partition { a: x.to_vec(), b: y.to_vec() }));
                    out.push((end, Fault::Repair { a: x.to_vec(), b: y.to_vec() }));
                }
                20..=31 => {
                    out.push((start, Fault::PartitionOneWay { from: a, to: b }));
                    out.push((end, Fault::Repair { a: vec![a], b: vec![b] }));
                }
                32..=45 => {
                    out.push((start, Fault::Hold { a, b }));
                    out.push((end, Fault::Release { a, b }));
                }
                46..=59 => out.push((start, Fault::Reset { a, b })),
                60..=73 => {
                    out.push((start, Fault::Crash(a)));
                    out.push((end, Fault::Restart { node: a, fresh: rng.chance(300) }));
                }
                74..=85 => {
                    out.push((start, Fault::Pause(a)));
                    out.push((end, Fault::Resume(a)));
                }
                86..=92 => {
                    let m = self.max_drift_ppm.max(1) as u64;
                    let ppm = rng.range(0, 2 * m) as i64 - m as i64;
                    out.push((start, Fault::Drift { node: a, ppm }));
                }
                _ => {
                    let rate = rng.log_range(self.min_read_rate.max(1), self.min_read_rate.max(1) * 100);
                    out.push((start, Fault::SlowReader { node: a, rate: Some(rate) }));
                    out.push((end, Fault::SlowReader { node: a, rate: None }));
                }
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }
}
