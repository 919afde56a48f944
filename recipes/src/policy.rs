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

/// How often the persistent data is backed up: `"none"` (default), `"hourly"`, `"daily"`,
/// `"weekly"`, or an interval `"<N>s"`, `"<N>m"`, `"<N>h"` (at least 10 s, at most 7 days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backup {
    /// Never (the data can be rebuilt; default).
    #[default]
    None,
    /// Every this many seconds.
    Every(u64),
}

/// Shortest backup interval a recipe may ask for.
pub const MIN_BACKUP_SECS: u64 = 10;
/// Longest backup interval.
pub const MAX_BACKUP_SECS: u64 = 7 * 86_400;

impl Backup {
    /// Once a day.
    pub const DAILY: Self = Self::Every(86_400);

    /// Seconds between snapshots, or `None` when backups are off.
    pub fn every_secs(self) -> Option<u64> {
        match self {
            Self::None => None,
            Self::Every(s) => Some(s),
        }
    }
}

impl std::str::FromStr for Backup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let secs = match s {
            "none" => return Ok(Self::None),
            "hourly" => 3_600,
            "daily" => 86_400,
            "weekly" => 7 * 86_400,
            _ => {
                let bad = || {
                    format!(
                        "`{s}` is not none, hourly, daily, weekly or an interval such as 30s, \
                         15m or 6h"
                    )
                };
                let (n, unit) = s.split_at(s.len().saturating_sub(1));
                let n: u64 = n.parse().map_err(|_| bad())?;
                let unit = match unit {
                    "s" => 1,
                    "m" => 60,
                    "h" => 3_600,
                    _ => return Err(bad()),
                };
                n.checked_mul(unit).ok_or_else(bad)?
            }
        };
        if !(MIN_BACKUP_SECS..=MAX_BACKUP_SECS).contains(&secs) {
            return Err(format!(
                "`{s}`: a backup interval is between {MIN_BACKUP_SECS} s and 7 days"
            ));
        }
        Ok(Self::Every(secs))
    }
}

impl Serialize for Backup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => s.serialize_str("none"),
            Self::Every(secs) => s.collect_str(&format_args!("{secs}s")),
        }
    }
}

impl<'de> Deserialize<'de> for Backup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The instance's persistent data directory (`{data}`) and its backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataPolicy {
    /// Whether the service keeps data that must survive restarts and updates (it stays in the
    /// instance's partition on its node; updates in place keep it).
    #[serde(default)]
    pub persistent: bool,
    /// Backup frequency (needs `persistent`).
    #[serde(default)]
    pub backup: Backup,
    /// Snapshots kept by each copy (the newest), 1 to 366.
    #[serde(default = "seven")]
    pub keep: u32,
    /// Homes that keep a copy of every snapshot (other homes than the replica's, on other ISPs
    /// where the fleet allows, in the deployment's allowed countries only), 1 to 5.
    #[serde(default = "two")]
    pub copies: u32,
    /// Run before each snapshot in the instance's environment (its directory, parameters and
    /// user), e.g. to make the service flush: the snapshot waits for it (at most 60 s) and is
    /// skipped when it fails. Its arguments are expanded like `run.args`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot_command: Vec<String>,
}

fn seven() -> u32 {
    7
}

fn two() -> u32 {
    2
}

impl Default for DataPolicy {
    fn default() -> Self {
        Self {
            persistent: false,
            backup: Backup::None,
            keep: 7,
            copies: 2,
            snapshot_command: Vec::new(),
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
