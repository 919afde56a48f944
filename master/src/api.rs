//! The operator HTTP/JSON API (its types and errors are the `hearth-api` crate; documented in
//! `api/openapi.json`, generated from them).
//!
//! Every `/v1` route needs `Authorization: Bearer <credential>` (the admin token, or a person's
//! credential: `access.rs` says which role may call which route), except
//! `/v1/gateway/routes`, which a registered gateway signs with its key (`routes.rs`), and the
//! ledger's public routes (`ledger_api.rs`). Errors are
//! `{"error": {"code": "...", "message": "..."}}` with a fitting status.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use hearth_api::UserRole;

use crate::access::Principal;
use hearth_protocol::{EnrolToken, Hex, NodeId};

use crate::clock::now_ms;
use crate::context::Context;
use crate::fleet::display_state;
use crate::json_body::JsonBody;
use crate::store::{AdminChange, AdminState, NodeRecord, StoreError, TokenRecord};
use hearth_transport::close;

/// Token ids drawn before giving up when each is taken already.
const TOKEN_ID_ATTEMPTS: usize = 8;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

pub use hearth_api::{
    ApiError, CreateToken, CreatedToken, NodeView, RevokedToken, TokenStatus, TokenView,
};

/// An [`ApiError`] as an HTTP answer: the variant's status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.body())).into_response()
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self(ApiError::StoreUnavailable(format!(
            "the master could not access its database: {e}"
        )))
    }
}

pub(crate) fn rejection(e: JsonRejection) -> HttpError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(e.body_text()).into(),
        _ => bad_request(e.body_text()),
    }
}

pub(crate) fn bad_request(msg: impl Into<String>) -> HttpError {
    ApiError::BadRequest(msg.into()).into()
}

/// The router, with state.
pub fn router(ctx: Arc<Context>) -> Router {
    let v1 = Router::new()
        .route("/v1/whoami", get(crate::users_api::whoami))
        .route(
            "/v1/users",
            post(crate::users_api::add_user).get(crate::users_api::list_users),
        )
        .route("/v1/users/{name}", delete(crate::users_api::remove_user))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", get(show_node))
        .route("/v1/nodes/{id}/{action}", post(node_action))
        .route("/v1/nodes/{id}/probe", post(crate::audit_api::probe_node))
        .route(
            "/v1/blobs/{sha256}",
            axum::routing::put(crate::workload_api::put_blob)
                .layer(DefaultBodyLimit::max(crate::workload_api::MAX_BLOB)),
        )
        .route(
            "/v1/instances",
            post(crate::workload_api::place_instance).get(crate::workload_api::list_instances),
        )
        .route(
            "/v1/instances/{id}",
            delete(crate::workload_api::remove_instance),
        )
        .route(
            "/v1/deployments",
            post(crate::deploy_api::put_deployment).get(crate::deploy_api::list_deployments),
        )
        .route(
            "/v1/deployments/{name}",
            get(crate::deploy_api::show_deployment).delete(crate::deploy_api::remove_deployment),
        )
        .route("/v1/repository", get(crate::recipe_api::repository))
        .route(
            "/v1/repository/{file}",
            axum::routing::put(crate::recipe_api::put_metadata).layer(DefaultBodyLimit::max(
                usize::try_from(hearth_recipes::repo::MAX_METADATA).unwrap_or(MAX_BODY) + 1,
            )),
        )
        .route("/v1/recipes", get(crate::recipe_api::list_recipes))
        .route(
            "/v1/recipes/{name}/{version}",
            get(crate::recipe_api::show_recipe),
        )
        .route(
            "/v1/deployments/{name}/update",
            post(crate::deploy_api::update_deployment),
        )
        .route(
            "/v1/deployments/{name}/backups",
            get(crate::backup_api::list_backups).post(crate::backup_api::backup_now),
        )
        .route(
            "/v1/deployments/{name}/restore",
            post(crate::backup_api::restore),
        )
        .route(
            "/v1/deployments/{name}/where",
            get(crate::backup_api::where_is),
        )
        .route(
            "/v1/gateways",
            post(crate::gateway_api::add_gateway).get(crate::gateway_api::list_gateways),
        )
        .route(
            "/v1/gateways/{name}",
            delete(crate::gateway_api::remove_gateway),
        )
        .route("/v1/ledger/witnesses", post(crate::ledger_api::add_witness))
        .route(
            "/v1/ledger/witnesses/{name}",
            delete(crate::ledger_api::remove_witness),
        )
        .route("/v1/credits", get(crate::ledger_api::credits))
        .route_layer(middleware::from_fn_with_state(
            ctx.clone(),
            crate::access::auth,
        ));
    // The cooperative's public record: no token (`ledger_api.rs`).
    let ledger = crate::ledger_api::public().route(
        "/v1/ledger/witnesses",
        get(crate::ledger_api::list_witnesses),
    );
    // Signed by the gateway's key, not the admin token (`routes.rs`).
    let gateway = Router::new()
        .route("/v1/gateway/routes", get(crate::routes::routes))
        .route("/v1/gateway/members", get(crate::members_api::members));
    Router::new()
        .merge(v1)
        .merge(gateway)
        .merge(ledger)
        .merge(crate::ui::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { HttpError(ApiError::NotFound("no such endpoint".into())) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

async fn metrics(State(ctx): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.render(&ctx.fleet),
    )
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(HttpError::from)
}

async fn create_token(
    State(ctx): State<Arc<Context>>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), HttpError> {
    if body.label.len() > 200 {
        return Err(bad_request("label is longer than 200 bytes"));
    }
    if let Some(name) = body.volunteer.clone() {
        let store = ctx.store.clone();
        let users = blocking(move || store.users()).await?;
        if let Some(u) = users
            .iter()
            .find(|u| u.name == name && u.role != UserRole::Volunteer)
        {
            return Err(ApiError::UserExists(format!(
                "{} is an {}, not a volunteer; choose another name for the volunteer's account",
                u.name, u.role
            ))
            .into());
        }
    }
    let now = now_ms();
    let lifetime = body.expires_in_secs.map(Duration::from_secs);
    if lifetime.is_some_and(|d| d.is_zero() || d > Duration::from_secs(366 * 86_400)) {
        return Err(bad_request(
            "expires_in_secs must be between 1 second and 366 days",
        ));
    }
    let expires_at_ms = lifetime.map(|d| now + d.as_millis() as u64);
    // ht2 pins the newest published root; ht1 only while none is published.
    let repository = ctx.repository.clone();
    let internal = |e: String| HttpError::from(ApiError::Internal(e));
    let root = tokio::task::spawn_blocking(move || repository.current_root())
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(format!("reading the published root: {e}")))?;
    let mut token = None;
    for _ in 0..TOKEN_ID_ATTEMPTS {
        let candidate = EnrolToken {
            id: Hex(rand::random()),
            secret: Hex(rand::random()),
            master: ctx.id,
            root,
            // Several masters on one store: the token names them all (one master: none, and
            // the node is told the address by `--master`, as before).
            masters: if ctx.store.shared() {
                ctx.cluster.addresses()
            } else {
                Vec::new()
            },
        };
        let record = TokenRecord {
            id: candidate.id,
            secret_hash: EnrolToken::secret_hash(&candidate.secret.to_string()),
            label: body.label.clone(),
            created_at_ms: now,
            expires_at_ms,
            spent_at_ms: None,
            spent_by: None,
            revoked_at_ms: None,
            volunteer: body.volunteer.clone(),
        };
        let store = ctx.store.clone();
        if blocking(move || store.create_token(&record)).await? {
            token = Some(candidate);
            break;
        }
        tracing::debug!(id = %candidate.id, "token id already taken; drawing another");
    }
    let Some(token) = token else {
        return Err(ApiError::TokenIdsExhausted(format!(
            "{TOKEN_ID_ATTEMPTS} random token ids in a row were taken; revoke or prune old tokens"
        ))
        .into());
    };
    tracing::info!(id = %token.id, label = %body.label, "enrolment token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: token.id.to_string(),
            token: token.to_string(),
            label: body.label,
            expires_at_ms,
        }),
    ))
}

async fn list_tokens(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<TokenView>>, HttpError> {
    let store = ctx.store.clone();
    let tokens = blocking(move || store.tokens()).await?;
    let now = now_ms();
    let out = tokens
        .into_iter()
        .map(|t| TokenView {
            id: t.id,
            status: TokenStatus::from_name(t.status(now)).unwrap_or(TokenStatus::Active),
            label: t.label,
            created_at_ms: t.created_at_ms,
            expires_at_ms: t.expires_at_ms,
            spent_at_ms: t.spent_at_ms,
            spent_by: t.spent_by,
            revoked_at_ms: t.revoked_at_ms,
        })
        .collect();
    Ok(Json(out))
}

async fn revoke_token(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<RevokedToken>, HttpError> {
    let id: Hex<4> = id
        .parse()
        .map_err(|_| bad_request(format!("`{id}` is not a token id (8 hex characters)")))?;
    let store = ctx.store.clone();
    match blocking(move || store.revoke_token(&id, now_ms())).await? {
        Some(true) => Ok(Json(RevokedToken {
            revoked: id.to_string(),
        })),
        Some(false) => Err(ApiError::TokenSpent(format!(
            "token {id} was already used to enrol a node; revoke the node instead"
        ))
        .into()),
        None => Err(ApiError::UnknownToken(format!("no token {id}")).into()),
    }
}

pub(crate) fn view(ctx: &Context, r: &NodeRecord) -> NodeView {
    let live = ctx.fleet.live(&r.id);
    let (state, liveness, connected, last) = match &live {
        Some(l) => (
            display_state(l.admin, &l.liveness),
            l.liveness.name(),
            l.connected,
            l.liveness.last_heartbeat(),
        ),
        None => (r.admin.as_str(), "pending", false, r.last_seen_ms),
    };
    NodeView {
        id: r.id,
        state: state.to_owned(),
        admin: live.map_or(r.admin, |l| l.admin).to_string(),
        liveness: liveness.to_owned(),
        connected,
        last_heartbeat_ms: last,
        enrolled_at_ms: r.enrolled_at_ms,
        facts: r.facts.clone(),
        standing: crate::uptime::standing::score_of(ctx, &r.id)
            .as_ref()
            .map(crate::uptime::standing::api_view),
    }
}

pub(crate) fn parse_node(id: &str) -> Result<NodeId, HttpError> {
    id.parse()
        .map_err(|e| bad_request(format!("`{id}` is not a node id: {e}")))
}

async fn list_nodes(
    State(ctx): State<Arc<Context>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Vec<NodeView>>, HttpError> {
    let store = ctx.store.clone();
    let nodes = blocking(move || store.nodes()).await?;
    Ok(Json(
        nodes
            .iter()
            .filter(|r| who.sees(&r.id))
            .map(|r| view(&ctx, r))
            .collect(),
    ))
}

async fn load_node(ctx: &Arc<Context>, id: NodeId) -> Result<NodeRecord, HttpError> {
    let store = ctx.store.clone();
    blocking(move || store.node(&id))
        .await?
        .ok_or_else(|| ApiError::UnknownNode(format!("no node {id} is enrolled")).into())
}

async fn show_node(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, HttpError> {
    let record = load_node(&ctx, parse_node(&id)?).await?;
    Ok(Json(view(&ctx, &record)))
}

pub(crate) async fn node_action(
    State(ctx): State<Arc<Context>>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<NodeView>, HttpError> {
    let id = parse_node(&id)?;
    let target = match action.as_str() {
        "drain" => AdminState::Draining,
        "activate" => AdminState::Active,
        "reserve" => AdminState::Reserve,
        "test" => AdminState::Test,
        "retire" => AdminState::Retired,
        "revoke" => AdminState::Revoked,
        other => {
            return Err(ApiError::NotFound(format!(
                    "unknown node action `{other}`: use drain, activate, reserve, test, retire or revoke"
                ),
            ).into());
        }
    };
    let mut record = load_node(&ctx, id).await?;
    let current = ctx.fleet.live(&id).map_or(record.admin, |l| l.admin);
    let revoked = || {
        ApiError::NodeRevoked(format!(
            "node {id} is revoked; a revoked node must enrol again with a new key"
        ))
    };
    let store = ctx.store.clone();
    match blocking(move || store.set_admin(&id, target)).await? {
        AdminChange::Set => {}
        AdminChange::Revoked => return Err(revoked().into()),
        AdminChange::Unknown => {
            return Err(ApiError::UnknownNode(format!("no node {id} is enrolled")).into());
        }
    }
    record.admin = target;
    // The fleet keeps the same rule, so the order of two racing requests' fleet updates cannot
    // undo a revoke either.
    let (applied, conn) = ctx.fleet.set_admin(&id, target);
    if !applied {
        return Err(revoked().into());
    }
    if let Some(conn) = conn {
        let code = if target == AdminState::Revoked {
            close::REVOKED
        } else {
            close::NORMAL
        };
        conn.close(code, format!("node {}", target.as_str()).as_bytes());
    }
    tracing::info!(node = %id, from = %current, to = %target, "node state set by operator");
    crate::overlay::refresh(&ctx).await;
    if let Err(e) = crate::ledger::tasks::record_node(&ctx.ledger, &record).await {
        // The change stands; the next start appends the missing node entry.
        tracing::error!(node = %id, error = %e, "could not append the node's ledger entry");
    }
    Ok(Json(view(&ctx, &record)))
}
