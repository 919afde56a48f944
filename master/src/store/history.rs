//! SQLite side of the scheduler's per-deployment records: the status (conditions, the move under
//! way) and the history of events, kept to the last [`EVENTS_KEPT`] per deployment; and the last
//! generation of every removed instance id, so that an id used again never goes back in
//! generation.

use hearth_protocol::messages::state::InstanceId;
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::corrupt;
use super::{EVENTS_KEPT, EventRecord, STATUS_RECORD_VERSION, StatusUpdate, StoreError};

/// Removes a deployment's status and history.
pub(super) fn forget(tx: &Connection, name: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM deployment_status WHERE name = ?1", [name])?;
    tx.execute(
        "DELETE FROM deployment_events WHERE deployment = ?1",
        [name],
    )?;
    Ok(())
}

/// Every status record.
pub(super) fn statuses(conn: &Connection) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    let mut stmt = conn.prepare("SELECT name, status, status_version FROM deployment_status")?;
    let rows = stmt.query_map([], |r| {
        let version: i64 = r.get(2)?;
        if version != STATUS_RECORD_VERSION {
            return Err(corrupt("status_version", version));
        }
        let text: String = r.get(1)?;
        Ok((
            r.get(0)?,
            serde_json::from_str(&text).map_err(|e| corrupt("deployment status", e))?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes the updates (in the caller's transaction).
pub(super) fn record(tx: &Connection, updates: &[StatusUpdate]) -> Result<(), StoreError> {
    for u in updates {
        let Some(status) = &u.status else {
            forget(tx, &u.deployment)?;
            continue;
        };
        let text = serde_json::to_string(status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO deployment_status (name, status, status_version) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET status = ?2, status_version = ?3",
            params![u.deployment, text, STATUS_RECORD_VERSION],
        )?;
        for e in &u.events {
            tx.execute(
                "INSERT INTO deployment_events (deployment, at_ms, kind, text) VALUES (?1, ?2, ?3, ?4)",
                params![u.deployment, i64::try_from(e.at_ms).unwrap_or(i64::MAX), e.kind, e.text],
            )?;
        }
        if !u.events.is_empty() {
            tx.execute(
                "DELETE FROM deployment_events WHERE deployment = ?1 AND seq <= (
                     SELECT seq FROM deployment_events WHERE deployment = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
                params![u.deployment, i64::try_from(EVENTS_KEPT).unwrap_or(i64::MAX)],
            )?;
        }
    }
    Ok(())
}

/// The last `limit` events of a deployment, oldest first.
pub(super) fn events(
    conn: &Connection,
    name: &str,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT at_ms, kind, text FROM deployment_events WHERE deployment = ?1
         ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![name, i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            let at: i64 = r.get(0)?;
            Ok(EventRecord {
                at_ms: u64::try_from(at).unwrap_or(0),
                kind: r.get(1)?,
                text: r.get(2)?,
            })
        },
    )?;
    let mut out: Vec<EventRecord> = rows.collect::<Result<_, _>>()?;
    out.reverse();
    Ok(out)
}

/// Remembers the last generation of a removed instance.
pub(super) fn retire_instance(
    tx: &Connection,
    instance: &InstanceId,
    generation: u64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO retired_instances (instance, generation) VALUES (?1, ?2)
         ON CONFLICT (instance) DO UPDATE SET generation = ?2",
        params![
            instance.to_string(),
            i64::try_from(generation).unwrap_or(i64::MAX)
        ],
    )?;
    Ok(())
}

/// The last generation of a removed instance id, if it was ever used.
pub(super) fn retired_generation(
    tx: &Connection,
    instance: &InstanceId,
) -> rusqlite::Result<Option<u64>> {
    let g: Option<i64> = tx
        .query_row(
            "SELECT generation FROM retired_instances WHERE instance = ?1",
            [instance.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(g.map(|g| u64::try_from(g).unwrap_or(0)))
}
