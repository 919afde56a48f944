//! The web dashboard, served by the master under `/ui`: server-rendered HTML (maud), one small
//! script, no build step. People sign in with their API credential ([`signin`]) and get a signed
//! session cookie ([`session`]); every page checks the same access rules as the API
//! ([`crate::access::check`]), and speaks English, French, Dutch or German ([`i18n`]).
//!
//! Every answer carries a Content-Security-Policy that allows only the master's own script and
//! stylesheet (no inline code), `nosniff`, no framing and no caching of pages; state-changing
//! forms carry a CSRF token derived from a per-browser cookie.

pub mod assets;
pub mod deployments;
pub mod fleet;
pub mod i18n;
pub mod ledger;
pub mod node;
pub mod page;
pub mod session;
pub mod signin;
pub mod statements;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

use crate::context::Context;

/// The policy of every dashboard answer.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes.
pub fn router() -> Router<Arc<Context>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/signin", get(signin::form).post(signin::submit))
        .route("/ui/signout", post(signin::signout))
        .route("/ui/language", post(signin::language))
        .route("/ui/fleet", get(fleet::page))
        .route("/ui/nodes/{id}", get(node::page))
        .route("/ui/nodes/{id}/{action}", post(node::action))
        .route("/ui/deployments", get(deployments::page))
        .route("/ui/ledger", get(ledger::page))
        .route("/ui/statements", get(statements::page))
        .route("/ui/statements.csv", get(statements::csv))
        .route("/ui/assets/{file}", get(assets::serve))
        .layer(middleware::map_response(headers))
}

async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (k, v) in set {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    r
}
