//! Operator API for deployments: create or update (idempotent by name), list, show, remove.
//! What a deployment looks like in answers is `deploy_view`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use hearth_protocol::{CountryCode, Message, NodeId, Sha256};
use serde_json::{Value, json};

use crate::api::{ApiError, HttpError, bad_request, blocking};
use crate::context::Context;
use crate::deploy_view::{EVENTS_SHOWN, forecast, view};
use crate::json_body::JsonBody;
use crate::rollout::{DEFAULT_DEADLINE_MS, Rollout};
use crate::scheduler::{DeploymentSpec, recipe_info, recipe_params};
use crate::store::{AdminState, NodeRecord, Store, StoreError, StoredDeployment, exposed_ports};
use crate::{ingress_check, request_check};

pub use hearth_api::{MAX_DEPLOYMENT_NAME, UpdateRequest};

/// A deployment's version: the SHA-256 of its stored spec (the scheduler's rollout progress does
/// not change it). `GET` answers it as `version` and `ETag`; `If-Match` on a write makes the write
/// compare-and-set against it.
pub fn version(d: &StoredDeployment) -> String {
    Sha256::digest(&serde_json::to_vec(&d.spec).unwrap_or_default()).to_string()
}

/// The version an `If-Match` header asks for: `None` without the header, `*` for any.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| bad_request("If-Match must be a version (ASCII)"))?;
    Ok(Some(
        v.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned(),
    ))
}

/// Checks `If-Match` against the deployment as read.
fn check_version(
    name: &str,
    expected: Option<&str>,
    old: Option<&StoredDeployment>,
) -> Result<(), HttpError> {
    match (expected, old) {
        (None, _) | (Some("*"), Some(_)) => Ok(()),
        (Some(v), Some(d)) if version(d) == v => Ok(()),
        (Some(v), Some(d)) => Err(ApiError::VersionMismatch(format!(
            "deployment {name} is at version {}, not {v}: it changed since it was read; read it again and retry",
            version(d)
        ))
        .into()),
        (Some(v), None) => Err(ApiError::VersionMismatch(format!(
            "no deployment {name} (If-Match asked for version {v})"
        ))
        .into()),
    }
}

/// `json` with the deployment's version as `ETag`.
fn tagged(json: Value, d: &StoredDeployment) -> Response {
    let mut resp = Json(json).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", version(d))) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// `POST /v1/deployments`: creates or replaces a deployment; the scheduler places it. With
/// `If-Match`, only if the deployment is still at that version (else 412 `version_mismatch`).
pub async fn put_deployment(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<DeploymentSpec>,
) -> Result<Response, HttpError> {
    let expected = if_match(&headers)?;
    if let Some(bad) = spec
        .spread
        .iter()
        .find(|s| !matches!(s.as_str(), "home" | "isp" | "country"))
    {
        return Err(bad_request(format!(
            "unknown spread `{bad}`: use home, isp or country"
        )));
    }
    if spec.name.as_str().len() > MAX_DEPLOYMENT_NAME {
        return Err(bad_request(format!(
            "deployment names are at most {MAX_DEPLOYMENT_NAME} characters (instance ids add a suffix)"
        )));
    }
    if spec.replicas > 1000 {
        return Err(bad_request("at most 1000 replicas"));
    }
    let info =
        recipe_info(&ctx, &spec.recipe).map_err(|e| ApiError::RecipeMissing(e.to_string()))?;
    let declared = recipe_params(&ctx, &spec.recipe).ok();
    request_check::params(declared.as_ref(), &spec.params)
        .map_err(|e| bad_request(e.to_string()))?;
    request_check::labels(&spec.labels).map_err(|e| bad_request(e.to_string()))?;
    let homes = backup_homes(&ctx, &spec.recipe).await?;
    check_backup_homes(&spec, homes.as_ref())?;
    let asked = spec.clone();
    let routes_info = info.clone();
    let store = ctx.store.clone();
    // Writes claiming routes go one at a time, so two deployments cannot both take a host
    // between one's check and its write (nothing else adds routes).
    let _claim = if spec.hosts.is_empty() && spec.tcp.is_empty() {
        None
    } else {
        Some(ctx.gateways.claims.lock().await)
    };
    let stored = write(
        &ctx,
        spec.name.to_string(),
        expected,
        move |_| {
            // Read at each attempt: a host taken meanwhile by another deployment is seen.
            ingress_check::check(&spec, &routes_info, &store.deployments()?)?;
            Ok(spec.clone())
        },
        None,
    )
    .await?;
    // What the fleet cannot give now: said at once, while the request is stored all the same.
    let store = ctx.store.clone();
    let (records, assignments) =
        blocking(move || Ok((store.nodes()?, store.assignments()?))).await?;
    let warnings = forecast(&ctx, &asked, info, &records, &assignments);
    let mut answer = stored.spec.clone();
    if let Some(obj) = answer.as_object_mut() {
        obj.insert("warnings".into(), json!(warnings));
    }
    Ok(tagged(answer, &stored))
}

/// `POST /v1/deployments/{name}/update`: rolls the deployment onto another recipe, one replica
/// at a time, rolling back if the new one fails (see `rollout`).
pub async fn update_deployment(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<UpdateRequest>,
) -> Result<Response, HttpError> {
    let expected = if_match(&headers)?;
    let deadline_ms = match req.deadline_s {
        None => DEFAULT_DEADLINE_MS,
        Some(s @ 1..=86_400) => s * 1000,
        Some(_) => return Err(bad_request("deadline_s must be between 1 and 86400")),
    };
    let info =
        recipe_info(&ctx, &req.recipe).map_err(|e| ApiError::RecipeMissing(e.to_string()))?;
    let declared = recipe_params(&ctx, &req.recipe).ok();
    let homes = backup_homes(&ctx, &req.recipe).await?;
    let recipe = req.recipe;
    let missing = name.clone();
    let stored = write(
        &ctx,
        name,
        expected,
        move |old| {
            let mut spec = old.ok_or_else(|| unknown(&missing))?.clone();
            // The new recipe must take the parameters the deployment gives.
            request_check::params(declared.as_ref(), &spec.params)
                .map_err(|e| bad_request(e.to_string()))?;
            spec.recipe = recipe.clone();
            check_backup_homes(&spec, homes.as_ref())?;
            // The routes stay; the new recipe must have the ports they go to.
            ingress_check::ports_declared(&spec, &info)?;
            Ok(spec)
        },
        Some(deadline_ms),
    )
    .await?;
    let store = ctx.store.clone();
    let (assignments, nodes) =
        blocking(move || Ok((store.assignments()?, nodes_by_id(&*store)?))).await?;
    let answer = versioned(
        view(&ctx, stored.clone(), &assignments, &nodes, Vec::new()),
        &stored,
    );
    Ok(tagged(answer, &stored))
}

/// For a recipe that backs up: the countries with an enrolled node (neither revoked nor
/// retired), where copies could be kept. `None` for a recipe that does not back up.
async fn backup_homes(
    ctx: &Arc<Context>,
    recipe: &hearth_protocol::messages::state::RecipeRef,
) -> Result<Option<BTreeSet<CountryCode>>, HttpError> {
    if crate::scheduler::backup_policy(ctx, recipe).is_none() {
        return Ok(None);
    }
    let store = ctx.store.clone();
    let records = blocking(move || store.nodes()).await?;
    Ok(Some(
        records
            .iter()
            .filter(|r| !matches!(r.admin, AdminState::Revoked | AdminState::Retired))
            .map(|r| r.facts.country)
            .collect(),
    ))
}

/// Refuses (409 `no_backup_homes`) a deployment that backs up but whose allowed countries hold
/// no enrolled node: its copies could only be kept outside them, which is never done.
fn check_backup_homes(
    spec: &DeploymentSpec,
    homes: Option<&BTreeSet<CountryCode>>,
) -> Result<(), HttpError> {
    let Some(homes) = homes else { return Ok(()) };
    if spec.countries.is_empty() || spec.countries.iter().any(|c| homes.contains(c)) {
        return Ok(());
    }
    let names: Vec<String> = spec.countries.iter().map(ToString::to_string).collect();
    Err(ApiError::NoBackupHomes(format!(
        "deployment {} backs up its data, but no node is enrolled in {}: its backup copies could only be kept outside its allowed countries, which Hearth never does; enrol a node there or allow another country",
        spec.name,
        names.join(", ")
    ))
    .into())
}

/// A deployment view with its `version`.
fn versioned(mut view: Value, d: &StoredDeployment) -> Value {
    if let Some(obj) = view.as_object_mut() {
        obj.insert("version".into(), version(d).into());
    }
    view
}

/// Read-modify-write of one deployment. A changed recipe starts a rollout from the old one
/// (`deadline_ms`, or the default); the write is compare-and-set so that a concurrent scheduler
/// step is never undone nor undoes this.
async fn write(
    ctx: &Arc<Context>,
    name: String,
    expected: Option<String>,
    change: impl Fn(Option<&DeploymentSpec>) -> Result<DeploymentSpec, HttpError> + Send + 'static,
    deadline_ms: Option<u64>,
) -> Result<StoredDeployment, HttpError> {
    let store = ctx.store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            let old = store.deployment(&name)?;
            check_version(&name, expected.as_deref(), old.as_ref())?;
            let old_spec: Option<DeploymentSpec> = old
                .as_ref()
                .and_then(|d| serde_json::from_value(d.spec.clone()).ok());
            let spec = change(old_spec.as_ref())?;
            let previous: Option<Rollout> = old
                .as_ref()
                .and_then(|d| d.rollout.clone())
                .and_then(|r| serde_json::from_value(r).ok());
            let rollout = match (&old_spec, previous) {
                (Some(o), _) if o.recipe != spec.recipe => Some(Rollout::new(
                    o.recipe.clone(),
                    spec.recipe.clone(),
                    deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS),
                )),
                (_, previous) => previous,
            };
            let new = StoredDeployment {
                name: name.clone(),
                version: old.as_ref().map_or(0, |o| o.version),
                spec: serde_json::to_value(&spec).map_err(|e| bad_request(e.to_string()))?,
                rollout: rollout
                    .map(|r| serde_json::to_value(&r))
                    .transpose()
                    .map_err(|e| bad_request(e.to_string()))?,
            };
            let done = match &old {
                Some(old) => store.replace_deployment(old, &new)?,
                None => {
                    store.put_deployment(&new)?;
                    true
                }
            };
            if done {
                let was = old
                    .as_ref()
                    .map_or_else(Vec::new, |o| exposed_ports(&o.spec));
                return Ok::<_, HttpError>((new.clone(), was != exposed_ports(&new.spec)));
            }
        }
        Err(ApiError::Busy("the deployment kept changing; try again".into()).into())
    })
    .await
    .map_err(|e| HttpError(ApiError::Internal(e.to_string())))??;
    let (stored, republish) = stored;
    ctx.scheduler.changed();
    if republish {
        // Its published ports changed: its nodes link to the gateways (or stop) and may open
        // (or refuse) other ports. The store bumped their revisions with the write.
        let store = ctx.store.clone();
        let assignments = blocking(move || store.assignments()).await?;
        let nodes: std::collections::BTreeSet<NodeId> = assignments
            .iter()
            .filter(|(_, a)| a.deployment.as_str() == stored.name)
            .map(|(n, _)| *n)
            .collect();
        crate::workload_api::push_desired(ctx, nodes).await?;
    }
    tracing::info!(deployment = %stored.name, "deployment requested");
    Ok(stored)
}

fn unknown(name: &str) -> HttpError {
    ApiError::UnknownDeployment(format!("no deployment {name}")).into()
}

/// `GET /v1/deployments`.
pub async fn list_deployments(State(ctx): State<Arc<Context>>) -> Result<Json<Value>, HttpError> {
    let store = ctx.store.clone();
    let (deployments, assignments, nodes) = blocking(move || {
        Ok((
            store.deployments()?,
            store.assignments()?,
            nodes_by_id(&*store)?,
        ))
    })
    .await?;
    let out: Vec<Value> = deployments
        .iter()
        .map(|d| versioned(view(&ctx, d.clone(), &assignments, &nodes, Vec::new()), d))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `GET /v1/deployments/{name}`, with its version as `ETag`.
pub async fn show_deployment(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let store = ctx.store.clone();
    let key = name.clone();
    let (deployment, assignments, nodes, events) = blocking(move || {
        Ok((
            store.deployment(&key)?,
            store.assignments()?,
            nodes_by_id(&*store)?,
            store.deployment_events(&key, EVENTS_SHOWN)?,
        ))
    })
    .await?;
    deployment
        .map(|d| {
            let answer = versioned(view(&ctx, d.clone(), &assignments, &nodes, events), &d);
            tagged(answer, &d)
        })
        .ok_or_else(|| unknown(&name))
}

/// `DELETE /v1/deployments/{name}`: removes it and its instances.
pub async fn remove_deployment(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let store = ctx.store.clone();
    let key = name.clone();
    let touched = blocking(move || {
        // Its backup holders stop keeping its copies (the removal bumps their revisions).
        let holders = store.backup(&key)?.holders;
        if !store.remove_deployment(&key)? {
            return Ok(None);
        }
        let mut touched: Vec<Option<NodeId>> = holders.into_iter().map(Some).collect();
        for (_, a) in store
            .assignments()?
            .iter()
            .filter(|(_, a)| a.deployment.as_str() == key)
        {
            touched.push(store.remove_assignment(&a.instance)?);
        }
        Ok(Some(touched))
    })
    .await?;
    let Some(touched) = touched else {
        return Err(ApiError::UnknownDeployment(format!("no deployment {name}")).into());
    };
    // Its replicas free resources other deployments may be waiting for.
    ctx.scheduler.changed();
    for node in touched.into_iter().flatten() {
        let shared = ctx.clone();
        let ds = blocking(move || crate::overlay::peers::desired_state(&shared, &node)).await?;
        ctx.fleet.push(&node, Message::DesiredState(ds));
    }
    Ok(Json(json!({ "removed": name })))
}

fn nodes_by_id(store: &dyn Store) -> Result<HashMap<NodeId, NodeRecord>, StoreError> {
    Ok(store.nodes()?.into_iter().map(|r| (r.id, r)).collect())
}
