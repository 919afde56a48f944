//! Who may call which route. Every `/v1` request behind [`auth`] carries a credential — the
//! master's admin token, a person's `hu1:` credential, or the enrolment token a volunteer's
//! account was made with — that becomes a [`Principal`]; the route's entry in [`POLICY`] then
//! says whether that principal's role may call it. A route missing from the table is refused to
//! everyone (deny by default), and the table in ARCHITECTURE.md ("Roles") is checked against this
//! one by `tests/tests/roles.rs`, which also calls every route with every role.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_api::{ApiError, UserCredential, UserRole};
use hearth_protocol::{EnrolToken, NodeId, Sha256};

use crate::api::{HttpError, blocking};
use crate::clock::now_ms;
use crate::context::Context;
use crate::store::UserRecord;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's name (`admin` for the admin token).
    pub name: String,
    /// Their role.
    pub role: UserRole,
    /// A volunteer's nodes.
    pub nodes: BTreeSet<NodeId>,
    /// The store id of the credential used (`admin` for the admin token).
    pub credential: String,
    /// When the credential expires, Unix ms.
    pub expires_at_ms: Option<u64>,
}

impl Principal {
    /// The admin token's principal: an operator.
    pub fn admin() -> Self {
        Self {
            name: "admin".into(),
            role: UserRole::Operator,
            nodes: BTreeSet::new(),
            credential: "admin".into(),
            expires_at_ms: None,
        }
    }

    /// Whether this principal may see this node's data.
    pub fn sees(&self, node: &NodeId) -> bool {
        self.role != UserRole::Volunteer || self.nodes.contains(node)
    }

    fn of(user: UserRecord) -> Self {
        Self {
            name: user.name.to_string(),
            role: user.role,
            nodes: user.nodes,
            credential: user.credential,
            expires_at_ms: user.expires_at_ms,
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Operators only.
    Operator,
    /// Operators and auditors (reads of the whole cooperative).
    Audit,
    /// Every role; the handler narrows a volunteer's answer to their own nodes.
    Scoped,
    /// Operators and auditors; a volunteer when the `{id}` in the path is one of their nodes.
    OwnNode,
    /// Operators (every action); a volunteer draining or activating one of their nodes.
    NodeAction,
    /// Anyone signed in.
    SignedIn,
}

impl Access {
    /// The name in ARCHITECTURE.md's table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Audit => "audit",
            Self::Scoped => "scoped",
            Self::OwnNode => "own-node",
            Self::NodeAction => "node-action",
            Self::SignedIn => "signed-in",
        }
    }
}

/// Node actions a volunteer may take on their own node.
pub const VOLUNTEER_ACTIONS: [&str; 2] = ["drain", "activate"];

/// Every `/v1` route behind [`auth`], with what it needs.
pub const POLICY: &[(&str, &str, Access)] = &[
    ("GET", "/v1/whoami", Access::SignedIn),
    ("POST", "/v1/users", Access::Operator),
    ("GET", "/v1/users", Access::Operator),
    ("DELETE", "/v1/users/{name}", Access::Operator),
    ("POST", "/v1/tokens", Access::Operator),
    ("GET", "/v1/tokens", Access::Operator),
    ("DELETE", "/v1/tokens/{id}", Access::Operator),
    ("GET", "/v1/nodes", Access::Scoped),
    ("GET", "/v1/nodes/{id}", Access::OwnNode),
    ("POST", "/v1/nodes/{id}/{action}", Access::NodeAction),
    ("POST", "/v1/nodes/{id}/probe", Access::Operator),
    ("PUT", "/v1/blobs/{sha256}", Access::Operator),
    ("POST", "/v1/instances", Access::Operator),
    ("GET", "/v1/instances", Access::Scoped),
    ("DELETE", "/v1/instances/{id}", Access::Operator),
    ("POST", "/v1/deployments", Access::Operator),
    ("GET", "/v1/deployments", Access::Audit),
    ("GET", "/v1/deployments/{name}", Access::Audit),
    ("DELETE", "/v1/deployments/{name}", Access::Operator),
    ("POST", "/v1/deployments/{name}/update", Access::Operator),
    ("GET", "/v1/deployments/{name}/backups", Access::Audit),
    ("POST", "/v1/deployments/{name}/backups", Access::Operator),
    ("POST", "/v1/deployments/{name}/restore", Access::Operator),
    ("GET", "/v1/deployments/{name}/where", Access::Audit),
    ("GET", "/v1/repository", Access::Audit),
    ("PUT", "/v1/repository/{file}", Access::Operator),
    ("GET", "/v1/recipes", Access::Audit),
    ("GET", "/v1/recipes/{name}/{version}", Access::Audit),
    ("POST", "/v1/gateways", Access::Operator),
    ("GET", "/v1/gateways", Access::Audit),
    ("DELETE", "/v1/gateways/{name}", Access::Operator),
    ("POST", "/v1/ledger/witnesses", Access::Operator),
    ("DELETE", "/v1/ledger/witnesses/{name}", Access::Operator),
    ("GET", "/v1/credits", Access::Scoped),
];

/// What [`POLICY`] says of `method path` (the route's pattern), if it lists it.
pub fn access_of(method: &Method, path: &str) -> Option<Access> {
    POLICY
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, a)| *a)
}

/// Whether `who` may call a route needing `access`, with the request's path parameters
/// (`id`, `action`); `Err` says why not.
pub fn check(access: Access, who: &Principal, params: &[(&str, &str)]) -> Result<(), String> {
    let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let own = || {
        param("id")
            .and_then(|id| id.parse::<NodeId>().ok())
            .is_some_and(|id| who.nodes.contains(&id))
    };
    let role = who.role;
    let allowed = match (access, role) {
        (_, UserRole::Operator) | (Access::SignedIn | Access::Scoped, _) => true,
        (Access::Audit | Access::OwnNode, UserRole::Auditor) => true,
        (Access::OwnNode, UserRole::Volunteer) => own(),
        (Access::NodeAction, UserRole::Volunteer) => {
            own() && param("action").is_some_and(|a| VOLUNTEER_ACTIONS.contains(&a))
        }
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(match (access, role) {
        (Access::OwnNode | Access::NodeAction, UserRole::Volunteer) if !own() => format!(
            "{} may act only on their own nodes ({}); this one is not theirs",
            who.name,
            who.nodes.len()
        ),
        (Access::NodeAction, UserRole::Volunteer) => format!(
            "a volunteer may only {} their node; ask an operator for the rest",
            VOLUNTEER_ACTIONS.join(" or ")
        ),
        _ => format!(
            "{} is {} {}; this route needs {}",
            who.name,
            article(role),
            role,
            match access {
                Access::Audit | Access::OwnNode => "an operator or an auditor",
                _ => "an operator",
            }
        ),
    })
}

fn article(role: UserRole) -> &'static str {
    match role {
        UserRole::Operator | UserRole::Auditor => "an",
        UserRole::Volunteer => "a",
    }
}

fn unauthorized(why: impl Into<String>) -> HttpError {
    ApiError::Unauthorized(why.into()).into()
}

/// The principal behind a credential's text: the admin token, `hu1:…`, or the enrolment token
/// of a volunteer's account; 401 when it is none of them, unknown, wrong or expired.
pub async fn authenticate(ctx: &Arc<Context>, presented: &str) -> Result<Principal, HttpError> {
    let presented = presented.trim();
    // Comparing digests keeps the comparison time independent of the secret.
    if Sha256::digest(presented.as_bytes()) == ctx.admin_token_hash {
        return Ok(Principal::admin());
    }
    let (store_id, hash) = if let Ok(c) = presented.parse::<UserCredential>() {
        (c.store_id(), Sha256::digest(c.secret.as_bytes()))
    } else if let Ok(t) = presented.parse::<EnrolToken>() {
        (
            format!("t{}", t.id),
            EnrolToken::secret_hash(&t.secret.to_string()),
        )
    } else {
        return Err(unauthorized(
            "the credential is neither the admin token, a `hu1:` credential nor an enrolment token",
        ));
    };
    let store = ctx.store.clone();
    let lookup = store_id.clone();
    let user = blocking(move || store.user_by_credential(&lookup))
        .await?
        .filter(|u| u.secret_hash == hash)
        .ok_or_else(|| {
            unauthorized(if store_id.starts_with('t') {
                "this enrolment token is not a volunteer's sign-in (it was made without --volunteer, or the account was removed)"
            } else {
                "unknown or removed credential"
            })
        })?;
    unexpired(user)
}

/// The user, unless their credential has expired.
fn unexpired(user: UserRecord) -> Result<Principal, HttpError> {
    if let Some(at) = user.expires_at_ms.filter(|at| *at <= now_ms()) {
        return Err(unauthorized(format!(
            "the credential of {} expired at {} (Unix ms); ask an operator for a new one",
            user.name, at
        )));
    }
    Ok(Principal::of(user))
}

/// The admin token's stand-in in a dashboard session: it names this admin token (a new token
/// ends the sessions of the old one) without being usable as one.
pub fn admin_session_id(ctx: &Context) -> String {
    let hash = ctx.admin_token_hash.to_string();
    format!("admin:{}", hash.get(..16).unwrap_or(&hash))
}

/// The principal of a dashboard session signed in with `credential` (a store id, or
/// [`admin_session_id`]) as `name`: read again from the store on every request, so that a
/// removed user or an expired credential is refused at once.
pub async fn resume(
    ctx: &Arc<Context>,
    name: &str,
    credential: &str,
) -> Result<Principal, HttpError> {
    if credential == admin_session_id(ctx) && name == "admin" {
        return Ok(Principal::admin());
    }
    let store = ctx.store.clone();
    let lookup = credential.to_owned();
    let user = blocking(move || store.user_by_credential(&lookup))
        .await?
        .filter(|u| u.name.as_str() == name && !credential.starts_with("admin"))
        .ok_or_else(|| unauthorized("the session's user was removed"))?;
    unexpired(user)
}

/// Middleware of every `/v1` route behind a credential: authenticates the bearer, checks
/// [`POLICY`], and hands the [`Principal`] to the handler as an extension.
pub async fn auth(
    State(ctx): State<Arc<Context>>,
    path: Option<MatchedPath>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(presented) = presented else {
        return HttpError(ApiError::Unauthorized(
            "missing `Authorization: Bearer <credential>` (`hearth login`, or the master's admin.token)"
                .into(),
        ))
        .into_response();
    };
    let who = match authenticate(&ctx, presented).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let path = path.as_ref().map_or("", MatchedPath::as_str);
    let params: Vec<(&str, &str)> = params
        .as_ref()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let verdict = match access_of(req.method(), path) {
        Some(access) => check(access, &who, &params),
        None => Err(format!(
            "{} {path} is not in the master's access table; refused to everyone",
            req.method()
        )),
    };
    if let Err(why) = verdict {
        tracing::info!(user = %who.name, role = %who.role, path, "refused by role");
        return HttpError(ApiError::Forbidden(why)).into_response();
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn who(role: UserRole, nodes: &[NodeId]) -> Principal {
        Principal {
            name: "ana".into(),
            role,
            nodes: nodes.iter().copied().collect(),
            credential: "u0".into(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_volunteer_acts_only_on_their_own_node() {
        let mine = NodeId::from_key(hearth_protocol::SecretKey::generate().public());
        let other = NodeId::from_key(hearth_protocol::SecretKey::generate().public());
        let v = who(UserRole::Volunteer, &[mine]);
        let (m, o) = (mine.to_string(), other.to_string());
        assert!(check(Access::OwnNode, &v, &[("id", &m)]).is_ok());
        assert!(check(Access::OwnNode, &v, &[("id", &o)]).is_err());
        assert!(check(Access::NodeAction, &v, &[("id", &m), ("action", "drain")]).is_ok());
        assert!(check(Access::NodeAction, &v, &[("id", &m), ("action", "retire")]).is_err());
        assert!(check(Access::NodeAction, &v, &[("id", &o), ("action", "drain")]).is_err());
        assert!(check(Access::Audit, &v, &[]).is_err());
        let a = who(UserRole::Auditor, &[]);
        assert!(check(Access::OwnNode, &a, &[("id", &o)]).is_ok());
        assert!(check(Access::NodeAction, &a, &[("id", &o), ("action", "drain")]).is_err());
        assert!(check(Access::Operator, &a, &[]).is_err());
        let op = who(UserRole::Operator, &[]);
        assert!(
            POLICY
                .iter()
                .all(|(_, _, acc)| check(*acc, &op, &[]).is_ok())
        );
    }
}
