//! The ledger's HTTP routes (SPEC.md §15.5, design of issue 16 §4). Public, without the admin
//! token (the ledger is the cooperative's public record): the latest checkpoint (text), every
//! checkpoint since a size, entry lines (NDJSON, as stored), inclusion and consistency proofs,
//! co-signatures from registered witnesses (self-authenticating), the registry's list and a
//! node's month of entries with proofs. Behind the admin token (`api.rs` mounts them): witness
//! registration and removal, and `GET /v1/credits`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hearth_api::{
    ApiError, CheckpointView, ConsistencyProofView, CreditsView, InclusionProofView,
    MAX_ENTRIES_PER_READ, NodeLedger, NodeLedgerEntry, WitnessSpec,
};
use hearth_ledger::proof::encode_path;
use hearth_ledger::{Body, Entry, Month};

use crate::api::{HttpError, bad_request, parse_node};
use crate::clock::now_ms;
use crate::context::Context;
use crate::json_body::JsonBody;
use crate::ledger::{Ledger, LedgerError, Witness};

/// The public routes.
pub fn public() -> Router<Arc<Context>> {
    Router::new()
        .route("/v1/ledger/checkpoint", get(checkpoint))
        .route("/v1/ledger/checkpoints", get(checkpoints))
        .route("/v1/ledger/entries", get(entries))
        .route("/v1/ledger/proof/inclusion", get(inclusion))
        .route("/v1/ledger/proof/consistency", get(consistency))
        .route("/v1/ledger/cosignatures", post(cosign))
        .route("/v1/ledger/nodes/{id}", get(node_entries))
}

impl From<LedgerError> for HttpError {
    fn from(e: LedgerError) -> Self {
        let m = e.to_string();
        Self(match e {
            LedgerError::Beyond(_) => ApiError::BeyondLog(m),
            LedgerError::Range(_) | LedgerError::Witness(_) | LedgerError::TooLong { .. } => {
                ApiError::BadRequest(m)
            }
            LedgerError::UnknownWitness(_) => ApiError::UnknownWitness(m),
            LedgerError::BadCosignature(_) => ApiError::BadCosignature(m),
            LedgerError::NoSuchCheckpoint(_) => ApiError::UnknownCheckpoint(m),
            LedgerError::WitnessExists(_) => ApiError::WitnessExists(m),
            LedgerError::UnknownWitnessName(_) => ApiError::NotFound(m),
            LedgerError::Write(_) | LedgerError::Closed | LedgerError::Io { .. } => {
                tracing::error!(error = %m, "ledger unavailable");
                ApiError::LedgerUnavailable(m)
            }
            LedgerError::Damaged { .. } => ApiError::Internal(m),
        })
    }
}

type Params = Query<HashMap<String, String>>;

/// A non-negative integer query parameter; `default` when absent (`None`: required).
fn param(q: &HashMap<String, String>, name: &str, default: Option<u64>) -> Result<u64, HttpError> {
    match (q.get(name), default) {
        (Some(v), _) => v.parse().map_err(|_| {
            bad_request(format!(
                "`{name}` must be a non-negative integer, not `{v}`"
            ))
        }),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(bad_request(format!("the `{name}` parameter is required"))),
    }
}

fn month_param(q: &HashMap<String, String>) -> Result<Option<Month>, HttpError> {
    q.get("month")
        .map(|m| m.parse::<Month>().map_err(|e| bad_request(e.to_string())))
        .transpose()
}

fn text(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.into()).into_response()
}

fn no_checkpoint() -> HttpError {
    ApiError::UnknownCheckpoint("the master has signed no checkpoint yet".into()).into()
}

async fn checkpoint(State(ctx): State<Arc<Context>>) -> Result<Response, HttpError> {
    let cp = ctx.ledger.checkpoint().ok_or_else(no_checkpoint)?;
    Ok(text("text/plain; charset=utf-8", cp.note))
}

async fn checkpoints(
    State(ctx): State<Arc<Context>>,
    Query(q): Params,
) -> Result<Json<Vec<CheckpointView>>, HttpError> {
    let since = param(&q, "since", Some(0))?;
    Ok(Json(
        ctx.ledger
            .checkpoints_since(since)
            .into_iter()
            .map(|c| CheckpointView {
                size: c.size,
                note: c.note,
            })
            .collect(),
    ))
}

async fn entries(State(ctx): State<Arc<Context>>, Query(q): Params) -> Result<Response, HttpError> {
    let start = param(&q, "start", Some(0))?;
    let limit = param(&q, "limit", Some(MAX_ENTRIES_PER_READ))?;
    if limit == 0 || limit > MAX_ENTRIES_PER_READ {
        return Err(bad_request(format!(
            "`limit` must be between 1 and {MAX_ENTRIES_PER_READ}, not {limit}"
        )));
    }
    let ledger = ctx.ledger.clone();
    let body = tokio::task::spawn_blocking(move || ledger.entries(start, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(text("application/x-ndjson", body))
}

async fn inclusion(
    State(ctx): State<Arc<Context>>,
    Query(q): Params,
) -> Result<Json<InclusionProofView>, HttpError> {
    let seq = param(&q, "seq", None)?;
    let size = param(&q, "size", None)?;
    let p = ctx.ledger.inclusion(seq, size)?;
    Ok(Json(InclusionProofView {
        seq: p.seq,
        size: p.size,
        leaf_hash: p.leaf_hash.to_string(),
        path: encode_path(&p.path),
    }))
}

async fn consistency(
    State(ctx): State<Arc<Context>>,
    Query(q): Params,
) -> Result<Json<ConsistencyProofView>, HttpError> {
    let from = param(&q, "from", None)?;
    let to = param(&q, "to", None)?;
    let p = ctx.ledger.consistency(from, to)?;
    Ok(Json(ConsistencyProofView {
        from: p.from,
        to: p.to,
        path: encode_path(&p.path),
    }))
}

async fn cosign(State(ctx): State<Arc<Context>>, body: String) -> Result<Response, HttpError> {
    let mut body = body;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let ledger = ctx.ledger.clone();
    let note = body.clone();
    let stored = tokio::task::spawn_blocking(move || ledger.add_cosignature(&note))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let status = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, "co-signature stored\n").into_response())
}

/// `GET /v1/ledger/witnesses` (public).
pub async fn list_witnesses(State(ctx): State<Arc<Context>>) -> Json<Vec<WitnessSpec>> {
    Json(
        ctx.ledger
            .witnesses()
            .into_iter()
            .map(|w| WitnessSpec {
                name: w.name,
                vkey: w.vkey,
            })
            .collect(),
    )
}

/// `POST /v1/ledger/witnesses` (admin): 201 registered, 200 already so.
pub async fn add_witness(
    State(ctx): State<Arc<Context>>,
    JsonBody(spec): JsonBody<WitnessSpec>,
) -> Result<(StatusCode, Json<WitnessSpec>), HttpError> {
    let ledger = ctx.ledger.clone();
    let w = Witness {
        name: spec.name.clone(),
        vkey: spec.vkey.trim().to_owned(),
    };
    let added = tokio::task::spawn_blocking(move || ledger.add_witness(w))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    if added {
        tracing::info!(witness = %spec.name, "ledger witness registered");
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(spec)))
}

/// `DELETE /v1/ledger/witnesses/{name}` (admin).
pub async fn remove_witness(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let ledger = ctx.ledger.clone();
    let w = tokio::task::spawn_blocking(move || ledger.remove_witness(&name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::info!(witness = %w.name, "ledger witness removed");
    Ok(Json(serde_json::json!({ "removed": w.name })))
}

/// Whether an entry about the node belongs to its month view.
fn in_month(entry: &Entry, month: Month) -> bool {
    let (start, end) = (month.start_ms(), month.end_ms());
    match &entry.body {
        Body::Node(_) => entry.at_ms < end,
        Body::Score(s) => (start..end).contains(&s.window_start_ms),
        Body::Receipt(r) => (start..end).contains(&r.receipt.window_end_ms),
        Body::Statement(s) => s.month == month,
        Body::Probe(_) | Body::Policy(_) | Body::Gateway(_) => false,
    }
}

/// The node's entries of the month at the latest checkpoint, with their proofs.
fn node_view(
    ledger: &Ledger,
    node: &hearth_protocol::NodeId,
    month: Month,
) -> Result<NodeLedger, HttpError> {
    let cp = ledger.checkpoint().ok_or_else(no_checkpoint)?;
    let mut out = Vec::new();
    let mut start = 0;
    while start < cp.size {
        let chunk = ledger.entries(start, MAX_ENTRIES_PER_READ.min(cp.size - start))?;
        for (i, line) in chunk
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let seq = start + i as u64;
            let entry = Entry::parse(line).map_err(|e| {
                ApiError::Internal(format!("entry {seq} of the ledger does not parse: {e}"))
            })?;
            if entry.body.node() == Some(node) && in_month(&entry, month) {
                let proof = ledger.inclusion(seq, cp.size)?;
                out.push(NodeLedgerEntry {
                    seq,
                    line: String::from_utf8_lossy(line).into_owned(),
                    path: encode_path(&proof.path),
                });
            }
        }
        start += MAX_ENTRIES_PER_READ;
    }
    Ok(NodeLedger {
        checkpoint: cp.note,
        size: cp.size,
        entries: out,
    })
}

async fn node_entries(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Json<NodeLedger>, HttpError> {
    let node = parse_node(&id)?;
    let month = month_param(&q)?.unwrap_or_else(|| Month::of(now_ms()));
    let ledger = ctx.ledger.clone();
    let view = tokio::task::spawn_blocking(move || node_view(&ledger, &node, month))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(view))
}

/// `GET /v1/credits?month=YYYY-MM[&node=ID]` (admin).
pub async fn credits(
    State(ctx): State<Arc<Context>>,
    axum::Extension(who): axum::Extension<crate::access::Principal>,
    Query(q): Params,
) -> Result<Json<CreditsView>, HttpError> {
    let month = month_param(&q)?
        .ok_or_else(|| bad_request("the `month` parameter (YYYY-MM) is required"))?;
    let node = q.get("node").map(|n| parse_node(n)).transpose()?;
    let now = now_ms();
    let size = ctx.ledger.size();
    let (stated, statements) = {
        let books = ctx.ledger.books();
        (books.is_stated(month), books.statements(month))
    };
    let statements = statements
        .into_iter()
        .filter(|s| node.is_none_or(|n| s.node == n) && who.sees(&s.node))
        .map(|s| serde_json::to_value(s).map_err(|e| ApiError::Internal(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(CreditsView {
        month: month.to_string(),
        provisional: !stated,
        at_ms: now,
        size,
        statements,
    }))
}
