//! Rolling updates: a sans-IO core that moves a deployment's replicas to a new recipe one at a
//! time, and rolls them all back when the new version fails.
//!
//! A replica is updated in place: same node, same instance id, next generation, new recipe, so
//! its persistent data stays where it is and the node stops the old process before starting the
//! new one. That replica is the only one allowed down: a step starts only when every other
//! replica is ready (running, and healthy when the recipe has a check), except that a replica
//! that is already down is updated first since updating it costs nothing. A step succeeds when
//! the replica reports ready at its new generation; it fails when it reports `failed`, crashes
//! (`restarting`), reports `unhealthy`, or is not ready within the deadline. A failure turns the
//! rollout around: the deployment's recipe goes back to the previous one and the replicas that
//! took the new recipe are updated back, again one at a time.
//!
//! The driver ([`crate::scheduler`]) persists the [`Rollout`] with the deployment, so a master
//! restart carries on where it stopped.

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{
    Assignment, Health, InstanceId, InstanceReport, InstanceState, RecipeRef,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the stored rollout record.
pub const ROLLOUT_VERSION: u32 = 1;

/// Default time a replica gets to become ready on its new recipe.
pub const DEFAULT_DEADLINE_MS: u64 = 120_000;

/// A deployment's rolling update, stored next to it (record version `v`) and shown by the
/// operator API. Replicas are updated in place (same node and instance, next generation) one
/// at a time; a failed step rolls the deployment back to `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Record version (`ROLLOUT_VERSION`, 1 today).
    #[schemars(range(min = 1, max = 1))]
    pub v: u32,
    /// The recipe the replicas ran before.
    pub from: RecipeRef,
    /// The recipe asked for.
    pub to: RecipeRef,
    /// How long one replica gets to become ready, ms.
    #[schemars(range(min = 1000))]
    pub deadline_ms: u64,
    /// Replicas updated so far (forward and back).
    #[serde(default)]
    pub updated: u32,
    /// Where it is.
    pub state: RolloutState,
}

/// Where a rollout is. Each variant carries what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum RolloutState {
    /// Moving replicas to `to`.
    Rolling {
        /// The replica being updated.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<Step>,
    },
    /// `to` failed: moving replicas back to `from`.
    RollingBack {
        /// Why the new version was refused.
        reason: String,
        /// The replica being updated back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<Step>,
    },
    /// Every replica runs `to`.
    Complete,
    /// Every replica runs `from` again.
    RolledBack {
        /// Why the new version was refused.
        reason: String,
    },
}

/// One replica being updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The instance.
    pub instance: InstanceId,
    /// When the update was sent, Unix ms.
    pub started_ms: u64,
}

impl Rollout {
    /// A new rollout from `from` to `to`.
    pub fn new(from: RecipeRef, to: RecipeRef, deadline_ms: u64) -> Self {
        Self {
            v: ROLLOUT_VERSION,
            from,
            to,
            deadline_ms,
            updated: 0,
            state: RolloutState::Rolling { step: None },
        }
    }

    /// The recipe replicas should run now (and new replicas get).
    pub fn target(&self) -> &RecipeRef {
        match self.state {
            RolloutState::Rolling { .. } | RolloutState::Complete => &self.to,
            RolloutState::RollingBack { .. } | RolloutState::RolledBack { .. } => &self.from,
        }
    }

    /// Whether it still has work to do.
    pub fn active(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Rolling { .. } | RolloutState::RollingBack { .. }
        )
    }
}

/// One replica of the deployment as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Replica<'a> {
    /// Where it is assigned.
    pub node: NodeId,
    /// Its current assignment.
    pub assignment: &'a Assignment,
    /// Its last report from that node at that generation, if any.
    pub report: Option<&'a InstanceReport>,
}

/// How a replica is doing on its current assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Running, and healthy if the recipe has a check.
    Ready,
    /// Not there yet.
    Waiting,
    /// Failed, crashed or unhealthy.
    Broken(String),
}

/// Judges a replica from its report.
pub fn readiness(r: &Replica<'_>, health_checked: bool) -> Readiness {
    let Some(report) = r.report else {
        return Readiness::Waiting;
    };
    match (report.state, report.health) {
        (InstanceState::Failed, _) => Readiness::Broken("failed".into()),
        (InstanceState::Restarting, _) => Readiness::Broken("crashed".into()),
        (InstanceState::Running, Health::Unhealthy) => {
            Readiness::Broken("failed its health check".into())
        }
        (InstanceState::Running, Health::Healthy) => Readiness::Ready,
        (InstanceState::Running, Health::Unknown) if !health_checked => Readiness::Ready,
        _ => Readiness::Waiting,
    }
}

/// What one call to [`advance`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The rollout's new state.
    pub rollout: Rollout,
    /// A replica to update in place: put this assignment (recipe changed) on this node.
    pub update: Option<(NodeId, Assignment)>,
}

/// Moves a rollout on by at most one step. `health_checked` says whether the recipe that a
/// replica runs has a health check (a replica without one is ready once running).
pub fn advance(
    rollout: &Rollout,
    replicas: &[Replica<'_>],
    health_checked: impl Fn(&RecipeRef) -> bool,
    now_ms: u64,
) -> Advance {
    let mut next = rollout.clone();
    let step = match &rollout.state {
        RolloutState::Rolling { step } | RolloutState::RollingBack { step, .. } => step.clone(),
        RolloutState::Complete | RolloutState::RolledBack { .. } => {
            return Advance {
                rollout: next,
                update: None,
            };
        }
    };
    let judge = |r: &Replica<'_>| readiness(r, health_checked(&r.assignment.recipe));
    if let Some(step) = step {
        let current = replicas
            .iter()
            .find(|r| r.assignment.instance == step.instance);
        let verdict = match current {
            // Removed (scaled down or undeployed) while updating: nothing to wait for.
            None => Readiness::Ready,
            Some(r) if r.assignment.recipe != *rollout.target() => Readiness::Ready,
            Some(r) => match judge(r) {
                Readiness::Waiting
                    if now_ms.saturating_sub(step.started_ms) > rollout.deadline_ms =>
                {
                    Readiness::Broken(format!("not ready within {} s", rollout.deadline_ms / 1000))
                }
                v => v,
            },
        };
        match (verdict, &rollout.state) {
            (Readiness::Waiting, _) => {
                return Advance {
                    rollout: next,
                    update: None,
                };
            }
            (Readiness::Broken(why), RolloutState::Rolling { .. }) => {
                let node = current.map(|r| r.node.to_string()).unwrap_or_default();
                let reason = format!(
                    "{} {} on {} ({node}) {why}",
                    rollout.to.name, rollout.to.version, step.instance
                );
                next.state = RolloutState::RollingBack { reason, step: None };
            }
            // Going back is best effort: a replica that fails on the old recipe too is left
            // to the scheduler's healing, and the rollback moves on.
            (_, RolloutState::Rolling { .. }) => next.state = RolloutState::Rolling { step: None },
            (_, RolloutState::RollingBack { reason, .. }) => {
                next.state = RolloutState::RollingBack {
                    reason: reason.clone(),
                    step: None,
                }
            }
            _ => {}
        }
    }
    let target = next.target().clone();
    let behind: Vec<&Replica<'_>> = replicas
        .iter()
        .filter(|r| r.assignment.recipe != target)
        .collect();
    let Some(pick) = behind
        .iter()
        .find(|r| judge(r) != Readiness::Ready)
        .or_else(|| behind.first())
    else {
        next.state = match &next.state {
            RolloutState::RollingBack { reason, .. } => RolloutState::RolledBack {
                reason: reason.clone(),
            },
            _ => RolloutState::Complete,
        };
        return Advance {
            rollout: next,
            update: None,
        };
    };
    let pick_ready = judge(pick) == Readiness::Ready;
    let others_down = replicas
        .iter()
        .filter(|r| r.assignment.instance != pick.assignment.instance)
        .any(|r| judge(r) != Readiness::Ready);
    if pick_ready && others_down {
        // Updating a ready replica now would make two down at once.
        return Advance {
            rollout: next,
            update: None,
        };
    }
    let mut spec = pick.assignment.clone();
    spec.recipe = target;
    let step = Some(Step {
        instance: spec.instance.clone(),
        started_ms: now_ms,
    });
    next.updated = next.updated.saturating_add(1);
    next.state = match &next.state {
        RolloutState::RollingBack { reason, .. } => RolloutState::RollingBack {
            reason: reason.clone(),
            step,
        },
        _ => RolloutState::Rolling { step },
    };
    Advance {
        rollout: next,
        update: Some((pick.node, spec)),
    }
}

#[cfg(test)]
mod tests;
