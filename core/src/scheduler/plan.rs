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

use super::model::{
    Change, Condition, ConditionKind, Deployment, Event, EventKind, Outcome, Plan, Snapshot,
};
use super::moves::abandoned;
use super::{NodeState, REPLACE_BUDGET, add};
use crate::placement::{
    Achieved, Candidate, CountryIndex, Request, Spread, achieved, available, count, country_index,
    place_indexed, scope,
};
use crate::rollout::Readiness;

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
pub(super) struct Pass<'a> {
    pub(super) snap: &'a Snapshot<'a>,
    pub(super) fleet: Vec<Candidate>,
    pub(super) countries: CountryIndex,
    pub(super) index: HashMap<NodeId, usize>,
    pub(super) states: HashMap<NodeId, &'a NodeState>,
    pub(super) taken: BTreeSet<InstanceId>,
    pub(super) budget: usize,
    pub(super) changes: Vec<Change>,
}

/// A replica in a pass: its node and assignment.
pub(super) type Replica<'a> = &'a (NodeId, Assignment);

impl<'a> Pass<'a> {
    pub(super) fn keeps(&self, node: &NodeId) -> bool {
        self.states.get(node).is_some_and(|n| n.keeps)
    }

    pub(super) fn draining(&self, node: &NodeId) -> bool {
        self.states.get(node).is_some_and(|n| n.draining)
    }

    pub(super) fn candidate(&self, node: &NodeId) -> Option<&Candidate> {
        self.index.get(node).and_then(|i| self.fleet.get(*i))
    }

    /// `hn-abcdefgh (home-a, Proximus, BE)`.
    pub(super) fn describe(&self, node: &NodeId) -> String {
        let id = node.to_string();
        let short = id.get(..11).unwrap_or(&id);
        match self.candidate(node) {
            Some(c) => format!("{short} ({}, {}, {})", c.home, c.isp, c.country),
            None => short.to_owned(),
        }
    }

    pub(super) fn remove(&mut self, id: &InstanceId) {
        self.changes.push(Change::Remove(id.clone()));
    }

    pub(super) fn place(&mut self, node: NodeId, d: &Deployment, instance: InstanceId) {
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
            exposed: Vec::new(),
            peers: Vec::new(),
            backup: None,
        };
        self.changes.push(Change::Place {
            node,
            spec: Box::new(spec),
        });
    }

    pub(super) fn fresh_id(&self, name: &Name, k: &mut usize) -> Option<InstanceId> {
        while *k < 10_000 {
            let id = format!("{name}-{k}");
            *k += 1;
            if let Ok(id) = id.parse::<InstanceId>()
                && !self.taken.contains(&id)
            {
                return Some(id);
            }
        }
        None
    }

    /// Makes `nodes` unschedulable for one placement; returns what to restore.
    fn hide(&mut self, nodes: &[NodeId]) -> Vec<(usize, bool)> {
        let mut hidden = Vec::new();
        for n in nodes {
            if let Some((i, c)) = self
                .index
                .get(n)
                .and_then(|i| self.fleet.get_mut(*i).map(|c| (*i, c)))
            {
                hidden.push((i, c.schedulable));
                c.schedulable = false;
            }
        }
        hidden
    }

    fn unhide(&mut self, hidden: Vec<(usize, bool)>) {
        for (i, was) in hidden {
            if let Some(c) = self.fleet.get_mut(i) {
                c.schedulable = was;
            }
        }
    }

    pub(super) fn request(&self, d: &Deployment, replicas: usize) -> Request {
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
        // A replica failed for good on its node is lost to it: re-placed elsewhere (the node is
        // kept out of that placement), unless a rolling update is judging the new recipe.
        // One such re-placement per deployment per `retry_ms`, so a recipe that fails everywhere
        // does not chase itself round the fleet.
        let retry_failed = !d.rolling && d.calm_until_ms <= now;
        let failed = |a: &Assignment| retry_failed && d.failed.contains(&a.instance);
        let (mut kept, lost): (Vec<Replica<'a>>, Vec<Replica<'a>>) = mine
            .into_iter()
            .filter(|r| incoming.is_none_or(|i| i.1.instance != r.1.instance))
            .partition(|(n, a)| self.keeps(n) && !failed(a));
        let failed_on: Vec<NodeId> = lost
            .iter()
            .filter(|(n, a)| self.keeps(n) && failed(a))
            .map(|(n, _)| *n)
            .collect();
        kept.sort_by_key(|(n, a)| (self.draining(n), a.instance.clone()));
        // Two live replicas in one home arise only when a node returns after a replica was
        // placed beside its own while it was away: one per home is kept (the first in order),
        // the others removed; what is then short is placed elsewhere like any shortfall.
        let mut homes = std::collections::BTreeSet::new();
        let mut doubled = Vec::new();
        kept.retain(|(n, a)| {
            let home = self.candidate(n).map(|c| c.home.to_string());
            if home.is_some_and(|h| !homes.insert(h)) {
                doubled.push((*n, a.instance.clone()));
                false
            } else {
                true
            }
        });
        for (n, id) in doubled {
            self.remove(&id);
            let text = format!(
                "{id} from {}: a second replica in its home",
                self.describe(&n)
            );
            out.events.push(event(EventKind::Removed, text));
        }
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
            let hidden = self.hide(&failed_on);
            let p = place_indexed(
                &self.fleet,
                Some(&self.countries),
                &existing,
                &req,
                self.snap.start,
            );
            self.unhide(hidden);
            shortfall = p.shortfall.map(|s| s.0);
            for (node, (id, from)) in p.added.into_iter().zip(ids) {
                let (kind, text) = match from {
                    Some(old) => {
                        self.budget = self.budget.saturating_sub(1);
                        replaced += 1;
                        let why = if failed_on.contains(&old) {
                            out.calm_until_ms = now + policy.retry_ms;
                            "failed it"
                        } else {
                            self.states.get(&old).map_or("gone", |s| s.state)
                        };
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
            if !self.start_drain_move(d, &kept, &mut out)
                && policy.rebalance
                && !d.rolling
                && let Some(avail) = short
            {
                let all_ready = kept.iter().all(|(n, a)| ready(n, a) == Readiness::Ready);
                if all_ready {
                    self.start_spread_move(d, &kept, got, avail, &mut out);
                }
            }
        } else if kept.iter().any(|(n, _)| self.draining(n)) && out.moving.is_none() {
            let why = if !whole {
                ", waiting for the deployment to be whole before moving"
            } else if out.calm_until_ms > now {
                ", a move failed; retrying shortly"
            } else {
                ", waiting for the re-placement budget"
            };
            self.drain_condition(&kept, why, &mut out);
        }
        out
    }

    /// Says that the replicas on draining nodes stay, and `why`.
    pub(super) fn drain_condition(&self, kept: &[Replica<'a>], why: &str, out: &mut Outcome) {
        let k = kept.iter().filter(|(n, _)| self.draining(n)).count();
        out.conditions.push(Condition {
            kind: ConditionKind::Drain,
            detail: format!("{} on draining nodes{why}", count(k, "replica", "replicas")),
        });
    }

    /// Adds the spread conditions; returns the countries and ISPs available when the spread
    /// falls short (`None` when it is met).
    pub(super) fn spread_conditions(
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
        let mut push =
            |kind, got: usize, avail: usize, names: BTreeSet<String>, unit: (&str, &str)| {
                let names = names.into_iter().collect::<Vec<_>>().join(", ");
                let mut detail = format!("{got} of {n} {} ({names})", unit.1);
                if avail < n {
                    detail.push_str(&format!(
                        ": only {} with room {where_}",
                        count(avail, unit.0, unit.1)
                    ));
                }
                out.conditions.push(Condition { kind, detail });
            };
        if short_c {
            let names = chosen.iter().map(|c| c.country.to_string()).collect();
            push(
                ConditionKind::Countries,
                got.countries,
                avail.0,
                names,
                ("country", "countries"),
            );
        }
        if short_i {
            let names = chosen.iter().map(|c| c.isp.clone()).collect();
            push(
                ConditionKind::Isps,
                got.isps,
                avail.1,
                names,
                ("ISP", "ISPs"),
            );
        }
        Some(avail)
    }
}

/// `event(kind, text)`.
pub(super) fn event(kind: EventKind, text: String) -> Event {
    Event { kind, text }
}
