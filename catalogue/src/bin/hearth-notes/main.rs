//! `hearth-notes`: a small shared-notes / pastebin service of the kind a co-op (Nubo, Hostsharing)
//! offers its members, built in this workspace because no upstream binary (such as PrivateBin) can
//! be fetched here. Notes are UTF-8 text, stored one file each under `--data` with the same
//! discipline as `hearth-kv` (temporary file, fsync, rename, fsync of the directory), and may
//! expire.
//!
//! - `POST /v1/notes?ttl=SECONDS`: stores the body (at most `--max-note-bytes`), answers 201 with
//!   `{"id", "url", "expires"}`; a token, when configured, guards posting.
//! - `GET /v1/notes/{id}`: the text; `GET /v1/notes`: recent notes as JSON.
//! - `GET /`: an HTML page listing recent notes by title (their first line), with a small form.
//! - `GET /healthz`.
//!
//! Expired notes are answered as missing at once and their files removed every `--prune-secs`.

#[path = "../common/mod.rs"]
mod common;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use serde::Deserialize;

use common::{AuthFailure, Token};
use store::{NoteId, NotesError, Store};

/// Notes listed on the page and by `GET /v1/notes`.
const RECENT: usize = 50;

/// Shared notes / pastebin.
#[derive(Debug, Parser)]
#[command(name = "hearth-notes", version)]
struct Args {
    /// Port to listen on (0: any free port; the address is printed on stdout).
    #[arg(long)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Persistent data directory (notes in `notes/`, writes in progress in `tmp/`).
    #[arg(long)]
    data: PathBuf,
    /// Largest note accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_note_bytes: u64,
    /// Most notes kept; posting beyond answers 507 until some expire.
    #[arg(long, default_value_t = 10_000)]
    max_notes: usize,
    /// Lifetime of a note posted without `?ttl=`, in seconds (0: until removed by the operator).
    #[arg(long, default_value_t = 0)]
    default_ttl: u64,
    /// Longest `?ttl=` accepted, in seconds.
    #[arg(long, default_value_t = 365 * 24 * 3600)]
    max_ttl: u64,
    /// Seconds between removals of expired notes.
    #[arg(long, default_value_t = 60)]
    prune_secs: u64,
    /// Title of the page.
    #[arg(long, default_value = "Co-op notes")]
    title: String,
    /// File holding the bearer token that guards posting (else `HEARTH_NOTES_TOKEN`; else none).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// What the handlers share.
#[derive(Debug)]
struct App {
    store: Store,
    token: Option<Token>,
    max_note_bytes: u64,
    default_ttl: u64,
    max_ttl: u64,
    title: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = Token::load(args.token_file.as_deref(), "HEARTH_NOTES_TOKEN")?;
    let store = Store::open(&args.data, args.max_notes, common::unix_now())?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port)).await?;
    println!(
        "hearth-notes listening on {} (data {}, {} notes, posting {})",
        listener.local_addr()?,
        args.data.display(),
        store.len(),
        if token.is_some() {
            "needs the token"
        } else {
            "open to all"
        },
    );
    let app = Arc::new(App {
        store,
        token,
        max_note_bytes: args.max_note_bytes,
        default_ttl: args.default_ttl,
        max_ttl: args.max_ttl,
        title: args.title,
    });
    tokio::spawn(prune_loop(app.clone(), args.prune_secs.max(1)));
    let router = Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/notes", get(recent).post(post_note))
        .route("/v1/notes/{id}", get(get_note))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(common::shutdown_signal())
        .await?;
    println!("hearth-notes stopped");
    Ok(())
}

/// Removes expired notes every `every` seconds.
async fn prune_loop(app: Arc<App>, every: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(every));
    loop {
        tick.tick().await;
        let a = app.clone();
        match tokio::task::spawn_blocking(move || a.store.prune(common::unix_now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => println!("removed {n} expired notes"),
            Ok(Err(e)) => eprintln!("pruning expired notes: {e}"),
            Err(e) => eprintln!("pruning expired notes: {e}"),
        }
    }
}

/// Query of `POST /v1/notes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostQuery {
    /// Lifetime in seconds.
    ttl: Option<String>,
}

async fn post_note(
    State(app): State<Arc<App>>,
    Query(q): Query<PostQuery>,
    headers: HeaderMap,
    mut body: Body,
) -> Result<Response, ApiError> {
    common::authorize(app.token.as_ref(), &headers)?;
    let ttl = match q.ttl.as_deref().map(str::parse::<u64>) {
        None => app.default_ttl,
        Some(Ok(n)) if (1..=app.max_ttl).contains(&n) => n,
        Some(_) => return Err(ApiError::BadTtl(app.max_ttl)),
    };
    let max = app.max_note_bytes;
    if common::content_length(&headers).is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(max));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = common::next_chunk(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::Body(e.to_string()))?;
        if (bytes.len() as u64).saturating_add(chunk.len() as u64) > max {
            return Err(ApiError::TooLarge(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes).map_err(|_| ApiError::NotText)?;
    if text.trim().is_empty() {
        return Err(ApiError::Empty);
    }
    let now = common::unix_now();
    let expires = (ttl > 0).then(|| now.saturating_add(ttl));
    let a = app.clone();
    let id = tokio::task::spawn_blocking(move || a.store.add(text, now, expires))
        .await
        .map_err(|e| NotesError::Io(std::io::Error::other(e)))??;
    let url = format!("/v1/notes/{id}");
    let body = serde_json::json!({ "id": id.to_string(), "url": url, "expires": expires });
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, url)],
        axum::Json(body),
    )
        .into_response())
}

async fn get_note(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let id: NoteId = id.parse().map_err(|_| ApiError::BadId)?;
    let a = app.clone();
    let note = tokio::task::spawn_blocking(move || a.store.read(id, common::unix_now()))
        .await
        .map_err(|e| NotesError::Io(std::io::Error::other(e)))??;
    let Some(text) = note else {
        return Err(ApiError::NotFound);
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response())
}

async fn recent(State(app): State<Arc<App>>) -> Response {
    let notes = app.store.recent(common::unix_now(), RECENT);
    axum::Json(serde_json::json!({ "notes": notes })).into_response()
}

async fn page(State(app): State<Arc<App>>) -> Html<String> {
    let now = common::unix_now();
    let mut items = String::new();
    for n in app.store.recent(now, RECENT) {
        let expiry = n
            .expires
            .map(|e| format!(", expires {}", store::utc(e)))
            .unwrap_or_default();
        items.push_str(&format!(
            "<li><a href=\"/v1/notes/{}\">{}</a> <small>{}{expiry}</small></li>\n",
            n.id,
            escape(&n.title),
            store::utc(n.created),
        ));
    }
    if items.is_empty() {
        items.push_str("<li>No notes yet.</li>\n");
    }
    let title = escape(&app.title);
    Html(format!(
        r#"<!doctype html>
<meta charset="utf-8"><title>{title}</title>
<h1>{title}</h1>
<ul>
{items}</ul>
<form id="f"><textarea name="t" rows="8" cols="72" required></textarea><br>
<input name="k" type="password" placeholder="token (if the service has one)">
<button>Post</button></form>
<script>
document.getElementById("f").onsubmit = async (e) => {{
  e.preventDefault();
  const k = e.target.k.value, h = k ? {{Authorization: "Bearer " + k}} : {{}};
  const r = await fetch("/v1/notes", {{method: "POST", headers: h, body: e.target.t.value}});
  const j = await r.json();
  if (r.ok) location = j.url; else alert(j.error);
}};
</script>
"#
    ))
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Why a request failed; each becomes a status and a JSON `{"error": …}` body.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("ttl must be a whole number of seconds from 1 to {0}")]
    BadTtl(u64),
    #[error("the note is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("a note is UTF-8 text")]
    NotText,
    #[error("the note is empty")]
    Empty,
    #[error("a note id is 16 lowercase hex characters")]
    BadId,
    #[error("posting needs an `Authorization: Bearer <token>` header")]
    MissingToken,
    #[error("wrong token")]
    WrongToken,
    #[error("no such note (it may have expired)")]
    NotFound,
    #[error("no such endpoint; see / and /v1/notes")]
    NoRoute,
    #[error(transparent)]
    Store(#[from] NotesError),
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
            Self::BadTtl(_) | Self::Body(_) | Self::NotText | Self::Empty | Self::BadId => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MissingToken => StatusCode::UNAUTHORIZED,
            Self::WrongToken => StatusCode::FORBIDDEN,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::Store(NotesError::Full(_)) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Store(NotesError::Io(e)) => {
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
