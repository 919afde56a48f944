//! People and their roles (`users` table): the engine-neutral records, the parsing of a stored
//! row both engines share, what an enrolment token naming a volunteer does to the users, and
//! the SQLite queries (PostgreSQL's are in `postgres/users.rs`).
//!
//! A user holds one credential, kept as its store id (`u` + 16 hex for an issued credential,
//! `t` + 8 hex for a volunteer who signs in with the enrolment token their first node used)
//! and the SHA-256 of its secret, never the secret itself.

use std::collections::BTreeSet;

use hearth_api::{DEFAULT_USER_LIFETIME_DAYS, UserName, UserRole};
use hearth_protocol::{Hex, NodeId, Sha256};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::StoreError;

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// A person as stored (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Their name, the key of the record.
    pub name: UserName,
    /// What they may do.
    pub role: UserRole,
    /// A volunteer's nodes; empty otherwise.
    pub nodes: BTreeSet<NodeId>,
    /// Store id of the credential: `u` + 16 hex (issued) or `t` + 8 hex (an enrolment token id).
    pub credential: String,
    /// SHA-256 of the secret's text.
    pub secret_hash: Sha256,
    /// Creation, Unix ms.
    pub created_at_ms: u64,
    /// Expiry of the credential, Unix ms; `None` if it never expires.
    pub expires_at_ms: Option<u64>,
}

/// What [`super::Store::put_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutUser {
    /// Stored.
    Created,
    /// A user of that name exists (nothing written).
    NameTaken,
    /// Another user holds that credential id (nothing written).
    CredentialTaken,
}

/// A `users` row as read, before parsing (the same columns in both engines).
#[derive(Debug)]
pub(super) struct UserRow {
    pub(super) name: String,
    pub(super) role: String,
    pub(super) nodes: String,
    pub(super) credential: String,
    pub(super) secret_hash: String,
    pub(super) created_at_ms: i64,
    pub(super) expires_at_ms: Option<i64>,
}

impl UserRow {
    /// The record, or [`StoreError::Corrupt`] naming the column that no longer parses.
    pub(super) fn parse(self) -> Result<UserRecord, StoreError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("user {:?}: {what}: {e}", self.name))
        };
        let nodes: Vec<String> = serde_json::from_str(&self.nodes).map_err(|e| bad("nodes", &e))?;
        Ok(UserRecord {
            name: self.name.parse().map_err(|e| bad("name", &e))?,
            role: self.role.parse().map_err(|e| bad("role", &e))?,
            nodes: nodes
                .iter()
                .map(|n| n.parse::<NodeId>().map_err(|e| bad("node", &e)))
                .collect::<Result<_, _>>()?,
            credential: self.credential.clone(),
            secret_hash: self
                .secret_hash
                .parse()
                .map_err(|e| bad("secret_hash", &e))?,
            created_at_ms: u64::try_from(self.created_at_ms).unwrap_or(0),
            expires_at_ms: self.expires_at_ms.and_then(|v| u64::try_from(v).ok()),
        })
    }
}

/// The `nodes` column: a JSON array of node id strings.
pub(super) fn nodes_json(nodes: &BTreeSet<NodeId>) -> String {
    let ids: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    // A list of strings always serializes.
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// A redeemed enrolment token that names a volunteer: who, and with what.
#[derive(Debug, Clone)]
pub(super) struct VolunteerEnrolment {
    /// The volunteer the token names.
    pub(super) name: UserName,
    /// The node just enrolled.
    pub(super) node: NodeId,
    /// The token.
    pub(super) token_id: Hex<4>,
    /// The token's stored secret hash (the volunteer's secret is the token's).
    pub(super) secret_hash: Sha256,
    /// The enrolment time, Unix ms.
    pub(super) now_ms: u64,
}

/// What an enrolment does to the users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Enrolment {
    /// No user of that name: create this volunteer (unless its credential is taken).
    Create(UserRecord),
    /// The volunteer exists: its nodes become these.
    Join(BTreeSet<NodeId>),
    /// Nothing to write (a user of another role, or the node is already theirs).
    Keep,
}

impl VolunteerEnrolment {
    /// The credential id of a volunteer made by this token: `t` + the token id.
    pub(super) fn credential(&self) -> String {
        format!("t{}", self.token_id)
    }

    /// What to write, given the user of that name (if any).
    pub(super) fn decide(&self, existing: Option<UserRecord>) -> Enrolment {
        match existing {
            None => Enrolment::Create(UserRecord {
                name: self.name.clone(),
                role: UserRole::Volunteer,
                nodes: BTreeSet::from([self.node]),
                credential: self.credential(),
                secret_hash: self.secret_hash,
                created_at_ms: self.now_ms,
                expires_at_ms: Some(
                    self.now_ms
                        .saturating_add(DEFAULT_USER_LIFETIME_DAYS.saturating_mul(DAY_MS)),
                ),
            }),
            Some(user) if user.role == UserRole::Volunteer => {
                let mut nodes = user.nodes;
                if nodes.insert(self.node) {
                    Enrolment::Join(nodes)
                } else {
                    Enrolment::Keep
                }
            }
            Some(user) => {
                tracing::warn!(
                    user = %user.name,
                    role = %user.role,
                    node = %self.node,
                    token = %self.token_id,
                    "the enrolment token names a user who is not a volunteer: the node is \
                     enrolled, the user is left unchanged"
                );
                Enrolment::Keep
            }
        }
    }

    /// Says that the volunteer could not be made because its credential id is taken.
    pub(super) fn warn_credential_taken(&self) {
        tracing::warn!(
            user = %self.name,
            node = %self.node,
            credential = %self.credential(),
            "the credential id of the enrolment token is held by another user: the node is \
             enrolled, no volunteer is made"
        );
    }
}

fn row(r: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        name: r.get("name")?,
        role: r.get("role")?,
        nodes: r.get("nodes")?,
        credential: r.get("credential")?,
        secret_hash: r.get("secret_hash")?,
        created_at_ms: r.get("created_at_ms")?,
        expires_at_ms: r.get("expires_at_ms")?,
    })
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stores `u` unless its name or its credential is taken.
pub(super) fn put(tx: &Connection, u: &UserRecord) -> Result<PutUser, StoreError> {
    if by_name(tx, &u.name)?.is_some() {
        return Ok(PutUser::NameTaken);
    }
    if by_credential(tx, &u.credential)?.is_some() {
        return Ok(PutUser::CredentialTaken);
    }
    insert(tx, u)?;
    Ok(PutUser::Created)
}

fn insert(tx: &Connection, u: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO users (name, role, nodes, credential, secret_hash, created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            u.name.as_str(),
            u.role.as_str(),
            nodes_json(&u.nodes),
            u.credential,
            u.secret_hash.to_string(),
            ms(u.created_at_ms),
            u.expires_at_ms.map(ms),
        ],
    )?;
    Ok(())
}

/// Every user, by name.
pub(super) fn list(conn: &Connection) -> Result<Vec<UserRecord>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT * FROM users ORDER BY name")?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(UserRow::parse).collect()
}

/// The user holding a credential id.
pub(super) fn by_credential(
    conn: &Connection,
    credential: &str,
) -> Result<Option<UserRecord>, StoreError> {
    conn.query_row(
        "SELECT * FROM users WHERE credential = ?1",
        [credential],
        row,
    )
    .optional()?
    .map(UserRow::parse)
    .transpose()
}

fn by_name(conn: &Connection, name: &UserName) -> Result<Option<UserRecord>, StoreError> {
    conn.query_row("SELECT * FROM users WHERE name = ?1", [name.as_str()], row)
        .optional()?
        .map(UserRow::parse)
        .transpose()
}

/// Removes a user; false if there is none of that name.
pub(super) fn remove(tx: &Connection, name: &UserName) -> Result<bool, StoreError> {
    Ok(tx.execute("DELETE FROM users WHERE name = ?1", [name.as_str()])? == 1)
}

/// Makes or joins the volunteer an enrolment token names, in the enrolment's transaction.
pub(super) fn enrol_volunteer(tx: &Connection, v: &VolunteerEnrolment) -> Result<(), StoreError> {
    match v.decide(by_name(tx, &v.name)?) {
        Enrolment::Create(user) => {
            if by_credential(tx, &user.credential)?.is_some() {
                v.warn_credential_taken();
            } else {
                insert(tx, &user)?;
            }
        }
        Enrolment::Join(nodes) => {
            tx.execute(
                "UPDATE users SET nodes = ?2 WHERE name = ?1",
                params![v.name.as_str(), nodes_json(&nodes)],
            )?;
        }
        Enrolment::Keep => {}
    }
    Ok(())
}
