//! The open/cancel churn limit: a token bucket per peer, one token per
//! stream the peer cancels while this node serves it and before it wrote
//! anything on it. Opening is bounded
//! in count (`max_served_per_peer`); a peer that opens and cancels in a
//! loop stays under that count while making this node start and stop a
//! handler per stream, so cancels are limited in rate too. While a peer's
//! bucket is empty its opens are refused with 1013 (try again later);
//! request/reply, where the producer replies (and closes), never takes a
//! token, even when the consumer drops its stream after the reply.

use crate::config::StreamsConfig;
use crate::time::Timestamp;

/// Milli-tokens per token: the bucket refills in whole milli-tokens.
const MILLI: u64 = 1000;

/// One peer's churn bucket.
#[derive(Debug)]
pub(super) struct Churn {
    /// Milli-tokens left.
    left: u64,
    /// When `left` was last brought up to date.
    at: Option<Timestamp>,
}

impl Churn {
    pub(super) fn new(cfg: &StreamsConfig) -> Self {
        Churn { left: u64::from(cfg.cancel_burst) * MILLI, at: None }
    }

    fn refill(&mut self, now: Timestamp, cfg: &StreamsConfig) {
        let full = u64::from(cfg.cancel_burst) * MILLI;
        if let Some(at) = self.at {
            let ns = now.saturating_since(at).as_nanos();
            // rate tokens/s = rate * MILLI milli-tokens per 1e9 ns.
            let add = ns.saturating_mul(u128::from(cfg.cancel_rate)) * u128::from(MILLI) / 1_000_000_000;
            self.left = u64::try_from(u128::from(self.left) + add).unwrap_or(u64::MAX).min(full);
        }
        self.at = Some(now);
    }

    /// The peer cancelled a stream it had open here: one token.
    pub(super) fn on_cancel(&mut self, now: Timestamp, cfg: &StreamsConfig) {
        self.refill(now, cfg);
        self.left = self.left.saturating_sub(MILLI);
    }

    /// True while the peer's cancels are over the limit: its opens are refused.
    pub(super) fn throttled(&mut self, now: Timestamp, cfg: &StreamsConfig) -> bool {
        self.refill(now, cfg);
        self.left < MILLI
    }
}

/// The text of a refusal for churn.
pub(super) fn refusal_text(cfg: &StreamsConfig) -> String {
    format!(
        "too many streams cancelled: more than {} per second (burst {}) from this peer; try again later",
        cfg.cancel_rate, cfg.cancel_burst
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_empties_on_cancels_and_refills_at_the_rate() {
        let cfg = StreamsConfig { cancel_rate: 10, cancel_burst: 3, ..StreamsConfig::default() };
        let t0 = Timestamp::ZERO;
        let mut c = Churn::new(&cfg);
        for _ in 0..3 {
            assert!(!c.throttled(t0, &cfg));
            c.on_cancel(t0, &cfg);
        }
        assert!(c.throttled(t0, &cfg));
        assert!(c.throttled(t0 + Duration::from_millis(99), &cfg));
        assert!(!c.throttled(t0 + Duration::from_millis(100), &cfg), "one token after 1/rate");
        c.on_cancel(t0 + Duration::from_millis(100), &cfg);
        assert!(c.throttled(t0 + Duration::from_millis(100), &cfg));
        assert!(!c.throttled(t0 + Duration::from_secs(3600), &cfg));
        for _ in 0..3 {
            c.on_cancel(t0 + Duration::from_secs(3600), &cfg);
        }
        assert!(c.throttled(t0 + Duration::from_secs(3600), &cfg), "never more than the burst");
    }
}
