//! The scheduler's sans-IO core: deployments, the node view it plans on, and [`plan`].
//!
//! [`plan`] (in `plan.rs`) is a pure function of a snapshot (deployments, nodes, assignments,
//! readiness, the time) that returns the changes to make and each deployment's conditions:
//! replicas on lost nodes (down, retired, revoked) are re-placed under the same instance id at a
//! new generation, so the old node stops its stale copy when it returns; missing replicas are
//! added, best effort; surplus ones removed; replicas on draining nodes, and replicas whose move
//! restores a degraded spread, move make-before-break. Re-placements per pass are capped, so a
//! correlated outage (one ISP down) re-places steadily instead of stampeding the fleet. The
//! master's driver (`hearth_master::scheduler::run`) snapshots, plans and applies, and keeps each
//! deployment's status and history ([`status`]).

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::messages::state::{Name, RecipeRef};
use hearth_protocol::{CountryCode, Resources};
use serde::{Deserialize, Serialize};

use crate::liveness::Liveness;
use crate::node::{AdminState, NodeView, display_state};
use crate::placement::Candidate;

pub use model::{
    Change, Condition, ConditionKind, Deployment, Event, EventKind, Move, MoveReason, Outcome,
    Plan, Policy, Snapshot,
};
pub use plan::plan;
pub use status::{DeploymentStatus, StoredCondition};

/// Re-placements of lost replicas per pass (one pass a second).
pub const REPLACE_BUDGET: usize = 200;

/// A deployment as the operator asks for it. Requests are idempotent by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Name.
    pub name: Name,
    /// The recipe (uploaded blob).
    pub recipe: RecipeRef,
    /// Replicas wanted.
    pub replicas: u32,
    /// Spread beyond distinct homes: `isp`, `country`.
    #[serde(default)]
    pub spread: BTreeSet<String>,
    /// Allowed countries (empty: anywhere).
    #[serde(default)]
    pub countries: BTreeSet<CountryCode>,
    /// Parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Labels nodes must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Public host names routed to the replicas by the gateways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::ingress::HostRoute>,
    /// Public TCP ports routed to the replicas by the gateways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<crate::ingress::TcpRoute>,
}

/// What the master reads from the recipe to place it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeInfo {
    /// Resources of one replica.
    pub resources: Resources,
    /// Port names (numbers are chosen by the node).
    pub ports: Vec<String>,
}

/// A node in a snapshot.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Placement view.
    pub candidate: Candidate,
    /// Whether replicas already there stay (false: down, retired, revoked, never seen).
    pub keeps: bool,
    /// Draining: its replicas stay until their new copies are ready elsewhere.
    pub draining: bool,
    /// Its state as shown to operators (`down`, `retired`…), for events.
    pub state: &'static str,
}

pub(crate) fn add(total: &mut Resources, r: &Resources) {
    total.cpu_millis = total.cpu_millis.saturating_add(r.cpu_millis);
    total.memory_mib = total.memory_mib.saturating_add(r.memory_mib);
    total.disk_mib = total.disk_mib.saturating_add(r.disk_mib);
    total.bandwidth_mbps = total.bandwidth_mbps.saturating_add(r.bandwidth_mbps);
}

/// A node's snapshot from its facts, admin state, liveness and standing: a suspended node keeps
/// its replicas but takes no new ones; reliability weighs the placement score.
pub fn node_state(node: NodeView<'_>) -> NodeState {
    let NodeView {
        id,
        facts: f,
        admin,
        liveness,
        reliability,
        suspended,
    } = node;
    let up = matches!(liveness, Liveness::Up { .. });
    NodeState {
        candidate: Candidate {
            id,
            home: f.home.clone(),
            isp: f.isp.clone(),
            country: f.country,
            labels: f.labels.clone(),
            capacity: f.capacity,
            allocated: Resources::default(),
            schedulable: up && admin == AdminState::Active && !suspended,
            reliability: if reliability.is_finite() {
                reliability.clamp(0.0, 1.0)
            } else {
                1.0
            },
        },
        keeps: matches!(
            admin,
            AdminState::Active | AdminState::Reserve | AdminState::Test | AdminState::Draining
        ) && !matches!(liveness, Liveness::Down { .. } | Liveness::Pending),
        draining: admin == AdminState::Draining,
        state: display_state(admin, &liveness),
    }
}

pub mod model;
mod moves;
mod plan;
pub mod status;
#[cfg(test)]
mod tests;
