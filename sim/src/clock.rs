//! Per-node clocks: virtual time seen through an offset and a small drift.
//!
//! A node's `now` is `base + (virtual - start) * (1 + drift)`: it never goes
//! back, but two nodes disagree on the origin and on the length of a second.

use estafeta_core::Timestamp;

const PPM: i128 = 1_000_000;

/// A drifting, monotonic clock mapping virtual time to a node's local time.
///
/// ```
/// use estafeta_sim::Clock;
/// let mut c = Clock::new(5_000, 10_000); // 5 ms ahead, 1% fast
/// assert_eq!(c.local(0), 5_000);
/// assert_eq!(c.local(1_000_000), 5_000 + 1_010_000);
/// let deadline = c.local(2_000_000);
/// assert_eq!(c.local(c.to_virtual(deadline)), deadline);
/// c.set_drift(3_000_000, -20_000);
/// assert!(c.local(3_000_001) >= c.local(3_000_000));
/// ```
#[derive(Clone, Debug)]
pub struct Clock {
    start: u64,
    base: u64,
    drift_ppm: i64,
}

impl Clock {
    /// A clock reading `offset` at virtual time 0, running `drift_ppm` parts
    /// per million fast (negative: slow). Drift is clamped to ±50%.
    pub fn new(offset: u64, drift_ppm: i64) -> Clock {
        Clock { start: 0, base: offset, drift_ppm: drift_ppm.clamp(-500_000, 500_000) }
    }

    /// The drift in parts per million.
    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    /// Local time (microseconds) at virtual time `vt`.
    pub fn local(&self, vt: u64) -> u64 {
        let dt = vt.saturating_sub(self.start) as i128;
        let scaled = dt * (PPM + self.drift_ppm as i128) / PPM;
        self.base.saturating_add(scaled.max(0) as u64)
    }

    /// Local time at `vt` as a core timestamp.
    pub fn timestamp(&self, vt: u64) -> Timestamp {
        Timestamp::from_micros(self.local(vt))
    }

    /// The earliest virtual time at which local time reaches `local`.
    pub fn to_virtual(&self, local: u64) -> u64 {
        if local <= self.base {
            return self.start;
        }
        let dl = (local - self.base) as i128;
        let rate = PPM + self.drift_ppm as i128;
        let mut vt = self.start.saturating_add(((dl * PPM + rate - 1) / rate) as u64);
        while vt > self.start && self.local(vt - 1) >= local {
            vt -= 1;
        }
        while self.local(vt) < local {
            vt += 1;
        }
        vt
    }

    /// Changes the drift from virtual time `vt` on, keeping local time continuous.
    pub fn set_drift(&mut self, vt: u64, drift_ppm: i64) {
        self.base = self.local(vt);
        self.start = vt.max(self.start);
        self.drift_ppm = drift_ppm.clamp(-500_000, 500_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_exact_and_monotonic() {
        for drift in [-50_000i64, -1, 0, 1, 333, 49_999] {
            let c = Clock::new(123, drift);
            let mut last = 0;
            for vt in (0..5_000_000).step_by(997) {
                let l = c.local(vt);
                assert!(l >= last);
                last = l;
                let back = c.to_virtual(l);
                assert!(back <= vt && c.local(back) == l, "drift {drift} vt {vt}");
            }
        }
    }
}
