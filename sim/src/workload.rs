//! What the applications on the nodes do, and how often: each publishes in
//! all three send modes and sometimes changes its subscriptions (its actions
//! are in `sim/app.rs`); each also reconnects when its node gives up a
//! target (`sim/driver.rs`).

use crate::rng::Rng;

/// What the applications do, and how often.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Mean time between two actions of one application, microseconds.
    pub mean_gap_us: u64,
    /// Chance (per mille) that an action changes a subscription instead of publishing.
    pub resubscribe_per_mille: u64,
    /// Payload sizes: most are small, some up to this many bytes.
    pub max_payload: usize,
    /// Chance (per mille) that an action sends a file instead (drawn from
    /// its own random stream, so the other actions draw what they always did).
    pub file_per_mille: u64,
    /// Largest file size.
    pub max_file: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            mean_gap_us: 20_000,
            resubscribe_per_mille: 30,
            max_payload: 16 << 10,
            file_per_mille: 0,
            max_file: 0,
        }
    }
}

impl Workload {
    pub(crate) fn first_tick(&self, rng: &mut Rng) -> u64 {
        rng.exp(self.mean_gap_us)
    }

    pub(crate) fn payload_len(&self, rng: &mut Rng) -> usize {
        match rng.below(100) {
            0..=79 => rng.range(14, 64) as usize,
            80..=94 => rng.range(64, 2048) as usize,
            _ => rng.log_range(2048, self.max_payload.max(2048) as u64) as usize,
        }
    }
}
