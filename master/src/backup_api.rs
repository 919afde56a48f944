//! Operator API for backups (issue 18): a deployment's snapshots (`GET …/backups`), a snapshot
//! now (`POST …/backups`), a restore (`POST …/restore`) and where its data lives
//! (`GET …/where`: every replica and every backup copy, with home, ISP and country).
//!
//! A request raises a number in the store and bumps the revisions of the replicas' nodes in
//! the same transaction; the nodes see it in their next desired state (`backups::fill`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hearth_api::{
    BackupRequested, BackupsView, CopyPlace, NodePlace, ReplicaPlace, RestoreRequested,
    RestoreSpec, SnapshotView, WhereView,
};
use hearth_protocol::NodeId;

use crate::api::{ApiError, HttpError, blocking};
use crate::backups::replica_nodes;
use crate::clock::now_ms;
use crate::context::Context;
use crate::json_body::JsonBody;
use crate::scheduler::{BackupPolicy, DeploymentSpec, backup_policy};
use crate::store::{BackupAsk, NodeRecord};

/// The deployment's spec, or 404 `unknown_deployment`.
async fn spec(ctx: &Arc<Context>, name: &str) -> Result<DeploymentSpec, HttpError> {
    let store = ctx.store.clone();
    let key = name.to_owned();
    let stored = blocking(move || store.deployment(&key)).await?;
    stored
        .and_then(|d| serde_json::from_value::<DeploymentSpec>(d.spec).ok())
        .ok_or_else(|| ApiError::UnknownDeployment(format!("no deployment {name}")).into())
}

/// The deployment's spec and backup policy: 404 `unknown_deployment`, 409 `no_backups`.
async fn backed_up(
    ctx: &Arc<Context>,
    name: &str,
) -> Result<(DeploymentSpec, BackupPolicy), HttpError> {
    let spec = spec(ctx, name).await?;
    let policy = backup_policy(ctx, &spec.recipe).ok_or_else(|| {
        ApiError::NoBackups(format!(
            "deployment {name} runs {}@{}, whose recipe does not back up its data ([data] backup)",
            spec.recipe.name, spec.recipe.version
        ))
    })?;
    Ok((spec, policy))
}

fn place(nodes: &HashMap<NodeId, NodeRecord>, node: &NodeId) -> Option<NodePlace> {
    nodes.get(node).map(|r| NodePlace {
        node: *node,
        home: r.facts.home.to_string(),
        isp: r.facts.isp.clone(),
        country: r.facts.country,
    })
}

fn nodes_by_id(records: Vec<NodeRecord>) -> HashMap<NodeId, NodeRecord> {
    records.into_iter().map(|r| (r.id, r)).collect()
}

/// `GET /v1/deployments/{name}/backups`: the stored snapshots, newest first.
pub async fn list_backups(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<BackupsView>, HttpError> {
    let (spec, policy) = backed_up(&ctx, &name).await?;
    let store = ctx.store.clone();
    let key = name.clone();
    let (record, snapshots, nodes) = blocking(move || {
        Ok((
            store.backup(&key)?,
            store.snapshots(&key)?,
            nodes_by_id(store.nodes()?),
        ))
    })
    .await?;
    Ok(Json(BackupsView {
        deployment: spec.name.to_string(),
        every_s: policy.every_s,
        keep: policy.keep,
        copies: policy.copies,
        holders: record
            .holders
            .iter()
            .filter_map(|n| place(&nodes, n))
            .collect(),
        snapshots: snapshots
            .into_iter()
            .map(|s| SnapshotView {
                id: s.snapshot,
                taken_ms: s.taken_ms,
                instance: s.instance,
                node: s.node,
                bytes: s.bytes,
                stored_bytes: s.stored_bytes,
                sent_bytes: s.sent_bytes,
                held_by: s.held_by.iter().filter_map(|n| place(&nodes, n)).collect(),
            })
            .collect(),
    }))
}

/// The nodes of the deployment's replicas now.
async fn replicas(ctx: &Arc<Context>, name: &str) -> Result<Vec<NodeId>, HttpError> {
    let store = ctx.store.clone();
    let assignments = blocking(move || store.assignments()).await?;
    Ok(replica_nodes(&assignments, name))
}

/// `POST /v1/deployments/{name}/backups`: a snapshot now, on every replica.
pub async fn backup_now(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<BackupRequested>), HttpError> {
    let (spec, _) = backed_up(&ctx, &name).await?;
    let nodes = replicas(&ctx, &name).await?;
    let store = ctx.store.clone();
    let (key, bump) = (name.clone(), nodes.clone());
    let seq = blocking(move || store.ask_backup(&key, &BackupAsk::Now, &bump)).await?;
    let Some(now) = seq else {
        return Err(ApiError::UnknownDeployment(format!("no deployment {name}")).into());
    };
    crate::overlay::peers::push(&ctx, nodes).await;
    tracing::info!(deployment = %name, now, "snapshot asked for");
    Ok((
        StatusCode::ACCEPTED,
        Json(BackupRequested {
            deployment: spec.name.to_string(),
            now,
        }),
    ))
}

/// `POST /v1/deployments/{name}/restore`: every replica restores the snapshot (default: the
/// newest one a home holds).
pub async fn restore(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RestoreSpec>,
) -> Result<(StatusCode, Json<RestoreRequested>), HttpError> {
    let (spec, _) = backed_up(&ctx, &name).await?;
    let store = ctx.store.clone();
    let key = name.clone();
    let snapshots = blocking(move || store.snapshots(&key)).await?;
    let chosen = match body.snapshot {
        Some(id) => snapshots.iter().find(|s| s.snapshot == id).ok_or_else(|| {
            ApiError::UnknownSnapshot(format!(
                "deployment {name} has no stored snapshot {id} (`hearth backup list {name}` lists them)"
            ))
        })?,
        None => snapshots
            .iter()
            .find(|s| !s.held_by.is_empty())
            .ok_or_else(|| {
                ApiError::UnknownSnapshot(format!(
                    "no snapshot of deployment {name} is held by any home yet"
                ))
            })?,
    };
    let snapshot = chosen.snapshot;
    let nodes = replicas(&ctx, &name).await?;
    let store = ctx.store.clone();
    let (key, bump) = (name.clone(), nodes.clone());
    let seq = blocking(move || {
        store.ask_backup(
            &key,
            &BackupAsk::Restore(snapshot, crate::clock::now_ms()),
            &bump,
        )
    })
    .await?;
    let Some(seq) = seq else {
        return Err(ApiError::UnknownDeployment(format!("no deployment {name}")).into());
    };
    crate::overlay::peers::push(&ctx, nodes).await;
    tracing::info!(deployment = %name, %snapshot, seq, "restore asked for");
    Ok((
        StatusCode::ACCEPTED,
        Json(RestoreRequested {
            deployment: spec.name.to_string(),
            snapshot,
            seq,
        }),
    ))
}

/// `GET /v1/deployments/{name}/where`: every replica and every backup copy, where it lives.
pub async fn where_is(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<WhereView>, HttpError> {
    let spec = spec(&ctx, &name).await?;
    let backs_up = backup_policy(&ctx, &spec.recipe).is_some();
    let store = ctx.store.clone();
    let key = name.clone();
    let (assignments, record, snapshots, nodes) = blocking(move || {
        Ok((
            store.assignments()?,
            store.backup(&key)?,
            store.snapshots(&key)?,
            nodes_by_id(store.nodes()?),
        ))
    })
    .await?;
    let now = now_ms();
    let replicas = assignments
        .iter()
        .filter(|(_, a)| a.deployment.as_str() == name)
        .filter_map(|(node, a)| {
            let p = place(&nodes, node)?;
            Some(ReplicaPlace {
                instance: a.instance.clone(),
                node: *node,
                home: p.home,
                isp: p.isp,
                country: p.country,
                state: crate::deploy_view::replica_state(&ctx, node, a, now),
            })
        })
        .collect();
    let copies = if backs_up { record.holders } else { Vec::new() }
        .iter()
        .filter_map(|holder| {
            let p = place(&nodes, holder)?;
            let held: Vec<_> = snapshots
                .iter()
                .filter(|s| s.held_by.contains(holder))
                .collect();
            Some(CopyPlace {
                node: *holder,
                home: p.home,
                isp: p.isp,
                country: p.country,
                snapshots: u64::try_from(held.len()).unwrap_or(u64::MAX),
                latest_snapshot: held.first().map(|s| s.snapshot),
                latest_ms: held.first().map(|s| s.taken_ms),
            })
        })
        .collect();
    Ok(Json(WhereView {
        deployment: spec.name.to_string(),
        replicas,
        copies,
        countries_allowed: spec.countries.iter().copied().collect(),
    }))
}
