//! Scenario files: the fleet, the deployments and the failure models, in TOML.
//!
//! Every table is strict (`deny_unknown_fields`) so that a misspelt key is an error, not a silent
//! default. [`Scenario::parse`] also checks what serde cannot (names, country codes, rates), and
//! says which entry is wrong.

use std::collections::BTreeSet;
use std::path::Path;

use hearth_protocol::CountryCode;
use hearth_protocol::messages::state::Name;
use serde::Deserialize;

use crate::distr::Dist;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML does not match the format.
    #[error("scenario is not valid: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("scenario is not valid: {0}")]
    Invalid(String),
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in the summary.
    pub name: String,
    /// One line on what it models.
    #[serde(default)]
    pub description: String,
    /// Simulated duration in days.
    pub days: f64,
    /// Seed used when the command line gives none.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Resolution of the time series (plot), in minutes; 0 picks about 500 points.
    #[serde(default)]
    pub sample_minutes: u64,
    /// Availability is measured from this many minutes on (initial placement excluded).
    #[serde(default = "default_warmup")]
    pub warmup_minutes: u64,
    /// Agent timings.
    #[serde(default)]
    pub agent: AgentModel,
    /// The homes.
    pub fleet: Fleet,
    /// The services.
    #[serde(default, rename = "deployment")]
    pub deployments: Vec<Deployment>,
    /// What goes wrong.
    #[serde(default)]
    pub failures: Failures,
    /// Volunteers leaving and joining.
    #[serde(default)]
    pub volunteers: Volunteers,
}

fn default_seed() -> u64 {
    1
}

fn default_warmup() -> u64 {
    10
}

/// Timings of the simulated agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentModel {
    /// From power back to the agent running (boot), in seconds.
    pub boot_seconds: f64,
    /// From `Start` to the process running, in seconds.
    pub start_seconds: f64,
    /// From SIGTERM to exit, in seconds.
    pub stop_seconds: f64,
    /// Recipe and artifacts downloaded for a new replica, in MiB (fetch time = size / downlink).
    pub artifact_mib: f64,
}

impl Default for AgentModel {
    fn default() -> Self {
        Self {
            boot_seconds: 60.0,
            start_seconds: 2.0,
            stop_seconds: 1.0,
            artifact_mib: 50.0,
        }
    }
}

/// The fleet at the start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    /// Defaults for every home.
    #[serde(default)]
    pub home: HomeModel,
    /// Countries.
    #[serde(rename = "country")]
    pub countries: Vec<Country>,
}

/// A home server and its fibre line.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeModel {
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk in MiB.
    pub disk_mib: u64,
    /// Fibre downlink, Mbit/s.
    pub down_mbps: u32,
    /// Fibre uplink, Mbit/s (the node's bandwidth capacity).
    pub up_mbps: u32,
    /// One-way latency to the master, ms.
    pub latency_ms: u32,
}

impl Default for HomeModel {
    fn default() -> Self {
        Self {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 256_000,
            down_mbps: 1000,
            up_mbps: 500,
            latency_ms: 15,
        }
    }
}

/// A country and its ISPs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code.
    pub code: String,
    /// Its ISPs.
    #[serde(rename = "isp")]
    pub isps: Vec<Isp>,
}

/// An ISP: how many homes it serves in the fleet, and optional overrides of the home model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isp {
    /// Name.
    pub name: String,
    /// Homes at the start.
    pub homes: u32,
    /// CPU override.
    pub cpu_millis: Option<u32>,
    /// Memory override.
    pub memory_mib: Option<u64>,
    /// Disk override.
    pub disk_mib: Option<u64>,
    /// Downlink override.
    pub down_mbps: Option<u32>,
    /// Uplink override.
    pub up_mbps: Option<u32>,
    /// Latency override.
    pub latency_ms: Option<u32>,
}

impl Isp {
    /// The home model of this ISP's homes.
    pub fn home(&self, base: &HomeModel) -> HomeModel {
        HomeModel {
            cpu_millis: self.cpu_millis.unwrap_or(base.cpu_millis),
            memory_mib: self.memory_mib.unwrap_or(base.memory_mib),
            disk_mib: self.disk_mib.unwrap_or(base.disk_mib),
            down_mbps: self.down_mbps.unwrap_or(base.down_mbps),
            up_mbps: self.up_mbps.unwrap_or(base.up_mbps),
            latency_ms: self.latency_ms.unwrap_or(base.latency_ms),
        }
    }
}

/// A service (or `count` alike services named `name-0`, `name-1`…).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Name (DNS label).
    pub name: String,
    /// How many alike deployments; 1 keeps `name` as is.
    #[serde(default = "one")]
    pub count: u32,
    /// Replicas.
    pub replicas: u32,
    /// Spread beyond distinct homes: `isp`, `country`.
    #[serde(default)]
    pub spread: BTreeSet<String>,
    /// Allowed countries (empty: anywhere).
    #[serde(default)]
    pub countries: BTreeSet<String>,
    /// CPU per replica.
    #[serde(default)]
    pub cpu_millis: u32,
    /// Memory per replica.
    #[serde(default)]
    pub memory_mib: u64,
    /// Disk per replica.
    #[serde(default)]
    pub disk_mib: u64,
    /// Bandwidth per replica.
    #[serde(default)]
    pub bandwidth_mbps: u32,
}

fn one() -> u32 {
    1
}

/// Failure models. Rates are Poisson processes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    /// Power cuts (per home).
    pub power: Option<RateModel>,
    /// Reboots (per home): updates, crashes; the duration is the time off before booting.
    pub reboot: Option<RateModel>,
    /// ISP outages (per ISP): every home of the ISP loses its link.
    pub isp_outage: Option<RateModel>,
    /// Random loss of a country's link (per country).
    pub country_outage: Option<RateModel>,
    /// Scheduled losses of a country's link.
    #[serde(default)]
    pub country_link: Vec<CountryLink>,
    /// Scheduled ISP outages.
    #[serde(default)]
    pub isp_link: Vec<IspLink>,
}

/// A scheduled ISP outage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IspLink {
    /// The ISP's country.
    pub country: String,
    /// The ISP's name.
    pub isp: String,
    /// Start, in days from the start of the simulation.
    pub at_day: f64,
    /// Duration in hours.
    pub hours: f64,
}

/// A Poisson process with a duration distribution.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateModel {
    /// Events per unit (home, ISP, country) per year.
    pub rate_per_year: f64,
    /// How long each lasts.
    pub duration: Dist,
}

/// A scheduled loss of a country's link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryLink {
    /// The country.
    pub country: String,
    /// Start, in days from the start of the simulation.
    pub at_day: f64,
    /// Duration in hours.
    pub hours: f64,
}

/// Volunteers leaving for good and joining.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volunteers {
    /// Share of homes that leave per year (0.1: one in ten).
    #[serde(default)]
    pub leave_per_year: f64,
    /// New homes per year, spread over the ISPs in proportion to their size at the start.
    #[serde(default)]
    pub join_per_year: f64,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a scenario.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Self = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if !(self.days > 0.0 && self.days <= 3660.0) {
            return bad(format!("days must be in (0, 3660], got {}", self.days));
        }
        let mut codes = BTreeSet::new();
        for c in &self.fleet.countries {
            c.code
                .parse::<CountryCode>()
                .map_err(|e| ScenarioError::Invalid(format!("country {:?}: {e}", c.code)))?;
            if !codes.insert(c.code.clone()) {
                return bad(format!("country {} is listed twice", c.code));
            }
            if c.isps.is_empty() {
                return bad(format!("country {} has no [[fleet.country.isp]]", c.code));
            }
            for isp in &c.isps {
                if isp.name.is_empty() {
                    return bad(format!("an ISP of {} has an empty name", c.code));
                }
            }
        }
        if self.fleet.countries.is_empty() {
            return bad("the fleet has no [[fleet.country]]".into());
        }
        let mut names = BTreeSet::new();
        for d in &self.deployments {
            for name in d.names() {
                name.parse::<Name>()
                    .map_err(|e| ScenarioError::Invalid(format!("deployment {name:?}: {e}")))?;
                if !names.insert(name.clone()) {
                    return bad(format!("deployment {name} is defined twice"));
                }
            }
            if d.replicas == 0 {
                return bad(format!(
                    "deployment {}: replicas must be at least 1",
                    d.name
                ));
            }
            for s in &d.spread {
                if s != "isp" && s != "country" {
                    return bad(format!(
                        "deployment {}: spread {s:?} is not `isp` or `country`",
                        d.name
                    ));
                }
            }
            for c in &d.countries {
                if !codes.contains(c) {
                    return bad(format!(
                        "deployment {}: country {c} is not in the fleet",
                        d.name
                    ));
                }
            }
        }
        let f = &self.failures;
        for (what, m) in [
            ("power", &f.power),
            ("reboot", &f.reboot),
            ("isp_outage", &f.isp_outage),
            ("country_outage", &f.country_outage),
        ] {
            if let Some(m) = m {
                if !(m.rate_per_year >= 0.0 && m.rate_per_year.is_finite()) {
                    return bad(format!("failures.{what}.rate_per_year must be >= 0"));
                }
                m.duration
                    .check()
                    .map_err(|e| ScenarioError::Invalid(format!("failures.{what}: {e}")))?;
            }
        }
        for l in &f.country_link {
            if !codes.contains(&l.country) {
                return bad(format!(
                    "failures.country_link: country {} is not in the fleet",
                    l.country
                ));
            }
            if !(l.at_day >= 0.0 && l.hours > 0.0) {
                return bad("failures.country_link: at_day >= 0 and hours > 0".into());
            }
        }
        for l in &f.isp_link {
            let known = self
                .fleet
                .countries
                .iter()
                .any(|c| c.code == l.country && c.isps.iter().any(|i| i.name == l.isp));
            if !known {
                return bad(format!(
                    "failures.isp_link: ISP {} in {} is not in the fleet",
                    l.isp, l.country
                ));
            }
            if !(l.at_day >= 0.0 && l.hours > 0.0) {
                return bad("failures.isp_link: at_day >= 0 and hours > 0".into());
            }
        }
        let v = &self.volunteers;
        if !(v.leave_per_year >= 0.0 && v.join_per_year >= 0.0) {
            return bad("volunteers: rates must be >= 0".into());
        }
        Ok(())
    }

    /// Homes at the start.
    pub fn homes(&self) -> u64 {
        self.fleet
            .countries
            .iter()
            .flat_map(|c| c.isps.iter())
            .map(|i| u64::from(i.homes))
            .sum()
    }
}

impl Deployment {
    /// The names of the deployments this entry stands for.
    pub fn names(&self) -> Vec<String> {
        if self.count <= 1 {
            vec![self.name.clone()]
        } else {
            (0..self.count)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }
}
