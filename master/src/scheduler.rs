//! Deployments and the scheduler that keeps them placed.
//!
//! [`plan`] (in `plan.rs`) is a pure function of a snapshot (deployments, nodes, assignments,
//! readiness, the time) that returns the changes to make and each deployment's conditions:
//! replicas on lost nodes (down, retired, revoked) are re-placed under the same instance id at a
//! new generation, so the old node stops its stale copy when it returns; missing replicas are
//! added, best effort; surplus ones removed; replicas on draining nodes, and replicas whose move
//! restores a degraded spread, move make-before-break. Re-placements per pass are capped, so a
//! correlated outage (one ISP down) re-places steadily instead of stampeding the fleet. The
//! driver ([`run`]) snapshots, plans and applies once a second and whenever the API changes a
//! deployment, and keeps each deployment's status and history (`status.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, Name};

use hearth_core::liveness::Liveness;
use hearth_core::node::NodeView;

use crate::context::Context;
use crate::fleet::NodeLive;
use crate::store::{AssignmentOp, EventRecord, NodeRecord, StatusUpdate};

pub use hearth_core::scheduler::{
    Change, Condition, ConditionKind, Deployment, DeploymentSpec, DeploymentStatus, Event,
    EventKind, Move, MoveReason, NodeState, Outcome, Plan, Policy, REPLACE_BUDGET, RecipeInfo,
    Snapshot, StoredCondition, model, plan, status,
};
pub use recipes::{
    BackupPolicy, RecipeError, backup_policy, has_peers, health_checked, recipe_info, recipe_params,
};

/// A node's snapshot from its record, live state and uptime standing (the fleet's admin state
/// and liveness win over the record's; a node the fleet does not hold is `pending`).
pub fn node_state(
    record: &NodeRecord,
    live: Option<&NodeLive>,
    standing: crate::uptime::standing::Placement,
) -> NodeState {
    hearth_core::scheduler::node_state(NodeView {
        id: record.id,
        facts: &record.facts,
        admin: live.map_or(record.admin, |l| l.admin),
        liveness: live.map_or(Liveness::Pending, |l| l.liveness),
        reliability: standing.reliability,
        suspended: standing.suspended,
    })
}

/// Longest time between two passes while nothing the scheduler reads has changed.
const IDLE_PASS_EVERY: Duration = Duration::from_secs(10);

/// Shortest time between two passes woken by API writes: a burst of writes is planned together
/// (each pass reads every deployment and assignment) instead of one pass per write.
const MIN_PASS_GAP: Duration = Duration::from_millis(250);

/// Runs the scheduler until `stop`: a pass every second while something it reads changes (the
/// fleet's epoch, a deployment or assignment written through the API) or a pass changed
/// something or a rollout is under way; otherwise one pass every [`IDLE_PASS_EVERY`]. With
/// 1,000 deployments on 10,000 nodes the quiet per-second pass was a third of the master's
/// steady CPU.
pub async fn run(ctx: Arc<Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut pass = 0usize;
    let mut quiet: Option<(u64, u64)> = None;
    let mut last_pass = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ctx.scheduler.notify.notified() => {}
            _ = stop.changed() => return,
        }
        // Read before the pass: a change made during it shows at the next tick.
        let inputs = (ctx.fleet.epoch(), ctx.scheduler.writes());
        if quiet == Some(inputs) && last_pass.elapsed() < IDLE_PASS_EVERY {
            continue;
        }
        if let Some(wait) = MIN_PASS_GAP.checked_sub(last_pass.elapsed()) {
            // Cancel-safe: nothing is held across the sleep; writes made meanwhile join this pass.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        let inputs = (ctx.fleet.epoch(), ctx.scheduler.writes());
        // Only the holder of the scheduler lease schedules (several masters on one store).
        let Some(fence) = ctx.cluster.fence() else {
            quiet = None;
            continue;
        };
        last_pass = std::time::Instant::now();
        pass = pass.wrapping_add(1);
        quiet = match one_pass(&ctx, pass.wrapping_mul(7919), &fence).await {
            Ok(PassOutcome::Quiet) => Some(inputs),
            Ok(PassOutcome::Busy) => None,
            Err(crate::store::StoreError::Fenced(epoch)) => {
                ctx.cluster.lost(epoch);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed");
                None
            }
        };
    }
}

/// What a pass found.
enum PassOutcome {
    /// Nothing to change and no rollout under way: the next pass can wait for a change.
    Quiet,
    /// It changed something, or a rollout needs the clock: pass again at the next second.
    Busy,
}

async fn one_pass(
    ctx: &Arc<Context>,
    start: usize,
    fence: &crate::store::Fence,
) -> Result<PassOutcome, crate::store::StoreError> {
    let blocking = |e: tokio::task::JoinError| crate::store::StoreError::Corrupt(e.to_string());
    let store = ctx.store.clone();
    let deployments = tokio::task::spawn_blocking(move || store.deployments())
        .await
        .map_err(blocking)??;
    let statuses = ctx.scheduler.load_statuses(ctx).await?;
    if deployments.is_empty() && statuses.is_empty() {
        return Ok(PassOutcome::Quiet);
    }
    let records = node_records(ctx).await?;
    let store = ctx.store.clone();
    let assignments = tokio::task::spawn_blocking(move || store.assignments())
        .await
        .map_err(blocking)??;
    let now = crate::clock::now_ms();
    // Replicas failed for good at their current generation, by deployment (one scan).
    let mut failed_by_deployment: HashMap<
        Name,
        BTreeSet<hearth_protocol::messages::state::InstanceId>,
    > = HashMap::new();
    for (node, a) in assignments.iter() {
        let failed = ctx
            .fleet
            .instance_status(&a.instance)
            .is_some_and(|(n, s)| {
                n == *node
                    && s.report.generation == a.generation
                    && s.report.state == hearth_protocol::messages::state::InstanceState::Failed
            });
        if failed {
            failed_by_deployment
                .entry(a.deployment.clone())
                .or_default()
                .insert(a.instance.clone());
        }
    }
    let mut inputs: Vec<Deployment> = Vec::new();
    let mut rollouts = Vec::new();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for stored in deployments.iter() {
        let planned = serde_json::from_value::<DeploymentSpec>(stored.spec.clone())
            .map_err(|e| format!("unreadable spec: {e}"))
            .and_then(|spec| {
                recipe_info(ctx, &spec.recipe)
                    .map(|info| (spec, info))
                    .map_err(|e| e.to_string())
            });
        let (spec, info) = match planned {
            Ok(p) => p,
            Err(detail) => {
                let old = statuses.get(&stored.name).cloned().unwrap_or_default();
                outcomes.insert(
                    stored.name.clone(),
                    Outcome {
                        conditions: vec![Condition {
                            kind: ConditionKind::Recipe,
                            detail,
                        }],
                        moving: old.moving,
                        calm_until_ms: old.calm_until_ms,
                        ..Outcome::default()
                    },
                );
                continue;
            }
        };
        let old = statuses.get(&stored.name).cloned().unwrap_or_default();
        let rolling = stored
            .rollout
            .clone()
            .and_then(|r| serde_json::from_value::<crate::rollout::Rollout>(r).ok())
            .is_some_and(|r| r.active());
        let failed = failed_by_deployment.remove(&spec.name).unwrap_or_default();
        inputs.push(Deployment {
            spec: spec.clone(),
            info,
            moving: old.moving,
            calm_until_ms: old.calm_until_ms,
            rolling,
            failed,
        });
        rollouts.push((spec, stored.clone()));
    }
    let nodes: Vec<NodeState> = records
        .iter()
        .map(|r| {
            let standing = crate::uptime::standing::placement_of(ctx, &r.id);
            node_state(r, ctx.fleet.live(&r.id).as_ref(), standing)
        })
        .collect();
    let snap = Snapshot {
        deployments: &inputs,
        nodes: &nodes,
        assignments: &assignments,
        now_ms: now,
        start,
        policy: ctx.scheduler.policy,
    };
    let planned = plan(&snap, |node, a| replica_readiness(ctx, node, a));
    outcomes.extend(
        planned
            .outcomes
            .into_iter()
            .map(|(n, o)| (n.to_string(), o)),
    );
    let changes = planned.changes;
    let moved: BTreeSet<Name> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Place { spec, .. } => Some(spec.deployment.clone()),
            Change::Remove(id) => assignments
                .iter()
                .find(|(_, a)| a.instance == *id)
                .map(|(_, a)| a.deployment.clone()),
        })
        .collect();
    let changed = !changes.is_empty();
    apply(ctx, changes, fence).await?;
    let specs: Vec<DeploymentSpec> = inputs.iter().map(|d| d.spec.clone()).collect();
    let planned_names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let unplannable: BTreeSet<String> = deployments
        .iter()
        .filter(|d| !planned_names.contains(d.name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    crate::backups::holders_pass(ctx, specs, unplannable, records.clone(), &mut outcomes, now)
        .await?;
    let moving = outcomes.values().any(|o| o.moving.is_some());
    record_statuses(ctx, &statuses, outcomes, now).await?;
    // A deployment the plan just changed waits for the next pass to roll on.
    rollouts.retain(|(spec, _)| !moved.contains(&spec.name));
    let rolling = rolling::drive(ctx, rollouts, &assignments).await?;
    Ok(if changed || rolling || moving {
        PassOutcome::Busy
    } else {
        PassOutcome::Quiet
    })
}

/// Judges a replica from its node's last report at its generation, and the node's liveness.
fn replica_readiness(ctx: &Context, node: &NodeId, a: &Assignment) -> crate::rollout::Readiness {
    let report = ctx
        .fleet
        .instance_status(&a.instance)
        .filter(|(n, s)| n == node && s.report.generation == a.generation)
        .map(|(_, s)| s.report);
    let replica = crate::rollout::Replica {
        node: *node,
        assignment: a,
        report: report.as_ref(),
    };
    crate::rollout::readiness(&replica, health_checked(ctx, &a.recipe))
}

/// Merges the pass's outcomes into the statuses, stores what changed (with the events) and
/// forgets the statuses of deployments that are gone.
async fn record_statuses(
    ctx: &Arc<Context>,
    old: &BTreeMap<String, DeploymentStatus>,
    outcomes: BTreeMap<String, Outcome>,
    now: u64,
) -> Result<(), crate::store::StoreError> {
    let mut updates = Vec::new();
    let mut next = BTreeMap::new();
    for (name, outcome) in outcomes {
        let before = old.get(&name).cloned().unwrap_or_default();
        let (status, events) = status::merge(&before, outcome, now);
        if status != before || !events.is_empty() || !old.contains_key(&name) {
            for e in &events {
                tracing::info!(deployment = %name, event = e.kind.as_str(), "{}", e.text);
            }
            updates.push(StatusUpdate {
                deployment: name.clone(),
                status: Some(
                    serde_json::to_value(&status)
                        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?,
                ),
                events: events
                    .into_iter()
                    .map(|e| EventRecord {
                        at_ms: now,
                        kind: e.kind.as_str().to_owned(),
                        text: e.text,
                    })
                    .collect(),
            });
        }
        next.insert(name, status);
    }
    for gone in old.keys().filter(|n| !next.contains_key(*n)) {
        updates.push(StatusUpdate {
            deployment: gone.clone(),
            status: None,
            events: Vec::new(),
        });
    }
    if !updates.is_empty() {
        let store = ctx.store.clone();
        tokio::task::spawn_blocking(move || store.record_deployment_status(&updates))
            .await
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))??;
    }
    *ctx.scheduler.lock_statuses() = Some(next);
    Ok(())
}

/// Node records (identity and facts). Facts change only at enrolment and admin state is taken
/// from the live fleet, so the records are read from the store only when the fleet has grown,
/// not on every pass (at 10k nodes that read was the master's largest steady cost).
async fn node_records(
    ctx: &Arc<Context>,
) -> Result<Arc<Vec<NodeRecord>>, crate::store::StoreError> {
    let known = ctx.fleet.len();
    let cached = ctx
        .scheduler
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some((_, records)) = cached.filter(|(n, _)| *n == known) {
        return Ok(records);
    }
    let store = ctx.store.clone();
    let records = Arc::new(
        tokio::task::spawn_blocking(move || store.nodes())
            .await
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))??,
    );
    *ctx.scheduler
        .records
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((known, records.clone()));
    Ok(records)
}

/// Writes the plan's changes and pushes the nodes' new desired states.
async fn apply(
    ctx: &Arc<Context>,
    changes: Vec<Change>,
    fence: &crate::store::Fence,
) -> Result<(), crate::store::StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let applied = changes.clone();
    let fence = fence.clone();
    let shared = ctx.clone();
    // One transaction for the whole pass: one fsync, and no half-applied plan.
    let touched = tokio::task::spawn_blocking(move || {
        let ctx = shared;
        let store = ctx.store.clone();
        let removed: std::collections::BTreeSet<_> = applied
            .iter()
            .filter_map(|c| match c {
                Change::Remove(id) => Some(id.clone()),
                Change::Place { .. } => None,
            })
            .collect();
        let mut deployments = crate::overlay::peers::deployments_of(&ctx, &removed)?;
        deployments.extend(applied.iter().filter_map(|c| match c {
            Change::Place { spec, .. } => Some(spec.deployment.clone()),
            Change::Remove(_) => None,
        }));
        let ops: Vec<AssignmentOp> = applied
            .into_iter()
            .map(|change| match change {
                Change::Place { node, spec } => AssignmentOp::Place { node, spec },
                Change::Remove(id) => AssignmentOp::Remove(id),
            })
            .collect();
        let touched = store.apply_assignments(&ops, Some(&fence))?;
        // The other replicas of a `[peers]` deployment learn where their peers are now, and
        // the homes keeping its backup copies which nodes may send and read them.
        let touched = crate::overlay::peers::bump_siblings(&ctx, &deployments, touched)?;
        crate::backups::bump_holders(&ctx, &deployments, touched)
    })
    .await
    .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))??;
    for change in &changes {
        match change {
            Change::Place { node, spec } => {
                tracing::info!(instance = %spec.instance, %node, "scheduled")
            }
            Change::Remove(id) => {
                ctx.fleet.forget_instance(id);
                tracing::info!(instance = %id, "unscheduled");
            }
        }
    }
    crate::overlay::peers::push(ctx, touched).await;
    Ok(())
}

/// Scheduler state shared with the API.
#[derive(Debug, Default)]
pub struct SchedulerState {
    /// Wakes the scheduler after a change.
    pub notify: tokio::sync::Notify,
    /// Knobs of the plan.
    pub policy: Policy,
    /// Deployment and assignment writes made outside the scheduler (see [`Self::changed`]).
    writes: std::sync::atomic::AtomicU64,
    /// Every deployment's status as last stored (loaded from the store at the first pass).
    statuses: std::sync::Mutex<Option<BTreeMap<String, DeploymentStatus>>>,
    /// Node records as last read, with the fleet size they were read at.
    records: std::sync::Mutex<Option<(usize, Arc<Vec<NodeRecord>>)>>,
    /// Parsed recipes by content hash: name, version, what placement needs.
    recipes: std::sync::Mutex<HashMap<hearth_protocol::Sha256, recipes::ParsedRecipe>>,
}

impl SchedulerState {
    /// Tells the scheduler that deployments, assignments or recipes changed: it passes at once (or
    /// [`MIN_PASS_GAP`] after its last pass).
    pub fn changed(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.notify.notify_one();
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    fn lock_statuses(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<BTreeMap<String, DeploymentStatus>>> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The statuses, read from the store the first time.
    async fn load_statuses(
        &self,
        ctx: &Arc<Context>,
    ) -> Result<BTreeMap<String, DeploymentStatus>, crate::store::StoreError> {
        if let Some(s) = self.lock_statuses().clone() {
            return Ok(s);
        }
        let store = ctx.store.clone();
        let stored = tokio::task::spawn_blocking(move || store.deployment_statuses())
            .await
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))??;
        Ok(self.keep_statuses(stored))
    }

    /// Parses and keeps stored statuses.
    fn keep_statuses(
        &self,
        stored: Vec<(String, serde_json::Value)>,
    ) -> BTreeMap<String, DeploymentStatus> {
        let mut out = BTreeMap::new();
        for (name, value) in stored {
            match serde_json::from_value::<DeploymentStatus>(value) {
                Ok(s) => {
                    out.insert(name, s);
                }
                // A status is derived state: an unreadable one is rebuilt by the next pass.
                Err(e) => {
                    tracing::warn!(deployment = %name, error = %e, "unreadable deployment status; rebuilt")
                }
            }
        }
        *self.lock_statuses() = Some(out.clone());
        out
    }

    /// Drops the kept statuses: the next pass (or view) reads them from the store again (another
    /// master may have written them).
    pub fn forget_statuses(&self) {
        *self.lock_statuses() = None;
    }

    /// A deployment's status after the last pass (`None` before its first pass).
    /// Read from `store` when none are kept (on a master that does not schedule, after
    /// [`Self::forget_statuses`]).
    pub fn status(
        &self,
        store: &dyn crate::store::Store,
        deployment: &str,
    ) -> Option<DeploymentStatus> {
        if let Some(kept) = self.lock_statuses().as_ref() {
            return kept.get(deployment).cloned();
        }
        match store.deployment_statuses() {
            Ok(stored) => self.keep_statuses(stored).get(deployment).cloned(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read deployment statuses");
                None
            }
        }
    }
}

mod recipes;
mod rolling;
