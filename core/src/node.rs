//! A node as the cores see it: its operator-set [`AdminState`] and the [`NodeView`] the
//! scheduler plans on (facts, admin state, liveness), with no store or session behind it.

use std::fmt;

use hearth_protocol::{NodeFacts, NodeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::liveness::Liveness;

/// Administrative state of a node, set by operators (liveness is tracked separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Schedulable.
    Active,
    /// Its instances move elsewhere; nothing new lands.
    Draining,
    /// Kept in reserve: connected, nothing scheduled unless needed.
    Reserve,
    /// Under test: only test deployments land.
    Test,
    /// Left the cooperative: refused at the handshake.
    Retired,
    /// Revoked (compromised or banned): refused at the handshake.
    Revoked,
}

impl AdminState {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Reserve => "reserve",
            Self::Test => "test",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Draining,
            Self::Reserve,
            Self::Test,
            Self::Retired,
            Self::Revoked,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    /// Whether a node in this state may hold a session.
    pub fn admits_sessions(self) -> bool {
        !matches!(self, Self::Retired | Self::Revoked)
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state shown to operators: administrative state, overridden by liveness when not up.
pub fn display_state(admin: AdminState, liveness: &Liveness) -> &'static str {
    match (admin, liveness) {
        (AdminState::Revoked | AdminState::Retired, _) => admin.as_str(),
        (_, Liveness::Pending) => "pending",
        (_, Liveness::Down { .. }) => "down",
        (_, Liveness::Suspect { .. }) => "suspect",
        (_, Liveness::Returning { .. }) => "returning",
        (_, Liveness::Up { .. }) => admin.as_str(),
    }
}

/// What the scheduler reads of one node: identity and declared facts (from its record), the
/// admin state and liveness it has now (the master's fleet, or the simulator's model), and its
/// uptime standing (the master's ledger books; the simulator passes 1.0 and not suspended).
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Identity.
    pub id: NodeId,
    /// Declared facts.
    pub facts: &'a NodeFacts,
    /// Operator-set state.
    pub admin: AdminState,
    /// Liveness (`Pending` for a node never seen).
    pub liveness: Liveness,
    /// Placement reliability in `[0, 1]`: its online score from uptime probes (1.0 while
    /// unknown). Ranks candidates; does not exclude any.
    pub reliability: f64,
    /// Suspended for a low online score: takes no new replicas (its current ones stay).
    pub suspended: bool,
}
