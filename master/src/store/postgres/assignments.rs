//! Assignments, revisions and desired states.
//!
//! A batch of placements and removals ([`apply`]) costs a fixed number of round trips whatever
//! its size: the rows it reads (known nodes, current assignments, retired generations) are read
//! in three queries, the ops are applied one by one in memory exactly as SQLite's engine applies
//! them to its tables, and the outcome is written with `unnest` arrays (upserts, deletes,
//! retired generations, revision bumps counted per node as one-by-one bumps would count them).

use std::collections::{BTreeMap, BTreeSet};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, DesiredState};
use tokio_postgres::Row;

use super::super::{AssignmentOp, Fence, StoreError};
use super::bridge::{Tx, corrupt, ms, pg, unms};
use super::{coord, gateways};

/// Version of the JSON encoding of [`Assignment`] in the `assignments.spec` column.
const SPEC_VERSION: i64 = 1;

/// What one op of a batch did.
#[derive(Debug)]
pub(super) enum Done {
    /// A placement: the stored assignment and the nodes whose desired state changed; `None`
    /// when the node is unknown.
    Placed(Option<Box<(Assignment, Vec<NodeId>)>>),
    /// A removal: the node whose desired state changed, if the instance existed.
    Removed(Option<NodeId>),
}

/// Bumps each node's revision once per time it is named (as SQLite's one-by-one bumps would),
/// in one statement, and notes the nodes for the other masters.
pub(super) async fn bump(
    tx: &Tx<'_>,
    nodes: impl IntoIterator<Item = NodeId>,
) -> Result<(), StoreError> {
    let mut counts: BTreeMap<NodeId, i64> = BTreeMap::new();
    for n in nodes {
        *counts.entry(n).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = counts.keys().map(ToString::to_string).collect();
    let by: Vec<i64> = counts.values().copied().collect();
    tx.execute(
        "INSERT INTO node_revisions (node, revision)
         SELECT n, c FROM unnest($1::text[], $2::bigint[]) AS u(n, c)
         ON CONFLICT (node) DO UPDATE SET revision = node_revisions.revision + EXCLUDED.revision",
        &[&ids, &by],
    )
    .await?;
    tx.note_revisions(counts.into_keys());
    Ok(())
}

/// `(node, assignment)` from a row with `node`, `spec` and `spec_version`.
pub(super) fn spec_from_row(r: &Row) -> Result<(NodeId, Assignment), StoreError> {
    let node: String = r.try_get("node").map_err(pg)?;
    let spec: String = r.try_get("spec").map_err(pg)?;
    let version: i64 = r.try_get("spec_version").map_err(pg)?;
    if version != SPEC_VERSION {
        return Err(corrupt("spec_version", version));
    }
    Ok((
        node.parse().map_err(|e| corrupt("assignment node", e))?,
        serde_json::from_str(&spec).map_err(|e| corrupt("assignment spec", e))?,
    ))
}

/// Applies `ops` in order (see the module doc), after checking `fence` if given.
pub(super) async fn apply(
    tx: &Tx<'_>,
    (ops, fence): &(Vec<AssignmentOp>, Option<Fence>),
) -> Result<Vec<Done>, StoreError> {
    if let Some(fence) = fence {
        coord::check(tx, fence).await?;
    }
    let mut instances = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    for op in ops {
        match op {
            AssignmentOp::Place { node, spec } => {
                nodes.insert(node.to_string());
                instances.insert(spec.instance.to_string());
            }
            AssignmentOp::Remove(id) => {
                instances.insert(id.to_string());
            }
        }
    }
    let (instances, nodes): (Vec<String>, Vec<String>) =
        (instances.into_iter().collect(), nodes.into_iter().collect());
    let known: BTreeSet<String> = tx
        .query("SELECT id FROM nodes WHERE id = ANY($1)", &[&nodes])
        .await?
        .iter()
        .map(|r| r.try_get(0).map_err(pg))
        .collect::<Result<_, _>>()?;
    // instance → its current (node, assignment), as the batch goes.
    let mut current: BTreeMap<String, Option<(NodeId, Assignment)>> = BTreeMap::new();
    for row in tx
        .query(
            "SELECT instance, node, spec, spec_version FROM assignments WHERE instance = ANY($1)",
            &[&instances],
        )
        .await?
    {
        current.insert(
            row.try_get("instance").map_err(pg)?,
            Some(spec_from_row(&row)?),
        );
    }
    let initial: BTreeSet<String> = current.keys().cloned().collect();
    let mut retired: BTreeMap<String, u64> = BTreeMap::new();
    for row in tx
        .query(
            "SELECT instance, generation FROM retired_instances WHERE instance = ANY($1)",
            &[&instances],
        )
        .await?
    {
        retired.insert(
            row.try_get(0).map_err(pg)?,
            unms(row.try_get(1).map_err(pg)?),
        );
    }
    let (mut placed, mut newly_retired) = (BTreeSet::new(), BTreeSet::new());
    let mut bumped = Vec::new();
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            AssignmentOp::Place { node, spec } => {
                if !known.contains(&node.to_string()) {
                    done.push(Done::Placed(None));
                    continue;
                }
                let key = spec.instance.to_string();
                let previous = current.get(&key).cloned().flatten();
                // An id used before starts above its last generation.
                let last = match &previous {
                    Some((_, p)) => Some(p.generation),
                    None => retired.get(&key).copied(),
                };
                let mut stored = (**spec).clone();
                stored.generation = last.map_or(1, |g| g + 1);
                let mut changed = vec![*node];
                if let Some((old, _)) = previous.filter(|(old, _)| old != node) {
                    changed.push(old);
                }
                bumped.extend(changed.iter().copied());
                current.insert(key.clone(), Some((*node, stored.clone())));
                placed.insert(key);
                done.push(Done::Placed(Some(Box::new((stored, changed)))));
            }
            AssignmentOp::Remove(id) => {
                let key = id.to_string();
                let Some((node, old)) = current.get(&key).cloned().flatten() else {
                    done.push(Done::Removed(None));
                    continue;
                };
                current.insert(key.clone(), None);
                retired.insert(key.clone(), old.generation);
                newly_retired.insert(key);
                bumped.push(node);
                done.push(Done::Removed(Some(node)));
            }
        }
    }
    write(tx, &current, &initial, &placed, &retired, &newly_retired).await?;
    bump(tx, bumped).await?;
    tx.note_data();
    Ok(done)
}

/// Writes the batch's outcome: the final rows of the instances it placed, the deletion of those
/// it removed, and the retired generations it set.
async fn write(
    tx: &Tx<'_>,
    current: &BTreeMap<String, Option<(NodeId, Assignment)>>,
    initial: &BTreeSet<String>,
    placed: &BTreeSet<String>,
    retired: &BTreeMap<String, u64>,
    newly_retired: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let (mut ids, mut nodes, mut deployments, mut generations, mut specs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut deleted = Vec::new();
    for (key, now) in current {
        match now {
            Some((node, a)) if placed.contains(key) => {
                ids.push(key.clone());
                nodes.push(node.to_string());
                deployments.push(a.deployment.to_string());
                generations.push(ms(a.generation));
                specs.push(
                    serde_json::to_string(a).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
            None if initial.contains(key) => deleted.push(key.clone()),
            _ => {}
        }
    }
    if !deleted.is_empty() {
        tx.execute(
            "DELETE FROM assignments WHERE instance = ANY($1)",
            &[&deleted],
        )
        .await?;
    }
    if !ids.is_empty() {
        tx.execute(
            "INSERT INTO assignments (instance, node, deployment, generation, spec, spec_version)
             SELECT i, n, d, g, s, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
                 AS u(i, n, d, g, s)
             ON CONFLICT (instance) DO UPDATE SET node = EXCLUDED.node,
                 deployment = EXCLUDED.deployment, generation = EXCLUDED.generation,
                 spec = EXCLUDED.spec, spec_version = EXCLUDED.spec_version",
            &[&ids, &nodes, &deployments, &generations, &specs, &SPEC_VERSION],
        )
        .await?;
    }
    if !newly_retired.is_empty() {
        let ids: Vec<String> = newly_retired.iter().cloned().collect();
        let generations: Vec<i64> = ids
            .iter()
            .map(|k| retired.get(k).copied().map_or(0, ms))
            .collect();
        tx.execute(
            "INSERT INTO retired_instances (instance, generation)
             SELECT i, g FROM unnest($1::text[], $2::bigint[]) AS u(i, g)
             ON CONFLICT (instance) DO UPDATE SET generation = EXCLUDED.generation",
            &[&ids, &generations],
        )
        .await?;
    }
    Ok(())
}

/// Bumps the revisions of `nodes` (see [`super::super::Store::bump_revisions`]).
pub(super) async fn bump_revisions(tx: &Tx<'_>, nodes: &[NodeId]) -> Result<(), StoreError> {
    bump(tx, nodes.iter().copied()).await?;
    tx.note_data();
    Ok(())
}

/// A node's whole desired state, from one snapshot.
pub(super) async fn desired_state(tx: &Tx<'_>, node: &NodeId) -> Result<DesiredState, StoreError> {
    let id = node.to_string();
    let revision: Option<i64> = match tx
        .opt(
            "SELECT revision FROM node_revisions WHERE node = $1",
            &[&id],
        )
        .await?
    {
        Some(r) => Some(r.try_get(0).map_err(pg)?),
        None => None,
    };
    let mut instances: Vec<Assignment> = tx
        .query(
            "SELECT node, spec, spec_version FROM assignments WHERE node = $1 ORDER BY instance",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| spec_from_row(r).map(|(_, a)| a))
        .collect::<Result<_, _>>()?;
    let gateways = gateways::publish(tx, &mut instances).await?;
    Ok(DesiredState {
        // Filled by the master from its registry (`crate::cluster`), not stored.
        masters: Vec::new(),
        holds: Vec::new(),
        gateways,
        revision: revision.map_or(0, unms),
        instances,
    })
}

/// Every assignment with its node, by instance.
pub(super) async fn all(tx: &Tx<'_>, _: &()) -> Result<Vec<(NodeId, Assignment)>, StoreError> {
    tx.query(
        "SELECT node, spec, spec_version FROM assignments ORDER BY instance",
        &[],
    )
    .await?
    .iter()
    .map(spec_from_row)
    .collect()
}
