//! The scheduler's vocabulary: what [`super::plan`] reads (deployments with their move under way,
//! the snapshot, the policy) and what it returns (changes, conditions, events, outcomes).

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, InstanceId, Name};
use serde::{Deserialize, Serialize};

use super::{DeploymentSpec, NodeState, RecipeInfo};

/// One deployment as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// What the operator asked for.
    pub spec: DeploymentSpec,
    /// What placement needs of its recipe.
    pub info: RecipeInfo,
    /// The make-before-break move under way, if any.
    pub moving: Option<Move>,
    /// No new move starts before this time, Unix ms (a failed move backs off).
    pub calm_until_ms: u64,
    /// A rolling update is under way: no rebalancing move starts meanwhile.
    pub rolling: bool,
    /// Replicas whose node reports them failed for good at their current generation (the
    /// recipe refused there, say): re-placed on another node like lost ones.
    pub failed: BTreeSet<InstanceId>,
}

/// A replica moving make-before-break: `to` is started first; `from` is removed once `to` is
/// ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// The replica leaving.
    pub from: InstanceId,
    /// Its node.
    pub from_node: NodeId,
    /// The new replica.
    pub to: InstanceId,
    /// Its node.
    pub to_node: NodeId,
    /// Why it moves.
    pub reason: MoveReason,
    /// When the new copy was placed, Unix ms.
    pub started_ms: u64,
}

/// Why a replica moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its node is draining.
    Drain,
    /// The deployment's spread can be restored.
    Spread,
}

/// Knobs of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether degraded spread is restored by moving replicas.
    pub rebalance: bool,
    /// How long a moving replica's new copy gets to become ready, ms.
    pub move_deadline_ms: u64,
    /// How long a deployment waits after an abandoned move before the next one, ms.
    pub retry_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rebalance: true,
            move_deadline_ms: 120_000,
            retry_ms: 30_000,
        }
    }
}

/// Everything [`plan`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Deployments.
    pub deployments: &'a [Deployment],
    /// Nodes.
    pub nodes: &'a [NodeState],
    /// Every assignment with its node.
    pub assignments: &'a [(NodeId, Assignment)],
    /// Now, Unix ms.
    pub now_ms: u64,
    /// Where placement scans start (see [`crate::placement::place`]).
    pub start: usize,
    /// Knobs.
    pub policy: Policy,
}

/// A change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put `spec` on `node` (new, or moved from a lost node at the next generation).
    Place { node: NodeId, spec: Box<Assignment> },
    /// Remove an instance.
    Remove(InstanceId),
}

/// A constraint that is not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// Fewer replicas placed on live nodes than wanted.
    Replicas,
    /// Fewer distinct countries than replicas (country spread asked).
    Countries,
    /// Fewer distinct ISPs than replicas (ISP spread asked).
    Isps,
    /// Replicas on draining nodes that cannot move yet.
    Drain,
    /// The deployment cannot be planned (unreadable spec, missing recipe).
    Recipe,
    /// Fewer homes keep its backup copies than its recipe asks (`crate::backups`).
    Backups,
}

impl ConditionKind {
    /// What is met again when the condition ends.
    pub fn restored(self) -> &'static str {
        match self {
            Self::Replicas => "every replica placed",
            Self::Countries => "country spread restored",
            Self::Isps => "ISP spread restored",
            Self::Drain => "no replica left on a draining node",
            Self::Recipe => "the deployment can be planned again",
            Self::Backups => "every backup copy has a home",
        }
    }
}

/// A constraint not met, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Which.
    pub kind: ConditionKind,
    /// By how much and why, e.g. `2 of 3 countries (BE, FR)`.
    pub detail: String,
}

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new replica placed.
    Placed,
    /// A replica's node was lost.
    Lost,
    /// A lost replica re-placed on another node.
    Replaced,
    /// A replica removed (scale-down).
    Removed,
    /// A make-before-break move started.
    Moving,
    /// A move completed.
    Moved,
    /// A move given up.
    MoveAbandoned,
    /// A condition started.
    Degraded,
    /// A condition ended.
    Restored,
}

impl EventKind {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Lost => "lost",
            Self::Replaced => "re-placed",
            Self::Removed => "removed",
            Self::Moving => "moving",
            Self::Moved => "moved",
            Self::MoveAbandoned => "move abandoned",
            Self::Degraded => "degraded",
            Self::Restored => "restored",
        }
    }
}

/// An event of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What.
    pub kind: EventKind,
    /// Details.
    pub text: String,
}

/// One deployment after a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Constraints not met now.
    pub conditions: Vec<Condition>,
    /// The move under way after the pass.
    pub moving: Option<Move>,
    /// See [`Deployment::calm_until_ms`].
    pub calm_until_ms: u64,
    /// Replicas on lost nodes that could not be re-placed yet, with why they are lost.
    pub lost: Vec<(InstanceId, String)>,
    /// What the pass did.
    pub events: Vec<Event>,
}

/// The changes of a pass and every planned deployment's outcome.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Changes, in order.
    pub changes: Vec<Change>,
    /// Per deployment.
    pub outcomes: BTreeMap<Name, Outcome>,
}
