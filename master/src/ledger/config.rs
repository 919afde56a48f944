//! The ledger's settings from the command line: the credits policy file (`--credit-policy`,
//! TOML with any of `Policy`'s keys; the rest keep their defaults; unknown keys are refused)
//! and the checkpoint interval (`--checkpoint-interval`, e.g. `10s`, `500ms`, or seconds).

use std::path::Path;
use std::time::Duration;

use hearth_ledger::Policy;

/// Why a setting is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    /// Not a policy.
    #[error("{path} is not a credits policy: {reason}")]
    Policy { path: String, reason: String },
    /// Not a duration.
    #[error("`{0}` is not an interval: write e.g. 10s, 500ms or 10 (seconds), at least 10ms")]
    Interval(String),
}

/// Reads and checks a policy file.
pub fn read_policy(path: &Path) -> Result<Policy, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse_policy(&text).map_err(|reason| ConfigError::Policy {
        path: path.display().to_string(),
        reason,
    })
}

/// Parses a policy's TOML over the defaults, and validates it.
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    let given: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut merged = toml::Table::try_from(Policy::default()).map_err(|e| e.to_string())?;
    for (k, v) in given {
        if !merged.contains_key(&k) {
            return Err(format!(
                "unknown key `{k}` (known: {})",
                merged.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        merged.insert(k, v);
    }
    let policy: Policy = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

/// Parses `10s`, `500ms` or `10` (seconds).
pub fn parse_interval(text: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::Interval(text.to_owned());
    let t = text.trim();
    let d = if let Some(ms) = t.strip_suffix("ms") {
        Duration::from_millis(ms.parse().map_err(|_| bad())?)
    } else if let Some(s) = t.strip_suffix('s') {
        Duration::from_secs(s.parse().map_err(|_| bad())?)
    } else {
        Duration::from_secs(t.parse().map_err(|_| bad())?)
    };
    if d < Duration::from_millis(10) {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn policies_merge_over_defaults_and_bad_ones_say_why() {
        let p = parse_policy("fibre_credit_cents = 2500\nmin_probes = 5\n").unwrap();
        assert_eq!(p.fibre_credit_cents, 2500);
        assert_eq!(p.window_ms, Policy::default().window_ms);
        let e = parse_policy("fibre_credits = 1\n").unwrap_err();
        assert!(e.contains("unknown key `fibre_credits`"), "{e}");
        let e = parse_policy("window_ms = 7\n").unwrap_err();
        assert!(e.contains("window_ms"), "{e}");
        let e = parse_policy("min_probes = \"x\"\n").unwrap_err();
        assert!(!e.is_empty());
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("1ms").is_err() && parse_interval("x").is_err());
    }
}
