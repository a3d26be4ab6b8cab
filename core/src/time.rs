//! The one time type of the core.

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time: microseconds since an origin the driver picks.
///
/// The core never reads a clock. Drivers capture one origin (for example an
/// `Instant` at start-up) and hand the core `Timestamp`s measured from it; the
/// simulator hands it virtual time. The core only compares and adds them.
///
/// ```
/// use estafeta_core::Timestamp;
/// use std::time::Duration;
/// let t = Timestamp::from_millis(5) + Duration::from_millis(10);
/// assert_eq!(t.as_micros(), 15_000);
/// assert_eq!(t.saturating_since(Timestamp::ZERO), Duration::from_millis(15));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The origin.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The far future; never reached.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// A timestamp `us` microseconds after the origin.
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us)
    }

    /// A timestamp `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(micros(rhs)))
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}
