//! Deployments (versioned for compare-and-set), their scheduler status records and their
//! history of events (the last [`EVENTS_KEPT`] per deployment).

use tokio_postgres::Row;

use super::super::{
    EVENTS_KEPT, EventRecord, STATUS_RECORD_VERSION, StatusUpdate, StoreError, StoredDeployment,
    exposed_ports,
};
use super::bridge::{Tx, corrupt, ms, pg, unms};
use super::{backups, gateways};

/// Version of the JSON encoding of a deployment spec in `deployments.spec`.
const SPEC_VERSION: i64 = 1;

fn deployment_from_row(r: &Row) -> Result<StoredDeployment, StoreError> {
    let spec: String = r.try_get("spec").map_err(pg)?;
    let rollout: Option<String> = r.try_get("rollout").map_err(pg)?;
    let version: i64 = r.try_get("version").map_err(pg)?;
    Ok(StoredDeployment {
        name: r.try_get("name").map_err(pg)?,
        version: u64::try_from(version).map_err(|e| corrupt("deployment version", e))?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("deployment spec", e))?,
        rollout: rollout
            .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("deployment rollout", e)))
            .transpose()?,
    })
}

pub(super) async fn put(tx: &Tx<'_>, d: &StoredDeployment) -> Result<(), StoreError> {
    let old = tx
        .opt("SELECT spec FROM deployments WHERE name = $1", &[&d.name])
        .await?;
    let was = match old {
        Some(row) => {
            let text: String = row.try_get(0).map_err(pg)?;
            serde_json::from_str(&text)
                .ok()
                .map_or_else(Vec::new, |o| exposed_ports(&o))
        }
        None => Vec::new(),
    };
    if was != exposed_ports(&d.spec) {
        gateways::bump_routed(tx, Some(&d.name)).await?;
    }
    tx.execute(
        "INSERT INTO deployments (name, spec, spec_version, rollout, version)
         VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec,
             spec_version = EXCLUDED.spec_version, rollout = EXCLUDED.rollout,
             version = deployments.version + 1",
        &[
            &d.name,
            &d.spec.to_string(),
            &SPEC_VERSION,
            &d.rollout.as_ref().map(|r| r.to_string()),
        ],
    )
    .await?;
    tx.note_data();
    Ok(())
}

pub(super) async fn replace(
    tx: &Tx<'_>,
    (expected, new): &(StoredDeployment, StoredDeployment),
) -> Result<bool, StoreError> {
    let replaced = tx
        .execute(
            "UPDATE deployments SET spec = $1, spec_version = $2, rollout = $3,
                 version = version + 1
             WHERE name = $4 AND version = $5",
            &[
                &new.spec.to_string(),
                &SPEC_VERSION,
                &new.rollout.as_ref().map(|r| r.to_string()),
                &expected.name,
                &ms(expected.version),
            ],
        )
        .await?
        == 1;
    if replaced {
        if exposed_ports(&expected.spec) != exposed_ports(&new.spec) {
            gateways::bump_routed(tx, Some(&expected.name)).await?;
        }
        tx.note_data();
    }
    Ok(replaced)
}

pub(super) async fn remove(tx: &Tx<'_>, name: &String) -> Result<bool, StoreError> {
    let removed = tx
        .execute("DELETE FROM deployments WHERE name = $1", &[name])
        .await?
        == 1;
    forget_history(tx, name).await?;
    backups::forget(tx, name).await?;
    tx.note_data();
    Ok(removed)
}

pub(super) async fn all(tx: &Tx<'_>, _: &()) -> Result<Vec<StoredDeployment>, StoreError> {
    tx.query(
        "SELECT name, spec, rollout, version FROM deployments ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(deployment_from_row)
    .collect()
}

pub(super) async fn one(
    tx: &Tx<'_>,
    name: &String,
) -> Result<Option<StoredDeployment>, StoreError> {
    tx.opt(
        "SELECT name, spec, rollout, version FROM deployments WHERE name = $1",
        &[name],
    )
    .await?
    .as_ref()
    .map(deployment_from_row)
    .transpose()
}

/// Removes a deployment's status and history.
async fn forget_history(tx: &Tx<'_>, name: &str) -> Result<(), StoreError> {
    tx.execute("DELETE FROM deployment_status WHERE name = $1", &[&name])
        .await?;
    tx.execute(
        "DELETE FROM deployment_events WHERE deployment = $1",
        &[&name],
    )
    .await?;
    Ok(())
}

pub(super) async fn statuses(
    tx: &Tx<'_>,
    _: &(),
) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
    tx.query(
        "SELECT name, status, status_version FROM deployment_status ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let version: i64 = r.try_get(2).map_err(pg)?;
        if version != STATUS_RECORD_VERSION {
            return Err(corrupt("status_version", version));
        }
        let text: String = r.try_get(1).map_err(pg)?;
        Ok((
            r.try_get(0).map_err(pg)?,
            serde_json::from_str(&text).map_err(|e| corrupt("deployment status", e))?,
        ))
    })
    .collect()
}

/// Appends `events` to a deployment's history and keeps its last [`EVENTS_KEPT`].
pub(super) async fn append_events(
    tx: &Tx<'_>,
    deployment: &str,
    events: &[EventRecord],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let at: Vec<i64> = events.iter().map(|e| ms(e.at_ms)).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    tx.execute(
        "INSERT INTO deployment_events (deployment, at_ms, kind, text)
         SELECT $1, a, k, t FROM unnest($2::bigint[], $3::text[], $4::text[]) WITH ORDINALITY
             AS u(a, k, t, i) ORDER BY i",
        &[&deployment, &at, &kinds, &texts],
    )
    .await?;
    tx.execute(
        "DELETE FROM deployment_events WHERE deployment = $1 AND seq <= (
             SELECT seq FROM deployment_events WHERE deployment = $1
             ORDER BY seq DESC LIMIT 1 OFFSET $2)",
        &[&deployment, &i64::try_from(EVENTS_KEPT).unwrap_or(i64::MAX)],
    )
    .await?;
    Ok(())
}

pub(super) async fn record_status(tx: &Tx<'_>, updates: &[StatusUpdate]) -> Result<(), StoreError> {
    for u in updates {
        let Some(status) = &u.status else {
            forget_history(tx, &u.deployment).await?;
            continue;
        };
        let text = serde_json::to_string(status).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO deployment_status (name, status, status_version) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status,
                 status_version = EXCLUDED.status_version",
            &[&u.deployment, &text, &STATUS_RECORD_VERSION],
        )
        .await?;
        append_events(tx, &u.deployment, &u.events).await?;
    }
    Ok(())
}

pub(super) async fn events(
    tx: &Tx<'_>,
    (name, limit): &(String, usize),
) -> Result<Vec<EventRecord>, StoreError> {
    let mut out: Vec<EventRecord> = tx
        .query(
            "SELECT at_ms, kind, text FROM deployment_events WHERE deployment = $1
             ORDER BY seq DESC LIMIT $2",
            &[name, &i64::try_from(*limit).unwrap_or(i64::MAX)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(EventRecord {
                at_ms: unms(r.try_get(0).map_err(pg)?),
                kind: r.try_get(1).map_err(pg)?,
                text: r.try_get(2).map_err(pg)?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    out.reverse();
    Ok(out)
}
