//! `Assignment.peers` (SPEC §16.5): for a deployment whose recipe has `[peers]`, each
//! assignment names the deployment's other replicas (instance and node), so their nodes can
//! link them over the overlay.
//!
//! Filled when a desired state is read ([`desired_state`]), from the stored assignments, like
//! `exposed`; the scheduler's core never sees it. When replicas of such a deployment are
//! placed, moved or removed, [`bump_siblings`] gives every other replica's node a new revision,
//! so it gets a new desired state with the new peers.

use std::collections::BTreeSet;

use hearth_protocol::NodeId;
use hearth_protocol::messages::overlay::ReplicaPeer;
use hearth_protocol::messages::state::{Assignment, DesiredState, Name};

use crate::context::Context;
use crate::scheduler::has_peers;
use crate::store::StoreError;

/// `node`'s whole desired state, peers and backups filled (`crate::backups::fill`). Blocking
/// (store and recipe reads).
pub fn desired_state(ctx: &Context, node: &NodeId) -> Result<DesiredState, StoreError> {
    let mut ds = ctx.store.desired_state(node)?;
    fill(ctx, &mut ds.instances)?;
    crate::backups::fill(ctx, node, &mut ds)?;
    // Several masters share the store: the node learns every one it may reconnect to.
    if ctx.store.shared() {
        ds.masters = ctx
            .cluster
            .addresses()
            .into_iter()
            .map(Into::into)
            .collect();
    }
    Ok(ds)
}

/// Sends each connected node of `nodes` its new whole desired state (one that is not connected
/// reads it at its next `hello`); a node whose state cannot be read now gets it at the next push.
pub async fn push(ctx: &std::sync::Arc<Context>, nodes: impl IntoIterator<Item = NodeId>) {
    for node in nodes {
        if !ctx.fleet.has_session(&node) {
            continue;
        }
        let shared = ctx.clone();
        if let Ok(Ok(ds)) = tokio::task::spawn_blocking(move || desired_state(&shared, &node)).await
        {
            ctx.fleet
                .push(&node, hearth_protocol::Message::DesiredState(ds));
        }
    }
}

/// Fills `peers` of each assignment whose recipe has `[peers]`: the other replicas of its
/// deployment, by instance.
pub fn fill(ctx: &Context, instances: &mut [Assignment]) -> Result<(), StoreError> {
    if !instances.iter().any(|a| has_peers(ctx, &a.recipe)) {
        return Ok(());
    }
    let all = ctx.store.assignments()?;
    for a in instances.iter_mut().filter(|a| has_peers(ctx, &a.recipe)) {
        let mut peers: Vec<ReplicaPeer> = all
            .iter()
            .filter(|(_, b)| b.deployment == a.deployment && b.instance != a.instance)
            .map(|(node, b)| ReplicaPeer {
                instance: b.instance.clone(),
                node: *node,
            })
            .collect();
        peers.sort();
        a.peers = peers;
    }
    Ok(())
}

/// The deployments of `instances` among the stored assignments (read before they are removed).
pub fn deployments_of(
    ctx: &Context,
    instances: &BTreeSet<hearth_protocol::messages::state::InstanceId>,
) -> Result<BTreeSet<Name>, StoreError> {
    Ok(ctx
        .store
        .assignments()?
        .iter()
        .filter(|(_, a)| instances.contains(&a.instance))
        .map(|(_, a)| a.deployment.clone())
        .collect())
}

/// After replicas of `deployments` changed: bumps the revision of every node that holds a
/// `[peers]` replica of one of them and is not in `touched` (whose revisions the write bumped
/// already); returns `touched` with them, the nodes to send a new desired state. Blocking.
pub fn bump_siblings(
    ctx: &Context,
    deployments: &BTreeSet<Name>,
    mut touched: BTreeSet<NodeId>,
) -> Result<BTreeSet<NodeId>, StoreError> {
    if deployments.is_empty() {
        return Ok(touched);
    }
    let siblings: BTreeSet<NodeId> = ctx
        .store
        .assignments()?
        .iter()
        .filter(|(node, a)| {
            deployments.contains(&a.deployment)
                && !touched.contains(node)
                && has_peers(ctx, &a.recipe)
        })
        .map(|(node, _)| *node)
        .collect();
    let list: Vec<NodeId> = siblings.iter().copied().collect();
    ctx.store.bump_revisions(&list)?;
    touched.extend(siblings);
    Ok(touched)
}
