//! Retrying external calls: exponential backoff with full jitter, within a budget of
//! attempts. What is retryable is the caller's decision (429 and 5xx for LinkedIn).

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Six attempts from 0.5 s, each wait at most 20 s: about a minute in the worst case.
    pub const STANDARD: Backoff = Backoff {
        attempts: 6,
        base: Duration::from_millis(500),
        max: Duration::from_secs(20),
    };

    /// The wait before attempt `attempt + 1` (after `attempt` failures, 1-based): a random
    /// share of `base * 2^(attempt-1)`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.max);
        ceiling.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let b = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for attempt in 1..=10 {
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(b.max);
            for _ in 0..50 {
                assert!(b.delay(attempt) <= ceiling);
            }
        }
    }
}
