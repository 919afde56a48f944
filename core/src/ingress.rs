//! What a deployment publishes through the cooperative's gateways: public host names (HTTP,
//! routed by `Host`) and public TCP ports, each bound to one of the recipe's port names.
//!
//! These are values of a deployment's spec, parsed at the boundary: a [`HostName`] is always a
//! lower-case DNS name, so the gateway's routing table can compare names byte for byte.

use std::fmt;

use hearth_protocol::messages::state::Name;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a host name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// Not a DNS name of at least two labels, each 1–63 of `a-z 0-9 -` (not at either end),
    /// 253 characters at most.
    #[error(
        "{0:?} is not a host name (lower-case DNS labels separated by dots, such as www.example.coop)"
    )]
    HostName(String),
}

/// A public host name: lower-case DNS labels (`a-z`, `0-9`, `-` inside), at least two, at most
/// 253 characters in all. Upper case is folded at parse time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostName(String);

impl HostName {
    /// Parses `text`, folding ASCII upper case.
    pub fn parse(text: &str) -> Result<Self, IngressError> {
        let lower = text.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let labels: Vec<&str> = lower.split('.').collect();
        if lower.len() > 253 || labels.len() < 2 || !labels.iter().all(|l| label_ok(l)) {
            return Err(IngressError::HostName(text.to_owned()));
        }
        Ok(Self(lower))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostName {
    type Error = IngressError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<HostName> for String {
    fn from(host: HostName) -> Self {
        host.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for HostName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HostName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A public host name: lower-case DNS labels separated by dots, at least two, at most 253 characters (upper case is folded).",
            "minLength": 3,
            "maxLength": 253,
            "pattern": "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
        })
    }
}

/// The recipe port HTTP routes go to when none is named.
pub fn default_http_port() -> Name {
    "http"
        .parse()
        .unwrap_or_else(|_| unreachable!("\"http\" is a label"))
}

/// An HTTP route: requests for `host` go to the replicas' `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostRoute {
    /// The public host name (`Host` header, TLS SNI).
    pub host: HostName,
    /// The recipe's port that serves HTTP (default `http`).
    #[serde(default = "default_http_port")]
    pub port: Name,
    /// Also serve this host over plain HTTP; otherwise plain HTTP is redirected to HTTPS.
    #[serde(default)]
    pub plain_http: bool,
}

/// A raw TCP route: connections to the gateways' `public_port` go to the replicas' `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    /// The recipe's port.
    pub port: Name,
    /// The public port on every gateway (1–65535).
    #[schemars(range(min = 1))]
    pub public_port: u16,
    /// Prefix each connection with a PROXY protocol v2 header naming the client.
    #[serde(default)]
    pub proxy_protocol: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_lower_case_dns_names() {
        assert_eq!(
            HostName::parse("WWW.Example.coop").map(|h| h.0),
            Ok("www.example.coop".into())
        );
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a.b/c",
            "ä.de",
            &"a".repeat(64),
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}.coop", vec!["a".repeat(63); 4].join("."));
        assert!(HostName::parse(&long).is_err());
    }
}
