//! SQLite side of backups (issue 18): each deployment's key (`backup_keys`, made once and kept
//! while the deployment exists), the homes chosen to keep its copies (`backup_holders`), the
//! snapshots its replicas' nodes reported (`snapshots`, the newest kept), and the operator's
//! requests (`backup_requests`: `hearth backup now`, `hearth backup restore`). All of it goes
//! with the deployment ([`forget`]).

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::NodeId;
use hearth_protocol::messages::backup::ObjectId;
use hearth_protocol::messages::state::InstanceId;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sqlite::{bump_revision, corrupt};
use super::{EVENTS_KEPT, EventRecord, StoreError};

/// A deployment's backup record (what a desired state needs besides the snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupRecord {
    /// Its key (64 hex characters), once made.
    pub key: Option<String>,
    /// The homes that keep its copies, oldest first.
    pub holders: Vec<NodeId>,
    /// The operator's last `backup now` number (0: none).
    pub now_seq: u64,
    /// The operator's last restore request.
    pub restore: Option<RestoreRequest>,
}

/// An operator's restore request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Its number (above 0).
    pub seq: u64,
    /// The snapshot to restore.
    pub snapshot: ObjectId,
    /// When it was asked for, Unix ms (a snapshot received later supersedes it for replicas
    /// placed afterwards).
    pub at_ms: u64,
}

/// What an operator asks of a deployment's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupAsk {
    /// A snapshot now.
    Now,
    /// A restore of this snapshot, asked for at this time (Unix ms).
    Restore(ObjectId, u64),
}

/// A snapshot as reported by a replica's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The deployment.
    pub deployment: String,
    /// The snapshot (its manifest's id).
    pub snapshot: ObjectId,
    /// The instance whose data it is.
    pub instance: InstanceId,
    /// The node that took it.
    pub node: NodeId,
    /// When it was taken, Unix ms (the node's clock).
    pub taken_ms: u64,
    /// Bytes of the files.
    pub bytes: u64,
    /// Sealed bytes of its objects.
    pub stored_bytes: u64,
    /// Sealed bytes sent to holders for it.
    pub sent_bytes: u64,
    /// Holders that confirmed it durable.
    pub held_by: Vec<NodeId>,
    /// When the master received the report, Unix ms.
    pub received_ms: u64,
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn exists(conn: &Connection, deployment: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM deployments WHERE name = ?1",
            [deployment],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .is_some())
}

/// The stored key, made from `fresh` first if there is none; `None` if the deployment is gone
/// (so a key is never left behind a removed deployment).
pub(super) fn key(
    tx: &Connection,
    deployment: &str,
    fresh: &str,
    now_ms: u64,
) -> Result<Option<String>, StoreError> {
    if !exists(tx, deployment)? {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO backup_keys (deployment, key, created_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (deployment) DO NOTHING",
        params![deployment, fresh, ms(now_ms)],
    )?;
    Ok(Some(tx.query_row(
        "SELECT key FROM backup_keys WHERE deployment = ?1",
        [deployment],
        |r| r.get(0),
    )?))
}

fn holders_of(conn: &Connection, deployment: &str) -> Result<Vec<NodeId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT node FROM backup_holders WHERE deployment = ?1 ORDER BY since_ms, node",
    )?;
    let rows = stmt.query_map([deployment], |r| {
        let node: String = r.get(0)?;
        node.parse::<NodeId>()
            .map_err(|e| corrupt("backup holder", e))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A deployment's record (empty if it has none).
pub(super) fn record(conn: &Connection, deployment: &str) -> Result<BackupRecord, StoreError> {
    let key: Option<String> = conn
        .query_row(
            "SELECT key FROM backup_keys WHERE deployment = ?1",
            [deployment],
            |r| r.get(0),
        )
        .optional()?;
    let requests: Option<(i64, i64, Option<String>, i64)> = conn
        .query_row(
            "SELECT now_seq, restore_seq, restore_snapshot, restore_ms FROM backup_requests
             WHERE deployment = ?1",
            [deployment],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (now_seq, restore) = match requests {
        None => (0, None),
        Some((now, seq, snapshot, at)) => {
            let restore = match snapshot {
                Some(s) if seq > 0 => Some(RestoreRequest {
                    seq: unsigned(seq),
                    snapshot: s.parse().map_err(|e| corrupt("restore_snapshot", e))?,
                    at_ms: unsigned(at),
                }),
                _ => None,
            };
            (unsigned(now), restore)
        }
    };
    Ok(BackupRecord {
        key,
        holders: holders_of(conn, deployment)?,
        now_seq,
        restore,
    })
}

/// Every deployment's holders.
pub(super) fn all_holders(conn: &Connection) -> Result<BTreeMap<String, Vec<NodeId>>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT deployment, node FROM backup_holders ORDER BY deployment, since_ms, node",
    )?;
    let rows = stmt.query_map([], |r| {
        let node: String = r.get(1)?;
        Ok((
            r.get::<_, String>(0)?,
            node.parse::<NodeId>()
                .map_err(|e| corrupt("backup holder", e))?,
        ))
    })?;
    let mut out: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for row in rows {
        let (d, n) = row?;
        out.entry(d).or_default().push(n);
    }
    Ok(out)
}

/// The deployments `node` keeps copies of.
pub(super) fn held_by(conn: &Connection, node: &NodeId) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT deployment FROM backup_holders WHERE node = ?1 ORDER BY deployment",
    )?;
    let rows = stmt.query_map([node.to_string()], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Sets a deployment's holders (those staying keep their `since`), bumping the revisions of
/// `also`, the old and the new holders when they change; returns the bumped nodes (none when
/// nothing changed, or when the deployment is gone and holders were asked for).
pub(super) fn set_holders(
    tx: &Connection,
    deployment: &str,
    holders: &[NodeId],
    also: &[NodeId],
    now_ms: u64,
) -> Result<BTreeSet<NodeId>, StoreError> {
    let old = holders_of(tx, deployment)?;
    let old_set: BTreeSet<NodeId> = old.iter().copied().collect();
    let new_set: BTreeSet<NodeId> = holders.iter().copied().collect();
    if old_set == new_set || (!holders.is_empty() && !exists(tx, deployment)?) {
        return Ok(BTreeSet::new());
    }
    for gone in old_set.difference(&new_set) {
        tx.execute(
            "DELETE FROM backup_holders WHERE deployment = ?1 AND node = ?2",
            params![deployment, gone.to_string()],
        )?;
    }
    // The new ones in the order chosen: `since` orders them after the staying ones.
    for (i, added) in holders.iter().filter(|n| !old_set.contains(n)).enumerate() {
        tx.execute(
            "INSERT INTO backup_holders (deployment, node, since_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (deployment, node) DO NOTHING",
            params![
                deployment,
                added.to_string(),
                ms(now_ms).saturating_add(i64::try_from(i).unwrap_or(0))
            ],
        )?;
    }
    let bumped: BTreeSet<NodeId> = old_set
        .union(&new_set)
        .copied()
        .chain(also.iter().copied())
        .collect();
    for n in &bumped {
        bump_revision(tx, n)?;
    }
    Ok(bumped)
}

/// Raises the request's number (and sets the snapshot of a restore), bumping `bump`'s
/// revisions; the new number, or `None` if the deployment is gone.
pub(super) fn ask(
    tx: &Connection,
    deployment: &str,
    ask: &BackupAsk,
    bump: &[NodeId],
) -> Result<Option<u64>, StoreError> {
    if !exists(tx, deployment)? {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO backup_requests (deployment, now_seq, restore_seq) VALUES (?1, 0, 0)
         ON CONFLICT (deployment) DO NOTHING",
        [deployment],
    )?;
    match ask {
        BackupAsk::Now => tx.execute(
            "UPDATE backup_requests SET now_seq = now_seq + 1 WHERE deployment = ?1",
            [deployment],
        )?,
        BackupAsk::Restore(s, at_ms) => tx.execute(
            "UPDATE backup_requests SET restore_seq = restore_seq + 1, restore_snapshot = ?2,
             restore_ms = ?3 WHERE deployment = ?1",
            params![deployment, s.to_string(), ms(*at_ms)],
        )?,
    };
    let seq: i64 = tx.query_row(
        match ask {
            BackupAsk::Now => "SELECT now_seq FROM backup_requests WHERE deployment = ?1",
            BackupAsk::Restore(..) => {
                "SELECT restore_seq FROM backup_requests WHERE deployment = ?1"
            }
        },
        [deployment],
        |r| r.get(0),
    )?;
    for n in bump {
        bump_revision(tx, n)?;
    }
    Ok(Some(unsigned(seq)))
}

/// Stores a snapshot (a report sent again replaces it), keeps the newest `keep` of the
/// deployment (and the one a restore asks for), and appends `event`; false if the deployment
/// is gone.
pub(super) fn put_snapshot(
    tx: &Connection,
    s: &SnapshotRecord,
    keep: usize,
    event: &EventRecord,
) -> Result<bool, StoreError> {
    if !exists(tx, &s.deployment)? {
        return Ok(false);
    }
    let held: Vec<String> = s.held_by.iter().map(ToString::to_string).collect();
    let held = serde_json::to_string(&held).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO snapshots (deployment, snapshot, instance, node, taken_ms, bytes,
             stored_bytes, sent_bytes, held_by, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (deployment, snapshot) DO UPDATE SET instance = ?3, node = ?4,
             taken_ms = ?5, bytes = ?6, stored_bytes = ?7, sent_bytes = ?8, held_by = ?9,
             received_ms = ?10",
        params![
            s.deployment,
            s.snapshot.to_string(),
            s.instance.to_string(),
            s.node.to_string(),
            ms(s.taken_ms),
            ms(s.bytes),
            ms(s.stored_bytes),
            ms(s.sent_bytes),
            held,
            ms(s.received_ms)
        ],
    )?;
    tx.execute(
        "DELETE FROM snapshots WHERE deployment = ?1
           AND snapshot <> COALESCE(
               (SELECT restore_snapshot FROM backup_requests WHERE deployment = ?1), '')
           AND snapshot NOT IN (
               SELECT snapshot FROM snapshots WHERE deployment = ?1
               ORDER BY taken_ms DESC, received_ms DESC, snapshot LIMIT ?2)",
        params![s.deployment, i64::try_from(keep).unwrap_or(i64::MAX)],
    )?;
    tx.execute(
        "INSERT INTO deployment_events (deployment, at_ms, kind, text) VALUES (?1, ?2, ?3, ?4)",
        params![s.deployment, ms(event.at_ms), event.kind, event.text],
    )?;
    tx.execute(
        "DELETE FROM deployment_events WHERE deployment = ?1 AND seq <= (
             SELECT seq FROM deployment_events WHERE deployment = ?1
             ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        params![s.deployment, i64::try_from(EVENTS_KEPT).unwrap_or(i64::MAX)],
    )?;
    Ok(true)
}

fn snapshot_from_row(r: &Row<'_>) -> rusqlite::Result<SnapshotRecord> {
    let text = |i: &str| r.get::<_, String>(i);
    let held: Vec<String> =
        serde_json::from_str(&text("held_by")?).map_err(|e| corrupt("held_by", e))?;
    Ok(SnapshotRecord {
        deployment: text("deployment")?,
        snapshot: text("snapshot")?
            .parse()
            .map_err(|e| corrupt("snapshot", e))?,
        instance: text("instance")?
            .parse()
            .map_err(|e| corrupt("snapshot instance", e))?,
        node: text("node")?
            .parse()
            .map_err(|e| corrupt("snapshot node", e))?,
        taken_ms: unsigned(r.get("taken_ms")?),
        bytes: unsigned(r.get("bytes")?),
        stored_bytes: unsigned(r.get("stored_bytes")?),
        sent_bytes: unsigned(r.get("sent_bytes")?),
        held_by: held
            .iter()
            .map(|n| n.parse().map_err(|e| corrupt("held_by", e)))
            .collect::<Result<_, _>>()?,
        received_ms: unsigned(r.get("received_ms")?),
    })
}

/// A deployment's snapshots, newest first.
pub(super) fn snapshots(
    conn: &Connection,
    deployment: &str,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM snapshots WHERE deployment = ?1
         ORDER BY taken_ms DESC, received_ms DESC, snapshot",
    )?;
    let rows = stmt.query_map([deployment], snapshot_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Removes everything of a removed deployment's backups, bumping its holders' revisions (they
/// stop keeping its copies).
pub(super) fn forget(tx: &Connection, deployment: &str) -> Result<(), StoreError> {
    for holder in holders_of(tx, deployment)? {
        bump_revision(tx, &holder)?;
    }
    for table in [
        "backup_keys",
        "backup_holders",
        "snapshots",
        "backup_requests",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE deployment = ?1"),
            [deployment],
        )?;
    }
    Ok(())
}
