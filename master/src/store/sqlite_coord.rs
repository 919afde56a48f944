//! The coordination tables (issue 19) in SQLite: a lease, the masters' registry, heard times
//! and shared instance reports. One master owns an SQLite file, so nobody contends for the
//! lease; the tables are here so that both engines show one behaviour to the conformance suite.

use hearth_protocol::messages::state::{InstanceId, InstanceStatus};
use hearth_protocol::{NodeId, Sha256};
use rusqlite::{Connection, OptionalExtension, params};

use super::coord::FILE_PART;
use super::sqlite::corrupt;
use super::{Fence, FileKind, MasterRecord, SharedReport, StoreError};

/// Version of the JSON encoding of [`InstanceStatus`] in `instance_reports.report`.
const REPORT_VERSION: i64 = 1;

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Takes or renews a lease at `now_ms` (see [`super::Store::take_lease`]).
pub(super) fn take(
    tx: &Connection,
    name: &str,
    holder: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Option<Fence>, StoreError> {
    let current: Option<(String, i64, i64)> = tx
        .query_row(
            "SELECT holder, epoch, expires_ms FROM leases WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let expires = ms(now_ms.saturating_add(ttl_ms));
    let epoch = match current {
        Some((h, epoch, _)) if h == holder => epoch,
        Some((_, _, until)) if until > ms(now_ms) => return Ok(None),
        Some((_, epoch, _)) => epoch + 1,
        None => 1,
    };
    tx.execute(
        "INSERT INTO leases (name, holder, epoch, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET holder = ?2, epoch = ?3, expires_ms = ?4",
        params![name, holder, epoch, expires],
    )?;
    Ok(Some(Fence {
        name: name.to_owned(),
        holder: holder.to_owned(),
        epoch: unms(epoch),
    }))
}

/// Ends a lease still held under `fence` (it expires now).
pub(super) fn release(tx: &Connection, fence: &Fence) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE leases SET expires_ms = 0 WHERE name = ?1 AND holder = ?2 AND epoch = ?3",
        params![fence.name, fence.holder, ms(fence.epoch)],
    )?;
    Ok(())
}

/// Fails with [`StoreError::Fenced`] unless `fence` still holds its lease.
pub(super) fn check(tx: &Connection, fence: &Fence) -> Result<(), StoreError> {
    let held: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND epoch = ?3",
            params![fence.name, fence.holder, ms(fence.epoch)],
            |r| r.get(0),
        )
        .optional()?;
    held.map(|_| ()).ok_or(StoreError::Fenced(fence.epoch))
}

pub(super) fn register_master(tx: &Connection, m: &MasterRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO masters (name, quic_addr, api_addr, seen_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET quic_addr = ?2, api_addr = ?3, seen_ms = ?4",
        params![
            m.name,
            m.quic_addr.to_string(),
            m.api_addr.map(|a| a.to_string()),
            ms(m.seen_ms)
        ],
    )?;
    Ok(())
}

pub(super) fn masters(c: &Connection) -> Result<Vec<MasterRecord>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT name, quic_addr, api_addr, seen_ms FROM masters ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        let quic: String = r.get(1)?;
        let api: Option<String> = r.get(2)?;
        Ok(MasterRecord {
            name: r.get(0)?,
            quic_addr: quic.parse().map_err(|e| corrupt("master quic_addr", e))?,
            api_addr: api
                .map(|a| a.parse().map_err(|e| corrupt("master api_addr", e)))
                .transpose()?,
            seen_ms: unms(r.get(3)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn publish_heard(
    tx: &Connection,
    master: &str,
    heard: &[(NodeId, u64)],
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO heard (node, master, heard_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (node, master) DO UPDATE SET heard_ms = MAX(heard.heard_ms, ?3)",
    )?;
    for (node, at) in heard {
        stmt.execute(params![node.to_string(), master, ms(*at)])?;
    }
    Ok(())
}

pub(super) fn heard_since(
    c: &Connection,
    since_ms: u64,
) -> Result<Vec<(NodeId, String, u64)>, StoreError> {
    // The latest row per node (ties: the smallest master name, so both engines agree).
    let mut stmt = c.prepare_cached(
        "SELECT node, master, heard_ms FROM heard h WHERE heard_ms > ?1
         AND NOT EXISTS (SELECT 1 FROM heard o WHERE o.node = h.node AND (o.heard_ms > h.heard_ms
             OR (o.heard_ms = h.heard_ms AND o.master < h.master)))
         ORDER BY node",
    )?;
    let rows = stmt.query_map([ms(since_ms)], |r| {
        let node: String = r.get(0)?;
        Ok((
            node.parse().map_err(|e| corrupt("heard node", e))?,
            r.get(1)?,
            unms(r.get(2)?),
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn publish_reports(
    tx: &Connection,
    master: &str,
    reports: &[SharedReport],
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO instance_reports (instance, node, master, report, report_version, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (instance) DO UPDATE SET node = ?2, master = ?3, report = ?4,
             report_version = ?5, at_ms = ?6",
    )?;
    for r in reports {
        let json =
            serde_json::to_string(&r.status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        stmt.execute(params![
            r.instance().to_string(),
            r.node.to_string(),
            master,
            json,
            REPORT_VERSION,
            ms(r.at_ms)
        ])?;
    }
    Ok(())
}

fn report_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SharedReport> {
    let node: String = r.get(0)?;
    let json: String = r.get(2)?;
    let version: i64 = r.get(3)?;
    if version != REPORT_VERSION {
        return Err(corrupt("report_version", version));
    }
    let status: InstanceStatus =
        serde_json::from_str(&json).map_err(|e| corrupt("instance report", e))?;
    Ok(SharedReport {
        node: node.parse().map_err(|e| corrupt("report node", e))?,
        master: r.get(1)?,
        status,
        at_ms: unms(r.get(4)?),
    })
}

pub(super) fn reports(
    c: &Connection,
    instances: Option<&[InstanceId]>,
) -> Result<Vec<SharedReport>, StoreError> {
    const COLUMNS: &str =
        "SELECT node, master, report, report_version, at_ms FROM instance_reports";
    match instances {
        None => {
            let mut stmt = c.prepare_cached(&format!("{COLUMNS} ORDER BY instance"))?;
            let rows = stmt.query_map([], report_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        Some(ids) => {
            let mut stmt = c.prepare_cached(&format!("{COLUMNS} WHERE instance = ?1"))?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(r) = stmt
                    .query_row([id.to_string()], report_from_row)
                    .optional()?
                {
                    out.push(r);
                }
            }
            Ok(out)
        }
    }
}

pub(super) fn put_file(
    tx: &Connection,
    kind: FileKind,
    name: &str,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let kind = kind.as_str();
    tx.execute(
        "DELETE FROM shared_file_parts WHERE kind = ?1 AND name = ?2",
        params![kind, name],
    )?;
    let mut parts = 0i64;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO shared_file_parts (kind, name, part, bytes) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for chunk in bytes.chunks(FILE_PART) {
        stmt.execute(params![kind, name, parts, chunk])?;
        parts += 1;
    }
    tx.execute(
        "INSERT INTO shared_files (kind, name, sha256, size, parts) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, name) DO UPDATE SET sha256 = ?3, size = ?4, parts = ?5",
        params![
            kind,
            name,
            Sha256::digest(bytes).to_string(),
            ms(bytes.len() as u64),
            parts
        ],
    )?;
    Ok(())
}

pub(super) fn file(
    c: &Connection,
    kind: FileKind,
    name: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let kind = kind.as_str();
    let head: Option<(String, i64, i64)> = c
        .query_row(
            "SELECT sha256, size, parts FROM shared_files WHERE kind = ?1 AND name = ?2",
            params![kind, name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((sha, size, parts)) = head else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT part, bytes FROM shared_file_parts WHERE kind = ?1 AND name = ?2 ORDER BY part",
    )?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut seen = 0i64;
    let mut rows = stmt.query(params![kind, name])?;
    while let Some(row) = rows.next()? {
        let part: i64 = row.get(0)?;
        if part != seen {
            return Err(StoreError::Corrupt(format!(
                "shared file {kind} {name}: part {seen} missing"
            )));
        }
        let chunk: Vec<u8> = row.get(1)?;
        bytes.extend_from_slice(&chunk);
        seen += 1;
    }
    check_file(kind, name, &bytes, &sha, seen, parts)?;
    Ok(Some(bytes))
}

/// Checks a shared file read back against its head row (parts, SHA-256).
pub(super) fn check_file(
    kind: &str,
    name: &str,
    bytes: &[u8],
    sha: &str,
    seen: i64,
    parts: i64,
) -> Result<(), StoreError> {
    if seen != parts || Sha256::digest(bytes).to_string() != sha {
        return Err(StoreError::Corrupt(format!(
            "shared file {kind} {name}: {seen} of {parts} parts, or its bytes do not match its SHA-256"
        )));
    }
    Ok(())
}

pub(super) fn files(c: &Connection, kind: FileKind) -> Result<Vec<(String, Sha256)>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT name, sha256 FROM shared_files WHERE kind = ?1 ORDER BY name")?;
    let rows = stmt.query_map([kind.as_str()], |r| {
        let sha: String = r.get(1)?;
        Ok((
            r.get(0)?,
            sha.parse().map_err(|e| corrupt("shared file sha256", e))?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
