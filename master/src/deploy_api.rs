//! Operator API for deployments: create or update (idempotent by name), list, show, remove.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hearth_protocol::Message;
use serde_json::{Value, json};

use crate::api::{ApiError, bad_request, blocking, rejection};
use crate::context::Context;
use crate::scheduler::{DeploymentSpec, recipe_info};

/// `POST /v1/deployments`: creates or replaces a deployment; the scheduler places it.
pub async fn put_deployment(
    State(ctx): State<Arc<Context>>,
    body: Result<Json<DeploymentSpec>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(spec) = body.map_err(rejection)?;
    if let Some(bad) = spec
        .spread
        .iter()
        .find(|s| !matches!(s.as_str(), "home" | "isp" | "country"))
    {
        return Err(bad_request(format!(
            "unknown spread `{bad}`: use home, isp or country"
        )));
    }
    if spec.name.as_str().len() > 56 {
        return Err(bad_request(
            "deployment names are at most 56 characters (instance ids add a suffix)",
        ));
    }
    if spec.replicas > 1000 {
        return Err(bad_request("at most 1000 replicas"));
    }
    recipe_info(&ctx, &spec.recipe)
        .map_err(|e| ApiError(StatusCode::CONFLICT, "recipe_missing", e))?;
    let value = serde_json::to_value(&spec).map_err(|e| bad_request(e.to_string()))?;
    let (store, name, stored) = (ctx.store.clone(), spec.name.to_string(), value.clone());
    blocking(move || store.put_deployment(&name, &stored)).await?;
    ctx.scheduler.notify.notify_one();
    tracing::info!(deployment = %spec.name, replicas = spec.replicas, "deployment requested");
    Ok(Json(value))
}

/// `GET /v1/deployments`.
pub async fn list_deployments(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let (deployments, assignments) =
        blocking(move || Ok((store.deployments()?, store.assignments()?))).await?;
    let out: Vec<Value> = deployments
        .into_iter()
        .map(|(name, spec)| view(&ctx, &name, spec, &assignments))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `GET /v1/deployments/{name}`.
pub async fn show_deployment(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let (deployments, assignments) =
        blocking(move || Ok((store.deployments()?, store.assignments()?))).await?;
    deployments
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(n, spec)| Json(view(&ctx, &n, spec, &assignments)))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "unknown_deployment",
                format!("no deployment {name}"),
            )
        })
}

/// `DELETE /v1/deployments/{name}`: removes it and its instances.
pub async fn remove_deployment(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = ctx.store.clone();
    let key = name.clone();
    let touched = blocking(move || {
        if !store.remove_deployment(&key)? {
            return Ok(None);
        }
        let mut touched = Vec::new();
        for (_, a) in store
            .assignments()?
            .into_iter()
            .filter(|(_, a)| a.deployment.as_str() == key)
        {
            touched.push(store.remove_assignment(&a.instance)?);
        }
        Ok(Some(touched))
    })
    .await?;
    let Some(touched) = touched else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "unknown_deployment",
            format!("no deployment {name}"),
        ));
    };
    for node in touched.into_iter().flatten() {
        let store = ctx.store.clone();
        let ds = blocking(move || store.desired_state(&node)).await?;
        ctx.fleet.push(&node, Message::DesiredState(ds));
    }
    Ok(Json(json!({ "removed": name })))
}

fn view(
    ctx: &Context,
    name: &str,
    spec: Value,
    assignments: &[(
        hearth_protocol::NodeId,
        hearth_protocol::messages::state::Assignment,
    )],
) -> Value {
    let replicas: Vec<Value> = assignments
        .iter()
        .filter(|(_, a)| a.deployment.as_str() == name)
        .map(|(node, a)| {
            let status = ctx.fleet.instance_status(&a.instance).filter(|(n, s)| n == node && s.report.generation == a.generation);
            let (state, health, endpoints) = match status {
                Some((_, s)) => (json!(s.report.state), json!(s.report.health), json!(s.endpoints)),
                None => (json!("pending"), json!("unknown"), json!([])),
            };
            json!({ "instance": a.instance, "node": node, "generation": a.generation, "state": state, "health": health, "endpoints": endpoints })
        })
        .collect();
    json!({ "name": name, "spec": spec, "replicas": replicas, "notes": ctx.scheduler.notes(name) })
}
