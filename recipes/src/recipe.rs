//! The recipe document (`recipe.toml`), parsed strictly (`deny_unknown_fields`).

use std::collections::BTreeMap;

use hearth_protocol::{Arch, Resources, Sha256};
use serde::{Deserialize, Serialize};

use crate::policy::{Backup, DataPolicy, ParamKind, PlacementDefaults, check_source};

/// Why a recipe document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// Not valid TOML of the recipe shape; the message names the field.
    #[error("invalid recipe: {0}")]
    Parse(String),
    /// A rule across fields.
    #[error("invalid recipe field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Recipe name (a DNS label).
    pub name: hearth_protocol::messages::state::Name,
    /// Version text.
    pub version: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Files the service needs, by content hash.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// How to run it.
    pub run: Run,
    /// Parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Ports it listens on.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// How to tell it is healthy.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// Resources to reserve.
    #[serde(default)]
    pub resources: Resources,
    /// What the node does when it loses the master.
    #[serde(default)]
    pub offline: Offline,
    /// Placement defaults.
    #[serde(default)]
    pub placement: PlacementDefaults,
    /// Persistent data and backups.
    #[serde(default)]
    pub data: DataPolicy,
    /// Replica links: the replicas of a deployment reach each other on this port through the
    /// node overlay (absent: replicas do not talk to each other).
    #[serde(default)]
    pub peers: Option<Peers>,
}

/// `[peers]`: how the replicas of a deployment reach each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peers {
    /// The declared `tcp` port each replica listens on for its peers (e.g. `cluster`).
    pub port: hearth_protocol::messages::state::Name,
}

/// A file the service needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Name used in templates: `{artifact:NAME}`.
    pub name: String,
    /// SHA-256 of the content.
    pub sha256: Sha256,
    /// Size in bytes.
    pub size: u64,
    /// Architecture it is for; absent for architecture-independent files.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Whether to mark it executable.
    #[serde(default)]
    pub executable: bool,
    /// Where it can be fetched: `master` (default) or https URLs; whatever the source, the
    /// bytes must match `sha256` and `size`.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// How to run the service. Strings may use `{artifact:NAME}`, `{port:NAME}`, `{param:NAME}`,
/// `{dir}` (the instance directory) and `{data}` (its persistent data directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Program to execute.
    pub command: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds between SIGTERM and SIGKILL when stopping.
    #[serde(default = "default_grace")]
    pub stop_grace_secs: u64,
}

fn default_grace() -> u64 {
    10
}

/// A parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Default value when the deployment gives none.
    #[serde(default)]
    pub default: Option<String>,
    /// Secret: generated on the node when absent, published back to the master.
    #[serde(default)]
    pub secret: bool,
    /// Type of the value.
    #[serde(default, rename = "type")]
    pub kind: ParamKind,
}

/// A port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Name (assigned a number by the master).
    pub name: String,
    /// `tcp` or `udp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum HealthCheck {
    /// HTTP GET on a named port; healthy on a 2xx status.
    Http {
        /// Port name.
        port: String,
        /// Path.
        #[serde(default = "default_path")]
        path: String,
    },
    /// TCP connect to a named port.
    Tcp {
        /// Port name.
        port: String,
    },
    /// A command; healthy on exit status 0.
    Command {
        /// Program and arguments (templated).
        argv: Vec<String>,
    },
}

fn default_path() -> String {
    "/".into()
}

/// What to do when the master is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Offline {
    /// Keep running (default).
    #[default]
    KeepRunning,
    /// Stop once the assignment's lease expires (singletons that must not run twice).
    StopAfterLease,
}

impl Recipe {
    /// Parses and checks a `recipe.toml`.
    pub fn parse(text: &str) -> Result<Self, RecipeError> {
        let recipe: Self = toml::from_str(text).map_err(|e| RecipeError::Parse(e.to_string()))?;
        recipe.check()?;
        Ok(recipe)
    }

    fn check(&self) -> Result<(), RecipeError> {
        let field = |field: &str, reason: String| RecipeError::Field {
            field: field.into(),
            reason,
        };
        let mut names = std::collections::BTreeSet::new();
        for a in &self.artifacts {
            if !names.insert(a.name.as_str()) {
                return Err(field(
                    "artifacts",
                    format!("artifact `{}` is listed twice", a.name),
                ));
            }
        }
        for a in &self.artifacts {
            for src in &a.sources {
                check_source(src).map_err(|e| field("artifacts.sources", e.to_string()))?;
            }
        }
        for (name, p) in &self.params {
            if let Some(d) = &p.default {
                p.kind
                    .check(d)
                    .map_err(|e| field(&format!("params.{name}.default"), e.to_string()))?;
            }
        }
        if !(1..=1000).contains(&self.placement.replicas) {
            return Err(field(
                "placement.replicas",
                format!("{} is not between 1 and 1000", self.placement.replicas),
            ));
        }
        if let Some(bad) = self
            .placement
            .spread
            .iter()
            .find(|s| !matches!(s.as_str(), "home" | "isp" | "country"))
        {
            return Err(field(
                "placement.spread",
                format!("`{bad}` is not home, isp or country"),
            ));
        }
        if self.data.backup != Backup::None {
            if !self.data.persistent {
                return Err(field(
                    "data.backup",
                    "backups need `persistent = true` (there is no data to back up)".into(),
                ));
            }
            if !(1..=366).contains(&self.data.keep) {
                return Err(field(
                    "data.keep",
                    format!("{} snapshots kept: keep 1 to 366", self.data.keep),
                ));
            }
            if !(1..=5).contains(&self.data.copies) {
                return Err(field(
                    "data.copies",
                    format!("{} copies: keep 1 to 5", self.data.copies),
                ));
            }
        }
        if self
            .data
            .snapshot_command
            .first()
            .is_some_and(|c| c.is_empty())
        {
            return Err(field(
                "data.snapshot_command",
                "the command is empty".into(),
            ));
        }
        let ports: std::collections::BTreeSet<_> =
            self.ports.iter().map(|p| p.name.as_str()).collect();
        for p in &self.ports {
            if p.protocol != "tcp" && p.protocol != "udp" {
                return Err(field(
                    "ports.protocol",
                    format!("`{}` is neither tcp nor udp", p.protocol),
                ));
            }
        }
        if let Some(HealthCheck::Http { port, .. } | HealthCheck::Tcp { port }) = &self.health
            && !ports.contains(port.as_str())
        {
            return Err(field("health.port", format!("no port named `{port}`")));
        }
        if let Some(peers) = &self.peers {
            match self.ports.iter().find(|p| p.name == peers.port.as_str()) {
                None => {
                    return Err(field(
                        "peers.port",
                        format!("no port named `{}`", peers.port.as_str()),
                    ));
                }
                Some(p) if p.protocol != "tcp" => {
                    return Err(field(
                        "peers.port",
                        format!(
                            "port `{}` is {}; replica links carry tcp",
                            p.name, p.protocol
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        crate::template::check(self).map_err(|e| field("run", e.to_string()))
    }
}
