//! Backups, the master's side (issue 18, SPEC §17): what a desired state says of them
//! ([`fill`]: `Assignment.backup` for a replica of a deployment whose recipe backs up — the
//! key, the schedule, the holders, a snapshot to restore — and `DesiredState.holds` for a
//! holder), the choice of holders in each scheduler pass ([`holders_pass`], driving
//! `hearth_core::backups::choose`), and the `snapshot_report`s of the replicas' nodes
//! ([`report`]).
//!
//! The key is given only inside assignments, i.e. only to the nodes that run a replica; a
//! holder learns only which nodes may send or read the deployment's objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hearth_core::backups::{HolderCandidate, HolderRequest, HolderState, Site, choose};
use hearth_protocol::messages::backup::{
    BackupPlan, BackupSecret, Holding, Restore, SnapshotReport,
};
use hearth_protocol::messages::state::{Assignment, DesiredState, Name};
use hearth_protocol::{ErrorCode, Message, NodeId};

use crate::context::Context;
use crate::liveness::Liveness;
use crate::scheduler::{
    BackupPolicy, Condition, ConditionKind, DeploymentSpec, Outcome, backup_policy,
};
use crate::store::{AdminState, EventRecord, NodeRecord, SnapshotRecord, StoreError};

/// A holder down this long is replaced (its copies are given up); one down for less is kept,
/// so a home rebooting or losing its line for a while does not make every copy move.
pub const HOLDER_DOWN_GRACE_MS: u64 = 10 * 60_000;

/// Snapshots the master keeps per deployment beyond its recipe's `keep`.
pub const SNAPSHOTS_EXTRA: usize = 3;

/// Largest size a snapshot report may claim (1 PiB): anything above is a broken or hostile
/// node.
const MAX_REPORTED_BYTES: u64 = 1 << 50;

/// How far in the future (the master's clock) a snapshot's `taken_ms` may be.
const MAX_CLOCK_AHEAD_MS: u64 = 10 * 60_000;

/// Fills `backup` of each assignment whose recipe backs up, and `holds` (the deployments whose
/// copies `node` keeps). Blocking (store reads; the key is made at the first need).
pub fn fill(ctx: &Context, node: &NodeId, ds: &mut DesiredState) -> Result<(), StoreError> {
    let mut plans: HashMap<Name, Option<BackupPlan>> = HashMap::new();
    for a in ds.instances.iter_mut() {
        let Some(policy) = backup_policy(ctx, &a.recipe) else {
            continue;
        };
        let plan = match plans.get(&a.deployment) {
            Some(p) => p.clone(),
            None => {
                let p = plan(ctx, a.deployment.as_str(), policy)?;
                plans.insert(a.deployment.clone(), p.clone());
                p
            }
        };
        a.backup = plan.map(|mut p| {
            // Assignments of one deployment on one node share the deployment's plan, but each
            // follows its own recipe's schedule (a rolling update may change it).
            p.every_s = policy.every_s;
            p.keep = policy.keep;
            p
        });
    }
    let held = ctx.store.held_by(node)?;
    if held.is_empty() {
        ds.holds = Vec::new();
        return Ok(());
    }
    let assignments = ctx.store.assignments()?;
    ds.holds = held
        .iter()
        .filter_map(|d| d.parse::<Name>().ok())
        .map(|deployment| Holding {
            replicas: replica_nodes(&assignments, deployment.as_str()),
            deployment,
        })
        .collect();
    Ok(())
}

/// The nodes of a deployment's assignments, sorted.
pub fn replica_nodes(assignments: &[(NodeId, Assignment)], deployment: &str) -> Vec<NodeId> {
    let set: BTreeSet<NodeId> = assignments
        .iter()
        .filter(|(_, a)| a.deployment.as_str() == deployment)
        .map(|(n, _)| *n)
        .collect();
    set.into_iter().collect()
}

/// The key, made at the first need; `None` if the deployment is gone. Blocking.
pub fn key(ctx: &Context, deployment: &str) -> Result<Option<String>, StoreError> {
    if let Some(k) = ctx.store.backup(deployment)?.key {
        return Ok(Some(k));
    }
    let fresh = hearth_backup::BackupKey::generate().to_hex();
    ctx.store
        .backup_key(deployment, &fresh, crate::clock::now_ms())
}

/// A deployment's plan as its replicas' nodes get it.
fn plan(
    ctx: &Context,
    deployment: &str,
    policy: BackupPolicy,
) -> Result<Option<BackupPlan>, StoreError> {
    let Some(key) = key(ctx, deployment)? else {
        return Ok(None);
    };
    let key = BackupSecret(
        key.parse()
            .map_err(|e| StoreError::Corrupt(format!("backup key of {deployment}: {e}")))?,
    );
    let record = ctx.store.backup(deployment)?;
    let snapshots = ctx.store.snapshots(deployment)?;
    // An operator's restore holds until a snapshot taken since reaches a holder: a replica
    // placed after that restores the newest, not the one asked for then.
    let asked = record.restore.as_ref().filter(|asked| {
        !snapshots.iter().any(|s| {
            !s.held_by.is_empty() && s.received_ms > asked.at_ms && s.snapshot != asked.snapshot
        })
    });
    let restore = match asked {
        Some(asked) => {
            let held = snapshots
                .iter()
                .find(|s| s.snapshot == asked.snapshot)
                .map_or(record.holders.as_slice(), |s| s.held_by.as_slice());
            Some(Restore {
                snapshot: asked.snapshot,
                seq: asked.seq,
                from: sources(ctx, held),
            })
        }
        None => snapshots
            .iter()
            .find(|s| !s.held_by.is_empty())
            .map(|s| Restore {
                snapshot: s.snapshot,
                seq: 0,
                from: sources(ctx, &s.held_by),
            })
            .filter(|r| !r.from.is_empty()),
    };
    Ok(Some(BackupPlan {
        key,
        every_s: policy.every_s,
        keep: policy.keep,
        now: record.now_seq,
        holders: record.holders,
        restore,
    }))
}

/// The nodes to restore from: those still enrolled (neither revoked nor retired), up ones first.
fn sources(ctx: &Context, held_by: &[NodeId]) -> Vec<NodeId> {
    let mut from: Vec<(bool, NodeId)> = held_by
        .iter()
        .filter_map(|n| {
            let live = ctx.fleet.live(n)?;
            (!matches!(live.admin, AdminState::Revoked | AdminState::Retired))
                .then_some((!matches!(live.liveness, Liveness::Up { .. }), *n))
        })
        .collect();
    from.sort_by_key(|(down, _)| *down); // stable: the report's order within each group
    from.dedup_by_key(|(_, n)| *n);
    from.into_iter().map(|(_, n)| n).collect()
}

/// Whether a node may keep copies now, from the fleet's view.
fn holder_state(ctx: &Context, node: &NodeId, now: u64) -> HolderState {
    let Some(live) = ctx.fleet.live(node) else {
        return HolderState::Gone;
    };
    match (live.admin, live.liveness) {
        (AdminState::Revoked | AdminState::Retired, _) => HolderState::Gone,
        (_, Liveness::Down { since, .. }) if now.saturating_sub(since) >= HOLDER_DOWN_GRACE_MS => {
            HolderState::Gone
        }
        (AdminState::Active, Liveness::Up { .. }) => HolderState::Up,
        _ => HolderState::Unavailable,
    }
}

fn site(r: &NodeRecord) -> Site {
    Site {
        home: r.facts.home.clone(),
        isp: r.facts.isp.clone(),
        country: r.facts.country,
    }
}

/// After a scheduler pass: chooses the holders of every deployment whose recipe backs up,
/// stores the changes (bumping the revisions of its replicas' nodes and of the old and new
/// holders), forgets the holders of deployments that no longer back up, adds a `backups`
/// condition to the outcome of each that falls short, and pushes the new desired states.
/// `specs` are the deployments planned; `unplannable` those that could not be (their holders
/// are left as they are).
pub async fn holders_pass(
    ctx: &Arc<Context>,
    specs: Vec<DeploymentSpec>,
    unplannable: BTreeSet<String>,
    records: Arc<Vec<NodeRecord>>,
    outcomes: &mut BTreeMap<String, Outcome>,
    now: u64,
) -> Result<(), StoreError> {
    let shared = ctx.clone();
    let (shortfalls, touched) = tokio::task::spawn_blocking(move || {
        choose_all(&shared, &specs, &unplannable, &records, now)
    })
    .await
    .map_err(|e| StoreError::Corrupt(e.to_string()))??;
    for (name, detail) in shortfalls {
        if let Some(o) = outcomes.get_mut(&name) {
            o.conditions.push(Condition {
                kind: ConditionKind::Backups,
                detail,
            });
        }
    }
    crate::overlay::peers::push(ctx, touched).await;
    Ok(())
}

/// What [`choose_all`] did: each deployment's shortfall, and the nodes whose revisions it bumped.
type Chosen = (Vec<(String, String)>, BTreeSet<NodeId>);

/// The blocking half of [`holders_pass`]: the shortfalls by deployment and the nodes bumped.
fn choose_all(
    ctx: &Context,
    specs: &[DeploymentSpec],
    unplannable: &BTreeSet<String>,
    records: &[NodeRecord],
    now: u64,
) -> Result<Chosen, StoreError> {
    let stored = ctx.store.backup_holders()?;
    let backed: Vec<(&DeploymentSpec, BackupPolicy)> = specs
        .iter()
        .filter_map(|s| backup_policy(ctx, &s.recipe).map(|p| (s, p)))
        .collect();
    let mut touched = BTreeSet::new();
    let mut shortfalls = Vec::new();
    let names: BTreeSet<&str> = backed.iter().map(|(s, _)| s.name.as_str()).collect();
    // Holders of a deployment that is gone or no longer backs up are let go; those of one that
    // cannot be planned now (its recipe unreadable) are kept until it can be.
    let let_go = stored
        .iter()
        .filter(|(d, _)| !names.contains(d.as_str()) && !unplannable.contains(d.as_str()));
    for (gone, _) in let_go {
        touched.extend(ctx.store.set_backup_holders(gone, &[], &[], now)?);
    }
    if backed.is_empty() {
        return Ok((shortfalls, touched));
    }
    let assignments = ctx.store.assignments()?;
    let by_id: HashMap<NodeId, &NodeRecord> = records.iter().map(|r| (r.id, r)).collect();
    let candidates: Vec<HolderCandidate> = records
        .iter()
        .map(|r| HolderCandidate {
            node: r.id,
            site: site(r),
            state: holder_state(ctx, &r.id, now),
        })
        .collect();
    for (spec, policy) in backed {
        let name = spec.name.as_str();
        // The key exists before a replica is pushed its plan (made once, here or at the first
        // desired state that needs it).
        key(ctx, name)?;
        let replicas = replica_nodes(&assignments, name);
        let sites: Vec<Site> = replicas
            .iter()
            .filter_map(|n| by_id.get(n).map(|r| site(r)))
            .collect();
        let current = stored.get(name).cloned().unwrap_or_default();
        let chosen = choose(&HolderRequest {
            countries: &spec.countries,
            replicas: &sites,
            candidates: &candidates,
            current: &current,
            copies: policy.copies,
        });
        if let Some(s) = chosen.shortfall {
            shortfalls.push((name.to_owned(), s));
        }
        let same = chosen.holders.len() == current.len()
            && chosen.holders.iter().all(|h| current.contains(h));
        if same {
            continue; // no write: most passes change nothing
        }
        tracing::info!(deployment = name, holders = ?chosen.holders, "backup holders chosen");
        touched.extend(
            ctx.store
                .set_backup_holders(name, &chosen.holders, &replicas, now)?,
        );
    }
    Ok((shortfalls, touched))
}

/// After replicas of `deployments` changed: bumps the revisions of their holders (their
/// `holds` name the replicas' nodes) not in `touched`, and returns `touched` with them.
/// Blocking.
pub fn bump_holders(
    ctx: &Context,
    deployments: &BTreeSet<Name>,
    mut touched: BTreeSet<NodeId>,
) -> Result<BTreeSet<NodeId>, StoreError> {
    if deployments.is_empty() {
        return Ok(touched);
    }
    let holders = ctx.store.backup_holders()?;
    let more: Vec<NodeId> = deployments
        .iter()
        .filter_map(|d| holders.get(d.as_str()))
        .flatten()
        .filter(|n| !touched.contains(n))
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ctx.store.bump_revisions(&more)?;
    touched.extend(more);
    Ok(touched)
}

/// A node's `snapshot_report`: stored (with a deployment event) when the instance is this
/// node's replica of that deployment and the recipe backs up; `held_by` is cut to the current
/// holders. Answers `Some(error)` (never fatal) when refused, `None` when stored. Blocking.
pub fn report(
    ctx: &Context,
    node: &NodeId,
    r: SnapshotReport,
) -> Result<Option<Message>, StoreError> {
    let refuse = |code, text: String| Ok(Some(Message::error(code, text, false)));
    let assignments = ctx.store.assignments()?;
    let mine = assignments
        .iter()
        .find(|(n, a)| n == node && a.instance == r.instance && a.deployment == r.deployment);
    let Some((_, assignment)) = mine else {
        return refuse(
            ErrorCode::NotYours,
            format!(
                "instance {} of deployment {} is not assigned to this node",
                r.instance, r.deployment
            ),
        );
    };
    let Some(policy) = backup_policy(ctx, &assignment.recipe) else {
        return refuse(
            ErrorCode::InvalidMessage,
            format!("deployment {} does not back up its data", r.deployment),
        );
    };
    let now = crate::clock::now_ms();
    if [r.bytes, r.stored_bytes, r.sent_bytes]
        .iter()
        .any(|b| *b > MAX_REPORTED_BYTES)
        || r.taken_ms == 0
        || r.taken_ms > now.saturating_add(MAX_CLOCK_AHEAD_MS)
    {
        return refuse(
            ErrorCode::InvalidMessage,
            "snapshot_report sizes or time out of range".into(),
        );
    }
    let holders = ctx.store.backup(r.deployment.as_str())?.holders;
    let mut held_by: Vec<NodeId> = Vec::new();
    for h in r.held_by.iter().filter(|h| holders.contains(h)) {
        if !held_by.contains(h) {
            held_by.push(*h);
        }
    }
    let short = r.snapshot.to_string();
    let event = EventRecord {
        at_ms: now,
        kind: "snapshot".into(),
        text: format!(
            "snapshot {} taken on {node}, held by {} home{}",
            short.get(..12).unwrap_or(&short),
            held_by.len(),
            if held_by.len() == 1 { "" } else { "s" }
        ),
    };
    let record = SnapshotRecord {
        deployment: r.deployment.to_string(),
        snapshot: r.snapshot,
        instance: r.instance,
        node: *node,
        taken_ms: r.taken_ms,
        bytes: r.bytes,
        stored_bytes: r.stored_bytes,
        sent_bytes: r.sent_bytes,
        held_by,
        received_ms: now,
    };
    let keep = usize::try_from(policy.keep)
        .unwrap_or(usize::MAX)
        .saturating_add(SNAPSHOTS_EXTRA);
    ctx.store.put_snapshot(&record, keep, &event)?;
    tracing::info!(deployment = %r.deployment, "{}", event.text);
    Ok(None)
}
