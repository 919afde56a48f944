//! `GET /v1/gateway/routes`: the routing table a gateway reads, signed by the gateway's own key
//! (`Authorization: Hearth-Gateway <hk-id> <unix_ms> <signature>`, SPEC §14.6), not by the admin
//! token. The table lists every deployment with host or TCP routes, its replicas (serving by the
//! deployment view's rule) and the nodes that hold them; its `version` (SHA-256 of the content)
//! is also the `ETag`.
//!
//! Long poll: with `If-None-Match: "<version>"` and `wait_s` (at most 60) the request waits for
//! the table to change. It sleeps on two watches — the store's (assignments, deployments,
//! gateways written) and the fleet's (liveness, admin states, instance reports) — and recomputes
//! the table only when one fires, so no loop polls; at most [`MAX_WAITERS`] requests wait at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_api::{DeploymentRoutes, RouteReplica, RouteTable};
use hearth_protocol::messages::state::Assignment;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::{NodeId, Sha256, Signature, SignerId};

use crate::api::{ApiError, HttpError, bad_request, blocking};
use crate::clock::now_ms;
use crate::context::Context;
use crate::deploy_view::serving;
use crate::gateway_api::MAX_WAITERS;
use crate::scheduler::DeploymentSpec;
use crate::store::{GatewayRecord, StoredDeployment};

/// Longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How far a signed request's time may be from the master's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// The entity tag of an `If-None-Match` header, without quotes or a weak `W/` prefix.
pub(crate) fn if_none_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        })
}

/// `GET /v1/gateway/routes[?wait_s=N]`.
pub async fn routes(
    State(ctx): State<Arc<Context>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let gateway = authenticate(&ctx, &method, &uri, &headers).await?;
    let wait = wait_asked(uri.query())?;
    ctx.gateways.seen(gateway.name.as_str(), now_ms());
    let known = if_none_match(&headers);
    // Subscribed before the table is read: a change made after the read wakes the wait.
    let mut store_rx = ctx.store.changes();
    let mut fleet_rx = ctx.fleet.changes();
    store_rx.mark_unchanged();
    fleet_rx.mark_unchanged();
    let table = current(&ctx).await?;
    if known.as_deref() != Some(table.version.as_str()) {
        return Ok(answer(table));
    }
    if wait.is_zero() {
        return Ok(not_modified(&table.version));
    }
    let Ok(_permit) = ctx.gateways.waiters.try_acquire() else {
        return Err(ApiError::RoutesBusy(format!(
            "{MAX_WAITERS} routing-table requests are waiting already; retry shortly"
        ))
        .into());
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            r = store_rx.changed() => if r.is_err() { break },
            r = fleet_rx.changed() => if r.is_err() { break },
            () = tokio::time::sleep_until(deadline) => break,
        }
        let fresh = current(&ctx).await?;
        if fresh.version != table.version {
            return Ok(answer(fresh));
        }
    }
    Ok(not_modified(&table.version))
}

/// The table as it is now: computed once per change of the store or the fleet, however many
/// gateways wait (the key is read before the data, so a table kept under a key is never older
/// than that key).
async fn current(ctx: &Arc<Context>) -> Result<Arc<RouteTable>, HttpError> {
    let key = (*ctx.store.changes().borrow(), ctx.fleet.epoch());
    if let Some(kept) = ctx.gateways.table(key) {
        return Ok(kept);
    }
    let store = ctx.store.clone();
    let (deployments, assignments) =
        blocking(move || Ok((store.deployments()?, store.assignments()?))).await?;
    let fresh = Arc::new(table(ctx, &deployments, &assignments, now_ms()));
    ctx.gateways.keep_table(key, fresh.clone());
    Ok(fresh)
}

/// The routing table of these deployments and assignments.
pub fn table(
    ctx: &Context,
    deployments: &[StoredDeployment],
    assignments: &[(NodeId, Assignment)],
    now: u64,
) -> RouteTable {
    let mut out = Vec::new();
    let mut nodes = BTreeSet::new();
    // Stored specs skip empty routes: most deployments are passed over without parsing.
    let routed =
        |d: &&StoredDeployment| d.spec.get("hosts").is_some() || d.spec.get("tcp").is_some();
    let mut by_deployment: HashMap<&str, Vec<&(NodeId, Assignment)>> = deployments
        .iter()
        .filter(routed)
        .map(|d| (d.name.as_str(), Vec::new()))
        .collect();
    for entry in assignments {
        if let Some(list) = by_deployment.get_mut(entry.1.deployment.as_str()) {
            list.push(entry);
        }
    }
    for d in deployments.iter().filter(routed) {
        let Ok(spec) = serde_json::from_value::<DeploymentSpec>(d.spec.clone()) else {
            continue;
        };
        if spec.hosts.is_empty() && spec.tcp.is_empty() {
            continue;
        }
        let replicas: Vec<RouteReplica> = by_deployment
            .get(d.name.as_str())
            .into_iter()
            .flatten()
            .map(|(node, a)| {
                nodes.insert(*node);
                RouteReplica {
                    instance: a.instance.clone(),
                    node: *node,
                    generation: a.generation,
                    serving: serving(ctx, node, a, now),
                }
            })
            .collect();
        out.push(DeploymentRoutes {
            deployment: spec.name,
            hosts: spec.hosts,
            tcp: spec.tcp,
            replicas,
        });
    }
    let nodes: Vec<NodeId> = nodes.into_iter().collect();
    let content = serde_json::to_vec(&(&out, &nodes)).unwrap_or_default();
    RouteTable {
        version: Sha256::digest(&content).to_string(),
        deployments: out,
        nodes,
    }
}

fn answer(table: Arc<RouteTable>) -> Response {
    let tag = HeaderValue::from_str(&format!("\"{}\"", table.version)).ok();
    let mut resp = Json(&*table).into_response();
    if let Some(tag) = tag {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

pub(crate) fn not_modified(version: &str) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// `wait_s` from the query (absent: 0); over [`MAX_WAIT`] is capped, not refused.
pub(crate) fn wait_asked(query: Option<&str>) -> Result<Duration, HttpError> {
    let value = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "wait_s")
        .map(|(_, v)| v);
    match value {
        None => Ok(Duration::ZERO),
        Some(v) => v
            .parse::<u64>()
            .map(|s| Duration::from_secs(s).min(MAX_WAIT))
            .map_err(|_| bad_request(format!("wait_s must be a number of seconds, not `{v}`"))),
    }
}

fn unauthorized(why: impl Into<String>) -> HttpError {
    ApiError::Unauthorized(why.into()).into()
}

/// The registered gateway that signed this request, or 401 `unauthorized`.
pub(crate) async fn authenticate(
    ctx: &Arc<Context>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<GatewayRecord, HttpError> {
    let scheme = GatewayRequest::SCHEME;
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(scheme))
        .and_then(|v| v.strip_prefix(' '))
        .ok_or_else(|| {
            unauthorized(format!(
                "missing `Authorization: {scheme} <gateway id> <unix_ms> <signature>`: this route is for the cooperative's gateways"
            ))
        })?;
    let mut parts = value.split(' ');
    let (Some(id), Some(ms), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized(format!(
            "the {scheme} authorization is `<gateway id> <unix_ms> <signature>`"
        )));
    };
    let key: SignerId = id
        .parse()
        .map_err(|e| unauthorized(format!("`{id}` is not a gateway id: {e}")))?;
    let unix_ms: u64 = ms
        .parse()
        .map_err(|_| unauthorized("the signed time is not a number of milliseconds"))?;
    let signature: Signature = sig
        .parse()
        .map_err(|_| unauthorized("the signature is not 128 hex characters"))?;
    let now = now_ms();
    if now.abs_diff(unix_ms) > MAX_SKEW_MS {
        return Err(unauthorized(format!(
            "the request was signed at {unix_ms}, more than 5 minutes from the master's clock ({now}); check the gateway's clock"
        )));
    }
    let store = ctx.store.clone();
    let gateway = blocking(move || store.gateways())
        .await?
        .into_iter()
        .find(|g| g.key == key)
        .ok_or_else(|| {
            unauthorized(format!(
                "gateway {key} is not registered: `hearth gateway add NAME --key {key} --tunnel-addr HOST:PORT`"
            ))
        })?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let request = GatewayRequest {
        gateway: &key,
        unix_ms,
        method: method.as_str(),
        path,
    };
    request
        .verify(&signature)
        .map_err(|_| unauthorized("the signature does not verify for this request and key"))?;
    Ok(gateway)
}
