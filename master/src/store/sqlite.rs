//! The embedded SQLite engine: one file in the data dir, WAL, `synchronous=FULL`, writes
//! group-committed by one writer thread (`writer`), reads from a pool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceId};
use hearth_protocol::{Hex, NodeFacts, NodeId, Sha256};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::cached::Cached;
use super::writer::Db;

use super::gateways::{self, GatewayRecord, PutGateway, exposed_ports};
use super::migrations;
use super::users::{self, PutUser, UserRecord, VolunteerEnrolment};
use super::{
    AdminChange, AdminState, AssignmentOp, EventRecord, LivenessUpdate, NodeRecord, RedeemError,
    StatusUpdate, Store, StoreError, StoredDeployment, TokenRecord, history,
};
use super::{BackupAsk, BackupRecord, SnapshotRecord, backups};
use super::{Fence, FileKind, MasterRecord, SharedReport, StoreEvent, sqlite_coord as lease};

/// Version of the JSON encoding of [`NodeFacts`] in the `nodes.facts` column.
const FACTS_VERSION: i64 = 1;
/// Version of the JSON encoding of [`Assignment`] in the `assignments.spec` column.
const SPEC_VERSION: i64 = 1;

pub(super) fn bump_revision(tx: &Connection, node: &NodeId) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO node_revisions (node, revision) VALUES (?1, 1)
         ON CONFLICT (node) DO UPDATE SET revision = node_revisions.revision + 1",
        [node.to_string()],
    )?;
    Ok(())
}

fn spec_from_row(r: &Row<'_>) -> rusqlite::Result<(NodeId, Assignment)> {
    let node: String = r.get("node")?;
    let spec: String = r.get("spec")?;
    let version: i64 = r.get("spec_version")?;
    if version != SPEC_VERSION {
        return Err(corrupt("spec_version", version));
    }
    Ok((
        node.parse().map_err(|e| corrupt("assignment node", e))?,
        serde_json::from_str(&spec).map_err(|e| corrupt("assignment spec", e))?,
    ))
}

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    db: Db,
    /// Every assignment, as last read; invalidated by every write of assignments.
    assignments: Cached<Vec<(NodeId, Assignment)>>,
    /// Every deployment, as last read; invalidated by every write of deployments.
    deployments: Cached<Vec<StoredDeployment>>,
    /// Bumped after every write of assignments, deployments or gateways (see [`Store::changes`]).
    changes: tokio::sync::watch::Sender<u64>,
    /// Never sent on: no other master writes this file (see [`Store::subscribe`]).
    events: tokio::sync::broadcast::Sender<StoreEvent>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::open(path, migrations::migrate)?,
            assignments: Cached::default(),
            deployments: Cached::default(),
            changes: tokio::sync::watch::Sender::new(0),
            events: tokio::sync::broadcast::Sender::new(1),
        })
    }

    /// Tells the watchers of [`Store::changes`] that something they read was written.
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A write of assignments: the cached list is stale once it returns (whatever it returns).
    fn write_assignments<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let result = self.db.write(f);
        self.assignments.invalidate();
        self.changed();
        result
    }

    /// A write of deployments: the cached list is stale once it returns (whatever it returns).
    fn write_deployments<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let result = self.db.write(f);
        self.deployments.invalidate();
        self.changed();
        result
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        let transient = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::Db {
            engine: "sqlite",
            message: e.to_string(),
            transient,
        }
    }
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_ms(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

pub(super) fn corrupt(what: &str, e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{what}: {e}").into(),
    )
}

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    let id: String = r.get("id")?;
    let hash: String = r.get("secret_hash")?;
    let spent_by: Option<String> = r.get("spent_by")?;
    let volunteer: Option<String> = r.get("volunteer")?;
    Ok(TokenRecord {
        id: id.parse().map_err(|e| corrupt("token id", e))?,
        secret_hash: hash.parse().map_err(|e| corrupt("token hash", e))?,
        label: r.get("label")?,
        created_at_ms: opt_ms(Some(r.get("created_at_ms")?)).unwrap_or(0),
        expires_at_ms: opt_ms(r.get("expires_at_ms")?),
        spent_at_ms: opt_ms(r.get("spent_at_ms")?),
        spent_by: spent_by
            .map(|s| s.parse().map_err(|e| corrupt("spent_by", e)))
            .transpose()?,
        revoked_at_ms: opt_ms(r.get("revoked_at_ms")?),
        volunteer: volunteer
            .map(|v| v.parse().map_err(|e| corrupt("token volunteer", e)))
            .transpose()?,
    })
}

fn node_from_row(r: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let id: String = r.get("id")?;
    let facts: String = r.get("facts")?;
    let version: i64 = r.get("facts_version")?;
    if version != FACTS_VERSION {
        return Err(corrupt("facts_version", version));
    }
    let admin: String = r.get("admin")?;
    let token: String = r.get("token_id")?;
    Ok(NodeRecord {
        id: id.parse().map_err(|e| corrupt("node id", e))?,
        facts: serde_json::from_str(&facts).map_err(|e| corrupt("facts", e))?,
        admin: AdminState::parse(&admin).ok_or_else(|| corrupt("admin", &admin))?,
        enrolled_at_ms: opt_ms(Some(r.get("enrolled_at_ms")?)).unwrap_or(0),
        token_id: token.parse().map_err(|e| corrupt("token_id", e))?,
        last_seen_ms: opt_ms(r.get("last_seen_ms")?),
        liveness: r.get("liveness")?,
    })
}

/// Places `spec` on `node` at its next generation (see [`Store::put_assignment`]).
fn put_assignment_in(
    tx: &Connection,
    node: &NodeId,
    spec: &Assignment,
) -> Result<Option<(Assignment, Vec<NodeId>)>, StoreError> {
    let known: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM nodes WHERE id = ?1",
            [node.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Ok(None);
    }
    let previous = tx
        .query_row(
            "SELECT * FROM assignments WHERE instance = ?1",
            [spec.instance.to_string()],
            spec_from_row,
        )
        .optional()?;
    let mut stored = spec.clone();
    // An id used before starts above its last generation: a node that ran the old
    // instance must not take the new one for a stale copy.
    let last = match &previous {
        Some((_, p)) => Some(p.generation),
        None => history::retired_generation(tx, &spec.instance)?,
    };
    stored.generation = last.map_or(1, |g| g + 1);
    let json = serde_json::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO assignments (instance, node, generation, spec, spec_version)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (instance) DO UPDATE SET node = ?2, generation = ?3, spec = ?4, spec_version = ?5",
        params![stored.instance.to_string(), node.to_string(), ms(stored.generation), json, SPEC_VERSION],
    )?;
    let mut changed = vec![*node];
    if let Some((old, _)) = previous.filter(|(old, _)| old != node) {
        changed.push(old);
    }
    for n in &changed {
        bump_revision(tx, n)?;
    }
    Ok(Some((stored, changed)))
}

/// Removes an instance (see [`Store::remove_assignment`]).
fn remove_assignment_in(
    tx: &Connection,
    instance: &InstanceId,
) -> Result<Option<NodeId>, StoreError> {
    let previous = tx
        .query_row(
            "SELECT * FROM assignments WHERE instance = ?1",
            [instance.to_string()],
            spec_from_row,
        )
        .optional()?;
    let Some((node, old)) = previous else {
        return Ok(None);
    };
    tx.execute(
        "DELETE FROM assignments WHERE instance = ?1",
        [instance.to_string()],
    )?;
    history::retire_instance(tx, instance, old.generation)?;
    bump_revision(tx, &node)?;
    Ok(Some(node))
}

fn deployment_from_row(r: &Row<'_>) -> rusqlite::Result<StoredDeployment> {
    let spec: String = r.get(1)?;
    let rollout: Option<String> = r.get(2)?;
    let version: i64 = r.get(3)?;
    Ok(StoredDeployment {
        name: r.get(0)?,
        version: u64::try_from(version).map_err(|e| corrupt("deployment version", e))?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("deployment spec", e))?,
        rollout: rollout
            .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("deployment rollout", e)))
            .transpose()?,
    })
}

impl Store for SqliteStore {
    fn create_token(&self, t: &TokenRecord) -> Result<bool, StoreError> {
        let t = t.clone();
        self.db.write(move |tx| {
            let inserted = tx.execute(
                "INSERT INTO tokens (id, secret_hash, label, created_at_ms, expires_at_ms, volunteer)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                params![
                    t.id.to_string(),
                    t.secret_hash.to_string(),
                    t.label,
                    ms(t.created_at_ms),
                    t.expires_at_ms.map(ms),
                    t.volunteer.as_ref().map(hearth_api::UserName::as_str),
                ],
            )?;
            Ok(inserted == 1)
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.db.read(|conn| {
            let mut stmt = conn.prepare("SELECT * FROM tokens ORDER BY created_at_ms DESC, id")?;
            let rows = stmt.query_map([], token_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn revoke_token(&self, id: &Hex<4>, now_ms: u64) -> Result<Option<bool>, StoreError> {
        let id = id.to_string();
        self.db.write(move |tx| {
            let spent: Option<Option<i64>> = tx
                .query_row("SELECT spent_at_ms FROM tokens WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(match spent {
                None => None,
                Some(Some(_)) => Some(false),
                Some(None) => {
                    tx.execute(
                        "UPDATE tokens SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1",
                        params![id, ms(now_ms)],
                    )?;
                    Some(true)
                }
            })
        })
    }

    fn redeem_and_enrol(
        &self,
        token_id: &Hex<4>,
        secret_hash: &Sha256,
        node: &NodeId,
        facts: &NodeFacts,
        now_ms: u64,
    ) -> Result<Result<NodeRecord, RedeemError>, StoreError> {
        let (token_id, secret_hash, node, facts) = (*token_id, *secret_hash, *node, facts.clone());
        self.db.write(move |tx| {
            let token = tx
                .query_row(
                    "SELECT * FROM tokens WHERE id = ?1",
                    [token_id.to_string()],
                    token_from_row,
                )
                .optional()?;
            let token = match token {
                None => Err(RedeemError::Invalid),
                Some(t) if t.secret_hash != secret_hash => Err(RedeemError::Invalid),
                Some(t) if t.spent_at_ms.is_some() => Err(RedeemError::Spent),
                Some(t) if t.revoked_at_ms.is_some() => Err(RedeemError::Revoked),
                Some(t) if t.expires_at_ms.is_some_and(|e| e <= now_ms) => {
                    Err(RedeemError::Expired)
                }
                Some(t) => Ok(t),
            };
            let token = match token {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM nodes WHERE id = ?1",
                    [node.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Ok(Err(RedeemError::AlreadyEnrolled));
            }
            let facts_json =
                serde_json::to_string(&facts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.execute(
                "UPDATE tokens SET spent_at_ms = ?2, spent_by = ?3 WHERE id = ?1",
                params![token_id.to_string(), ms(now_ms), node.to_string()],
            )?;
            tx.execute(
                "INSERT INTO nodes (id, facts, facts_version, admin, enrolled_at_ms, token_id, liveness)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
                params![
                    node.to_string(),
                    facts_json,
                    FACTS_VERSION,
                    AdminState::Active.as_str(),
                    ms(now_ms),
                    token_id.to_string()
                ],
            )?;
            if let Some(name) = token.volunteer {
                let enrolment = VolunteerEnrolment {
                    name,
                    node,
                    token_id,
                    secret_hash: token.secret_hash,
                    now_ms,
                };
                users::enrol_volunteer(tx, &enrolment)?;
            }
            Ok(Ok(NodeRecord {
                id: node,
                facts,
                admin: AdminState::Active,
                enrolled_at_ms: now_ms,
                token_id,
                last_seen_ms: None,
                liveness: "pending".into(),
            }))
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.db.read(|conn| {
            let mut stmt = conn.prepare("SELECT * FROM nodes ORDER BY enrolled_at_ms, id")?;
            let rows = stmt.query_map([], node_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn node(&self, id: &NodeId) -> Result<Option<NodeRecord>, StoreError> {
        self.db.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT * FROM nodes WHERE id = ?1",
                    [id.to_string()],
                    node_from_row,
                )
                .optional()?)
        })
    }

    fn set_admin(&self, id: &NodeId, admin: AdminState) -> Result<AdminChange, StoreError> {
        let id = id.to_string();
        self.db.write(move |tx| {
            // The condition is in the write itself: a check followed by a plain write would let
            // an activate racing a revoke undo it.
            let n = tx.execute(
                "UPDATE nodes SET admin = ?2 WHERE id = ?1 AND (admin <> 'revoked' OR ?2 = 'revoked')",
                params![id, admin.as_str()],
            )?;
            if n == 1 {
                return Ok(AdminChange::Set);
            }
            let known: Option<i64> = tx
                .query_row("SELECT 1 FROM nodes WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            Ok(match known {
                Some(_) => AdminChange::Revoked,
                None => AdminChange::Unknown,
            })
        })
    }

    fn record_liveness(&self, updates: &[LivenessUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let updates = updates.to_vec();
        self.db.write(move |tx| {
            let mut stmt = tx.prepare_cached(
                "UPDATE nodes SET liveness = ?2, last_seen_ms = COALESCE(?3, last_seen_ms) WHERE id = ?1",
            )?;
            for u in &updates {
                stmt.execute(params![
                    u.node.to_string(),
                    u.liveness,
                    u.last_seen_ms.map(ms)
                ])?;
            }
            Ok(())
        })
    }

    fn put_assignment(
        &self,
        node: &NodeId,
        spec: &Assignment,
    ) -> Result<Option<(Assignment, Vec<NodeId>)>, StoreError> {
        let (node, spec) = (*node, spec.clone());
        self.write_assignments(move |tx| put_assignment_in(tx, &node, &spec))
    }

    fn remove_assignment(&self, instance: &InstanceId) -> Result<Option<NodeId>, StoreError> {
        let instance = instance.clone();
        self.write_assignments(move |tx| remove_assignment_in(tx, &instance))
    }

    fn apply_assignments(
        &self,
        ops: &[AssignmentOp],
        fence: Option<&Fence>,
    ) -> Result<BTreeSet<NodeId>, StoreError> {
        if ops.is_empty() {
            return Ok(BTreeSet::new());
        }
        let ops = ops.to_vec();
        let fence = fence.cloned();
        self.write_assignments(move |tx| {
            if let Some(fence) = &fence {
                lease::check(tx, fence)?;
            }
            let mut touched = BTreeSet::new();
            for op in &ops {
                match op {
                    AssignmentOp::Place { node, spec } => {
                        if let Some((_, changed)) = put_assignment_in(tx, node, spec)? {
                            touched.extend(changed);
                        }
                    }
                    AssignmentOp::Remove(id) => touched.extend(remove_assignment_in(tx, id)?),
                }
            }
            Ok(touched)
        })
    }

    fn bump_revisions(&self, nodes: &[NodeId]) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let nodes = nodes.to_vec();
        self.write_assignments(move |tx| {
            for n in &nodes {
                bump_revision(tx, n)?;
            }
            Ok(())
        })
    }

    fn desired_state(&self, node: &NodeId) -> Result<DesiredState, StoreError> {
        self.db.read(|conn| {
            let revision: Option<i64> = conn
                .query_row(
                    "SELECT revision FROM node_revisions WHERE node = ?1",
                    [node.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            let mut stmt =
                conn.prepare_cached("SELECT * FROM assignments WHERE node = ?1 ORDER BY instance")?;
            let mut instances: Vec<Assignment> = stmt
                .query_map([node.to_string()], spec_from_row)?
                .map(|r| r.map(|(_, spec)| spec))
                .collect::<Result<_, _>>()?;
            let gateways = gateways::publish(conn, &mut instances)?;
            Ok(DesiredState {
                // Filled by the master from its registry (`crate::cluster`), not stored.
                masters: Vec::new(),
                holds: Vec::new(),
                gateways,
                revision: opt_ms(revision).unwrap_or(0),
                instances,
            })
        })
    }

    fn assignments(&self) -> Result<Arc<Vec<(NodeId, Assignment)>>, StoreError> {
        self.assignments.get(|| {
            self.db.read(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT * FROM assignments ORDER BY instance")?;
                let rows = stmt.query_map([], spec_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
        })
    }

    fn put_deployment(&self, d: &StoredDeployment) -> Result<(), StoreError> {
        let rollout = d.rollout.as_ref().map(|r| r.to_string());
        let (name, spec) = (d.name.clone(), d.spec.to_string());
        let exposed = exposed_ports(&d.spec);
        self.write_deployments(move |tx| {
            let old: Option<String> = tx
                .query_row(
                    "SELECT spec FROM deployments WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()?;
            let was = old
                .and_then(|o| serde_json::from_str(&o).ok())
                .map_or_else(Vec::new, |o| exposed_ports(&o));
            if was != exposed {
                gateways::bump_routed(tx, Some(&name))?;
            }
            tx.execute(
                "INSERT INTO deployments (name, spec, spec_version, rollout, version)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (name) DO UPDATE SET spec = ?2, spec_version = ?3, rollout = ?4,
                    version = deployments.version + 1",
                params![name, spec, SPEC_VERSION, rollout],
            )?;
            Ok(())
        })
    }

    fn replace_deployment(
        &self,
        expected: &StoredDeployment,
        new: &StoredDeployment,
    ) -> Result<bool, StoreError> {
        let (new_spec, new_rollout) = (
            new.spec.to_string(),
            new.rollout.as_ref().map(|r| r.to_string()),
        );
        let (name, version) = (expected.name.clone(), ms(expected.version));
        let republish = exposed_ports(&expected.spec) != exposed_ports(&new.spec);
        self.write_deployments(move |tx| {
            let replaced = tx.execute(
                "UPDATE deployments SET spec = ?1, spec_version = ?2, rollout = ?3,
                    version = version + 1
                 WHERE name = ?4 AND version = ?5",
                params![new_spec, SPEC_VERSION, new_rollout, name, version],
            )? == 1;
            if replaced && republish {
                gateways::bump_routed(tx, Some(&name))?;
            }
            Ok(replaced)
        })
    }

    fn remove_deployment(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_deployments(move |tx| {
            let removed = tx.execute("DELETE FROM deployments WHERE name = ?1", [&name])? == 1;
            history::forget(tx, &name)?;
            backups::forget(tx, &name)?;
            Ok(removed)
        })
    }

    fn deployment_statuses(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.db.read(history::statuses)
    }

    fn record_deployment_status(&self, updates: &[StatusUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let updates = updates.to_vec();
        self.db.write(move |tx| history::record(tx, &updates))
    }

    fn deployment_events(&self, name: &str, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.db.read(|conn| history::events(conn, name, limit))
    }

    fn put_gateway(&self, g: &GatewayRecord) -> Result<PutGateway, StoreError> {
        let g = g.clone();
        let result = self.db.write(move |tx| gateways::put(tx, &g));
        self.changed();
        result
    }

    fn gateways(&self) -> Result<Vec<GatewayRecord>, StoreError> {
        self.db.read(gateways::list)
    }

    fn remove_gateway(&self, name: &str) -> Result<Option<BTreeSet<NodeId>>, StoreError> {
        let name = name.to_owned();
        let result = self.db.write(move |tx| gateways::remove(tx, &name));
        self.changed();
        result
    }

    fn record_gateway_seen(&self, seen: &[(String, u64)]) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let seen = seen.to_vec();
        self.db.write(move |tx| gateways::record_seen(tx, &seen))
    }

    fn put_user(&self, user: &UserRecord) -> Result<PutUser, StoreError> {
        let user = user.clone();
        self.db.write(move |tx| users::put(tx, &user))
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.db.read(users::list)
    }

    fn user_by_credential(&self, credential: &str) -> Result<Option<UserRecord>, StoreError> {
        self.db.read(|conn| users::by_credential(conn, credential))
    }

    fn remove_user(&self, name: &hearth_api::UserName) -> Result<bool, StoreError> {
        let name = name.clone();
        self.db.write(move |tx| users::remove(tx, &name))
    }

    fn backup_key(
        &self,
        deployment: &str,
        fresh: &str,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let (deployment, fresh) = (deployment.to_owned(), fresh.to_owned());
        self.db
            .write(move |tx| backups::key(tx, &deployment, &fresh, now_ms))
    }

    fn backup(&self, deployment: &str) -> Result<BackupRecord, StoreError> {
        self.db.read(|conn| backups::record(conn, deployment))
    }

    fn backup_holders(&self) -> Result<BTreeMap<String, Vec<NodeId>>, StoreError> {
        self.db.read(backups::all_holders)
    }

    fn held_by(&self, node: &NodeId) -> Result<Vec<String>, StoreError> {
        self.db.read(|conn| backups::held_by(conn, node))
    }

    fn set_backup_holders(
        &self,
        deployment: &str,
        holders: &[NodeId],
        also: &[NodeId],
        now_ms: u64,
    ) -> Result<BTreeSet<NodeId>, StoreError> {
        let (deployment, holders, also) = (deployment.to_owned(), holders.to_vec(), also.to_vec());
        self.db
            .write(move |tx| backups::set_holders(tx, &deployment, &holders, &also, now_ms))
    }

    fn ask_backup(
        &self,
        deployment: &str,
        ask: &BackupAsk,
        bump: &[NodeId],
    ) -> Result<Option<u64>, StoreError> {
        let (deployment, ask, bump) = (deployment.to_owned(), ask.clone(), bump.to_vec());
        self.db
            .write(move |tx| backups::ask(tx, &deployment, &ask, &bump))
    }

    fn put_snapshot(
        &self,
        snapshot: &SnapshotRecord,
        keep: usize,
        event: &EventRecord,
    ) -> Result<bool, StoreError> {
        let (snapshot, event) = (snapshot.clone(), event.clone());
        self.db
            .write(move |tx| backups::put_snapshot(tx, &snapshot, keep, &event))
    }

    fn snapshots(&self, deployment: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        self.db.read(|conn| backups::snapshots(conn, deployment))
    }

    fn shared(&self) -> bool {
        false
    }

    fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Option<Fence>, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .write(move |tx| lease::take(tx, &name, &holder, crate::clock::now_ms(), ttl_ms))
    }

    fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.db.write(move |tx| lease::release(tx, &fence))
    }

    fn register_master(&self, master: &MasterRecord) -> Result<(), StoreError> {
        let master = master.clone();
        self.db.write(move |tx| lease::register_master(tx, &master))
    }

    fn masters(&self) -> Result<Vec<MasterRecord>, StoreError> {
        self.db.read(lease::masters)
    }

    fn publish_heard(&self, master: &str, heard: &[(NodeId, u64)]) -> Result<(), StoreError> {
        if heard.is_empty() {
            return Ok(());
        }
        let (master, heard) = (master.to_owned(), heard.to_vec());
        self.db
            .write(move |tx| lease::publish_heard(tx, &master, &heard))
    }

    fn heard_since(&self, since_ms: u64) -> Result<Vec<(NodeId, String, u64)>, StoreError> {
        self.db.read(|c| lease::heard_since(c, since_ms))
    }

    fn publish_reports(&self, master: &str, reports: &[SharedReport]) -> Result<(), StoreError> {
        if reports.is_empty() {
            return Ok(());
        }
        let (master, reports) = (master.to_owned(), reports.to_vec());
        self.db
            .write(move |tx| lease::publish_reports(tx, &master, &reports))
    }

    fn reports(&self, instances: Option<&[InstanceId]>) -> Result<Vec<SharedReport>, StoreError> {
        let instances = instances.map(<[InstanceId]>::to_vec);
        self.db.read(|c| lease::reports(c, instances.as_deref()))
    }

    fn put_file(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        self.db
            .write(move |tx| lease::put_file(tx, kind, &name, &bytes))
    }

    fn file(&self, kind: FileKind, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.read(|c| lease::file(c, kind, name))
    }

    fn files(&self, kind: FileKind) -> Result<Vec<(String, Sha256)>, StoreError> {
        self.db.read(|c| lease::files(c, kind))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent> {
        // One master owns the file: nobody else writes, so nothing is ever sent.
        self.events.subscribe()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn deployments(&self) -> Result<Arc<Vec<StoredDeployment>>, StoreError> {
        self.deployments.get(|| {
            self.db.read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT name, spec, rollout, version FROM deployments ORDER BY name",
                )?;
                let rows = stmt.query_map([], deployment_from_row)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
        })
    }

    fn deployment(&self, name: &str) -> Result<Option<StoredDeployment>, StoreError> {
        self.db.read(|conn| {
            Ok(conn
                .query_row(
                    "SELECT name, spec, rollout, version FROM deployments WHERE name = ?1",
                    [name],
                    deployment_from_row,
                )
                .optional()?)
        })
    }
}
