//! The one exponential backoff of Hearth: the agent's reconnects to its master, the
//! simulator's model of them, and the agent's restarts of a crashed instance.
//!
//! Sans-IO: the caller passes the failure count and, for full jitter, a uniform value in
//! `[0, 1)` it drew itself, so the same inputs always give the same delay.

use std::time::Duration;

/// Exponential backoff: `base · 2^(n-1)` after the `n`th consecutive failure, at most `cap`
/// (the doubling stops after 16 steps whatever the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling after the first failure, ms.
    pub base_ms: u64,
    /// Largest ceiling, ms.
    pub cap_ms: u64,
}

impl Backoff {
    /// The agent's reconnects to its master: 0.5 s doubling to 30 s, full jitter.
    pub const RECONNECT: Self = Self {
        base_ms: 500,
        cap_ms: 30_000,
    };

    /// The agent's restarts of a crashed instance: 1 s doubling to 60 s.
    pub const RESTART: Self = Self {
        base_ms: 1_000,
        cap_ms: 60_000,
    };

    /// The ceiling after `failures` consecutive failures (0 counts as 1), ms.
    pub fn ceiling_ms(&self, failures: u32) -> u64 {
        self.base_ms
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.cap_ms)
    }

    /// Full jitter: uniform in `[0, ceiling]` for `jitter` uniform in `[0, 1)` (values outside
    /// are clamped), ms.
    pub fn jittered_ms(&self, failures: u32, jitter: f64) -> u64 {
        let ceiling = self.ceiling_ms(failures);
        let scaled = jitter.clamp(0.0, 1.0) * (ceiling as f64 + 1.0);
        // `as` saturates (and maps NaN to 0); the `min` keeps `jitter = 1` inside the range.
        (scaled as u64).min(ceiling)
    }

    /// [`Self::jittered_ms`] as a duration.
    pub fn jittered(&self, failures: u32, jitter: f64) -> Duration {
        Duration::from_millis(self.jittered_ms(failures, jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_doubles_from_half_a_second_to_thirty() {
        let b = Backoff::RECONNECT;
        let ceilings: Vec<u64> = (0..9).map(|n| b.ceiling_ms(n)).collect();
        assert_eq!(
            ceilings,
            [500, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(b.ceiling_ms(u32::MAX), 30_000);
    }

    #[test]
    fn restart_doubles_from_one_second_to_sixty() {
        let b = Backoff::RESTART;
        assert_eq!(b.ceiling_ms(1), 1_000);
        assert_eq!(b.ceiling_ms(2), 2_000);
        assert_eq!(b.ceiling_ms(7), 60_000);
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        let b = Backoff::RECONNECT;
        assert_eq!(b.jittered_ms(3, 0.0), 0);
        assert_eq!(b.jittered_ms(3, 0.5), 1_000);
        assert_eq!(b.jittered_ms(3, 0.999_999_9), 2_000);
        assert_eq!(b.jittered_ms(3, 1.0), 2_000);
        assert_eq!(b.jittered_ms(3, f64::NAN), 0);
        assert_eq!(b.jittered(20, 0.5), Duration::from_millis(15_000));
    }
}
