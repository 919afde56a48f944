//! Online scores and standings from probe counts per window (SPEC.md §15.4): a window's pass
//! share is passed / (passed + failed); the online score is the mean share over a node's last
//! `score_windows` windows that had probes; the standing compares it with the policy's
//! thresholds once there is enough evidence. Pure functions over counts, used by [`crate::books`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::entry::{NodeClass, Standing};
use crate::policy::Policy;

/// Probes of one node in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: u32,
    /// Failed.
    pub failed: u32,
}

impl Counts {
    /// Probes in all.
    pub fn total(self) -> u64 {
        u64::from(self.passed) + u64::from(self.failed)
    }

    /// The pass share, ppm (0 for no probes).
    pub fn share_ppm(self) -> u64 {
        match self.total() {
            0 => 0,
            t => u64::from(self.passed) * 1_000_000 / t,
        }
    }
}

/// A node's score as the master uses it (placement, standing, `hearth-node status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeScore {
    /// Online score from closed windows (as the last score entry states), ppm.
    pub score_ppm: u32,
    /// Online score including the windows still open, ppm: what placement uses.
    pub live_ppm: u32,
    /// Standing from the closed windows (the last score entry's).
    pub standing: Standing,
    /// Probes passed in the scored (closed) windows.
    pub probes_passed: u64,
    /// Probes failed in the scored (closed) windows.
    pub probes_failed: u64,
    /// When the standing last changed (the score entry's `at_ms`), Unix ms; 0 if never scored.
    pub since_ms: u64,
    /// The standing in a sentence.
    pub reason: String,
}

/// The score over the last `policy.score_windows` windows with probes among `windows`, and
/// the probes counted in them.
pub fn online(policy: &Policy, windows: &BTreeMap<u64, Counts>) -> (u32, Counts) {
    let mut sum = 0u64;
    let mut n = 0u64;
    let mut counted = Counts::default();
    for c in windows
        .values()
        .rev()
        .filter(|c| c.total() > 0)
        .take(policy.score_windows as usize)
    {
        sum += c.share_ppm();
        n += 1;
        counted.passed = counted.passed.saturating_add(c.passed);
        counted.failed = counted.failed.saturating_add(c.failed);
    }
    let score = sum.checked_div(n).unwrap_or(1_000_000);
    (u32::try_from(score).unwrap_or(1_000_000), counted)
}

/// The standing a score gives a node of `class`, after `probes` probes.
pub fn standing(policy: &Policy, class: NodeClass, score_ppm: u32, probes: u64) -> Standing {
    if class != NodeClass::Serving || probes < u64::from(policy.min_probes) {
        Standing::Good
    } else if score_ppm < policy.suspend_ppm {
        Standing::Suspended
    } else if score_ppm < policy.warn_ppm {
        Standing::Warned
    } else {
        Standing::Good
    }
}

/// The standing in a sentence, for the node and the operator.
pub fn reason(
    policy: &Policy,
    class: NodeClass,
    standing: Standing,
    score_ppm: u32,
    probes: u64,
) -> String {
    let pct = |ppm: u32| format!("{:.1}%", f64::from(ppm) / 10_000.0);
    match standing {
        _ if class != NodeClass::Serving => format!(
            "scored apart as a {} node: online score {} over {probes} probes; never suspended",
            class.as_str(),
            pct(score_ppm)
        ),
        _ if probes < u64::from(policy.min_probes) => format!(
            "not enough evidence yet: {probes} of {} probes needed before the score counts",
            policy.min_probes
        ),
        Standing::Good => format!("online score {} over {probes} probes", pct(score_ppm)),
        Standing::Warned => format!(
            "online score {} over {probes} probes is below the warning threshold {}",
            pct(score_ppm),
            pct(policy.warn_ppm)
        ),
        Standing::Suspended => format!(
            "online score {} over {probes} probes is below the suspension threshold {}: no new \
             replicas are placed here until it recovers",
            pct(score_ppm),
            pct(policy.suspend_ppm)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(passed: u32, failed: u32) -> Counts {
        Counts { passed, failed }
    }

    #[test]
    fn the_score_is_the_mean_share_of_the_last_windows_with_probes() {
        let policy = Policy {
            score_windows: 2,
            min_probes: 4,
            ..Policy::default()
        };
        let windows = BTreeMap::from([(0, c(0, 10)), (1, c(3, 1)), (2, c(0, 0)), (3, c(1, 1))]);
        // The last two windows with probes: 75% and 50%; the empty window does not count.
        let (score, counted) = online(&policy, &windows);
        assert_eq!(score, 625_000);
        assert_eq!(counted, c(4, 2));
        assert_eq!(
            standing(&policy, NodeClass::Serving, score, 6),
            Standing::Warned
        );
        assert_eq!(
            standing(&policy, NodeClass::Serving, 500_000, 6),
            Standing::Suspended
        );
        assert_eq!(
            standing(&policy, NodeClass::Serving, 500_000, 3),
            Standing::Good
        );
        assert_eq!(standing(&policy, NodeClass::Test, 0, 600), Standing::Good);
        assert_eq!(online(&policy, &BTreeMap::new()).0, 1_000_000);
        let why = reason(&policy, NodeClass::Serving, Standing::Suspended, 500_000, 6);
        assert!(why.contains("50.0%") && why.contains("60.0%"), "{why}");
    }
}
