//! Driver of rolling updates: feeds each deployment's replicas and their reports to
//! [`crate::rollout::advance`], stores what it decided (compare-and-set against the snapshot,
//! so an operator's request made meanwhile wins), and pushes the updated node's desired state.

use std::sync::Arc;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, InstanceReport};

use super::{DeploymentSpec, health_checked};
use crate::clock::now_ms;
use crate::context::Context;
use crate::rollout::{Replica, Rollout, RolloutState, advance};
use crate::store::{StoreError, StoredDeployment};

/// Moves every active rollout on by at most one step; true if any rollout is under way.
pub(super) async fn drive(
    ctx: &Arc<Context>,
    deployments: Vec<(DeploymentSpec, StoredDeployment)>,
    assignments: &[(NodeId, Assignment)],
) -> Result<bool, StoreError> {
    let now = now_ms();
    let mut under_way = false;
    for (mut spec, stored) in deployments {
        let Some(value) = &stored.rollout else {
            continue;
        };
        let rollout: Rollout = match serde_json::from_value(value.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(deployment = %spec.name, error = %e, "unreadable rollout record");
                continue;
            }
        };
        if !rollout.active() {
            continue;
        }
        under_way = true;
        let reports: Vec<(NodeId, &Assignment, Option<InstanceReport>)> = assignments
            .iter()
            .filter(|(_, a)| a.deployment == spec.name)
            .map(|(node, a)| {
                let report = ctx
                    .fleet
                    .instance_status(&a.instance)
                    .filter(|(n, s)| n == node && s.report.generation == a.generation)
                    .map(|(_, s)| s.report);
                (*node, a, report)
            })
            .collect();
        let replicas: Vec<Replica<'_>> = reports
            .iter()
            .map(|(node, assignment, report)| Replica {
                node: *node,
                assignment,
                report: report.as_ref(),
            })
            .collect();
        let adv = advance(&rollout, &replicas, |r| health_checked(ctx, r), now);
        if adv.rollout == rollout && adv.update.is_none() {
            continue;
        }
        log_transition(&spec, &rollout, &adv.rollout);
        spec.recipe = adv.rollout.target().clone();
        let new = StoredDeployment {
            name: stored.name.clone(),
            version: stored.version,
            spec: serde_json::to_value(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            rollout: Some(
                serde_json::to_value(&adv.rollout)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ),
        };
        let store = ctx.store.clone();
        let update = adv.update.clone();
        let touched = tokio::task::spawn_blocking(move || {
            if !store.replace_deployment(&stored, &new)? {
                return Ok::<_, StoreError>(None);
            }
            let touched = match update {
                Some((node, a)) => store.put_assignment(&node, &a)?.map(|(_, t)| t),
                None => None,
            };
            Ok(Some(touched.unwrap_or_default()))
        })
        .await
        .map_err(|e| StoreError::Corrupt(e.to_string()))??;
        let Some(touched) = touched else {
            tracing::info!(deployment = %spec.name, "deployment changed meanwhile; rollout step deferred");
            continue;
        };
        if let Some((node, a)) = &adv.update {
            tracing::info!(deployment = %spec.name, instance = %a.instance, %node,
                recipe = %format!("{}@{}", a.recipe.name, a.recipe.version), "rolling update step");
        }
        crate::overlay::peers::push(ctx, touched).await;
    }
    Ok(under_way)
}

fn log_transition(spec: &DeploymentSpec, before: &Rollout, after: &Rollout) {
    if std::mem::discriminant(&before.state) == std::mem::discriminant(&after.state) {
        return;
    }
    match &after.state {
        RolloutState::RollingBack { reason, .. } => {
            tracing::warn!(deployment = %spec.name, %reason, "rolling update failed; rolling back")
        }
        RolloutState::RolledBack { reason } => {
            tracing::warn!(deployment = %spec.name, %reason, "rolled back")
        }
        RolloutState::Complete => {
            tracing::info!(deployment = %spec.name, "rolling update complete")
        }
        RolloutState::Rolling { .. } => {}
    }
}
