//! What a node tells the master about itself, and resource quantities.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::codec::{ValueError, label_name};

/// An ISO 3166-1 alpha-2 country code, two uppercase ASCII letters (`BE`, `FR`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct CountryCode([u8; 2]);

impl JsonSchema for CountryCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountryCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{2}$",
            "description": "ISO 3166-1 alpha-2 country code"
        })
    }
}

impl CountryCode {
    /// The two letters.
    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(ValueError::BadName {
                what: "country code (two uppercase letters, ISO 3166-1 alpha-2)",
                got: s.chars().take(20).collect(),
                max: 2,
            }),
        }
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for CountryCode {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self([
            b'A' + u.int_in_range(0..=25)?,
            b'A' + u.int_in_range(0..=25)?,
        ]))
    }
}

label_name!(
    /// A home: the household a node sits in. Replicas always land in distinct homes.
    HomeId,
    "home id",
    63
);

/// CPU architecture of a node, in Rust's `std::env::consts::ARCH` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit x86.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit ARM (older single-board computers).
    Arm,
    /// 64-bit RISC-V.
    Riscv64,
}

/// Resource quantities, in integer units so that every value round-trips exactly. Absent
/// fields are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(default)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub cpu_millis: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disk in MiB.
    pub disk_mib: u64,
    /// Network bandwidth in Mbit/s.
    pub bandwidth_mbps: u32,
}

/// Facts a node declares at enrolment. Capacity is measured by the agent (the volunteer may
/// declare the disk given instead); location facts are declared by the volunteer and used for
/// placement spread and jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct NodeFacts {
    /// Agent software name and version, e.g. `hearth-node/0.1.0`.
    pub agent: String,
    /// CPU architecture.
    pub arch: Arch,
    /// Total capacity of the machine (bandwidth is the uplink).
    pub capacity: Resources,
    /// Country the home is in.
    pub country: CountryCode,
    /// Internet service provider's name as the volunteer gives it.
    pub isp: String,
    /// Autonomous system number of the ISP, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The household; several nodes may share one.
    pub home: HomeId,
    /// Fibre uplink in Mbit/s.
    pub uplink_mbps: u32,
    /// Fibre downlink in Mbit/s.
    pub downlink_mbps: u32,
    /// Whether the agent can enforce limits with cgroups v2 on this host.
    pub cgroups_v2: bool,
    /// Free-form labels for placement constraints (`gpu=yes`, `storage=ssd`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Watts the home server draws, as the volunteer declares it (for the energy figure of
    /// its credit statement; none: the cooperative's default is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_w: Option<u32>,
}
