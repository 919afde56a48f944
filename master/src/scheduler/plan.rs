//! The scheduler's sans-IO core: [`plan`] turns a snapshot (deployments with their move under
//! way, nodes, assignments, replica readiness, the time) into changes, events and each
//! deployment's conditions.
//!
//! Per deployment, in order:
//! 1. The make-before-break move under way is settled: done when its new copy is ready (the old
//!    copy is removed then, never before), abandoned when the new copy fails, misses its
//!    deadline or loses its node (the new copy is removed; the old one never stopped serving).
//! 2. Surplus replicas are removed (replicas on draining nodes first).
//! 3. Replicas on lost nodes (down, retired, revoked) are re-placed under the same id at the next
//!    generation, and missing ones added: best effort, as many as the constraints allow, within
//!    the pass's re-placement budget. What cannot be placed stays a condition until it can.
//! 4. When the deployment is otherwise whole, one move may start: a replica on a draining node
//!    first, else, when the spread that was asked falls short and the fleet could do better,
//!    the replica whose move raises it (rebalancing after an outage ends).
//!
//! Conditions describe the state as it is after the pass; the driver keeps their `since` and
//! turns their onsets and ends into events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, InstanceId, Name};
use serde::{Deserialize, Serialize};

use super::{DeploymentSpec, NodeState, REPLACE_BUDGET, RecipeInfo, add};
use crate::placement::{
    Achieved, Candidate, CountryIndex, Request, Spread, achieved, available, count, country_index,
    place_indexed, scope,
};
use crate::rollout::Readiness;

/// One deployment as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// What the operator asked for.
    pub spec: DeploymentSpec,
    /// What placement needs of its recipe.
    pub info: RecipeInfo,
    /// The make-before-break move under way, if any.
    pub moving: Option<Move>,
    /// No new move starts before this time, Unix ms (a failed move backs off).
    pub calm_until_ms: u64,
    /// A rolling update is under way: no rebalancing move starts meanwhile.
    pub rolling: bool,
}

/// A replica moving make-before-break: `to` is started first; `from` is removed once `to` is
/// ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// The replica leaving.
    pub from: InstanceId,
    /// Its node.
    pub from_node: NodeId,
    /// The new replica.
    pub to: InstanceId,
    /// Its node.
    pub to_node: NodeId,
    /// Why it moves.
    pub reason: MoveReason,
    /// When the new copy was placed, Unix ms.
    pub started_ms: u64,
}

/// Why a replica moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveReason {
    /// Its node is draining.
    Drain,
    /// The deployment's spread can be restored.
    Spread,
}

/// Knobs of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether degraded spread is restored by moving replicas.
    pub rebalance: bool,
    /// How long a moving replica's new copy gets to become ready, ms.
    pub move_deadline_ms: u64,
    /// How long a deployment waits after an abandoned move before the next one, ms.
    pub retry_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            rebalance: true,
            move_deadline_ms: 120_000,
            retry_ms: 30_000,
        }
    }
}

/// Everything [`plan`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Deployments.
    pub deployments: &'a [Deployment],
    /// Nodes.
    pub nodes: &'a [NodeState],
    /// Every assignment with its node.
    pub assignments: &'a [(NodeId, Assignment)],
    /// Now, Unix ms.
    pub now_ms: u64,
    /// Where placement scans start (see [`crate::placement::place`]).
    pub start: usize,
    /// Knobs.
    pub policy: Policy,
}

/// A change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Put `spec` on `node` (new, or moved from a lost node at the next generation).
    Place { node: NodeId, spec: Box<Assignment> },
    /// Remove an instance.
    Remove(InstanceId),
}

/// A constraint that is not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// Fewer replicas placed on live nodes than wanted.
    Replicas,
    /// Fewer distinct countries than replicas (country spread asked).
    Countries,
    /// Fewer distinct ISPs than replicas (ISP spread asked).
    Isps,
    /// Replicas on draining nodes that cannot move yet.
    Drain,
    /// The deployment cannot be planned (unreadable spec, missing recipe).
    Recipe,
}

impl ConditionKind {
    /// What is met again when the condition ends.
    pub fn restored(self) -> &'static str {
        match self {
            Self::Replicas => "every replica placed",
            Self::Countries => "country spread restored",
            Self::Isps => "ISP spread restored",
            Self::Drain => "no replica left on a draining node",
            Self::Recipe => "the deployment can be planned again",
        }
    }
}

/// A constraint not met, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Which.
    pub kind: ConditionKind,
    /// By how much and why, e.g. `2 of 3 countries (BE, FR)`.
    pub detail: String,
}

/// What happened to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new replica placed.
    Placed,
    /// A replica's node was lost.
    Lost,
    /// A lost replica re-placed on another node.
    Replaced,
    /// A replica removed (scale-down).
    Removed,
    /// A make-before-break move started.
    Moving,
    /// A move completed.
    Moved,
    /// A move given up.
    MoveAbandoned,
    /// A condition started.
    Degraded,
    /// A condition ended.
    Restored,
}

impl EventKind {
    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Lost => "lost",
            Self::Replaced => "re-placed",
            Self::Removed => "removed",
            Self::Moving => "moving",
            Self::Moved => "moved",
            Self::MoveAbandoned => "move abandoned",
            Self::Degraded => "degraded",
            Self::Restored => "restored",
        }
    }
}

/// An event of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What.
    pub kind: EventKind,
    /// Details.
    pub text: String,
}

/// One deployment after a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Constraints not met now.
    pub conditions: Vec<Condition>,
    /// The move under way after the pass.
    pub moving: Option<Move>,
    /// See [`Deployment::calm_until_ms`].
    pub calm_until_ms: u64,
    /// Replicas on lost nodes that could not be re-placed yet, with why they are lost.
    pub lost: Vec<(InstanceId, String)>,
    /// What the pass did.
    pub events: Vec<Event>,
}

/// The changes of a pass and every planned deployment's outcome.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Changes, in order.
    pub changes: Vec<Change>,
    /// Per deployment.
    pub outcomes: BTreeMap<Name, Outcome>,
}

/// Plans every deployment. `ready` judges a replica from its node's reports.
pub fn plan(snap: &Snapshot<'_>, ready: impl Fn(&NodeId, &Assignment) -> Readiness) -> Plan {
    let mut fleet: Vec<Candidate> = snap.nodes.iter().map(|n| n.candidate.clone()).collect();
    let states: HashMap<NodeId, &NodeState> =
        snap.nodes.iter().map(|n| (n.candidate.id, n)).collect();
    let index: HashMap<NodeId, usize> = fleet.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
    for (node, a) in snap.assignments {
        if let Some(c) = index.get(node).and_then(|i| fleet.get_mut(*i)) {
            add(&mut c.allocated, &a.resources);
        }
    }
    let countries = country_index(&fleet);
    let mut by_deployment: HashMap<&Name, Vec<&(NodeId, Assignment)>> = HashMap::new();
    for entry in snap.assignments {
        by_deployment
            .entry(&entry.1.deployment)
            .or_default()
            .push(entry);
    }
    let mut ctx = Pass {
        snap,
        fleet,
        countries,
        index,
        states,
        taken: snap
            .assignments
            .iter()
            .map(|(_, a)| a.instance.clone())
            .collect(),
        budget: REPLACE_BUDGET,
        changes: Vec::new(),
    };
    let mut outcomes = BTreeMap::new();
    for d in snap.deployments {
        let mine = by_deployment.remove(&d.spec.name).unwrap_or_default();
        let outcome = ctx.deployment(d, mine, &ready);
        outcomes.insert(d.spec.name.clone(), outcome);
    }
    Plan {
        changes: ctx.changes,
        outcomes,
    }
}

/// State of one pass across deployments.
struct Pass<'a> {
    snap: &'a Snapshot<'a>,
    fleet: Vec<Candidate>,
    countries: CountryIndex,
    index: HashMap<NodeId, usize>,
    states: HashMap<NodeId, &'a NodeState>,
    taken: BTreeSet<InstanceId>,
    budget: usize,
    changes: Vec<Change>,
}

/// A replica in a pass: its node and assignment.
type Replica<'a> = &'a (NodeId, Assignment);

impl<'a> Pass<'a> {
    fn keeps(&self, node: &NodeId) -> bool {
        self.states.get(node).is_some_and(|n| n.keeps)
    }

    fn draining(&self, node: &NodeId) -> bool {
        self.states.get(node).is_some_and(|n| n.draining)
    }

    fn candidate(&self, node: &NodeId) -> Option<&Candidate> {
        self.index.get(node).and_then(|i| self.fleet.get(*i))
    }

    /// `hn-abcdefgh (home-a, Proximus, BE)`.
    fn describe(&self, node: &NodeId) -> String {
        let id = node.to_string();
        let short = id.get(..11).unwrap_or(&id);
        match self.candidate(node) {
            Some(c) => format!("{short} ({}, {}, {})", c.home, c.isp, c.country),
            None => short.to_owned(),
        }
    }

    fn remove(&mut self, id: &InstanceId) {
        self.changes.push(Change::Remove(id.clone()));
    }

    fn place(&mut self, node: NodeId, d: &Deployment, instance: InstanceId) {
        if let Some(c) = self.index.get(&node).and_then(|i| self.fleet.get_mut(*i)) {
            add(&mut c.allocated, &d.info.resources);
        }
        self.taken.insert(instance.clone());
        let spec = Assignment {
            instance,
            deployment: d.spec.name.clone(),
            generation: 0,
            recipe: d.spec.recipe.clone(),
            params: d.spec.params.clone(),
            // The node picks free port numbers and publishes them in its endpoints.
            ports: BTreeMap::new(),
            resources: d.info.resources,
            lease_ms: None,
        };
        self.changes.push(Change::Place {
            node,
            spec: Box::new(spec),
        });
    }

    fn fresh_id(&self, name: &Name, k: &mut usize) -> Option<InstanceId> {
        while *k < 10_000 {
            let id = format!("{name}-{k}");
            *k += 1;
            if let Ok(id) = id.parse::<InstanceId>() {
                if !self.taken.contains(&id) {
                    return Some(id);
                }
            }
        }
        None
    }

    fn request(&self, d: &Deployment, replicas: usize) -> Request {
        Request {
            replicas,
            resources: d.info.resources,
            spread: Spread {
                isp: d.spec.spread.contains("isp"),
                country: d.spec.spread.contains("country"),
            },
            countries: d.spec.countries.clone(),
            labels: d.spec.labels.clone(),
        }
    }

    fn deployment(
        &mut self,
        d: &Deployment,
        mut mine: Vec<Replica<'a>>,
        ready: &impl Fn(&NodeId, &Assignment) -> Readiness,
    ) -> Outcome {
        let now = self.snap.now_ms;
        let policy = self.snap.policy;
        let mut out = Outcome {
            moving: d.moving.clone(),
            calm_until_ms: d.calm_until_ms,
            ..Outcome::default()
        };
        self.settle_move(&mut mine, &mut out, ready);
        // The move's new copy is not a replica yet: it neither counts nor is removed as surplus.
        let incoming: Option<Replica<'a>> = out
            .moving
            .as_ref()
            .and_then(|m| mine.iter().copied().find(|(_, a)| a.instance == m.to));
        let (mut kept, lost): (Vec<Replica<'a>>, Vec<Replica<'a>>) = mine
            .into_iter()
            .filter(|r| incoming.is_none_or(|i| i.1.instance != r.1.instance))
            .partition(|(n, _)| self.keeps(n));
        kept.sort_by_key(|(n, a)| (self.draining(n), a.instance.clone()));
        let wanted = d.spec.replicas as usize;
        if kept.len() > wanted {
            if let (Some(m), Some(_)) = (out.moving.take(), incoming) {
                self.remove(&m.to);
                out.events
                    .push(abandoned(&m, "the deployment was scaled down"));
            }
            for (n, a) in kept.iter().skip(wanted) {
                self.remove(&a.instance);
                let text = format!("{} from {}", a.instance, self.describe(n));
                out.events.push(event(EventKind::Removed, text));
            }
            kept.truncate(wanted);
        }
        let incoming = out.moving.as_ref().and(incoming);
        let n_lost = lost.len().min(wanted - kept.len());
        for (n, a) in lost.iter().skip(n_lost) {
            self.remove(&a.instance);
            let text = format!("{} from lost node {}", a.instance, self.describe(n));
            out.events.push(event(EventKind::Removed, text));
        }
        // Lost replicas keep their ids (a new generation fences the old copy); the budget
        // defers the rest of a large outage to later passes.
        let replacing = n_lost.min(self.budget);
        let mut ids: Vec<(InstanceId, Option<NodeId>)> = lost
            .iter()
            .take(replacing)
            .map(|(n, a)| (a.instance.clone(), Some(*n)))
            .collect();
        let mut k = 0;
        for _ in 0..wanted - kept.len() - n_lost {
            match self.fresh_id(&d.spec.name, &mut k) {
                Some(id) => ids.push((id, None)),
                None => break,
            }
        }
        let mut nodes: Vec<NodeId> = kept.iter().map(|(n, _)| *n).collect();
        let mut existing = nodes.clone();
        existing.extend(incoming.map(|(n, _)| *n));
        let mut shortfall = None;
        let mut replaced = 0;
        if !ids.is_empty() {
            let req = self.request(d, existing.len() + ids.len());
            let p = place_indexed(
                &self.fleet,
                Some(&self.countries),
                &existing,
                &req,
                self.snap.start,
            );
            shortfall = p.shortfall.map(|s| s.0);
            for (node, (id, from)) in p.added.into_iter().zip(ids) {
                let (kind, text) = match from {
                    Some(old) => {
                        self.budget = self.budget.saturating_sub(1);
                        replaced += 1;
                        let why = self.states.get(&old).map_or("gone", |s| s.state);
                        let text = format!(
                            "{id}: node {} {why} → {}",
                            self.describe(&old),
                            self.describe(&node)
                        );
                        (EventKind::Replaced, text)
                    }
                    None => (
                        EventKind::Placed,
                        format!("{id} on {}", self.describe(&node)),
                    ),
                };
                out.events.push(event(kind, text));
                self.place(node, d, id);
                nodes.push(node);
            }
        }
        // Lost replicas still waiting for a node.
        for (n, a) in lost.iter().take(n_lost).skip(replaced) {
            let why = self.states.get(n).map_or("gone", |s| s.state);
            out.lost.push((
                a.instance.clone(),
                format!("node {} {why}", self.describe(n)),
            ));
        }
        let placed = nodes.len();
        if placed < wanted {
            let mut detail = format!(
                "{placed} of {} placed",
                count(wanted, "replica", "replicas")
            );
            if !out.lost.is_empty() {
                detail.push_str(&format!(
                    ", {} on lost nodes",
                    count(out.lost.len(), "replica", "replicas")
                ));
            }
            match &shortfall {
                Some(why) => detail.push_str(&format!(": {why}")),
                None => detail.push_str(": re-placement deferred while the fleet heals"),
            }
            out.conditions.push(Condition {
                kind: ConditionKind::Replicas,
                detail,
            });
        }
        let chosen: Vec<&Candidate> = nodes.iter().filter_map(|n| self.candidate(n)).collect();
        let got = achieved(&chosen);
        let req = self.request(d, got.replicas);
        let short = self.spread_conditions(&req, &chosen, got, &mut out);
        let whole = placed == wanted;
        let may_move = out.moving.is_none() && out.calm_until_ms <= now && self.budget > 0;
        if whole && may_move && shortfall.is_none() {
            if !self.start_drain_move(d, &kept, &mut out) && policy.rebalance && !d.rolling {
                if let Some(avail) = short {
                    let all_ready = kept.iter().all(|(n, a)| ready(n, a) == Readiness::Ready);
                    if all_ready {
                        self.start_spread_move(d, &kept, got, avail, &mut out);
                    }
                }
            }
        } else if kept.iter().any(|(n, _)| self.draining(n)) && out.moving.is_none() {
            let k = kept.iter().filter(|(n, _)| self.draining(n)).count();
            out.conditions.push(Condition {
                kind: ConditionKind::Drain,
                detail: format!(
                    "{} on draining nodes, waiting for the deployment to be whole before moving",
                    count(k, "replica", "replicas")
                ),
            });
        }
        out
    }

    /// Settles the move under way: done, abandoned, or still waiting.
    fn settle_move(
        &mut self,
        mine: &mut Vec<Replica<'a>>,
        out: &mut Outcome,
        ready: &impl Fn(&NodeId, &Assignment) -> Readiness,
    ) {
        let Some(m) = out.moving.clone() else {
            return;
        };
        let find = |id: &InstanceId| mine.iter().copied().find(|(_, a)| a.instance == *id);
        let (from, to) = (find(&m.from), find(&m.to));
        let mut drop_id = None;
        match (from, to) {
            (_, None) => {
                out.events.push(abandoned(&m, "its new copy is gone"));
                out.calm_until_ms = self.snap.now_ms + self.snap.policy.retry_ms;
            }
            (None, Some(_)) => {
                let text = format!("{} is gone; {} takes its place", m.from, m.to);
                out.events.push(event(EventKind::Moved, text));
            }
            (Some((fnode, _)), Some(_)) if !self.keeps(fnode) => {
                self.remove(&m.from);
                drop_id = Some(m.from.clone());
                let text = format!(
                    "{} was lost with node {}; {} on {} takes its place",
                    m.from,
                    self.describe(fnode),
                    m.to,
                    self.describe(&m.to_node)
                );
                out.events.push(event(EventKind::Moved, text));
            }
            (Some(_), Some((tnode, ta))) => {
                let verdict = if !self.keeps(tnode) {
                    Err(format!("node {} was lost", self.describe(tnode)))
                } else {
                    match ready(tnode, ta) {
                        Readiness::Ready => Ok(true),
                        Readiness::Broken(why) => Err(format!("{} failed: {why}", m.to)),
                        Readiness::Waiting
                            if self.snap.now_ms
                                >= m.started_ms + self.snap.policy.move_deadline_ms =>
                        {
                            Err(format!(
                                "{} was not ready within {} s",
                                m.to,
                                self.snap.policy.move_deadline_ms / 1000
                            ))
                        }
                        Readiness::Waiting => Ok(false),
                    }
                };
                match verdict {
                    Ok(false) => return,
                    Ok(true) => {
                        self.remove(&m.from);
                        drop_id = Some(m.from.clone());
                        let text = format!(
                            "{} on {} replaces {} on {} ({})",
                            m.to,
                            self.describe(&m.to_node),
                            m.from,
                            self.describe(&m.from_node),
                            reason(m.reason)
                        );
                        out.events.push(event(EventKind::Moved, text));
                    }
                    Err(why) => {
                        self.remove(&m.to);
                        drop_id = Some(m.to.clone());
                        out.events.push(abandoned(&m, &why));
                        out.calm_until_ms = self.snap.now_ms + self.snap.policy.retry_ms;
                    }
                }
            }
        }
        if let Some(id) = drop_id {
            mine.retain(|(_, a)| a.instance != id);
        }
        out.moving = None;
    }

    /// Adds the spread conditions; returns the countries and ISPs available when the spread
    /// falls short (`None` when it is met).
    fn spread_conditions(
        &self,
        req: &Request,
        chosen: &[&Candidate],
        got: Achieved,
        out: &mut Outcome,
    ) -> Option<(usize, usize)> {
        let n = got.replicas;
        let short_c = req.spread.country && got.countries < n;
        let short_i = req.spread.isp && got.isps < n;
        if !short_c && !short_i {
            return None;
        }
        let avail = available(&self.fleet, Some(&self.countries), chosen, req);
        let where_ = scope(req);
        let list = |names: BTreeSet<String>| names.into_iter().collect::<Vec<_>>().join(", ");
        if short_c {
            let names = list(chosen.iter().map(|c| c.country.to_string()).collect());
            let mut detail = format!("{} of {n} countries ({names})", got.countries);
            if avail.0 < n {
                detail.push_str(&format!(
                    ": only {} with room {where_}",
                    count(avail.0, "country", "countries")
                ));
            }
            out.conditions.push(Condition {
                kind: ConditionKind::Countries,
                detail,
            });
        }
        if short_i {
            let names = list(chosen.iter().map(|c| c.isp.clone()).collect());
            let mut detail = format!("{} of {n} ISPs ({names})", got.isps);
            if avail.1 < n {
                detail.push_str(&format!(
                    ": only {} with room {where_}",
                    count(avail.1, "ISP", "ISPs")
                ));
            }
            out.conditions.push(Condition {
                kind: ConditionKind::Isps,
                detail,
            });
        }
        Some(avail)
    }

    /// Starts moving the first replica on a draining node; true if there is one (moved or not).
    fn start_drain_move(
        &mut self,
        d: &Deployment,
        kept: &[Replica<'a>],
        out: &mut Outcome,
    ) -> bool {
        let Some(pos) = kept.iter().position(|(n, _)| self.draining(n)) else {
            return false;
        };
        let Some(from) = kept.get(pos).copied() else {
            return false;
        };
        let others: Vec<NodeId> = kept
            .iter()
            .filter(|(_, a)| a.instance != from.1.instance)
            .map(|(n, _)| *n)
            .collect();
        let req = self.request(d, others.len() + 1);
        let p = place_indexed(
            &self.fleet,
            Some(&self.countries),
            &others,
            &req,
            self.snap.start,
        );
        match p.added.first() {
            Some(target) => self.start_move(d, from, *target, MoveReason::Drain, out),
            None => {
                let k = kept.iter().filter(|(n, _)| self.draining(n)).count();
                let why = p.shortfall.map_or_else(String::new, |s| format!(": {s}"));
                out.conditions.push(Condition {
                    kind: ConditionKind::Drain,
                    detail: format!(
                        "{} on draining nodes with nowhere to go{why}",
                        count(k, "replica", "replicas")
                    ),
                });
            }
        }
        true
    }

    /// Starts the move that raises the spread the most, if the fleet allows one.
    fn start_spread_move(
        &mut self,
        d: &Deployment,
        kept: &[Replica<'a>],
        got: Achieved,
        avail: (usize, usize),
        out: &mut Outcome,
    ) {
        let spread = self.request(d, 0).spread;
        let n = got.replicas;
        let score = |a: &Achieved| {
            (
                if spread.country { a.countries } else { 0 },
                if spread.isp { a.isps } else { 0 },
            )
        };
        let can_gain = (spread.country && got.countries < n && avail.0 > got.countries)
            || (spread.isp && got.isps < n && avail.1 > got.isps);
        if !can_gain {
            return;
        }
        let before = score(&got);
        // Replicas sharing a country (or an ISP) with another are the ones worth moving.
        for from in kept.iter().rev().take(16) {
            let others: Vec<NodeId> = kept
                .iter()
                .filter(|(_, a)| a.instance != from.1.instance)
                .map(|(n, _)| *n)
                .collect();
            let req = self.request(d, others.len() + 1);
            let p = place_indexed(
                &self.fleet,
                Some(&self.countries),
                &others,
                &req,
                self.snap.start,
            );
            let Some(target) = p.added.first().copied() else {
                continue;
            };
            let mut after_nodes: Vec<&Candidate> =
                others.iter().filter_map(|o| self.candidate(o)).collect();
            after_nodes.extend(self.candidate(&target));
            if score(&achieved(&after_nodes)) > before {
                self.start_move(d, *from, target, MoveReason::Spread, out);
                return;
            }
        }
    }

    fn start_move(
        &mut self,
        d: &Deployment,
        from: Replica<'a>,
        target: NodeId,
        why: MoveReason,
        out: &mut Outcome,
    ) {
        let mut k = 0;
        let Some(id) = self.fresh_id(&d.spec.name, &mut k) else {
            return;
        };
        self.budget = self.budget.saturating_sub(1);
        let m = Move {
            from: from.1.instance.clone(),
            from_node: from.0,
            to: id.clone(),
            to_node: target,
            reason: why,
            started_ms: self.snap.now_ms,
        };
        let text = format!(
            "{} on {} to replace {} on {} ({}); the old copy stops once the new one is ready",
            m.to,
            self.describe(&target),
            m.from,
            self.describe(&from.0),
            reason(why)
        );
        out.events.push(event(EventKind::Moving, text));
        self.place(target, d, id);
        out.moving = Some(m);
    }
}

fn reason(r: MoveReason) -> &'static str {
    match r {
        MoveReason::Drain => "its node is draining",
        MoveReason::Spread => "restoring the spread",
    }
}

fn event(kind: EventKind, text: String) -> Event {
    Event { kind, text }
}

fn abandoned(m: &Move, why: &str) -> Event {
    event(
        EventKind::MoveAbandoned,
        format!("{} stays on its node: {why}", m.from),
    )
}
