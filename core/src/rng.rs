//! A small deterministic random number generator (SplitMix64), seeded from the config.

/// Deterministic pseudo-random numbers; the same seed gives the same sequence.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration drawn uniformly from the upper half of `d` (jitter).
    pub(crate) fn upper_half(&mut self, d: std::time::Duration) -> std::time::Duration {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        std::time::Duration::from_micros(self.between(micros / 2, micros))
    }

    /// A value in `[lo, hi]` (inclusive); `lo` if the range is empty.
    pub(crate) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }
}
