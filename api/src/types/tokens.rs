//! Enrolment tokens: `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.

use hearth_protocol::{Hex, NodeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, Nullable, TokenIdText, UnixMs};

/// Longest label, in bytes.
pub const MAX_TOKEN_LABEL: usize = 200;

/// Longest token lifetime in seconds (366 days).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 366 * 86_400;

/// Pattern of a whole enrolment token: today's `ht1:<id>:<secret>:<master id>`, or
/// `ht2:<id>:<secret>:<master id>:<root version>:<root sha256>` (which also pins the signed
/// repository's root).
pub const TOKEN_PATTERN: &str = "^ht1:[0-9a-f]{8}:[0-9a-f]{32}:hm-[0-9a-v]{52}$|^ht2:[0-9a-f]{8}:[0-9a-f]{32}:hm-[0-9a-v]{52}:[1-9][0-9]{0,19}:[0-9a-f]{64}$";

/// Body of `POST /v1/tokens`. Unknown fields are rejected (400 `bad_request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Free text shown in listings, at most 200 bytes of UTF-8 (longer gets 400 `bad_request`).
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub label: String,
    /// Lifetime in seconds, 1 to 31622400 (366 days). Absent or `null`: the token never expires.
    #[serde(default)]
    #[schemars(range(min = 1, max = 31_622_400))]
    pub expires_in_secs: Option<u64>,
    /// When set, the node that enrols with this token also makes (or joins) the volunteer
    /// account of this name: the volunteer then signs in to the dashboard and the API with the
    /// same token, and sees that node. A name held by an operator or an auditor is refused.
    #[serde(default)]
    pub volunteer: Option<crate::UserName>,
}

/// Answer of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    /// Public id.
    #[schemars(with = "TokenIdText")]
    pub id: String,
    /// The whole token to give the volunteer, `ht1:<id>:<secret>:<master id>` (or the `ht2:`
    /// form, which adds the repository root's version and SHA-256). Shown only in this answer:
    /// the master keeps only a hash of the secret.
    #[schemars(regex(pattern = TOKEN_PATTERN))]
    #[schemars(extend("examples" = ["ht1:3f9a01c2:bc74254770f58904dba41ecccc3fc162:hm-lsi47qal9vq24klmvt45hu43jsiom1tma7v3di8fppv5asph8rh0"]))]
    pub token: String,
    /// The label, as given.
    pub label: String,
    /// Expiry (creation time + `expires_in_secs`), Unix ms; `null` if it never expires.
    #[schemars(with = "Nullable<UnixMs>")]
    pub expires_at_ms: Option<u64>,
}

/// An enrolment token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Token")]
pub struct TokenView {
    /// Public id.
    #[schemars(with = "TokenIdText")]
    pub id: Hex<4>,
    /// Operator's label.
    pub label: String,
    /// Creation, Unix ms.
    #[schemars(with = "UnixMs")]
    pub created_at_ms: u64,
    /// Expiry, Unix ms; `null` if it never expires.
    #[schemars(with = "Nullable<UnixMs>")]
    pub expires_at_ms: Option<u64>,
    /// When it was redeemed, Unix ms; `null` if unused.
    #[schemars(with = "Nullable<UnixMs>")]
    pub spent_at_ms: Option<u64>,
    /// The node that redeemed it; `null` if unused.
    #[schemars(with = "Nullable<NodeIdText>")]
    pub spent_by: Option<NodeId>,
    /// When it was revoked, Unix ms; `null` if not revoked.
    #[schemars(with = "Nullable<UnixMs>")]
    pub revoked_at_ms: Option<u64>,
    /// Computed when listed, first match wins: `spent` if `spent_at_ms` is set, else `revoked`
    /// if `revoked_at_ms` is set, else `expired` if `expires_at_ms` is at or before now, else
    /// `active`.
    pub status: TokenStatus,
}

/// Where an enrolment token is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// Can be redeemed.
    Active,
    /// Used to enrol a node.
    Spent,
    /// Revoked by an operator.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl TokenStatus {
    /// The status named `s` (`active`, `spent`, `revoked`, `expired`).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "spent" => Self::Spent,
            "revoked" => Self::Revoked,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// The status's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Spent => "spent",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Answer of `DELETE /v1/tokens/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevokedToken {
    /// The revoked token's id.
    #[schemars(with = "TokenIdText")]
    pub revoked: String,
}
