//! `POST /v1/nodes/{id}/probe`: probes a node now (see [`crate::audit`]) and reports the outcome.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api::{ApiError, parse_node};
use crate::audit::{Outcome, ProbeError};
use crate::context::Context;

/// Answers `{"node", "outcome": "passed", "rtt_ms"}` or `{"node", "outcome": "failed",
/// "reason"}` once the node answered or the 10 s deadline passed; 404 for an unknown node.
pub async fn probe_node(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let node = parse_node(&id)?;
    if ctx.fleet.live(&node).is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "unknown_node",
            format!("no node {node} is enrolled"),
        ));
    }
    let outcome = ctx
        .probes
        .probe(&ctx.fleet, node)
        .await
        .map_err(|e @ ProbeError::Busy| {
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "probes_busy",
                e.to_string(),
            )
        })?;
    let label = match &outcome {
        Outcome::Passed { .. } => "passed",
        Outcome::Failed { reason } => {
            tracing::info!(%node, reason, "audit probe failed");
            "failed"
        }
    };
    ctx.metrics.probe(label);
    let mut body = serde_json::to_value(&outcome)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    if let Some(map) = body.as_object_mut() {
        map.insert("node".into(), json!(node));
    }
    Ok(Json(body))
}
