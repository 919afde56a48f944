//! `hearth-static`: a small static website server, the catalogue's first service (built in this
//! workspace because no upstream binary can be fetched here). Serves the files under `--root`,
//! answers `GET /healthz`, and writes a placeholder `index.html` into an empty root.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;

/// Static website server.
#[derive(Debug, Parser)]
#[command(name = "hearth-static", version)]
struct Args {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Directory of files to serve.
    #[arg(long)]
    root: PathBuf,
    /// Title of the placeholder page written into an empty root.
    #[arg(long, default_value = "A Hearth site")]
    title: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.root)?;
    let index = args.root.join("index.html");
    if !index.exists() {
        let title = args.title.replace('<', "&lt;");
        std::fs::write(
            &index,
            format!("<!doctype html><title>{title}</title><h1>{title}</h1>\n"),
        )?;
    }
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(serve)
        .with_state(args.root.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.bind, args.port)).await?;
    eprintln!(
        "hearth-static serving {} on {}",
        args.root.display(),
        listener.local_addr()?
    );
    let shutdown = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn serve(State(root): State<PathBuf>, uri: Uri) -> Response {
    let Some(path) = safe_join(&root, uri.path()) else {
        return (StatusCode::BAD_REQUEST, "bad path\n").into_response();
    };
    let path = if path.is_dir() {
        path.join("index.html")
    } else {
        path
    };
    match tokio::fs::read(&path).await {
        Ok(body) => ([(header::CONTENT_TYPE, content_type(&path))], body).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Joins a URL path under `root`, refusing `..` and absolute components.
fn safe_join(root: &Path, url_path: &str) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in Path::new(url_path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}
