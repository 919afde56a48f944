//! The node's uptime standing, as the master judges it from the probes it answered (§9.19).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `standing` (master → node): the node's standing and online score, sent after `welcome` and
/// whenever either changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Standing {
    /// Good, warned (below the warning threshold) or suspended (no new placements).
    pub standing: StandingLevel,
    /// Online score: mean share of probes passed per scoring window, parts per million
    /// (0..=1,000,000).
    pub score_ppm: u32,
    /// Probes counted in that score (passed and failed).
    pub probes: u64,
    /// Since when the node has had this standing, Unix ms.
    pub since_ms: u64,
    /// Why, as a sentence for the volunteer.
    pub reason: String,
}

/// A node's standing (a closed enumeration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum StandingLevel {
    /// At or above the warning threshold, or too few probes yet to judge.
    Good,
    /// Below the warning threshold.
    Warned,
    /// Below the suspension threshold: the node gets no new placements.
    Suspended,
}

impl StandingLevel {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Warned => "warned",
            Self::Suspended => "suspended",
        }
    }
}
