//! Signing in and out, and the language menu. Sign-in takes the same credentials as the API
//! (a `hu1:` credential, a volunteer's enrolment token, the admin token), checks them with
//! [`crate::access::authenticate`], and answers a signed session cookie; attempts are limited
//! per client address and per credential id. Every form here carries this browser's CSRF token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_api::UserCredential;
use hearth_protocol::EnrolToken;
use maud::html;
use serde::Deserialize;

use super::i18n::Lang;
use super::page::{Chrome, LANG_COOKIE, Viewer, layout, set_cookie};
use super::session::{COOKIE, SESSION_MS, SessionClaim, nonce};
use crate::clock::now_ms;
use crate::context::Context;

/// Where a redirect after a form may go: a dashboard page, never elsewhere.
pub fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("/ui//") && !n.contains('\\'))
        .unwrap_or("/ui/fleet")
}

/// The sign-in page's query.
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `GET /ui/signin`.
pub async fn form(
    State(ctx): State<Arc<Context>>,
    chrome: Chrome,
    Query(q): Query<Next>,
) -> Response {
    page(
        &ctx,
        &chrome,
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        None,
    )
}

fn page(
    ctx: &Context,
    chrome: &Chrome,
    status: StatusCode,
    next: &str,
    problem: Option<&str>,
) -> Response {
    let t = |k| chrome.lang.t(k);
    let body = html! {
        h1 { (t("signin_title")) }
        p { (t("signin_intro")) }
        @if let Some(p) = problem { p.error role="alert" { (t(p)) } }
        form.signin method="post" action="/ui/signin" {
            input type="hidden" name="csrf" value=(chrome.csrf(ctx));
            input type="hidden" name="next" value=(next);
            label for="credential" { (t("signin_credential")) }
            input id="credential" name="credential" type="password" autocomplete="current-password" required;
            button type="submit" { (t("signin_button")) }
        }
    };
    chrome.page(status, layout(ctx, chrome, None, t("signin_title"), body))
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    csrf: String,
    credential: String,
    next: Option<String>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIn { .. }")
    }
}

/// The id a credential is limited by: its store id, never its secret.
fn attempt_name(credential: &str) -> String {
    let c = credential.trim();
    if let Ok(u) = c.parse::<UserCredential>() {
        u.store_id()
    } else if let Ok(t) = c.parse::<EnrolToken>() {
        format!("t{}", t.id)
    } else {
        "other".into()
    }
}

/// `POST /ui/signin`.
pub async fn submit(
    State(ctx): State<Arc<Context>>,
    chrome: Chrome,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    Form(f): Form<SignIn>,
) -> Response {
    let next = safe_next(f.next.as_deref()).to_owned();
    if !chrome.csrf_ok(&ctx, &f.csrf) {
        return page(
            &ctx,
            &chrome,
            StatusCode::FORBIDDEN,
            &next,
            Some("bad_form"),
        );
    }
    let now = now_ms();
    if !ctx.ui.attempt(
        peer.ok().map(|p| p.0.ip()),
        &attempt_name(&f.credential),
        now,
    ) {
        tracing::info!("dashboard sign-in refused: too many attempts");
        return page(
            &ctx,
            &chrome,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some("signin_slow_down"),
        );
    }
    let who = match crate::access::authenticate(&ctx, &f.credential).await {
        Ok(who) => who,
        Err(e) => {
            tracing::info!(error = %e.0, "dashboard sign-in refused");
            return page(
                &ctx,
                &chrome,
                StatusCode::UNAUTHORIZED,
                &next,
                Some("signin_wrong"),
            );
        }
    };
    let credential = if who.credential == "admin" {
        crate::access::admin_session_id(&ctx)
    } else {
        who.credential.clone()
    };
    let expires_ms = who
        .expires_at_ms
        .map_or(now + SESSION_MS, |at| at.min(now + SESSION_MS));
    let cookie = ctx.ui.issue(&SessionClaim {
        v: 1,
        user: who.name.clone(),
        credential,
        expires_ms,
        nonce: nonce(),
    });
    tracing::info!(user = %who.name, role = %who.role, "signed in to the dashboard");
    let mut out = Redirect::to(&next).into_response();
    let age = expires_ms.saturating_sub(now) / 1000;
    // A new CSRF seed for the session, so a seed planted before sign-in is worth nothing after.
    let seed = set_cookie(super::page::CSRF_COOKIE, &nonce(), 8 * 3600, chrome.secure);
    for c in [set_cookie(COOKIE, &cookie, age, chrome.secure), seed] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            out.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    out
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Token {
    /// The CSRF token.
    pub csrf: String,
}

/// `POST /ui/signout`: the session cookie is cleared.
pub async fn signout(
    State(ctx): State<Arc<Context>>,
    viewer: Viewer,
    Form(f): Form<Token>,
) -> Response {
    if !viewer.chrome.csrf_ok(&ctx, &f.csrf) {
        return viewer.fail(&ctx, &super::page::UiError::BadForm);
    }
    let mut out = Redirect::to("/ui/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE, "", 0, viewer.chrome.secure)) {
        out.headers_mut().append(header::SET_COOKIE, v);
    }
    out
}

/// The language menu's form.
#[derive(Debug, Deserialize)]
pub struct Language {
    csrf: String,
    lang: String,
    back: Option<String>,
}

/// `POST /ui/language`: remembers the language for a year and goes back to the page.
pub async fn language(
    State(ctx): State<Arc<Context>>,
    chrome: Chrome,
    Form(f): Form<Language>,
) -> Response {
    let back = if f
        .back
        .as_deref()
        .is_some_and(|b| b.starts_with("/ui/signin"))
    {
        "/ui/signin"
    } else {
        safe_next(f.back.as_deref())
    };
    let Some(lang) = Lang::from_code(&f.lang).filter(|_| chrome.csrf_ok(&ctx, &f.csrf)) else {
        return page(&ctx, &chrome, StatusCode::FORBIDDEN, back, Some("bad_form"));
    };
    let mut out = Redirect::to(back).into_response();
    let c = set_cookie(LANG_COOKIE, lang.code(), 365 * 86_400, chrome.secure);
    if let Ok(v) = HeaderValue::from_str(&c) {
        out.headers_mut().append(header::SET_COOKIE, v);
    }
    out
}
