//! Operator API for workloads: blobs (recipes, artifacts) and instances placed on nodes.
//!
//! Placement here is explicit (an operator names the node); the scheduler will call the same
//! store operations. Every change bumps the affected nodes' desired-state revision and pushes the
//! whole new desired state to their sessions.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hearth_protocol::messages::state::{Assignment, InstanceId};
use hearth_protocol::{Message, NodeId, Sha256};
use serde_json::{Value, json};

use crate::api::{ApiError, HttpError, bad_request, blocking};
use crate::context::Context;
use crate::json_body::JsonBody;

/// Largest blob accepted over the API.
pub const MAX_BLOB: usize = 512 * 1024 * 1024;

/// `PUT /v1/blobs/{sha256}`: stores content-addressed bytes.
pub async fn put_blob(
    State(ctx): State<Arc<Context>>,
    Path(sha): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let sha: Sha256 = sha
        .parse()
        .map_err(|e| bad_request(format!("`{sha}` is not a SHA-256: {e}")))?;
    let size = body.len();
    let shared = ctx.clone();
    let created = tokio::task::spawn_blocking(move || {
        let created = shared.blobs.put(&sha, &body).map_err(|e| match e {
            crate::blobs::BlobError::HashMismatch { .. } => ApiError::HashMismatch(e.to_string()),
            crate::blobs::BlobError::Io(_) => ApiError::InsufficientStorage(e.to_string()),
        })?;
        // Acknowledged only once every master can serve it.
        crate::shared_files::publish(
            &shared,
            crate::store::FileKind::Blob,
            &sha.to_string(),
            &body,
        )
        .map_err(|e| {
            ApiError::StoreUnavailable(format!(
                "the blob is kept here but not shared with the other masters: {e}"
            ))
        })?;
        Ok::<_, ApiError>(created)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if created {
        // A deployment whose recipe was missing may now be placeable.
        ctx.scheduler.changed();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "sha256": sha.to_string(), "size": size, "created": created })),
    ))
}

pub use hearth_api::PlaceInstance;

/// `POST /v1/instances`: places (or re-places, at a new generation) an instance on a node.
pub async fn place_instance(
    State(ctx): State<Arc<Context>>,
    JsonBody(p): JsonBody<PlaceInstance>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let shared = ctx.clone();
    let sha = p.recipe.sha256;
    let have = tokio::task::spawn_blocking(move || crate::shared_files::ensure_blob(&shared, &sha))
        .await
        .unwrap_or(false);
    if !have {
        return Err(ApiError::RecipeMissing(format!(
            "recipe blob {} is not uploaded; PUT it to /v1/blobs first",
            p.recipe.sha256
        ))
        .into());
    }
    // The recipe decides which parameters exist; one that cannot be read (the node will refuse
    // it) still gets what no recipe could take refused here.
    let declared = crate::scheduler::recipe_params(&ctx, &p.recipe).ok();
    crate::request_check::params(declared.as_ref(), &p.params)
        .map_err(|e| bad_request(e.to_string()))?;
    let spec = Assignment {
        backup: None,
        instance: p.instance,
        deployment: p.deployment,
        generation: 0,
        recipe: p.recipe,
        params: p.params,
        ports: p.ports,
        resources: p.resources,
        lease_ms: p.lease_ms,
        exposed: Vec::new(),
        peers: Vec::new(),
    };
    let (shared, node) = (ctx.clone(), p.node);
    let placed = blocking(move || {
        let Some((stored, changed)) = shared.store.put_assignment(&node, &spec)? else {
            return Ok(None);
        };
        let deployments = [stored.deployment.clone()].into();
        let changed = crate::overlay::peers::bump_siblings(
            &shared,
            &deployments,
            changed.into_iter().collect(),
        )?;
        Ok(Some((stored, changed)))
    })
    .await?;
    let Some((stored, changed)) = placed else {
        return Err(ApiError::UnknownNode(format!("no node {node} is enrolled")).into());
    };
    ctx.scheduler.changed();
    push_desired(&ctx, changed).await?;
    tracing::info!(instance = %stored.instance, %node, generation = stored.generation, "instance placed");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "node": node, "assignment": stored })),
    ))
}

/// `DELETE /v1/instances/{id}`.
pub async fn remove_instance(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let id: InstanceId = id.parse().map_err(|e| bad_request(format!("{e}")))?;
    let (shared, key) = (ctx.clone(), id.clone());
    let removed = blocking(move || {
        let deployments = crate::overlay::peers::deployments_of(&shared, &[key.clone()].into())?;
        let Some(node) = shared.store.remove_assignment(&key)? else {
            return Ok(None);
        };
        let changed = crate::overlay::peers::bump_siblings(&shared, &deployments, [node].into())?;
        Ok(Some((node, changed)))
    })
    .await?;
    match removed {
        Some((node, changed)) => {
            ctx.scheduler.changed();
            push_desired(&ctx, changed).await?;
            ctx.fleet.forget_instance(&id);
            Ok(Json(json!({ "removed": id, "node": node })))
        }
        None => Err(ApiError::UnknownInstance(format!("no instance {id}")).into()),
    }
}

/// `GET /v1/instances`: every placed instance with what its node last reported.
pub async fn list_instances(
    State(ctx): State<Arc<Context>>,
    axum::Extension(who): axum::Extension<crate::access::Principal>,
) -> Result<Json<Value>, HttpError> {
    let store = ctx.store.clone();
    let all = blocking(move || store.assignments()).await?;
    let out: Vec<Value> = all
        .iter()
        .filter(|(node, _)| who.sees(node))
        .map(|(node, a)| {
            let node = *node;
            let status = ctx.fleet.instance_status(&a.instance).filter(|(n, s)| *n == node && s.report.generation == a.generation);
            let (state, health, endpoints, published, message) = match status {
                Some((_, s)) => (json!(s.report.state), json!(s.report.health), json!(s.endpoints), json!(s.published), json!(s.message)),
                None => (json!("pending"), json!("unknown"), json!([]), json!({}), Value::Null),
            };
            json!({
                "instance": a.instance, "deployment": a.deployment, "node": node, "generation": a.generation,
                "recipe": a.recipe, "state": state, "health": health, "endpoints": endpoints,
                "published": published, "message": message,
            })
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// Sends each node its new whole desired state (if it is connected; otherwise at its next hello).
pub(crate) async fn push_desired(
    ctx: &Arc<Context>,
    nodes: impl IntoIterator<Item = NodeId>,
) -> Result<(), HttpError> {
    for node in nodes {
        if !ctx.fleet.has_session(&node) {
            continue; // it reads its desired state at its next hello
        }
        let shared = ctx.clone();
        let ds = blocking(move || crate::overlay::peers::desired_state(&shared, &node)).await?;
        ctx.fleet.push(&node, Message::DesiredState(ds));
    }
    Ok(())
}
