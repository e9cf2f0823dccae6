//! Reconnect backoff: exponential with "equal jitter" (half fixed, half random), with the
//! randomness passed in so that tests are deterministic.

use std::time::Duration;

/// Exponential backoff between `base` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, given a random `u64`: uniformly in
    /// `[d/2, d]` where `d = min(max, base * 2^attempt)`.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        let d = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let span = (d - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { random % (span + 1) })
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_delay(0), Duration::from_millis(50));
        assert_eq!(
            b.next_delay(u64::MAX),
            Duration::from_millis(100) + Duration::from_nanos(u64::MAX % 100_000_001)
        );
        for _ in 0..40 {
            b.next_delay(7);
        }
        // Capped at `max`, jittered within its upper half.
        let d = b.next_delay(7);
        assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1));
        assert_eq!(b.attempts(), 43);
        b.reset();
        assert!(b.next_delay(1) <= Duration::from_millis(100));
    }
}
