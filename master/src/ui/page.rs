//! What every dashboard page shares: the request's [`Chrome`] (language, CSRF cookie, whether
//! the browser came over TLS), the signed-in [`Viewer`], the layout with its menu, and the
//! answers — a page with its cookies, a redirect, an error page in the viewer's language.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hearth_api::UserRole;
use maud::{DOCTYPE, Markup, html};

use super::i18n::Lang;
use super::session::{self, COOKIE};
use crate::access::{Access, Principal, check};
use crate::clock::now_ms;
use crate::context::Context;

/// Cookie holding the random value that CSRF tokens are derived from.
pub const CSRF_COOKIE: &str = "hearth_csrf";
/// Cookie holding the language chosen in the menu.
pub const LANG_COOKIE: &str = "hearth_lang";

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A `Set-Cookie` value: path `/ui`, `HttpOnly`, `SameSite=Strict`, `Secure` behind TLS.
pub fn set_cookie(name: &str, value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

/// What is known of any request to the dashboard, signed in or not.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The page's language: the menu's cookie, else `Accept-Language`, else English.
    pub lang: Lang,
    /// Whether the browser reached the master over TLS (`X-Forwarded-Proto: https` from the
    /// proxy in front of it): cookies then carry `Secure`.
    pub secure: bool,
    /// The CSRF cookie's value.
    csrf_seed: String,
    /// Whether that cookie is new and must be set by the answer.
    fresh: bool,
    /// The page's path and query, where the language menu comes back to.
    pub here: String,
}

impl Chrome {
    /// The CSRF token of this request's forms.
    pub fn csrf(&self, ctx: &Context) -> String {
        ctx.ui.csrf(&self.csrf_seed)
    }

    /// Whether a form's token is this browser's.
    pub fn csrf_ok(&self, ctx: &Context, token: &str) -> bool {
        !self.fresh && ctx.ui.csrf_ok(&self.csrf_seed, token)
    }

    /// Adds the cookies this answer must set.
    pub fn finish(&self, mut response: Response) -> Response {
        if self.fresh {
            let c = set_cookie(CSRF_COOKIE, &self.csrf_seed, 8 * 3600, self.secure);
            if let Ok(v) = HeaderValue::from_str(&c) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }

    /// A page answer with this status.
    pub fn page(&self, status: StatusCode, markup: Markup) -> Response {
        self.finish((status, markup).into_response())
    }
}

impl FromRequestParts<Arc<Context>> for Chrome {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Arc<Context>,
    ) -> Result<Self, Self::Rejection> {
        let h = &parts.headers;
        let lang = cookie(h, LANG_COOKIE)
            .and_then(Lang::from_code)
            .or_else(|| {
                h.get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::from_accept)
            })
            .unwrap_or(Lang::En);
        let secure = h
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let seed = cookie(h, CSRF_COOKIE)
            .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let fresh = seed.is_none();
        Ok(Self {
            lang,
            secure,
            csrf_seed: seed.unwrap_or_else(session::nonce),
            fresh,
            here: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/ui/fleet".to_owned(), |p| p.as_str().to_owned()),
        })
    }
}

/// A signed-in person looking at a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who they are, read again from the store for this request.
    pub who: Principal,
    /// The request's chrome.
    pub chrome: Chrome,
}

impl FromRequestParts<Arc<Context>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Context>,
    ) -> Result<Self, Self::Rejection> {
        let Ok(chrome) = Chrome::from_request_parts(parts, ctx).await;
        let claim = cookie(&parts.headers, COOKIE).and_then(|c| ctx.ui.verify(c, now_ms()));
        let who = match claim {
            Some(c) => crate::access::resume(ctx, &c.user, &c.credential)
                .await
                .ok(),
            None => None,
        };
        match who {
            Some(who) => Ok(Self { who, chrome }),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/ui/fleet", |p| p.as_str());
                let to = format!("/ui/signin?next={}", encode(next));
                Err(chrome.finish(Redirect::to(&to).into_response()))
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// A form without this browser's CSRF token.
    #[error("the form's CSRF token is missing or not this browser's")]
    BadForm,
    /// The master failed to answer.
    #[error("{0}")]
    Master(String),
}

impl From<crate::api::HttpError> for UiError {
    fn from(e: crate::api::HttpError) -> Self {
        match e.0 {
            hearth_api::ApiError::Forbidden(m) => Self::Forbidden(m),
            hearth_api::ApiError::NotFound(m) | hearth_api::ApiError::UnknownNode(m) => {
                Self::NotFound(m)
            }
            other => Self::Master(other.to_string()),
        }
    }
}

impl Viewer {
    /// Whether the viewer may see a page needing `access` (with the route's `id`, if any).
    pub fn may(&self, access: Access, params: &[(&str, &str)]) -> Result<(), UiError> {
        check(access, &self.who, params).map_err(UiError::Forbidden)
    }

    /// The page inside the layout, with status 200.
    pub fn show(&self, ctx: &Context, title: &str, body: Markup) -> Response {
        self.chrome.page(
            StatusCode::OK,
            layout(ctx, &self.chrome, Some(self), title, body),
        )
    }

    /// The error page.
    pub fn fail(&self, ctx: &Context, error: &UiError) -> Response {
        let t = |k| self.chrome.lang.t(k);
        let (status, title, text) = match error {
            UiError::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                t("forbidden_title"),
                t("forbidden_text"),
            ),
            UiError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                t("not_found_title"),
                t("not_found_text"),
            ),
            UiError::BadForm => (StatusCode::FORBIDDEN, t("forbidden_title"), t("bad_form")),
            UiError::Master(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                t("error_title"),
                t("error_text"),
            ),
        };
        let body = html! {
            h1 { (title) }
            p.error data-error=(status.as_u16()) { (text) }
            p.detail { (error.to_string()) }
        };
        self.chrome
            .page(status, layout(ctx, &self.chrome, Some(self), title, body))
    }

    /// The page of a handler's result.
    pub fn answer(&self, ctx: &Context, result: Result<Response, UiError>) -> Response {
        result.unwrap_or_else(|e| self.fail(ctx, &e))
    }
}

/// The role's name in the page's language.
pub fn role_name(lang: Lang, role: UserRole) -> &'static str {
    match role {
        UserRole::Operator => lang.t("role_operator"),
        UserRole::Volunteer => lang.t("role_volunteer"),
        UserRole::Auditor => lang.t("role_auditor"),
    }
}

/// The whole HTML page: head, menu (the links the viewer's role may follow, the language
/// menu, sign-out) and `body`.
pub fn layout(
    ctx: &Context,
    chrome: &Chrome,
    viewer: Option<&Viewer>,
    title: &str,
    body: Markup,
) -> Markup {
    let lang = chrome.lang;
    let t = |k| lang.t(k);
    let csrf = chrome.csrf(ctx);
    let audits = viewer.is_some_and(|v| v.who.role != UserRole::Volunteer);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (t("app_name")) }
                link rel="stylesheet" href="/ui/assets/hearth.css";
                script src="/ui/assets/hearth.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/fleet" { (t("app_name")) }
                    @if let Some(v) = viewer {
                        nav aria-label=(t("nav_main")) {
                            a href="/ui/fleet" { (t("nav_fleet")) }
                            @if audits { a href="/ui/deployments" { (t("nav_deployments")) } }
                            a href="/ui/ledger" { (t("nav_ledger")) }
                            a href="/ui/statements" { (t("nav_statements")) }
                        }
                        span.who data-role=(v.who.role.as_str()) {
                            (lang.f("signed_in_as", &[("name", &v.who.name), ("role", &role_name(lang, v.who.role))]))
                        }
                        form.inline method="post" action="/ui/signout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { (t("nav_signout")) }
                        }
                    }
                    form.inline.language method="post" action="/ui/language" {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="back" value=(chrome.here);
                        label for="lang" { (t("menu_language")) }
                        select id="lang" name="lang" data-autosubmit {
                            @for l in Lang::ALL {
                                option value=(l.code()) selected[l == lang] { (l.own_name()) }
                            }
                        }
                        button type="submit" { (t("menu_change")) }
                    }
                }
                main { (body) }
            }
        }
    }
}
