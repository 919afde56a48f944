//! Several masters on one database: the lease (timed by the database's own clock, so that the
//! masters' clocks never decide who holds it), its fence, the masters' registry, the times each
//! master heard its nodes and the instance reports it received (see `store::coord`).

use std::collections::BTreeMap;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{InstanceId, InstanceStatus};
use tokio_postgres::Row;

use super::super::{Fence, MasterRecord, SharedReport, StoreError};
use super::bridge::{Tx, corrupt, ms, pg, unms};

/// Version of the JSON encoding of [`InstanceStatus`] in `instance_reports.report`.
const REPORT_VERSION: i64 = 1;

/// The database's clock, Unix ms.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Takes or renews a lease: the same holder keeps its epoch, another holder takes it once it
/// expired, at the next epoch.
pub(super) async fn take(
    tx: &Tx<'_>,
    (name, holder, ttl_ms): &(String, String, u64),
) -> Result<Option<Fence>, StoreError> {
    let now: i64 = tx
        .query(&format!("SELECT {NOW_MS}"), &[])
        .await?
        .first()
        .ok_or_else(|| corrupt("clock", "no row"))?
        .try_get(0)
        .map_err(pg)?;
    let current = tx
        .opt(
            "SELECT holder, epoch, expires_ms FROM leases WHERE name = $1 FOR UPDATE",
            &[name],
        )
        .await?;
    let epoch = match current {
        None => 1,
        Some(row) => {
            let (h, epoch, until): (String, i64, i64) = (
                row.try_get(0).map_err(pg)?,
                row.try_get(1).map_err(pg)?,
                row.try_get(2).map_err(pg)?,
            );
            if h == *holder {
                epoch
            } else if until > now {
                return Ok(None);
            } else {
                epoch + 1
            }
        }
    };
    tx.execute(
        "INSERT INTO leases (name, holder, epoch, expires_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, epoch = EXCLUDED.epoch,
             expires_ms = EXCLUDED.expires_ms",
        &[name, holder, &epoch, &now.saturating_add(ms(*ttl_ms))],
    )
    .await?;
    Ok(Some(Fence {
        name: name.clone(),
        holder: holder.clone(),
        epoch: unms(epoch),
    }))
}

/// Ends a lease still held under `fence` (it expires now, its epoch kept).
pub(super) async fn release(tx: &Tx<'_>, fence: &Fence) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND epoch = $3",
        &[&fence.name, &fence.holder, &ms(fence.epoch)],
    )
    .await?;
    Ok(())
}

/// Fails with [`StoreError::Fenced`] unless `fence` still holds its lease; the row stays
/// locked (`FOR SHARE`) until the caller's transaction ends, so no take-over commits between.
pub(super) async fn check(tx: &Tx<'_>, fence: &Fence) -> Result<(), StoreError> {
    tx.opt(
        "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 FOR SHARE",
        &[&fence.name, &fence.holder, &ms(fence.epoch)],
    )
    .await?
    .map(|_| ())
    .ok_or(StoreError::Fenced(fence.epoch))
}

pub(super) async fn register_master(tx: &Tx<'_>, m: &MasterRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO masters (name, quic_addr, api_addr, seen_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET quic_addr = EXCLUDED.quic_addr,
             api_addr = EXCLUDED.api_addr, seen_ms = EXCLUDED.seen_ms",
        &[
            &m.name,
            &m.quic_addr.to_string(),
            &m.api_addr.map(|a| a.to_string()),
            &ms(m.seen_ms),
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn masters(tx: &Tx<'_>, _: &()) -> Result<Vec<MasterRecord>, StoreError> {
    tx.query(
        "SELECT name, quic_addr, api_addr, seen_ms FROM masters ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let quic: String = r.try_get(1).map_err(pg)?;
        let api: Option<String> = r.try_get(2).map_err(pg)?;
        Ok(MasterRecord {
            name: r.try_get(0).map_err(pg)?,
            quic_addr: quic.parse().map_err(|e| corrupt("master quic_addr", e))?,
            api_addr: api
                .map(|a| a.parse().map_err(|e| corrupt("master api_addr", e)))
                .transpose()?,
            seen_ms: unms(r.try_get(3).map_err(pg)?),
        })
    })
    .collect()
}

/// One statement for the batch; a time never goes back.
pub(super) async fn publish_heard(
    tx: &Tx<'_>,
    (master, heard): &(String, Vec<(NodeId, u64)>),
) -> Result<(), StoreError> {
    let mut latest: BTreeMap<NodeId, u64> = BTreeMap::new();
    for (node, at) in heard {
        let e = latest.entry(*node).or_insert(*at);
        *e = (*e).max(*at);
    }
    let nodes: Vec<String> = latest.keys().map(ToString::to_string).collect();
    let at: Vec<i64> = latest.values().copied().map(ms).collect();
    tx.execute(
        "INSERT INTO heard (node, master, heard_ms)
         SELECT n, $1, h FROM unnest($2::text[], $3::bigint[]) AS u(n, h)
         ON CONFLICT (node, master) DO UPDATE
             SET heard_ms = GREATEST(heard.heard_ms, EXCLUDED.heard_ms)",
        &[master, &nodes, &at],
    )
    .await?;
    Ok(())
}

pub(super) async fn heard_since(
    tx: &Tx<'_>,
    since_ms: &u64,
) -> Result<Vec<(NodeId, String, u64)>, StoreError> {
    // The latest row per node (ties: the smallest master name, as in SQLite).
    tx.query(
        "SELECT node, master, heard_ms FROM heard h WHERE heard_ms > $1
         AND NOT EXISTS (SELECT 1 FROM heard o WHERE o.node = h.node AND (o.heard_ms > h.heard_ms
             OR (o.heard_ms = h.heard_ms AND o.master < h.master)))
         ORDER BY node",
        &[&ms(*since_ms)],
    )
    .await?
    .iter()
    .map(|r| {
        let node: String = r.try_get(0).map_err(pg)?;
        Ok((
            node.parse().map_err(|e| corrupt("heard node", e))?,
            r.try_get(1).map_err(pg)?,
            unms(r.try_get(2).map_err(pg)?),
        ))
    })
    .collect()
}

/// One statement for the batch (of reports of one instance, the last one wins).
pub(super) async fn publish_reports(
    tx: &Tx<'_>,
    (master, reports): &(String, Vec<SharedReport>),
) -> Result<(), StoreError> {
    let mut last: BTreeMap<String, &SharedReport> = BTreeMap::new();
    for r in reports {
        last.insert(r.instance().to_string(), r);
    }
    let instances: Vec<&String> = last.keys().collect();
    let nodes: Vec<String> = last.values().map(|r| r.node.to_string()).collect();
    let at: Vec<i64> = last.values().map(|r| ms(r.at_ms)).collect();
    let json: Vec<String> = last
        .values()
        .map(|r| serde_json::to_string(&r.status).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect::<Result<_, _>>()?;
    tx.execute(
        "INSERT INTO instance_reports (instance, node, master, report, report_version, at_ms)
         SELECT i, n, $1, j, $2, a FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[])
             AS u(i, n, j, a)
         ON CONFLICT (instance) DO UPDATE SET node = EXCLUDED.node, master = EXCLUDED.master,
             report = EXCLUDED.report, report_version = EXCLUDED.report_version,
             at_ms = EXCLUDED.at_ms",
        &[master, &REPORT_VERSION, &instances, &nodes, &json, &at],
    )
    .await?;
    tx.note_reports(reports.iter().map(|r| r.instance().clone()));
    Ok(())
}

fn report_from_row(r: &Row) -> Result<SharedReport, StoreError> {
    let node: String = r.try_get("node").map_err(pg)?;
    let json: String = r.try_get("report").map_err(pg)?;
    let version: i64 = r.try_get("report_version").map_err(pg)?;
    if version != REPORT_VERSION {
        return Err(corrupt("report_version", version));
    }
    let status: InstanceStatus =
        serde_json::from_str(&json).map_err(|e| corrupt("instance report", e))?;
    Ok(SharedReport {
        node: node.parse().map_err(|e| corrupt("report node", e))?,
        master: r.try_get("master").map_err(pg)?,
        status,
        at_ms: unms(r.try_get("at_ms").map_err(pg)?),
    })
}

/// The last report of each instance named, in the order named (all, by instance, for `None`).
pub(super) async fn reports(
    tx: &Tx<'_>,
    instances: &Option<Vec<InstanceId>>,
) -> Result<Vec<SharedReport>, StoreError> {
    let rows = match instances {
        None => {
            tx.query(
                "SELECT node, master, report, report_version, at_ms FROM instance_reports
                 ORDER BY instance",
                &[],
            )
            .await?
        }
        Some(ids) => {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            tx.query(
                "SELECT r.node, r.master, r.report, r.report_version, r.at_ms
                 FROM unnest($1::text[]) WITH ORDINALITY AS q(instance, i)
                 JOIN instance_reports r ON r.instance = q.instance ORDER BY q.i",
                &[&ids],
            )
            .await?
        }
    };
    rows.iter().map(report_from_row).collect()
}
