//! SQLite side of the cooperative's gateways and of what a node learns of them: the
//! registrations (`gateways` table), the port names each assignment publishes (its deployment's
//! host and TCP routes), and the revisions to bump when either changes, so that every node
//! holding a routed replica gets a new desired state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use hearth_core::ingress::{HostRoute, TcpRoute};
use hearth_protocol::messages::state::{Assignment, Name};
use hearth_protocol::messages::tunnel::GatewayRef;
use hearth_protocol::{NodeId, SignerId};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Deserialize;

use super::StoreError;
use super::sqlite::{bump_revision, corrupt};

/// A registered gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    /// Its name (a DNS label), the key of the registration.
    pub name: Name,
    /// Its identity.
    pub key: SignerId,
    /// The UDP address nodes dial.
    pub tunnel_addr: SocketAddr,
    /// The UDP address of its overlay relay, if any.
    pub overlay_addr: Option<SocketAddr>,
    /// When it was registered, Unix ms.
    pub created_ms: u64,
    /// When it last read the routing table, Unix ms (flushed in batches).
    pub last_seen_ms: Option<u64>,
}

impl GatewayRecord {
    /// What a node's desired state names of it.
    pub fn reference(&self) -> GatewayRef {
        GatewayRef {
            gateway: self.key,
            addr: self.tunnel_addr.into(),
        }
    }
}

/// What [`super::Store::put_gateway`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutGateway {
    /// Registered; these nodes' desired states changed (they hold routed replicas).
    Created(BTreeSet<NodeId>),
    /// The same registration was there already (nothing written).
    Unchanged(GatewayRecord),
    /// The name or the key is registered with something else (nothing written).
    Conflict(GatewayRecord),
}

/// The routes of a deployment spec (the stored JSON; other fields ignored).
#[derive(Debug, Default, Deserialize)]
struct Routes {
    #[serde(default)]
    hosts: Vec<HostRoute>,
    #[serde(default)]
    tcp: Vec<TcpRoute>,
}

/// The port names a deployment spec publishes through the gateways, sorted, without duplicates.
pub(crate) fn exposed_ports(spec: &serde_json::Value) -> Vec<Name> {
    let routes: Routes = serde_json::from_value(spec.clone()).unwrap_or_default();
    let ports: BTreeSet<Name> = routes
        .hosts
        .into_iter()
        .map(|h| h.port)
        .chain(routes.tcp.into_iter().map(|t| t.port))
        .collect();
    ports.into_iter().collect()
}

fn gateway_from_row(r: &Row<'_>) -> rusqlite::Result<GatewayRecord> {
    let name: String = r.get("name")?;
    let key: String = r.get("key")?;
    let addr: String = r.get("tunnel_addr")?;
    let created: i64 = r.get("created_ms")?;
    let seen: Option<i64> = r.get("last_seen_ms")?;
    let overlay: Option<String> = r.get("overlay_addr")?;
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
        created_ms: u64::try_from(created).unwrap_or(0),
        last_seen_ms: seen.and_then(|v| u64::try_from(v).ok()),
    })
}

/// Every gateway, by name.
pub(super) fn list(conn: &Connection) -> Result<Vec<GatewayRecord>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT * FROM gateways ORDER BY name")?;
    let rows = stmt.query_map([], gateway_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Registers `g` unless its name or key is taken (see [`PutGateway`]).
pub(super) fn put(tx: &Connection, g: &GatewayRecord) -> Result<PutGateway, StoreError> {
    let existing = tx
        .query_row(
            "SELECT * FROM gateways WHERE name = ?1 OR key = ?2 ORDER BY name = ?1 DESC",
            params![g.name.to_string(), g.key.to_string()],
            gateway_from_row,
        )
        .optional()?;
    if let Some(old) = existing {
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
        "INSERT INTO gateways (name, key, tunnel_addr, created_ms, overlay_addr) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            g.name.to_string(),
            g.key.to_string(),
            g.tunnel_addr.to_string(),
            i64::try_from(g.created_ms).unwrap_or(i64::MAX),
            g.overlay_addr.map(|a| a.to_string()),
        ],
    )?;
    Ok(PutGateway::Created(bump_routed(tx, None)?))
}

/// Removes a gateway; the nodes whose desired state changed, or `None` if unknown.
pub(super) fn remove(tx: &Connection, name: &str) -> Result<Option<BTreeSet<NodeId>>, StoreError> {
    if tx.execute("DELETE FROM gateways WHERE name = ?1", [name])? == 0 {
        return Ok(None);
    }
    Ok(Some(bump_routed(tx, None)?))
}

/// Persists last-seen times (a gateway removed meanwhile is skipped).
pub(super) fn record_seen(tx: &Connection, seen: &[(String, u64)]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE gateways SET last_seen_ms = ?2 WHERE name = ?1 AND (last_seen_ms IS NULL OR last_seen_ms < ?2)",
    )?;
    for (name, at) in seen {
        stmt.execute(params![name, i64::try_from(*at).unwrap_or(i64::MAX)])?;
    }
    Ok(())
}

/// Bumps the revision of every node holding a replica of a routed deployment (of `only`, when
/// given: a deployment whose published ports just changed, routed or not any more).
pub(super) fn bump_routed(
    tx: &Connection,
    only: Option<&str>,
) -> Result<BTreeSet<NodeId>, StoreError> {
    let routed: BTreeSet<String> = match only {
        Some(name) => BTreeSet::from([name.to_owned()]),
        None => {
            let mut stmt = tx.prepare_cached("SELECT name, spec FROM deployments")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = BTreeSet::new();
            for row in rows {
                let (name, spec) = row?;
                let spec: serde_json::Value =
                    serde_json::from_str(&spec).map_err(|e| corrupt("deployment spec", e))?;
                if !exposed_ports(&spec).is_empty() {
                    out.insert(name);
                }
            }
            out
        }
    };
    if routed.is_empty() {
        return Ok(BTreeSet::new());
    }
    let mut nodes = BTreeSet::new();
    {
        let mut stmt = tx.prepare_cached("SELECT node, spec FROM assignments")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (node, spec) = row?;
            let a: Assignment =
                serde_json::from_str(&spec).map_err(|e| corrupt("assignment spec", e))?;
            if routed.contains(a.deployment.as_str()) {
                nodes.insert(node.parse::<NodeId>().map_err(|e| corrupt("node", e))?);
            }
        }
    }
    for node in &nodes {
        bump_revision(tx, node)?;
    }
    Ok(nodes)
}

/// Fills each assignment's `exposed` from its deployment's routes, and answers the gateways the
/// node must link to: every registered one when any of its instances publishes a port, else none.
pub(super) fn publish(
    conn: &Connection,
    instances: &mut [Assignment],
) -> Result<Vec<GatewayRef>, StoreError> {
    let mut by_deployment: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT spec FROM deployments WHERE name = ?1")?;
    for a in instances.iter_mut() {
        if !by_deployment.contains_key(&a.deployment) {
            let spec: Option<String> = stmt
                .query_row([a.deployment.as_str()], |r| r.get(0))
                .optional()?;
            let ports = match spec {
                Some(s) => exposed_ports(
                    &serde_json::from_str(&s).map_err(|e| corrupt("deployment spec", e))?,
                ),
                None => Vec::new(),
            };
            by_deployment.insert(a.deployment.clone(), ports);
        }
        a.exposed = by_deployment
            .get(&a.deployment)
            .cloned()
            .unwrap_or_default();
    }
    if instances.iter().all(|a| a.exposed.is_empty()) {
        return Ok(Vec::new());
    }
    Ok(list(conn)?.iter().map(GatewayRecord::reference).collect())
}
