//! Links: one per ordered pair of machines, with latency, jitter, bandwidth,
//! a TCP window size, and the faults that block them (partition, hold).

use crate::rng::Rng;

/// The shape of one direction between two machines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkParams {
    /// One-way latency in microseconds.
    pub latency_us: u64,
    /// Extra random delay per segment, `0..=jitter_us` (never reorders a connection).
    pub jitter_us: u64,
    /// Bytes per second the link carries, shared by its connections.
    pub bandwidth: u64,
    /// Bytes a connection may have written and not yet read by the receiver
    /// (the TCP window); a full window makes writes block.
    pub window: usize,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams { latency_us: 2_000, jitter_us: 500, bandwidth: 100 << 20, window: 64 << 10 }
    }
}

/// Why a link does not deliver right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Block {
    /// Partitioned: segments are lost and retransmitted after repair; new
    /// connections cannot be opened across it.
    Partition,
    /// Held (clogged): everything waits and is delivered on release.
    Hold,
}

/// One direction between two machines.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) params: LinkParams,
    /// When the link finishes sending what it was given (bandwidth).
    free_at: u64,
    pub(crate) partitioned: bool,
    pub(crate) held: bool,
    /// Deliveries that found the link blocked; `true` if they met a partition
    /// (they are retransmitted, later, on repair).
    pub(crate) stash: Vec<(super::net::NetEv, bool)>,
    pub(crate) rng: Rng,
    /// The last time a write on this link found its window full: bytes
    /// written after it wait behind a backlog.
    pub(crate) last_full: u64,
}

impl Link {
    pub(crate) fn new(params: LinkParams, rng: Rng) -> Link {
        Link { params, free_at: 0, partitioned: false, held: false, stash: Vec::new(), rng, last_full: 0 }
    }

    pub(crate) fn block(&self) -> Option<Block> {
        if self.partitioned {
            Some(Block::Partition)
        } else if self.held {
            Some(Block::Hold)
        } else {
            None
        }
    }

    /// Until when bytes written now wait behind a backlog: the last full
    /// window, or the bytes the link is still sending.
    pub(crate) fn backlog_until(&self) -> u64 {
        self.last_full.max(self.free_at)
    }

    /// One-way delay for a small control segment: latency plus jitter.
    pub(crate) fn delay(&mut self) -> u64 {
        self.params.latency_us + self.rng.below(self.params.jitter_us + 1)
    }

    /// Arrival time of `len` bytes put on the link at `now`: they wait for
    /// the bytes before them, take `len / bandwidth` to send, then travel.
    pub(crate) fn transmit(&mut self, now: u64, len: usize) -> u64 {
        let send_us = (len as u64).saturating_mul(1_000_000) / self.params.bandwidth.max(1);
        self.free_at = self.free_at.max(now) + send_us;
        self.free_at + self.delay()
    }
}
