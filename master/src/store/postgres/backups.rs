//! Backups: each deployment's key (made once, kept while the deployment exists), the homes that
//! keep its copies, the snapshots its replicas' nodes reported (the newest kept), and the
//! operator's requests; all of it goes with the deployment ([`forget`]). The SQLite engine's
//! `backups.rs`, ported.

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::NodeId;
use tokio_postgres::Row;

use super::super::{
    BackupAsk, BackupRecord, EventRecord, RestoreRequest, SnapshotRecord, StoreError,
};
use super::assignments::bump;
use super::bridge::{Tx, corrupt, ms, pg, unms};
use super::deployments::append_events;

/// The arguments of [`set_holders`].
#[derive(Debug)]
pub(super) struct SetHolders {
    pub(super) deployment: String,
    pub(super) holders: Vec<NodeId>,
    pub(super) also: Vec<NodeId>,
    pub(super) now_ms: u64,
}

async fn exists(tx: &Tx<'_>, deployment: &str) -> Result<bool, StoreError> {
    Ok(tx
        .opt("SELECT 1 FROM deployments WHERE name = $1", &[&deployment])
        .await?
        .is_some())
}

/// The stored key, made from `fresh` first if there is none; `None` if the deployment is gone.
pub(super) async fn key(
    tx: &Tx<'_>,
    (deployment, fresh, now_ms): &(String, String, u64),
) -> Result<Option<String>, StoreError> {
    if !exists(tx, deployment).await? {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO backup_keys (deployment, key, created_ms) VALUES ($1, $2, $3)
         ON CONFLICT (deployment) DO NOTHING",
        &[deployment, fresh, &ms(*now_ms)],
    )
    .await?;
    let row = tx
        .opt(
            "SELECT key FROM backup_keys WHERE deployment = $1",
            &[deployment],
        )
        .await?
        .ok_or_else(|| corrupt("backup key", "missing right after it was written"))?;
    Ok(Some(row.try_get(0).map_err(pg)?))
}

async fn holders_of(tx: &Tx<'_>, deployment: &str) -> Result<Vec<NodeId>, StoreError> {
    tx.query(
        "SELECT node FROM backup_holders WHERE deployment = $1 ORDER BY since_ms, node",
        &[&deployment],
    )
    .await?
    .iter()
    .map(|r| {
        let node: String = r.try_get(0).map_err(pg)?;
        node.parse().map_err(|e| corrupt("backup holder", e))
    })
    .collect()
}

/// A deployment's record (empty if it has none).
pub(super) async fn record(tx: &Tx<'_>, deployment: &String) -> Result<BackupRecord, StoreError> {
    let key = match tx
        .opt(
            "SELECT key FROM backup_keys WHERE deployment = $1",
            &[deployment],
        )
        .await?
    {
        Some(r) => Some(r.try_get(0).map_err(pg)?),
        None => None,
    };
    let requests = tx
        .opt(
            "SELECT now_seq, restore_seq, restore_snapshot, restore_ms FROM backup_requests
             WHERE deployment = $1",
            &[deployment],
        )
        .await?;
    let (now_seq, restore) = match requests {
        None => (0, None),
        Some(r) => {
            let (now, seq, snapshot, at): (i64, i64, Option<String>, i64) = (
                r.try_get(0).map_err(pg)?,
                r.try_get(1).map_err(pg)?,
                r.try_get(2).map_err(pg)?,
                r.try_get(3).map_err(pg)?,
            );
            let restore = match snapshot {
                Some(s) if seq > 0 => Some(RestoreRequest {
                    seq: unms(seq),
                    snapshot: s.parse().map_err(|e| corrupt("restore_snapshot", e))?,
                    at_ms: unms(at),
                }),
                _ => None,
            };
            (unms(now), restore)
        }
    };
    Ok(BackupRecord {
        key,
        holders: holders_of(tx, deployment).await?,
        now_seq,
        restore,
    })
}

/// Every deployment's holders.
pub(super) async fn all_holders(
    tx: &Tx<'_>,
    _: &(),
) -> Result<BTreeMap<String, Vec<NodeId>>, StoreError> {
    let mut out: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for r in tx
        .query(
            "SELECT deployment, node FROM backup_holders ORDER BY deployment, since_ms, node",
            &[],
        )
        .await?
    {
        let node: String = r.try_get(1).map_err(pg)?;
        out.entry(r.try_get(0).map_err(pg)?)
            .or_default()
            .push(node.parse().map_err(|e| corrupt("backup holder", e))?);
    }
    Ok(out)
}

/// The deployments `node` keeps copies of.
pub(super) async fn held_by(tx: &Tx<'_>, node: &NodeId) -> Result<Vec<String>, StoreError> {
    tx.query(
        "SELECT deployment FROM backup_holders WHERE node = $1 ORDER BY deployment",
        &[&node.to_string()],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0).map_err(pg))
    .collect()
}

/// Sets a deployment's holders (those staying keep their `since`), bumping the revisions of
/// `also`, the old and the new holders when they change.
pub(super) async fn set_holders(
    tx: &Tx<'_>,
    a: &SetHolders,
) -> Result<BTreeSet<NodeId>, StoreError> {
    let old_set: BTreeSet<NodeId> = holders_of(tx, &a.deployment).await?.into_iter().collect();
    let new_set: BTreeSet<NodeId> = a.holders.iter().copied().collect();
    if old_set == new_set || (!a.holders.is_empty() && !exists(tx, &a.deployment).await?) {
        return Ok(BTreeSet::new());
    }
    let gone: Vec<String> = old_set
        .difference(&new_set)
        .map(ToString::to_string)
        .collect();
    if !gone.is_empty() {
        tx.execute(
            "DELETE FROM backup_holders WHERE deployment = $1 AND node = ANY($2)",
            &[&a.deployment, &gone],
        )
        .await?;
    }
    // The new ones in the order chosen: `since` orders them after the staying ones.
    let mut seen = BTreeSet::new();
    let added: Vec<&NodeId> = a
        .holders
        .iter()
        .filter(|n| !old_set.contains(n) && seen.insert(**n))
        .collect();
    if !added.is_empty() {
        let nodes: Vec<String> = added.iter().map(ToString::to_string).collect();
        // A repeated new holder keeps its first place (as SQLite's `DO NOTHING` would).
        let since: Vec<i64> = a
            .holders
            .iter()
            .filter(|n| !old_set.contains(n))
            .enumerate()
            .scan(BTreeSet::new(), |firsts, (i, n)| {
                Some(
                    firsts
                        .insert(*n)
                        .then(|| ms(a.now_ms).saturating_add(i64::try_from(i).unwrap_or(0))),
                )
            })
            .flatten()
            .collect();
        tx.execute(
            "INSERT INTO backup_holders (deployment, node, since_ms)
             SELECT $1, n, s FROM unnest($2::text[], $3::bigint[]) AS u(n, s)
             ON CONFLICT (deployment, node) DO NOTHING",
            &[&a.deployment, &nodes, &since],
        )
        .await?;
    }
    let bumped: BTreeSet<NodeId> = old_set
        .union(&new_set)
        .copied()
        .chain(a.also.iter().copied())
        .collect();
    bump(tx, bumped.iter().copied()).await?;
    tx.note_data();
    Ok(bumped)
}

/// Raises the request's number (and sets the snapshot of a restore), bumping `bump`'s
/// revisions; the new number, or `None` if the deployment is gone.
pub(super) async fn ask(
    tx: &Tx<'_>,
    (deployment, ask, nodes): &(String, BackupAsk, Vec<NodeId>),
) -> Result<Option<u64>, StoreError> {
    if !exists(tx, deployment).await? {
        return Ok(None);
    }
    tx.execute(
        "INSERT INTO backup_requests (deployment, now_seq, restore_seq) VALUES ($1, 0, 0)
         ON CONFLICT (deployment) DO NOTHING",
        &[deployment],
    )
    .await?;
    let row = match ask {
        BackupAsk::Now => {
            tx.opt(
                "UPDATE backup_requests SET now_seq = now_seq + 1 WHERE deployment = $1
                 RETURNING now_seq",
                &[deployment],
            )
            .await?
        }
        BackupAsk::Restore(s, at_ms) => {
            tx.opt(
                "UPDATE backup_requests SET restore_seq = restore_seq + 1, restore_snapshot = $2,
                 restore_ms = $3 WHERE deployment = $1 RETURNING restore_seq",
                &[deployment, &s.to_string(), &ms(*at_ms)],
            )
            .await?
        }
    };
    let seq: i64 = row
        .ok_or_else(|| corrupt("backup request", "missing right after it was written"))?
        .try_get(0)
        .map_err(pg)?;
    // SQLite bumps each node named, once per time it is named.
    bump(tx, nodes.iter().copied()).await?;
    tx.note_data();
    Ok(Some(unms(seq)))
}

/// Stores a snapshot (a report sent again replaces it), keeps the newest `keep` of the
/// deployment (and the one a restore asks for), and appends `event`; false if the deployment
/// is gone.
pub(super) async fn put_snapshot(
    tx: &Tx<'_>,
    (s, keep, event): &(SnapshotRecord, usize, EventRecord),
) -> Result<bool, StoreError> {
    if !exists(tx, &s.deployment).await? {
        return Ok(false);
    }
    let held: Vec<String> = s.held_by.iter().map(ToString::to_string).collect();
    let held = serde_json::to_string(&held).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "INSERT INTO snapshots (deployment, snapshot, instance, node, taken_ms, bytes,
             stored_bytes, sent_bytes, held_by, received_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (deployment, snapshot) DO UPDATE SET instance = EXCLUDED.instance,
             node = EXCLUDED.node, taken_ms = EXCLUDED.taken_ms, bytes = EXCLUDED.bytes,
             stored_bytes = EXCLUDED.stored_bytes, sent_bytes = EXCLUDED.sent_bytes,
             held_by = EXCLUDED.held_by, received_ms = EXCLUDED.received_ms",
        &[
            &s.deployment,
            &s.snapshot.to_string(),
            &s.instance.to_string(),
            &s.node.to_string(),
            &ms(s.taken_ms),
            &ms(s.bytes),
            &ms(s.stored_bytes),
            &ms(s.sent_bytes),
            &held,
            &ms(s.received_ms),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM snapshots WHERE deployment = $1
           AND snapshot <> COALESCE(
               (SELECT restore_snapshot FROM backup_requests WHERE deployment = $1), '')
           AND snapshot NOT IN (
               SELECT snapshot FROM snapshots WHERE deployment = $1
               ORDER BY taken_ms DESC, received_ms DESC, snapshot LIMIT $2)",
        &[&s.deployment, &i64::try_from(*keep).unwrap_or(i64::MAX)],
    )
    .await?;
    append_events(tx, &s.deployment, std::slice::from_ref(event)).await?;
    tx.note_data();
    Ok(true)
}

fn snapshot_from_row(r: &Row) -> Result<SnapshotRecord, StoreError> {
    let text = |c: &str| r.try_get::<_, String>(c).map_err(pg);
    let int = |c: &str| r.try_get::<_, i64>(c).map_err(pg).map(unms);
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
        taken_ms: int("taken_ms")?,
        bytes: int("bytes")?,
        stored_bytes: int("stored_bytes")?,
        sent_bytes: int("sent_bytes")?,
        held_by: held
            .iter()
            .map(|n| n.parse().map_err(|e| corrupt("held_by", e)))
            .collect::<Result<_, _>>()?,
        received_ms: int("received_ms")?,
    })
}

/// A deployment's snapshots, newest first.
pub(super) async fn snapshots(
    tx: &Tx<'_>,
    deployment: &String,
) -> Result<Vec<SnapshotRecord>, StoreError> {
    tx.query(
        "SELECT * FROM snapshots WHERE deployment = $1
         ORDER BY taken_ms DESC, received_ms DESC, snapshot",
        &[deployment],
    )
    .await?
    .iter()
    .map(snapshot_from_row)
    .collect()
}

/// Removes everything of a removed deployment's backups, bumping its holders' revisions.
pub(super) async fn forget(tx: &Tx<'_>, deployment: &str) -> Result<(), StoreError> {
    bump(tx, holders_of(tx, deployment).await?).await?;
    for table in [
        "backup_keys",
        "backup_holders",
        "snapshots",
        "backup_requests",
    ] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE deployment = $1"),
            &[&deployment],
        )
        .await?;
    }
    Ok(())
}
