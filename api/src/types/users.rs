//! People and their roles: `POST /v1/users`, `GET /v1/users`, `DELETE /v1/users/{name}` and
//! `GET /v1/whoami`.
//!
//! A user is one person with one role and one credential. The credential is a bearer secret,
//! `hu1:<credential id>:<secret>`, shown once when the user is added; the master keeps only the
//! SHA-256 of the secret (256 random bits, so a fast hash is enough: there is nothing to guess).
//! A volunteer whose account was made by an enrolment token signs in with that token instead.

use std::fmt;
use std::str::FromStr;

use hearth_protocol::NodeId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, Nullable, UnixMs};

/// Longest credential lifetime in days (three years).
pub const MAX_USER_LIFETIME_DAYS: u64 = 3 * 366;

/// Lifetime of a credential when none is asked for, in days.
pub const DEFAULT_USER_LIFETIME_DAYS: u64 = 365;

/// Pattern of a user name.
pub const USER_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

/// Pattern of an issued credential.
pub const USER_CREDENTIAL_PATTERN: &str = "^hu1:[0-9a-f]{16}:[0-9a-f]{64}$";

/// What a person may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Runs the cooperative: every route.
    Operator,
    /// Hosts servers: their own nodes (status, instances, uptime, statements, drain and
    /// activate), nothing of anyone else's.
    Volunteer,
    /// A member who audits: reads the fleet, the deployments and where they live, the ledger and
    /// every statement; writes nothing.
    Auditor,
}

impl UserRole {
    /// Every role.
    pub const ALL: [UserRole; 3] = [UserRole::Operator, UserRole::Volunteer, UserRole::Auditor];

    /// The name on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Volunteer => "volunteer",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a role, a name or a credential did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserParseError {
    /// Not one of the three roles.
    #[error("`{0}` is not a role: use operator, volunteer or auditor")]
    UserRole(String),
    /// Not a user name.
    #[error(
        "`{0}` is not a user name: 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
    )]
    Name(String),
    /// Not a credential.
    #[error("not a Hearth credential: expected `hu1:<16 hex>:<64 hex>` or an enrolment token")]
    Credential,
}

impl FromStr for UserRole {
    type Err = UserParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UserParseError::UserRole(s.to_owned()))
    }
}

/// A user's name: 1 to 63 of `a-z0-9._-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl JsonSchema for UserName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UserName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": USER_NAME_PATTERN,
            "description": "A person's name: 1 to 63 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit.",
            "examples": ["ana"]
        })
    }
}

impl UserName {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = UserParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(UserParseError::Name(s.to_owned()))
        }
    }
}

impl TryFrom<String> for UserName {
    type Error = UserParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UserName> for String {
    fn from(n: UserName) -> Self {
        n.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An issued credential, `hu1:<id>:<secret>`: 8 random bytes of public id (how the master finds
/// the user) and 32 of secret.
#[derive(Clone, PartialEq, Eq)]
pub struct UserCredential {
    /// The public id, 16 hex characters.
    pub id: String,
    /// The secret, 64 hex characters.
    pub secret: String,
}

impl UserCredential {
    /// The id under which the store keeps an issued credential (`u` + its id; an enrolment
    /// token's is `t` + the token id).
    pub fn store_id(&self) -> String {
        format!("u{}", self.id)
    }
}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hu1:{}:…", self.id)
    }
}

impl fmt::Display for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hu1:{}:{}", self.id, self.secret)
    }
}

impl FromStr for UserCredential {
    type Err = UserParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = |t: &str, n: usize| {
            t.len() == n
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match s.trim().split(':').collect::<Vec<_>>().as_slice() {
            ["hu1", id, secret] if hex(id, 16) && hex(secret, 64) => Ok(Self {
                id: (*id).to_owned(),
                secret: (*secret).to_owned(),
            }),
            _ => Err(UserParseError::Credential),
        }
    }
}

/// Body of `POST /v1/users`. Unknown fields are rejected (400 `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The person's name.
    pub name: UserName,
    /// What they may do.
    pub role: UserRole,
    /// A volunteer's nodes (required for a volunteer, refused for the other roles).
    #[serde(default)]
    #[schemars(with = "Vec<NodeIdText>")]
    pub nodes: Vec<NodeId>,
    /// Lifetime of the credential in days, 1 to 1098. Absent: 365.
    #[serde(default)]
    #[schemars(range(min = 1, max = 1098))]
    pub expires_in_days: Option<u64>,
}

/// Answer of `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedUser {
    /// The user as listed.
    pub user: UserView,
    /// The credential, `hu1:<id>:<secret>`, shown only in this answer.
    #[schemars(regex(pattern = USER_CREDENTIAL_PATTERN))]
    pub credential: String,
}

/// A user as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "User")]
pub struct UserView {
    /// The person's name.
    pub name: UserName,
    /// What they may do.
    pub role: UserRole,
    /// A volunteer's nodes; empty for the other roles.
    #[schemars(with = "Vec<NodeIdText>")]
    pub nodes: Vec<NodeId>,
    /// `hu1` for an issued credential, `enrolment_token` for a volunteer who signs in with the
    /// token their node enrolled with.
    pub credential: String,
    /// Creation, Unix ms.
    #[schemars(with = "UnixMs")]
    pub created_at_ms: u64,
    /// Expiry of the credential, Unix ms; `null` if it never expires.
    #[schemars(with = "Nullable<UnixMs>")]
    pub expires_at_ms: Option<u64>,
}

/// Answer of `DELETE /v1/users/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemovedUser {
    /// The name removed; its credential and browser sessions stop working at once.
    pub removed: UserName,
}

/// Answer of `GET /v1/whoami`: who the credential is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The user (`admin` for the master's admin token).
    pub name: String,
    /// Their role.
    pub role: UserRole,
    /// A volunteer's nodes.
    #[schemars(with = "Vec<NodeIdText>")]
    pub nodes: Vec<NodeId>,
    /// Expiry of the credential, Unix ms; `null` if it never expires.
    #[schemars(with = "Nullable<UnixMs>")]
    pub expires_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_roles_and_credentials_parse_at_the_boundary() {
        assert!("ana".parse::<UserName>().is_ok());
        assert!("ana.b-c_2".parse::<UserName>().is_ok());
        for bad in ["", "Ana", "-ana", "a b", &"a".repeat(64)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad}");
        }
        assert_eq!("auditor".parse::<UserRole>().unwrap(), UserRole::Auditor);
        assert!("root".parse::<UserRole>().is_err());
        let c: UserCredential = format!("hu1:{}:{}", "0a".repeat(8), "b1".repeat(32))
            .parse()
            .unwrap();
        assert_eq!(c.store_id(), format!("u{}", "0a".repeat(8)));
        assert_eq!(c.to_string().parse::<UserCredential>().unwrap(), c);
        assert!(!format!("{c:?}").contains(&"b1".repeat(32)));
        assert!("hu1:00:11".parse::<UserCredential>().is_err());
        assert!(
            format!("hu2:{}:{}", "0a".repeat(8), "b1".repeat(32))
                .parse::<UserCredential>()
                .is_err()
        );
    }
}
