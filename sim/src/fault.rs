//! Faults with plain names, as values: one applied now or scheduled
//! ([`crate::Sim::apply`], [`crate::Sim::schedule`]), or a random schedule
//! drawn from the seed ([`FaultPlan`]). What each fault does to the network
//! and the nodes is in `sim/faults.rs`.

use crate::rng::Rng;

/// A fault, applied now with [`crate::Sim::apply`] or later with
/// [`crate::Sim::schedule`].
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

/// The words a fault adds to the trace hash.
pub(crate) fn fault_words(f: &Fault) -> [u64; 3] {
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
