//! `POST /v1/nodes/{id}/probe`: probes a node now (see [`crate::audit`]) and reports the outcome.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::api::{ApiError, HttpError, parse_node};
use crate::audit::{Outcome, ProbeError};
use crate::context::Context;

/// Answers `{"node", "outcome": "passed", "rtt_ms"}` or `{"node", "outcome": "failed",
/// "reason"}` once the node answered or the 10 s deadline passed; 404 for an unknown node.
pub async fn probe_node(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let node = parse_node(&id)?;
    if ctx.fleet.live(&node).is_none() {
        return Err(ApiError::UnknownNode(format!("no node {node} is enrolled")).into());
    }
    let outcome = ctx
        .probes
        .probe(&ctx.fleet, node)
        .await
        .map_err(|e @ ProbeError::Busy| ApiError::ProbesBusy(e.to_string()))?;
    let label = match &outcome {
        Outcome::Passed { .. } => "passed",
        Outcome::Failed { reason } => {
            tracing::info!(%node, reason, "audit probe failed");
            "failed"
        }
    };
    ctx.metrics.probe(label);
    let mut body = serde_json::to_value(&outcome).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("node".into(), json!(node));
    }
    Ok(Json(body))
}
