//! The dashboard's two static files, compiled into the binary: the stylesheet and the one
//! script (ledger proof verification, the language menu's auto-submit). Nothing is loaded from
//! elsewhere, and there is no build step.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/hearth.css");
const JS: &str = include_str!("assets/hearth.js");

/// `GET /ui/assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "hearth.css" => ("text/css; charset=utf-8", CSS),
        "hearth.js" => ("text/javascript; charset=utf-8", JS),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
