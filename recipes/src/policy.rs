//! Recipe fields beyond how to run: parameter types, placement defaults, persistent data and
//! its backup policy, artifact sources.

use hearth_protocol::CountryCode;
use serde::{Deserialize, Serialize};

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Any text (default).
    #[default]
    String,
    /// A decimal integer.
    Integer,
    /// `true` or `false`.
    Boolean,
}

/// A parameter value that is not of its declared type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a{} {kind}", if matches!(kind, ParamKind::Integer) { "n" } else { "" })]
pub struct ValueError {
    /// The value.
    pub value: String,
    /// The type it should have.
    pub kind: ParamKind,
}

impl std::fmt::Display for ParamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
        })
    }
}

/// An artifact source that is neither `master` nor an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is neither `master` nor an https:// URL")]
pub struct SourceError(pub String);

impl ParamKind {
    /// Checks a value of this type; the error says why it is not one.
    pub fn check(self, value: &str) -> Result<(), ValueError> {
        let ok = match self {
            Self::String => true,
            Self::Integer => value.parse::<i64>().is_ok(),
            Self::Boolean => matches!(value, "true" | "false"),
        };
        if ok {
            Ok(())
        } else {
            Err(ValueError {
                value: value.to_owned(),
                kind: self,
            })
        }
    }
}

/// Where the cooperative places the service unless a deployment says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementDefaults {
    /// Replicas, each in a distinct home.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Spread beyond homes: `isp`, `country`.
    #[serde(default)]
    pub spread: Vec<String>,
    /// Countries the service (and its data) may run in; empty: anywhere.
    #[serde(default)]
    pub countries: Vec<CountryCode>,
}

fn one() -> u32 {
    1
}

impl Default for PlacementDefaults {
    fn default() -> Self {
        Self {
            replicas: 1,
            spread: Vec::new(),
            countries: Vec::new(),
        }
    }
}

/// How often the persistent data is backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backup {
    /// Never (the data can be rebuilt; default).
    #[default]
    None,
    /// Once a day.
    Daily,
    /// Once a week.
    Weekly,
}

/// The instance's persistent data directory (`{data}`) and its backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPolicy {
    /// Whether the service keeps data that must survive restarts and updates (it stays in the
    /// instance's partition on its node; updates in place keep it).
    #[serde(default)]
    pub persistent: bool,
    /// Backup frequency.
    #[serde(default)]
    pub backup: Backup,
    /// Backups kept.
    #[serde(default = "seven")]
    pub keep: u32,
}

fn seven() -> u32 {
    7
}

impl Default for DataPolicy {
    fn default() -> Self {
        Self {
            persistent: false,
            backup: Backup::None,
            keep: 7,
        }
    }
}

/// Checks a source an artifact can be fetched from: `master` (over the node's session) or an
/// `https://` URL (checked against the signed hash like every other source).
pub fn check_source(source: &str) -> Result<(), SourceError> {
    if source == "master" || source.starts_with("https://") {
        Ok(())
    } else {
        Err(SourceError(source.to_owned()))
    }
}
