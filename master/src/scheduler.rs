//! Deployments and the scheduler that keeps them placed.
//!
//! [`plan`] is a pure function of a snapshot (deployments, nodes, assignments) that returns the
//! changes to make: replicas on lost nodes (down, retired, revoked, draining) are re-placed
//! under the same instance id at a new generation, so the old node stops its stale copy when it
//! returns; missing replicas are added; surplus ones removed. Replicas on healthy nodes never
//! move. Re-placements per pass are capped, so a correlated outage (one ISP down) re-places
//! steadily instead of stampeding the fleet. The driver ([`run`]) snapshots, plans and applies
//! once a second and whenever the API changes a deployment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::messages::state::{Assignment, InstanceId, Name, RecipeRef};
use hearth_protocol::{CountryCode, Message, NodeId, Resources};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::fleet::NodeLive;
use crate::liveness::Liveness;
use crate::placement::{Candidate, Request, Spread, country_index, place_indexed};
use crate::store::{AdminState, NodeRecord};

/// Re-placements of lost replicas per pass (one pass a second).
pub const REPLACE_BUDGET: usize = 200;

/// A deployment as the operator asks for it. Requests are idempotent by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Name.
    pub name: Name,
    /// The recipe (uploaded blob).
    pub recipe: RecipeRef,
    /// Replicas wanted.
    pub replicas: u32,
    /// Spread beyond distinct homes: `isp`, `country`.
    #[serde(default)]
    pub spread: BTreeSet<String>,
    /// Allowed countries (empty: anywhere).
    #[serde(default)]
    pub countries: BTreeSet<CountryCode>,
    /// Parameters.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Labels nodes must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the master reads from the recipe to place it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeInfo {
    /// Resources of one replica.
    pub resources: Resources,
    /// Port names (numbers are chosen by the node).
    pub ports: Vec<String>,
}

/// A node in a snapshot.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Placement view.
    pub candidate: Candidate,
    /// Whether replicas already there stay (false: down, draining, retired, revoked).
    pub keeps: bool,
}

/// A change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put `spec` on `node` (new, or moved from a lost node at the next generation).
    Place { node: NodeId, spec: Box<Assignment> },
    /// Remove an instance.
    Remove(InstanceId),
}

/// The changes that bring every deployment to its spec, and per-deployment notes.
pub fn plan(
    deployments: &[(DeploymentSpec, RecipeInfo)],
    nodes: &[NodeState],
    assignments: &[(NodeId, Assignment)],
    start: usize,
) -> (Vec<Change>, BTreeMap<String, Vec<String>>) {
    let mut fleet: Vec<Candidate> = nodes.iter().map(|n| n.candidate.clone()).collect();
    let keeps: HashMap<NodeId, bool> = nodes.iter().map(|n| (n.candidate.id, n.keeps)).collect();
    let index: HashMap<NodeId, usize> = fleet.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    let mut ports_used: HashMap<NodeId, BTreeSet<u16>> = HashMap::new();
    for (node, a) in assignments {
        ports_used
            .entry(*node)
            .or_default()
            .extend(a.ports.values().copied());
        if let Some(c) = index.get(node).and_then(|i| fleet.get_mut(*i)) {
            add(&mut c.allocated, &a.resources);
        }
    }
    let countries = country_index(&fleet);
    let mut changes = Vec::new();
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut budget = REPLACE_BUDGET;
    // Indexes built once per pass: one scan of the assignments, not one per deployment.
    let mut by_deployment: HashMap<&Name, Vec<&(NodeId, Assignment)>> = HashMap::new();
    for entry in assignments {
        by_deployment
            .entry(&entry.1.deployment)
            .or_default()
            .push(entry);
    }
    let taken: BTreeSet<&str> = assignments
        .iter()
        .map(|(_, a)| a.instance.as_str())
        .collect();
    for (spec, info) in deployments {
        let name = spec.name.to_string();
        let mine: Vec<&(NodeId, Assignment)> = by_deployment.remove(&spec.name).unwrap_or_default();
        let (mut kept, lost): (Vec<_>, Vec<_>) = mine
            .into_iter()
            .partition(|(n, _)| keeps.get(n).copied().unwrap_or(false));
        kept.sort_by(|a, b| a.1.instance.cmp(&b.1.instance));
        let wanted = spec.replicas as usize;
        for (_, a) in kept.iter().skip(wanted) {
            changes.push(Change::Remove(a.instance.clone()));
        }
        kept.truncate(wanted);
        let n_lost = lost.len().min(wanted - kept.len());
        for (_, a) in lost.iter().skip(n_lost) {
            changes.push(Change::Remove(a.instance.clone()));
        }
        // Lost replicas keep their ids (a new generation fences the old copy); the cap defers
        // the rest of an outage to later passes.
        let replacing = n_lost.min(budget);
        budget -= replacing;
        let mut ids: Vec<InstanceId> = lost
            .iter()
            .take(replacing)
            .map(|(_, a)| a.instance.clone())
            .collect();
        let mut k = 0;
        let mut new = wanted - kept.len() - n_lost;
        while new > 0 && k < 10_000 {
            let id = format!("{name}-{k}");
            k += 1;
            if let (false, Ok(id)) = (taken.contains(id.as_str()), id.parse()) {
                ids.push(id);
                new -= 1;
            }
        }
        if ids.is_empty() {
            continue;
        }
        let req = Request {
            replicas: kept.len() + ids.len(),
            resources: info.resources,
            spread: Spread {
                isp: spec.spread.contains("isp"),
                country: spec.spread.contains("country"),
            },
            countries: spec.countries.clone(),
            labels: spec.labels.clone(),
        };
        let existing: Vec<NodeId> = kept.iter().map(|(n, _)| *n).collect();
        match place_indexed(&fleet, Some(&countries), &existing, &req, start) {
            Ok(p) => {
                notes.entry(name.clone()).or_default().extend(p.warnings);
                for (node, instance) in p.added.into_iter().zip(ids) {
                    if let Some(c) = index.get(&node).and_then(|i| fleet.get_mut(*i)) {
                        add(&mut c.allocated, &info.resources);
                    }
                    let spec = Assignment {
                        instance,
                        deployment: spec.name.clone(),
                        generation: 0,
                        recipe: spec.recipe.clone(),
                        params: spec.params.clone(),
                        // The node picks free port numbers and publishes them in its endpoints.
                        ports: BTreeMap::new(),
                        resources: info.resources,
                        lease_ms: None,
                    };
                    changes.push(Change::Place {
                        node,
                        spec: Box::new(spec),
                    });
                }
            }
            Err(e) => notes.entry(name).or_default().push(e.to_string()),
        }
    }
    (changes, notes)
}

fn add(total: &mut Resources, r: &Resources) {
    total.cpu_millis = total.cpu_millis.saturating_add(r.cpu_millis);
    total.memory_mib = total.memory_mib.saturating_add(r.memory_mib);
    total.disk_mib = total.disk_mib.saturating_add(r.disk_mib);
    total.bandwidth_mbps = total.bandwidth_mbps.saturating_add(r.bandwidth_mbps);
}

/// A node's snapshot from its record and live state.
pub fn node_state(record: &NodeRecord, live: Option<&NodeLive>) -> NodeState {
    let admin = live.map_or(record.admin, |l| l.admin);
    let liveness = live.map_or(Liveness::Pending, |l| l.liveness);
    let up = matches!(liveness, Liveness::Up { .. });
    let f = &record.facts;
    NodeState {
        candidate: Candidate {
            id: record.id,
            home: f.home.clone(),
            isp: f.isp.clone(),
            country: f.country,
            labels: f.labels.clone(),
            capacity: f.capacity,
            allocated: Resources::default(),
            schedulable: up && admin == AdminState::Active,
            reliability: 1.0,
        },
        keeps: matches!(
            admin,
            AdminState::Active | AdminState::Reserve | AdminState::Test
        ) && !matches!(liveness, Liveness::Down { .. } | Liveness::Pending),
    }
}

/// Longest time between two passes while nothing the scheduler reads has changed.
const IDLE_PASS_EVERY: Duration = Duration::from_secs(10);

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
        last_pass = std::time::Instant::now();
        pass = pass.wrapping_add(1);
        quiet = match one_pass(&ctx, pass.wrapping_mul(7919)).await {
            Ok(Outcome::Quiet) => Some(inputs),
            Ok(Outcome::Busy) => None,
            Err(e) => {
                tracing::error!(error = %e, "scheduler pass failed");
                None
            }
        };
    }
}

/// What a pass found.
enum Outcome {
    /// Nothing to change and no rollout under way: the next pass can wait for a change.
    Quiet,
    /// It changed something, or a rollout needs the clock: pass again at the next second.
    Busy,
}

async fn one_pass(ctx: &Arc<Context>, start: usize) -> Result<Outcome, crate::store::StoreError> {
    let blocking = |e: tokio::task::JoinError| crate::store::StoreError::Corrupt(e.to_string());
    let store = ctx.store.clone();
    let deployments = tokio::task::spawn_blocking(move || store.deployments())
        .await
        .map_err(blocking)??;
    if deployments.is_empty() {
        return Ok(Outcome::Quiet);
    }
    let records = node_records(ctx).await?;
    let store = ctx.store.clone();
    let assignments = tokio::task::spawn_blocking(move || store.assignments())
        .await
        .map_err(blocking)??;
    let mut specs: Vec<(DeploymentSpec, RecipeInfo)> = Vec::new();
    let mut rollouts = Vec::new();
    for stored in deployments {
        let spec: DeploymentSpec = match serde_json::from_value(stored.spec.clone()) {
            Ok(spec) => spec,
            Err(e) => {
                ctx.scheduler
                    .note(&stored.name, vec![format!("unreadable spec: {e}")]);
                continue;
            }
        };
        match recipe_info(ctx, &spec.recipe) {
            Ok(info) => specs.push((spec.clone(), info)),
            Err(e) => {
                ctx.scheduler.note(&stored.name, vec![e]);
                continue;
            }
        }
        rollouts.push((spec, stored));
    }
    let nodes: Vec<NodeState> = records
        .iter()
        .map(|r| node_state(r, ctx.fleet.live(&r.id).as_ref()))
        .collect();
    let (changes, notes) = plan(&specs, &nodes, &assignments, start);
    for (spec, _) in &specs {
        ctx.scheduler.note(
            spec.name.as_str(),
            notes.get(spec.name.as_str()).cloned().unwrap_or_default(),
        );
    }
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
    apply(ctx, changes).await?;
    // A deployment the plan just changed waits for the next pass to roll on.
    rollouts.retain(|(spec, _)| !moved.contains(&spec.name));
    let rolling = rolling::drive(ctx, rollouts, &assignments).await?;
    Ok(if changed || rolling {
        Outcome::Busy
    } else {
        Outcome::Quiet
    })
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
async fn apply(ctx: &Arc<Context>, changes: Vec<Change>) -> Result<(), crate::store::StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let store = ctx.store.clone();
    let applied = changes.clone();
    let touched = tokio::task::spawn_blocking(move || {
        let mut touched = BTreeSet::new();
        for change in &applied {
            match change {
                Change::Place { node, spec } => {
                    if let Some((_, changed)) = store.put_assignment(node, spec)? {
                        touched.extend(changed);
                    }
                }
                Change::Remove(id) => touched.extend(store.remove_assignment(id)?),
            }
        }
        Ok::<_, crate::store::StoreError>(touched)
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
    for node in touched {
        let store = ctx.store.clone();
        if let Ok(Ok(ds)) = tokio::task::spawn_blocking(move || store.desired_state(&node)).await {
            ctx.fleet.push(&node, Message::DesiredState(ds));
        }
    }
    Ok(())
}

/// Reads resources and port names from the uploaded recipe.
pub fn recipe_info(ctx: &Context, recipe: &RecipeRef) -> Result<RecipeInfo, String> {
    parsed(ctx, recipe).map(|p| p.info)
}

/// Whether the recipe has a health check (unknown recipes count as checked: a replica on one
/// is ready only when it says it is healthy).
pub fn health_checked(ctx: &Context, recipe: &RecipeRef) -> bool {
    parsed(ctx, recipe).map_or(true, |p| p.health_checked)
}

/// What the scheduler keeps of a parsed recipe.
#[derive(Debug, Clone)]
struct ParsedRecipe {
    name: Name,
    version: String,
    info: RecipeInfo,
    health_checked: bool,
}

fn parsed(ctx: &Context, recipe: &RecipeRef) -> Result<ParsedRecipe, String> {
    // Blobs are content-addressed, so a recipe read once never changes: the scheduler's
    // once-a-second passes parse each recipe once, not once per pass.
    let cached = ctx
        .scheduler
        .recipes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&recipe.sha256)
        .cloned();
    let p = match cached {
        Some(hit) => hit,
        None => {
            let bytes = std::fs::read(ctx.blobs.path(&recipe.sha256))
                .map_err(|_| format!("recipe blob {} is not uploaded", recipe.sha256))?;
            let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
            let r = hearth_recipes::Recipe::parse(text).map_err(|e| e.to_string())?;
            let entry = ParsedRecipe {
                info: RecipeInfo {
                    resources: r.resources,
                    ports: r.ports.iter().map(|p| p.name.clone()).collect(),
                },
                health_checked: r.health.is_some(),
                name: r.name,
                version: r.version,
            };
            ctx.scheduler
                .recipes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(recipe.sha256, entry.clone());
            entry
        }
    };
    if p.name != recipe.name || p.version != recipe.version {
        return Err(format!(
            "recipe blob {} is {} {}, not {} {}",
            recipe.sha256, p.name, p.version, recipe.name, recipe.version
        ));
    }
    Ok(p)
}

/// Scheduler state shared with the API.
#[derive(Debug, Default)]
pub struct SchedulerState {
    /// Wakes the scheduler after a change.
    pub notify: tokio::sync::Notify,
    /// Deployment and assignment writes made outside the scheduler (see [`Self::changed`]).
    writes: std::sync::atomic::AtomicU64,
    notes: std::sync::Mutex<BTreeMap<String, Vec<String>>>,
    /// Node records as last read, with the fleet size they were read at.
    records: std::sync::Mutex<Option<(usize, Arc<Vec<NodeRecord>>)>>,
    /// Parsed recipes by content hash: name, version, what placement needs.
    recipes: std::sync::Mutex<HashMap<hearth_protocol::Sha256, ParsedRecipe>>,
}

impl SchedulerState {
    /// Tells the scheduler that deployments, assignments or recipes changed: it passes at once.
    pub fn changed(&self) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.notify.notify_one();
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    fn note(&self, deployment: &str, notes: Vec<String>) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(deployment.to_owned(), notes);
    }

    /// The last pass's notes on a deployment (unplaceable reasons, unmet spread).
    pub fn notes(&self, deployment: &str) -> Vec<String> {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(deployment)
            .cloned()
            .unwrap_or_default()
    }
}

mod rolling;
#[cfg(test)]
mod tests;
