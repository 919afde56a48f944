//! `GET /v1/gateway/members`: the node overlay's member set (SPEC §16.2, §14.6), which a
//! gateway's relay admits. Signed by the gateway's key like `/v1/gateway/routes` (the same
//! verification, `routes.rs`).
//!
//! Long poll: the `ETag` is `"<epoch>-<seq>"`; with `If-None-Match` naming it and `wait_s` (at
//! most 60) the request sleeps on the membership's watch until the revision moves. It shares
//! the routing table's cap on waiting requests.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use hearth_api::MemberSet;

use crate::api::{ApiError, HttpError};
use crate::clock::now_ms;
use crate::context::Context;
use crate::gateway_api::MAX_WAITERS;
use crate::routes::{authenticate, if_none_match, not_modified, wait_asked};

/// `GET /v1/gateway/members[?wait_s=N]`.
pub async fn members(
    State(ctx): State<Arc<Context>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let gateway = authenticate(&ctx, &method, &uri, &headers).await?;
    let wait = wait_asked(uri.query())?;
    ctx.gateways.seen(gateway.name.as_str(), now_ms());
    let known = if_none_match(&headers);
    // Subscribed before the set is read: a change made after the read wakes the wait.
    let mut rx = ctx.overlay.membership.changes();
    rx.mark_unchanged();
    let set = current(&ctx);
    let tag = etag(&set);
    if known.as_deref() != Some(tag.as_str()) || wait.is_zero() {
        return Ok(if known.as_deref() == Some(tag.as_str()) {
            not_modified(&tag)
        } else {
            answer(&set)
        });
    }
    let Ok(_permit) = ctx.gateways.waiters.try_acquire() else {
        return Err(ApiError::RoutesBusy(format!(
            "{MAX_WAITERS} gateway long polls are waiting already; retry shortly"
        ))
        .into());
    };
    let changed = tokio::time::timeout(wait, rx.changed()).await;
    if matches!(changed, Ok(Ok(()))) {
        return Ok(answer(&current(&ctx)));
    }
    Ok(not_modified(&tag))
}

fn current(ctx: &Context) -> MemberSet {
    let (rev, members) = ctx.overlay.membership.snapshot();
    MemberSet {
        epoch: rev.epoch,
        seq: rev.seq,
        members,
    }
}

fn etag(set: &MemberSet) -> String {
    format!("{}-{}", set.epoch, set.seq)
}

fn answer(set: &MemberSet) -> Response {
    let tag = HeaderValue::from_str(&format!("\"{}\"", etag(set))).ok();
    let mut resp = Json(set).into_response();
    if let Some(tag) = tag {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}
