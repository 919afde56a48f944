//! The master's side of a run: the real liveness machine at its ticks, the real scheduler
//! (`hearth_core::scheduler::plan`, hence `placement::place` and `REPLACE_BUDGET`) at its
//! once-a-second cadence, assignments with generations, and desired-state pushes.
//!
//! The real master runs a pass every second. A pass whose inputs cannot produce a change is
//! skipped here, which gives the same result: `plan` only acts on a deployment with too few or
//! too many replicas or with a replica on a node that does not keep it, and a placement that
//! failed fails again until a node becomes schedulable. So a pass runs at the next whole second
//! after a node becomes schedulable, a node stops keeping its replicas, or a pass made changes
//! (the budget may have deferred some); and it is skipped (counted) when every deployment has
//! exactly its replicas on keeping nodes.

use hearth_core::liveness::Event as LiveEvent;
use hearth_core::node::{AdminState, NodeView};
use hearth_core::rollout::Readiness;
use hearth_core::scheduler::{Change, Plan, Policy, Snapshot, node_state, plan};
use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, DesiredState};
use serde::Serialize;

use crate::engine::Sim;
use crate::queue::{Event, HomeIx};

/// Scheduler passes of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PassCounts {
    /// Passes that called `plan`.
    pub planned: u64,
    /// Passes skipped because nothing could change.
    pub skipped: u64,
    /// Passes whose plan changed something.
    pub with_changes: u64,
    /// New replicas placed.
    pub placed: u64,
    /// Lost replicas re-placed (same instance, next generation).
    pub re_placed: u64,
    /// Replicas removed.
    pub removed: u64,
    /// Skipped passes for which `plan` would have changed something (only counted with
    /// `RunOptions::check_skips`; always 0 if the shortcut is sound).
    #[serde(skip_serializing_if = "is_zero")]
    pub skip_mismatches: u64,
    /// Notes of the last pass that planned (unplaceable, unmet spread), per deployment.
    pub notes: std::collections::BTreeMap<String, Vec<String>>,
}

/// Liveness transitions seen by the master.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transitions {
    /// To `suspect`.
    pub suspect: u64,
    /// To `down`.
    pub down: u64,
}

impl Sim {
    /// The master's liveness ticker looks at `h` (real `Liveness::step`).
    pub(crate) fn on_liveness_tick(&mut self, h: HomeIx) {
        let now = self.q.now();
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        let (next, t) = home.liveness.step(&self.cfg, now, LiveEvent::Tick);
        home.liveness = next;
        if let Some(t) = t {
            match t.to {
                "suspect" => self.counts.transitions.suspect += 1,
                "down" => self.counts.transitions.down += 1,
                _ => {}
            }
            self.node_changed(h);
        }
    }

    /// Recomputes the scheduler's view of `h` with the master's own `node_state` (`hearth_core`).
    pub(crate) fn node_changed(&mut self, h: HomeIx) {
        let Some(home) = self.homes.get(h) else {
            return;
        };
        let new = node_state(NodeView {
            id: home.id,
            facts: &home.facts,
            admin: AdminState::Active,
            liveness: home.liveness,
            reliability: 1.0,
            suspended: false,
        });
        let Some(slot) = self.nodes.get_mut(h) else {
            return;
        };
        let wake = (new.candidate.schedulable && !slot.candidate.schedulable)
            || (slot.keeps && !new.keeps);
        slot.candidate.schedulable = new.candidate.schedulable;
        slot.keeps = new.keeps;
        if wake {
            self.request_pass();
        }
    }

    /// Asks for a pass at the master's next whole second.
    pub(crate) fn request_pass(&mut self) {
        if self.pass_pending {
            return;
        }
        self.pass_pending = true;
        let next = (self.q.now() / 1000 + 1) * 1000;
        self.q.at(next, Event::SchedulerPass);
    }

    /// Whether `plan` could change anything now.
    fn needs_pass(&self) -> bool {
        let mut count = vec![0u32; self.deployments.len()];
        for (home, a) in self.assign.values() {
            if !self.nodes.get(*home).is_some_and(|n| n.keeps) {
                return true;
            }
            if let Some(c) = self
                .dep_index
                .get(&a.deployment)
                .and_then(|d| count.get_mut(*d))
            {
                *c += 1;
            }
        }
        self.deployments
            .iter()
            .zip(&count)
            .any(|(d, c)| d.spec.replicas != *c)
    }

    /// The master's `plan` on the simulated fleet. Rebalancing moves are not modelled (they need
    /// replica readiness over time, and no scenario drains), so the plan is asked not to make
    /// them; everything else is the master's own pass.
    fn plan(&self, assignments: &[(NodeId, Assignment)], start: usize) -> Plan {
        let snap = Snapshot {
            deployments: &self.deployments,
            nodes: &self.nodes,
            assignments,
            now_ms: self.q.now(),
            start,
            policy: Policy {
                rebalance: false,
                ..Policy::default()
            },
        };
        plan(&snap, |_, _| Readiness::Waiting)
    }

    /// A scheduler pass.
    pub(crate) fn on_pass(&mut self) {
        self.pass_pending = false;
        if !self.needs_pass() {
            self.passes.skipped += 1;
            if self.check_skips {
                // Proof of the shortcut: the real plan must find nothing to do either.
                let assignments = self.snapshot();
                if !self.plan(&assignments, 0).changes.is_empty() {
                    self.passes.skip_mismatches += 1;
                }
            }
            return;
        }
        self.passes.planned += 1;
        let assignments = self.snapshot();
        // The master's pass counter ticks once a second; it seeds the placement scan.
        let start = usize::try_from(self.q.now() / 1000)
            .unwrap_or(0)
            .wrapping_mul(7919);
        let Plan { changes, outcomes } = self.plan(&assignments, start);
        self.passes.notes = outcomes
            .into_iter()
            .map(|(name, o)| {
                let notes: Vec<String> = o.conditions.into_iter().map(|c| c.detail).collect();
                (name.to_string(), notes)
            })
            .filter(|(_, n)| !n.is_empty())
            .collect();
        if changes.is_empty() {
            return;
        }
        self.passes.with_changes += 1;
        let mut touched = std::collections::BTreeSet::new();
        for change in changes {
            match change {
                Change::Place { node, spec } => {
                    let Some(&h) = self.by_id.get(&node) else {
                        continue;
                    };
                    let mut spec = *spec;
                    let old = self.assign.remove(&spec.instance);
                    spec.generation = old.as_ref().map_or(1, |(_, a)| a.generation + 1);
                    if let Some((oh, _)) = old {
                        self.passes.re_placed += 1;
                        if let Some(d) = self.dep_of(&spec.deployment) {
                            d.re_placements += 1;
                        }
                        if let Some(home) = self.homes.get_mut(oh) {
                            home.hosted.remove(&spec.instance);
                        }
                        touched.insert(oh);
                    } else {
                        self.passes.placed += 1;
                        let d = self.dep_index.get(&spec.deployment).copied();
                        if let Some(ids) = d.and_then(|d| self.dep_instances.get_mut(d)) {
                            ids.push(spec.instance.clone());
                        }
                    }
                    if let Some(home) = self.homes.get_mut(h) {
                        home.hosted.insert(spec.instance.clone());
                    }
                    touched.insert(h);
                    self.assign.insert(spec.instance.clone(), (h, spec));
                }
                Change::Remove(id) => {
                    if let Some((oh, a)) = self.assign.remove(&id) {
                        self.passes.removed += 1;
                        let d = self.dep_index.get(&a.deployment).copied();
                        if let Some(ids) = d.and_then(|d| self.dep_instances.get_mut(d)) {
                            ids.retain(|i| *i != id);
                        }
                        if let Some(d) = d {
                            self.refresh_dep(d);
                        }
                        if let Some(home) = self.homes.get_mut(oh) {
                            home.hosted.remove(&id);
                        }
                        touched.insert(oh);
                    }
                }
            }
        }
        for h in touched {
            if let Some(home) = self.homes.get_mut(h) {
                home.revision += 1;
            }
            self.send_desired(h);
            self.refresh_home(h);
        }
        // The budget may have deferred re-placements: look again next second.
        self.request_pass();
    }

    fn dep_of(
        &mut self,
        name: &hearth_protocol::messages::state::Name,
    ) -> Option<&mut crate::metrics::DepStats> {
        let d = *self.dep_index.get(name)?;
        self.deps.get_mut(d)
    }

    /// The assignments as the store would list them.
    fn snapshot(&self) -> Vec<(NodeId, Assignment)> {
        self.assign
            .values()
            .filter_map(|(h, a)| self.homes.get(*h).map(|home| (home.id, a.clone())))
            .collect()
    }

    /// Pushes the node's whole desired state over its session, if it has one.
    pub(crate) fn send_desired(&mut self, h: HomeIx) {
        let Some(home) = self.homes.get(h) else {
            return;
        };
        if !matches!(home.session, crate::fleet::Session::Online { .. }) {
            return;
        }
        let state = DesiredState {
            holds: Vec::new(),
            masters: Vec::new(),
            gateways: Vec::new(),
            revision: home.revision,
            instances: home
                .hosted
                .iter()
                .filter_map(|id| self.assign.get(id).map(|(_, a)| a.clone()))
                .collect(),
        };
        let ev = Event::Deliver {
            home: h,
            epoch: home.session_epoch,
            state: Box::new(state),
        };
        let latency = u64::from(home.model.latency_ms).max(1);
        self.q.after(latency, ev);
        self.msgs.desired += 1;
        self.count_msgs(1);
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
