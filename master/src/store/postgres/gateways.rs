//! The cooperative's gateways and what a node learns of them: registrations, the port names
//! each assignment publishes (its deployment's routes), and the revisions bumped when either
//! changes (see the SQLite engine's `gateways.rs`, whose rules these are).

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, Name};
use hearth_protocol::messages::tunnel::GatewayRef;
use tokio_postgres::Row;

use super::super::{GatewayRecord, PutGateway, StoreError, exposed_ports};
use super::assignments::bump;
use super::bridge::{Tx, corrupt, ms, pg, unms};

fn gateway_from_row(r: &Row) -> Result<GatewayRecord, StoreError> {
    let name: String = r.try_get("name").map_err(pg)?;
    let key: String = r.try_get("key").map_err(pg)?;
    let addr: String = r.try_get("tunnel_addr").map_err(pg)?;
    let overlay: Option<String> = r.try_get("overlay_addr").map_err(pg)?;
    Ok(GatewayRecord {
        name: name.parse().map_err(|e| corrupt("gateway name", e))?,
        key: key.parse().map_err(|e| corrupt("gateway key", e))?,
        tunnel_addr: addr
            .parse()
            .map_err(|e| corrupt("gateway tunnel_addr", e))?,
        overlay_addr: overlay
            .map(|a| a.parse())
            .transpose()
            .map_err(|e| corrupt("gateway overlay_addr", e))?,
        created_ms: unms(r.try_get("created_ms").map_err(pg)?),
        last_seen_ms: r
            .try_get::<_, Option<i64>>("last_seen_ms")
            .map_err(pg)?
            .map(unms),
    })
}

/// Every gateway, by name.
pub(super) async fn list(tx: &Tx<'_>, _: &()) -> Result<Vec<GatewayRecord>, StoreError> {
    tx.query("SELECT * FROM gateways ORDER BY name", &[])
        .await?
        .iter()
        .map(gateway_from_row)
        .collect()
}

/// Registers `g` unless its name or key is taken.
pub(super) async fn put(tx: &Tx<'_>, g: &GatewayRecord) -> Result<PutGateway, StoreError> {
    let (name, key) = (g.name.to_string(), g.key.to_string());
    let existing = tx
        .opt(
            "SELECT * FROM gateways WHERE name = $1 OR key = $2 ORDER BY name = $1 DESC LIMIT 1",
            &[&name, &key],
        )
        .await?;
    if let Some(row) = existing {
        let old = gateway_from_row(&row)?;
        return Ok(
            if old.name == g.name
                && old.key == g.key
                && old.tunnel_addr == g.tunnel_addr
                && old.overlay_addr == g.overlay_addr
            {
                PutGateway::Unchanged(old)
            } else {
                PutGateway::Conflict(old)
            },
        );
    }
    tx.execute(
        "INSERT INTO gateways (name, key, tunnel_addr, created_ms, overlay_addr)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &name,
            &key,
            &g.tunnel_addr.to_string(),
            &ms(g.created_ms),
            &g.overlay_addr.map(|a| a.to_string()),
        ],
    )
    .await?;
    tx.note_data();
    Ok(PutGateway::Created(bump_routed(tx, None).await?))
}

/// Removes a gateway; the nodes whose desired state changed, or `None` if unknown.
pub(super) async fn remove(
    tx: &Tx<'_>,
    name: &String,
) -> Result<Option<BTreeSet<NodeId>>, StoreError> {
    if tx
        .execute("DELETE FROM gateways WHERE name = $1", &[name])
        .await?
        == 0
    {
        return Ok(None);
    }
    tx.note_data();
    Ok(Some(bump_routed(tx, None).await?))
}

/// Persists last-seen times, only forward (a gateway removed meanwhile is skipped).
pub(super) async fn record_seen(tx: &Tx<'_>, seen: &[(String, u64)]) -> Result<(), StoreError> {
    let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, at) in seen {
        let e = latest.entry(name.as_str()).or_insert(*at);
        *e = (*e).max(*at);
    }
    let names: Vec<&str> = latest.keys().copied().collect();
    let at: Vec<i64> = latest.values().copied().map(ms).collect();
    tx.execute(
        "UPDATE gateways SET last_seen_ms = u.at
         FROM unnest($1::text[], $2::bigint[]) AS u(name, at)
         WHERE gateways.name = u.name AND (gateways.last_seen_ms IS NULL OR gateways.last_seen_ms < u.at)",
        &[&names, &at],
    )
    .await?;
    Ok(())
}

/// Bumps the revision of every node holding a replica of a routed deployment (of `only`, when
/// given: a deployment whose published ports just changed).
pub(super) async fn bump_routed(
    tx: &Tx<'_>,
    only: Option<&str>,
) -> Result<BTreeSet<NodeId>, StoreError> {
    let routed: Vec<String> = match only {
        Some(name) => vec![name.to_owned()],
        None => {
            let mut out = Vec::new();
            for row in tx.query("SELECT name, spec FROM deployments", &[]).await? {
                let spec: String = row.try_get(1).map_err(pg)?;
                let spec: serde_json::Value =
                    serde_json::from_str(&spec).map_err(|e| corrupt("deployment spec", e))?;
                if !exposed_ports(&spec).is_empty() {
                    out.push(row.try_get(0).map_err(pg)?);
                }
            }
            out
        }
    };
    if routed.is_empty() {
        return Ok(BTreeSet::new());
    }
    let nodes = tx
        .query(
            "SELECT DISTINCT node FROM assignments WHERE deployment = ANY($1)",
            &[&routed],
        )
        .await?
        .iter()
        .map(|r| {
            let node: String = r.try_get(0).map_err(pg)?;
            node.parse::<NodeId>().map_err(|e| corrupt("node", e))
        })
        .collect::<Result<BTreeSet<NodeId>, StoreError>>()?;
    bump(tx, nodes.iter().copied()).await?;
    Ok(nodes)
}

/// Fills each assignment's `exposed` from its deployment's routes, and answers the gateways
/// the node must link to: every registered one when any of its instances publishes a port.
pub(super) async fn publish(
    tx: &Tx<'_>,
    instances: &mut [Assignment],
) -> Result<Vec<GatewayRef>, StoreError> {
    let names: Vec<String> = instances
        .iter()
        .map(|a| a.deployment.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut by_deployment: BTreeMap<String, Vec<Name>> = BTreeMap::new();
    if !names.is_empty() {
        for row in tx
            .query(
                "SELECT name, spec FROM deployments WHERE name = ANY($1)",
                &[&names],
            )
            .await?
        {
            let spec: String = row.try_get(1).map_err(pg)?;
            let spec = serde_json::from_str(&spec).map_err(|e| corrupt("deployment spec", e))?;
            by_deployment.insert(row.try_get(0).map_err(pg)?, exposed_ports(&spec));
        }
    }
    for a in instances.iter_mut() {
        a.exposed = by_deployment
            .get(a.deployment.as_str())
            .cloned()
            .unwrap_or_default();
    }
    if instances.iter().all(|a| a.exposed.is_empty()) {
        return Ok(Vec::new());
    }
    Ok(list(tx, &())
        .await?
        .iter()
        .map(GatewayRecord::reference)
        .collect())
}
