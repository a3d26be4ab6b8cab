//! Deterministic random numbers: one master seed, many independent streams.
//!
//! Every random choice in the simulator comes from an [`Rng`] derived from the
//! master seed and a label (`derive(seed, &[STREAM_LINK, a, b])`), so adding a
//! draw to one stream (one link, one node) does not shift the others.

/// Stream labels, so that derived streams never collide by accident.
pub(crate) const STREAM_LINK: u64 = 2;
pub(crate) const STREAM_HOST: u64 = 3;
pub(crate) const STREAM_FAULT: u64 = 5;
pub(crate) const STREAM_SCENARIO: u64 = 6;
pub(crate) const STREAM_NODE_SEED: u64 = 7;
pub(crate) const STREAM_FILES: u64 = 8;
/// Identity keys and key entropy (never the node seed).
pub(crate) const STREAM_KEYS: u64 = 9;

/// A small, fast, deterministic generator (SplitMix64).
///
/// ```
/// use estafeta_sim::Rng;
/// let mut a = Rng::derive(42, &[1, 2]);
/// let mut b = Rng::derive(42, &[1, 2]);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.range(10, 20);
/// assert!((10..=20).contains(&x));
/// ```
#[derive(Clone, Debug)]
pub struct Rng(u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ 0x6A09_E667_F3BC_C908))
    }

    /// An independent stream for `labels` under the master `seed`.
    pub fn derive(seed: u64, labels: &[u64]) -> Rng {
        let mut s = mix(seed.wrapping_add(0x9E37_79B9_7F4A_7C15));
        for &l in labels {
            s = mix(s ^ mix(l.wrapping_add(0xD1B5_4A32_D192_ED03)));
        }
        Rng(s)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A value in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A value in `lo..=hi`; `lo` when the range is empty.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// An index into a slice of `len` items, or `None` if it is empty.
    pub fn index(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.below(len as u64) as usize)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// An exponentially distributed delay with the given mean, in the same unit.
    pub fn exp(&mut self, mean: u64) -> u64 {
        // Inverse CDF on 53 random bits; capped at 20 means.
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let x = -(1.0 - u).ln() * mean as f64;
        (x as u64).min(mean.saturating_mul(20))
    }

    /// A value spread over several orders of magnitude in `lo..=hi`: small
    /// values are as likely as large ones (log-uniform).
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(1);
        if hi <= lo {
            return lo;
        }
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + (b - a) * u).exp() as u64).clamp(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent_and_repeatable() {
        let a: Vec<u64> = (0..4).map(|_| Rng::derive(7, &[1]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::derive(7, &[1]).next_u64(), Rng::derive(7, &[2]).next_u64());
        assert_ne!(Rng::derive(7, &[1]).next_u64(), Rng::derive(8, &[1]).next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            assert!((3..=9).contains(&r.range(3, 9)));
            assert!((10..=5000).contains(&r.log_range(10, 5000)));
            assert!(r.exp(100) <= 2000);
        }
        let mut v: Vec<u32> = (0..20).collect();
        r.shuffle(&mut v);
        v.sort_unstable();
        assert_eq!(v, (0..20).collect::<Vec<_>>());
    }
}
