//! Nodes: `GET /v1/nodes`, `GET /v1/nodes/{id}`, `POST /v1/nodes/{id}/{action}`,
//! `POST /v1/nodes/{id}/probe`.

use hearth_protocol::{NodeFacts, NodeId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, Nullable, UnixMs};

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeView {
    /// Identity.
    #[schemars(with = "NodeIdText")]
    pub id: NodeId,
    /// Display state.
    #[schemars(with = "NodeState")]
    pub state: String,
    /// Administrative state.
    #[schemars(with = "AdminState")]
    pub admin: String,
    /// Liveness.
    #[schemars(with = "Liveness")]
    pub liveness: String,
    /// Whether the node has a session open with the master now.
    pub connected: bool,
    /// Last heartbeat, Unix ms; `null` if none (a `pending` node, or a `down` node that never
    /// sent one). After a master restart, nodes that were not down are given a fresh grace
    /// period and show the restart time here until they heartbeat again or time out.
    #[schemars(with = "Nullable<UnixMs>")]
    pub last_heartbeat_ms: Option<u64>,
    /// Enrolment, Unix ms.
    #[schemars(with = "UnixMs")]
    pub enrolled_at_ms: u64,
    /// Facts the node declared at enrolment (hearth-protocol `NodeFacts`).
    pub facts: NodeFacts,
    /// Its uptime standing and online score from the credits ledger's probe entries; `null`
    /// (or absent, from masters before issue 16) while it has never been probed.
    #[serde(default)]
    #[schemars(with = "Nullable<NodeStanding>")]
    pub standing: Option<NodeStanding>,
}

/// A node's uptime standing (SPEC.md §15.4), as the master's ledger books compute it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeStanding {
    /// `good`, `warned` or `suspended` (suspended: no new placements).
    pub standing: StandingLevel,
    /// Online score: mean share of probes passed per scoring window, parts per million.
    pub score_ppm: u32,
    /// Probes passed in the scored windows.
    pub probes_passed: u64,
    /// Probes failed in the scored windows.
    pub probes_failed: u64,
    /// Since when it has had this standing, Unix ms.
    #[schemars(with = "UnixMs")]
    pub since_ms: u64,
    /// Why, as a sentence.
    pub reason: String,
}

/// Standing levels (hearth-protocol's, as in the `standing` message).
pub use hearth_protocol::messages::standing::StandingLevel;

/// Display state: `retired` and `revoked` whatever the liveness; otherwise the liveness when it
/// is not `up` (`pending`, `suspect`, `returning`, `down`); otherwise the administrative state
/// (`active`, `draining`, `reserve`, `test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Enrolled, never seen.
    Pending,
    /// Up and active.
    Active,
    /// Silent longer than the suspect timeout.
    Suspect,
    /// Up before a master restart, not back yet.
    Returning,
    /// Silent longer than the down timeout.
    Down,
    /// Replicas move away.
    Draining,
    /// Kept in reserve.
    Reserve,
    /// Takes test workloads only.
    Test,
    /// Retired.
    Retired,
    /// Revoked.
    Revoked,
}

/// Administrative state, set by operators (`hearth-core`'s, as the master stores it).
pub use hearth_core::node::AdminState;

/// `pending`: enrolled, never seen in a session since the master started tracking it; `up`:
/// heartbeating; `suspect`: silent longer than the suspect timeout; `returning`: up before a
/// master restart and not back yet (it becomes `down` when the restart grace, 60 s by default,
/// ends); `down`: silent longer than the down timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// Never seen.
    Pending,
    /// Heartbeating.
    Up,
    /// Silent for a while.
    Suspect,
    /// Not back since the master restarted.
    Returning,
    /// Silent too long.
    Down,
}

/// Answer of `POST /v1/nodes/{id}/probe`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbeOutcome {
    /// The node probed.
    pub node: String,
    /// `passed` or `failed`.
    pub outcome: ProbeResult,
    /// When passed, from sending the probe to receiving the answer, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// When failed, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a probe passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeResult {
    /// The answer was signed by the node's key in time.
    Passed,
    /// Anything else.
    Failed,
}
