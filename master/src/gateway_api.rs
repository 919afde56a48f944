//! Operator API for the cooperative's gateways: `POST /v1/gateways` (register, idempotent by
//! name), `GET /v1/gateways`, `DELETE /v1/gateways/{name}`. A registration names the gateway's
//! key (which nodes pin and which signs its routing-table requests, `routes.rs`) and the tunnel
//! address nodes dial; adding or removing one re-pushes the desired state of every node holding
//! a routed replica.
//!
//! Also the gateways' soft state: when each last read the routing table (kept in memory,
//! flushed with liveness), and the cap on routing-table long polls waiting at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use hearth_api::{GatewaySpec, GatewayView, RouteTable};

use crate::api::{ApiError, HttpError, blocking};
use crate::clock::now_ms;
use crate::context::Context;
use crate::json_body::JsonBody;
use crate::store::{GatewayRecord, PutGateway};
use crate::workload_api::push_desired;

/// The change counters (the store's, the fleet's epoch) a routing table was read at.
pub(crate) type TableKey = (u64, u64);

/// Routing-table requests allowed to wait for a change at once.
pub const MAX_WAITERS: usize = 256;

/// What the master keeps of its gateways in memory.
#[derive(Debug)]
pub struct GatewayState {
    /// Last routing-table read per gateway name not yet persisted, Unix ms.
    seen: Mutex<BTreeMap<String, u64>>,
    /// Last read per gateway name since the master started (what listings show).
    last: Mutex<BTreeMap<String, u64>>,
    /// Permits of the long polls waiting now.
    pub(crate) waiters: tokio::sync::Semaphore,
    /// The routing table last computed, under the (store, fleet) change counters it was read at.
    table: Mutex<Option<(TableKey, Arc<RouteTable>)>>,
    /// Held by a deployment write that claims routes, from its check to its write.
    pub(crate) claims: tokio::sync::Mutex<()>,
}

impl Default for GatewayState {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            last: Mutex::default(),
            waiters: tokio::sync::Semaphore::new(MAX_WAITERS),
            table: Mutex::default(),
            claims: tokio::sync::Mutex::new(()),
        }
    }
}

impl GatewayState {
    /// Notes that gateway `name` read the table at `at_ms` (memory only; see [`Self::take_seen`]).
    pub fn seen(&self, name: &str, at_ms: u64) {
        for map in [&self.seen, &self.last] {
            map.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_owned(), at_ms);
        }
    }

    /// The reads to persist since the last call.
    pub fn take_seen(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .collect()
    }

    /// The table kept under `key`, if that is the one kept.
    pub(crate) fn table(&self, key: TableKey) -> Option<Arc<RouteTable>> {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, t)| t.clone())
    }

    /// Keeps `table`, read at `key`.
    pub(crate) fn keep_table(&self, key: TableKey, table: Arc<RouteTable>) {
        *self.table.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, table));
    }

    fn last_seen(&self, name: &str) -> Option<u64> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
    }
}

fn view(ctx: &Context, g: GatewayRecord) -> GatewayView {
    let last_seen_ms = g.last_seen_ms.max(ctx.gateways.last_seen(g.name.as_str()));
    GatewayView {
        spec: GatewaySpec {
            name: g.name,
            key: g.key,
            tunnel_addr: g.tunnel_addr,
            overlay_addr: g.overlay_addr,
        },
        created_ms: g.created_ms,
        last_seen_ms,
    }
}

/// `POST /v1/gateways`: 201 when registered, 200 when the same registration exists, 409
/// `gateway_exists` when the name or key is registered with something else.
pub async fn add_gateway(
    State(ctx): State<Arc<Context>>,
    JsonBody(spec): JsonBody<GatewaySpec>,
) -> Result<(StatusCode, Json<GatewayView>), HttpError> {
    let record = GatewayRecord {
        name: spec.name.clone(),
        key: spec.key,
        tunnel_addr: spec.tunnel_addr,
        overlay_addr: spec.overlay_addr,
        created_ms: now_ms(),
        last_seen_ms: None,
    };
    let store = ctx.store.clone();
    let asked = record.clone();
    match blocking(move || store.put_gateway(&asked)).await? {
        PutGateway::Created(nodes) => {
            tracing::info!(gateway = %record.name, key = %record.key, addr = %record.tunnel_addr, "gateway registered");
            ledger_gateway(&ctx, record.key, &record.name.to_string(), true).await;
            push_desired(&ctx, nodes).await?;
            crate::overlay::refresh(&ctx).await;
            Ok((StatusCode::CREATED, Json(view(&ctx, record))))
        }
        PutGateway::Unchanged(old) => Ok((StatusCode::OK, Json(view(&ctx, old)))),
        PutGateway::Conflict(old) => Err(ApiError::GatewayExists(if old.name == spec.name {
            format!(
                "gateway {} is registered with key {} at {}; remove it first to change it",
                old.name, old.key, old.tunnel_addr
            )
        } else {
            format!("key {} is registered as gateway {}", old.key, old.name)
        })
        .into()),
    }
}

/// `GET /v1/gateways`, by name.
pub async fn list_gateways(
    State(ctx): State<Arc<Context>>,
) -> Result<Json<Vec<GatewayView>>, HttpError> {
    let store = ctx.store.clone();
    let gateways = blocking(move || store.gateways()).await?;
    Ok(Json(gateways.into_iter().map(|g| view(&ctx, g)).collect()))
}

/// `DELETE /v1/gateways/{name}`: 404 `unknown_gateway` if none.
pub async fn remove_gateway(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let store = ctx.store.clone();
    let registered = blocking(move || store.gateways()).await?;
    let signer = registered
        .iter()
        .find(|g| g.name.to_string() == name)
        .map(|g| g.key);
    let store = ctx.store.clone();
    let key = name.clone();
    let Some(nodes) = blocking(move || store.remove_gateway(&key)).await? else {
        return Err(ApiError::UnknownGateway(format!("no gateway {name} is registered")).into());
    };
    tracing::info!(gateway = %name, "gateway removed");
    if let Some(signer) = signer {
        ledger_gateway(&ctx, signer, &name, false).await;
    }
    push_desired(&ctx, nodes).await?;
    crate::overlay::refresh(&ctx).await;
    Ok(Json(serde_json::json!({ "removed": name })))
}

/// Records a gateway (de)registration in the ledger: receipts are credited only for gateways
/// registered at the receipt's window end. A failure is logged; the next start reconciles.
async fn ledger_gateway(
    ctx: &Context,
    key: hearth_protocol::SignerId,
    name: &str,
    registered: bool,
) {
    if let Err(e) = crate::ledger::tasks::record_gateway(&ctx.ledger, key, name, registered).await {
        tracing::error!(gateway = %name, error = %e, "could not append the gateway's ledger entry");
    }
}
