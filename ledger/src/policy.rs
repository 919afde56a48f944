//! The credits formula and the scoring rules, as the ledger records them (a `policy` entry):
//! a verifier recomputes every score and statement with the policy in force at the time, never
//! with its own defaults. All amounts are integers (cents, parts per million, watts) so that
//! every implementation computes the same statement to the byte.

use serde::{Deserialize, Serialize};

/// One day in ms: scoring windows divide it, so no window straddles two months.
pub const DAY_MS: u64 = 86_400_000;

/// The formula and the rules (SPEC.md §15.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Scoring window length, ms; divides a day (default 12 h).
    pub window_ms: u64,
    /// Windows the online score averages over (default 60: 30 days of 12 h windows).
    pub score_windows: u32,
    /// Fewer probes than this in the scored windows: standing stays `good` (not enough
    /// evidence yet).
    pub min_probes: u32,
    /// An online score below this warns the node, ppm (default 950,000).
    pub warn_ppm: u32,
    /// An online score below this suspends the node (no new placements), ppm (default 600,000).
    pub suspend_ppm: u32,
    /// The monthly fibre credit for a node up the whole month, cents (default 3,000: 30 EUR).
    pub fibre_credit_cents: u64,
    /// At or above this monthly uptime the whole fibre credit is earned; below it, the credit
    /// is pro rata: `fibre × uptime / threshold`, ppm (default 950,000).
    pub uptime_threshold_ppm: u32,
    /// Credit per GiB (2^30 bytes) served with receipts, in millicents (default 1,000: one cent).
    pub bandwidth_millicents_per_gib: u64,
    /// Power draw assumed for a node that declares none, watts (default 30).
    pub default_power_w: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            window_ms: 12 * 3_600_000,
            score_windows: 60,
            min_probes: 20,
            warn_ppm: 950_000,
            suspend_ppm: 600_000,
            fibre_credit_cents: 3_000,
            uptime_threshold_ppm: 950_000,
            bandwidth_millicents_per_gib: 1_000,
            default_power_w: 30,
        }
    }
}

/// Why a policy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The window does not divide a day.
    #[error("window_ms {0} must be at least one minute and divide a day (86,400,000 ms)")]
    Window(u64),
    /// Zero windows.
    #[error("score_windows must be at least 1")]
    ScoreWindows,
    /// A threshold above one million.
    #[error("{0} is {1} ppm; thresholds are at most 1,000,000 ppm")]
    Threshold(&'static str, u32),
    /// Suspension above warning.
    #[error("suspend_ppm ({0}) must not exceed warn_ppm ({1})")]
    Order(u32, u32),
    /// A zero uptime threshold (division by zero).
    #[error("uptime_threshold_ppm must be at least 1")]
    ZeroThreshold,
}

impl Policy {
    /// Checks the policy can be applied.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.window_ms < 60_000 || !DAY_MS.is_multiple_of(self.window_ms) {
            return Err(PolicyError::Window(self.window_ms));
        }
        if self.score_windows == 0 {
            return Err(PolicyError::ScoreWindows);
        }
        for (name, value) in [
            ("warn_ppm", self.warn_ppm),
            ("suspend_ppm", self.suspend_ppm),
            ("uptime_threshold_ppm", self.uptime_threshold_ppm),
        ] {
            if value > 1_000_000 {
                return Err(PolicyError::Threshold(name, value));
            }
        }
        if self.suspend_ppm > self.warn_ppm {
            return Err(PolicyError::Order(self.suspend_ppm, self.warn_ppm));
        }
        if self.uptime_threshold_ppm == 0 {
            return Err(PolicyError::ZeroThreshold);
        }
        Ok(())
    }

    /// The start of the window holding `at_ms`.
    pub fn window_of(&self, at_ms: u64) -> u64 {
        at_ms - at_ms % self.window_ms.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_ones_say_why() {
        assert_eq!(Policy::default().validate(), Ok(()));
        let bad = Policy {
            window_ms: 7 * 3_600_000,
            ..Policy::default()
        };
        assert_eq!(bad.validate(), Err(PolicyError::Window(7 * 3_600_000)));
        let bad = Policy {
            suspend_ppm: 990_000,
            ..Policy::default()
        };
        assert!(matches!(bad.validate(), Err(PolicyError::Order(..))));
        assert_eq!(Policy::default().window_of(43_200_001), 43_200_000);
    }
}
