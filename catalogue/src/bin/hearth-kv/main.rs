//! `hearth-kv`: a small key-value / object store over HTTP, the catalogue's storage service (built
//! in this workspace because no upstream binary, such as an S3-compatible server, can be fetched
//! here). Objects live as files under `--data`; an acknowledged `PUT` or `DELETE` is on disk
//! (temporary file, fsync, rename, fsync of the directory), so it survives `kill -9` or a power cut.
//!
//! - `PUT /v1/objects/{key}`: stores the body (at most `--max-object-bytes`); 201 new, 200 replaced.
//! - `GET /v1/objects/{key}`, `DELETE /v1/objects/{key}` (204).
//! - `GET /v1/objects?prefix=P&after=K&limit=N`: keys in order, as JSON.
//! - `GET /healthz`.
//!
//! Writes need `Authorization: Bearer <token>` when a token is configured (`--token-file`, or the
//! `HEARTH_KV_TOKEN` variable through which a recipe passes its secret parameter).

#[path = "../common/mod.rs"]
mod common;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use common::{AuthFailure, Token};
use store::{Entry, Key, KeyError, MAX_KEY, Store, key_char};

/// Most keys in one listing.
const MAX_LIST: usize = 1000;

/// Key-value / object store.
#[derive(Debug, Parser)]
#[command(name = "hearth-kv", version)]
struct Args {
    /// Port to listen on (0: any free port; the address is printed on stdout).
    #[arg(long)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Persistent data directory (objects in `objects/`, uploads in progress in `tmp/`).
    #[arg(long)]
    data: PathBuf,
    /// Largest object accepted, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_object_bytes: u64,
    /// File holding the bearer token that guards writes (else `HEARTH_KV_TOKEN`; else no token).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = Token::load(args.token_file.as_deref(), "HEARTH_KV_TOKEN")?;
    let store = Arc::new(Store::open(&args.data, args.max_object_bytes, token)?);
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port)).await?;
    println!(
        "hearth-kv listening on {} (data {}, {} objects, writes {})",
        listener.local_addr()?,
        args.data.display(),
        store.len(),
        if store.token.is_some() {
            "need the token"
        } else {
            "open to all"
        },
    );
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/objects", get(list))
        .route(
            "/v1/objects/{*key}",
            get(get_object).put(put_object).delete(delete_object),
        )
        .fallback(|| async { ApiError::NoRoute })
        .with_state(store);
    axum::serve(listener, app)
        .with_graceful_shutdown(common::shutdown_signal())
        .await?;
    println!("hearth-kv stopped");
    Ok(())
}

/// Query of `GET /v1/objects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    prefix: String,
    /// Only keys after this one (the `next` of the previous page).
    after: Option<String>,
    /// At most this many keys (1–1000, default 1000).
    limit: Option<String>,
}

async fn list(State(store): State<Arc<Store>>, Query(q): Query<ListQuery>) -> Response {
    if q.prefix.chars().count() > MAX_KEY || !q.prefix.chars().all(key_char) {
        return ApiError::BadQuery("prefix: at most 200 characters of A-Z a-z 0-9 . _ - /".into())
            .into_response();
    }
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => MAX_LIST,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        Some(_) => {
            return ApiError::BadQuery("limit: a whole number from 1 to 1000".into())
                .into_response();
        }
    };
    let (objects, truncated) = store.list(&q.prefix, q.after.as_deref(), limit);
    let next = truncated
        .then(|| objects.last().map(|e| e.key.clone()))
        .flatten();
    axum::Json(serde_json::json!({ "objects": objects, "truncated": truncated, "next": next }))
        .into_response()
}

async fn get_object(
    State(store): State<Arc<Store>>,
    UrlPath(key): UrlPath<String>,
) -> Result<Response, ApiError> {
    let key = Key::parse(&key)?;
    let _permit = store
        .reads
        .acquire()
        .await
        .map_err(|_| ApiError::ShuttingDown)?;
    match tokio::fs::read(store.path(&key)).await {
        Ok(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(key.0)),
        Err(e) => Err(ApiError::Io(e)),
    }
}

async fn put_object(
    State(store): State<Arc<Store>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    common::authorize(store.token.as_ref(), &headers)?;
    let key = Key::parse(&key)?;
    if common::content_length(&headers).is_some_and(|n| n > store.max_bytes) {
        return Err(ApiError::TooLarge(store.max_bytes));
    }
    let tmp = common::temp_path(&store.tmp);
    let size = match receive(&tmp, body, store.max_bytes).await {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    let (s, t, k) = (store.clone(), tmp.clone(), key.clone());
    let committed = tokio::task::spawn_blocking(move || s.commit(&t, k, size)).await;
    let created = match committed {
        Ok(Ok(created)) => created,
        Ok(Err(e)) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ApiError::Io(e));
        }
        Err(e) => return Err(ApiError::Io(std::io::Error::other(e))),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(Entry { key: key.0, size })).into_response())
}

/// Streams the body into a new file at `tmp`, refusing it past `max` bytes, and syncs it.
async fn receive(tmp: &Path, mut body: Body, max: u64) -> Result<u64, ApiError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .await?;
    let mut size = 0u64;
    while let Some(data) = common::next_chunk(&mut body).await {
        let data = data.map_err(|e| ApiError::Body(e.to_string()))?;
        size = size.saturating_add(data.len() as u64);
        if size > max {
            return Err(ApiError::TooLarge(max));
        }
        file.write_all(&data).await?;
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(size)
}

async fn delete_object(
    State(store): State<Arc<Store>>,
    UrlPath(key): UrlPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    common::authorize(store.token.as_ref(), &headers)?;
    let key = Key::parse(&key)?;
    let k = key.clone();
    match tokio::task::spawn_blocking(move || store.remove(&k)).await {
        Ok(Ok(true)) => Ok(StatusCode::NO_CONTENT),
        Ok(Ok(false)) => Err(ApiError::NotFound(key.0)),
        Ok(Err(e)) => Err(ApiError::Io(e)),
        Err(e) => Err(ApiError::Io(std::io::Error::other(e))),
    }
}

/// Why a request failed; each becomes a status and a JSON `{"error": …}` body.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    BadKey(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("the body is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("writes need an `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("wrong token")]
    WrongToken,
    #[error("no object `{0}`")]
    NotFound(String),
    #[error("no such endpoint; see /v1/objects")]
    NoRoute,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Missing => Self::MissingToken,
            AuthFailure::Wrong => Self::WrongToken,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadKey(_) | Self::BadQuery(_) | Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::WrongToken => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Io(e) => {
                eprintln!("storage error: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        Self::BadKey(e.to_string())
    }
}
