//! People: `POST /v1/users` (add, answering the credential once), `GET /v1/users`,
//! `DELETE /v1/users/{name}` (the credential and its browser sessions stop at once) and
//! `GET /v1/whoami`. Who may call them is in `access.rs`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hearth_api::{
    ApiError, CreateUser, CreatedUser, DEFAULT_USER_LIFETIME_DAYS, MAX_USER_LIFETIME_DAYS,
    RemovedUser, UserCredential, UserName, UserRole, UserView, WhoAmI,
};
use hearth_protocol::{Hex, Sha256};

use crate::access::Principal;
use crate::api::{HttpError, bad_request, blocking};
use crate::clock::now_ms;
use crate::context::Context;
use crate::store::{PutUser, UserRecord};

/// Credential ids drawn before giving up when each is taken already.
const ID_ATTEMPTS: usize = 8;

const DAY_MS: u64 = 86_400_000;

/// A stored user as listed.
pub fn view(u: &UserRecord) -> UserView {
    UserView {
        name: u.name.clone(),
        role: u.role,
        nodes: u.nodes.iter().copied().collect(),
        credential: if u.credential.starts_with('t') {
            "enrolment_token".into()
        } else {
            "hu1".into()
        },
        created_at_ms: u.created_at_ms,
        expires_at_ms: u.expires_at_ms,
    }
}

/// `POST /v1/users`.
pub async fn add_user(
    State(ctx): State<Arc<Context>>,
    crate::json_body::JsonBody(body): crate::json_body::JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), HttpError> {
    match (body.role, body.nodes.is_empty()) {
        (UserRole::Volunteer, true) => {
            return Err(bad_request(
                "a volunteer needs at least one node (`--node ID`)",
            ));
        }
        (UserRole::Operator | UserRole::Auditor, false) => {
            return Err(bad_request(format!(
                "only a volunteer has nodes; an {} sees {}",
                body.role,
                if body.role == UserRole::Operator {
                    "and runs everything"
                } else {
                    "every node already"
                }
            )));
        }
        _ => {}
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_USER_LIFETIME_DAYS);
    if days == 0 || days > MAX_USER_LIFETIME_DAYS {
        return Err(bad_request(format!(
            "expires_in_days must be between 1 and {MAX_USER_LIFETIME_DAYS}"
        )));
    }
    for node in &body.nodes {
        let store = ctx.store.clone();
        let id = *node;
        if blocking(move || store.node(&id)).await?.is_none() {
            return Err(ApiError::UnknownNode(format!("no node {node} is enrolled")).into());
        }
    }
    let now = now_ms();
    for _ in 0..ID_ATTEMPTS {
        let credential = UserCredential {
            id: Hex::<8>(rand::random()).to_string(),
            secret: Hex::<32>(rand::random()).to_string(),
        };
        let record = UserRecord {
            name: body.name.clone(),
            role: body.role,
            nodes: body.nodes.iter().copied().collect(),
            credential: credential.store_id(),
            secret_hash: Sha256::digest(credential.secret.as_bytes()),
            created_at_ms: now,
            expires_at_ms: Some(now.saturating_add(days.saturating_mul(DAY_MS))),
        };
        let store = ctx.store.clone();
        let stored = record.clone();
        match blocking(move || store.put_user(&stored)).await? {
            PutUser::Created => {
                tracing::info!(user = %record.name, role = %record.role, "user added");
                return Ok((
                    StatusCode::CREATED,
                    Json(CreatedUser {
                        user: view(&record),
                        credential: credential.to_string(),
                    }),
                ));
            }
            PutUser::NameTaken => {
                return Err(ApiError::UserExists(format!(
                    "a user named {} exists already; remove it first to issue a new credential",
                    body.name
                ))
                .into());
            }
            PutUser::CredentialTaken => continue,
        }
    }
    Err(ApiError::Internal(format!(
        "{ID_ATTEMPTS} random credential ids in a row were taken"
    ))
    .into())
}

/// `GET /v1/users`.
pub async fn list_users(State(ctx): State<Arc<Context>>) -> Result<Json<Vec<UserView>>, HttpError> {
    let store = ctx.store.clone();
    let users = blocking(move || store.users()).await?;
    Ok(Json(users.iter().map(view).collect()))
}

/// `DELETE /v1/users/{name}`.
pub async fn remove_user(
    State(ctx): State<Arc<Context>>,
    Path(name): Path<String>,
) -> Result<Json<RemovedUser>, HttpError> {
    let name: UserName = name.parse().map_err(|e| bad_request(format!("{e}")))?;
    let store = ctx.store.clone();
    let gone = name.clone();
    if blocking(move || store.remove_user(&gone)).await? {
        tracing::info!(user = %name, "user removed");
        Ok(Json(RemovedUser { removed: name }))
    } else {
        Err(ApiError::UnknownUser(format!("no user {name}")).into())
    }
}

/// `GET /v1/whoami`.
pub async fn whoami(Extension(who): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: who.name,
        role: who.role,
        nodes: who.nodes.into_iter().collect(),
        expires_at_ms: who.expires_at_ms,
    })
}
