//! What the operator API shows of a deployment: each replica's state as it really is (a replica
//! on a node that went silent is `unknown`, on a node that is down `lost`, never `running`), the
//! replicas that really serve, the spread achieved, the conditions with their `since`, the move
//! under way and the last events. Also the forecast `POST /v1/deployments` answers with: what the
//! fleet cannot give right now.

use std::collections::{BTreeSet, HashMap};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::Assignment;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::context::Context;
use crate::liveness::Liveness;
use crate::rollout::{Readiness, Replica, readiness};
use crate::scheduler::{
    Deployment, DeploymentSpec, NodeState, Policy, RecipeInfo, Snapshot, health_checked,
    node_state, plan,
};
use crate::store::{AdminState, EventRecord, NodeRecord, StoredDeployment};

/// Events shown with one deployment.
pub const EVENTS_SHOWN: usize = 10;

/// A replica's state as shown, from its node's liveness and its last report.
struct Shown {
    state: String,
    health: String,
    detail: Option<String>,
    serving: bool,
}

fn shown(ctx: &Context, node: &NodeId, a: &Assignment, now: u64) -> (Shown, Value) {
    let status = ctx
        .fleet
        .instance_status(&a.instance)
        .filter(|(n, s)| n == node && s.report.generation == a.generation)
        .map(|(_, s)| s);
    let endpoints = status.as_ref().map_or(json!([]), |s| json!(s.endpoints));
    let secs = |t: u64| now.saturating_sub(t) / 1000;
    let node_issue = match ctx.fleet.live(node) {
        None => Some(("lost", "node unknown".to_owned())),
        Some(l) if matches!(l.admin, AdminState::Retired | AdminState::Revoked) => {
            Some(("lost", format!("node {}", l.admin)))
        }
        Some(l) => match l.liveness {
            Liveness::Up { .. } => None,
            Liveness::Down { since, .. } => Some(("lost", format!("node down {} s", secs(since)))),
            Liveness::Suspect { last_heartbeat } => Some((
                "unknown",
                format!("node suspect, silent {} s", secs(last_heartbeat)),
            )),
            Liveness::Returning { .. } => {
                Some(("unknown", "node not back since the master restarted".into()))
            }
            Liveness::Pending => Some(("unknown", "node never connected".into())),
        },
    };
    // Endpoints on a node that is not up are not known to be reachable: none are shown.
    let endpoints = if node_issue.is_some() {
        json!([])
    } else {
        endpoints
    };
    let report = status.as_ref().map(|s| &s.report);
    let s = match (node_issue, report) {
        (Some((state, why)), _) => Shown {
            state: state.into(),
            health: "unknown".into(),
            detail: Some(why),
            serving: false,
        },
        (None, None) => Shown {
            state: "pending".into(),
            health: "unknown".into(),
            detail: None,
            serving: false,
        },
        (None, Some(r)) => {
            let replica = Replica {
                node: *node,
                assignment: a,
                report: Some(r),
            };
            let ready = readiness(&replica, health_checked(ctx, &a.recipe));
            Shown {
                state: text(&r.state),
                health: text(&r.health),
                detail: match &ready {
                    Readiness::Broken(why) => Some(why.clone()),
                    _ => None,
                },
                serving: ready == Readiness::Ready,
            }
        }
    };
    (s, endpoints)
}

/// Whether a replica serves: the rule of the view's `serving` (node up, running at its current
/// generation, healthy when the recipe has a check), shared with the gateways' routing table.
pub fn serving(ctx: &Context, node: &NodeId, a: &Assignment, now: u64) -> bool {
    shown(ctx, node, a, now).0.serving
}

/// A replica's state as the view shows it (`running`, `pending`, `unknown`, `lost`…).
pub fn replica_state(ctx: &Context, node: &NodeId, a: &Assignment, now: u64) -> String {
    shown(ctx, node, a, now).0.state
}

fn text(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The view of one deployment. `events` are its last events (empty in listings).
pub fn view(
    ctx: &Context,
    stored: StoredDeployment,
    assignments: &[(NodeId, Assignment)],
    nodes: &HashMap<NodeId, NodeRecord>,
    events: Vec<EventRecord>,
) -> Value {
    let name = stored.name.as_str();
    let now = now_ms();
    let status = ctx.scheduler.status(&*ctx.store, name).unwrap_or_default();
    let mut serving = 0;
    let mut homes = BTreeSet::new();
    let mut countries = BTreeSet::new();
    let mut isps = BTreeSet::new();
    let replicas: Vec<Value> = assignments
        .iter()
        .filter(|(_, a)| a.deployment.as_str() == name)
        .map(|(node, a)| {
            let (s, endpoints) = shown(ctx, node, a, now);
            let facts = nodes.get(node).map(|r| &r.facts);
            let role = status.moving.as_ref().and_then(|m| {
                (m.to == a.instance)
                    .then_some("incoming")
                    .or((m.from == a.instance).then_some("leaving"))
            });
            if s.serving {
                serving += 1;
                if let Some(f) = facts {
                    homes.insert(f.home.to_string());
                    countries.insert(f.country.to_string());
                    isps.insert((f.country.to_string(), f.isp.clone()));
                }
            }
            json!({
                "instance": a.instance, "node": node, "generation": a.generation,
                "home": facts.map(|f| f.home.to_string()),
                "isp": facts.map(|f| f.isp.clone()),
                "country": facts.map(|f| f.country.to_string()),
                "recipe": format!("{}@{}", a.recipe.name, a.recipe.version),
                "state": s.state, "health": s.health, "detail": s.detail, "serving": s.serving,
                "role": role, "endpoints": endpoints,
            })
        })
        .collect();
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| json!({ "kind": c.kind, "detail": c.detail, "since_ms": c.since_ms }))
        .collect();
    let notes: Vec<String> = status.conditions.iter().map(|c| c.detail.clone()).collect();
    json!({
        "name": name, "spec": stored.spec, "rollout": stored.rollout,
        "wanted": stored.spec.get("replicas"), "running": serving,
        "spread": { "homes": homes.len(), "countries": countries.len(), "isps": isps.len() },
        "replicas": replicas, "conditions": conditions, "notes": notes,
        "moving": status.moving, "events": events,
    })
}

/// What the fleet cannot give `spec` right now (the plan's conditions for it alone, as if it
/// were new): the warnings `POST /v1/deployments` answers with.
pub fn forecast(
    ctx: &Context,
    spec: &DeploymentSpec,
    info: RecipeInfo,
    records: &[NodeRecord],
    assignments: &[(NodeId, Assignment)],
) -> Vec<String> {
    let nodes: Vec<NodeState> = records
        .iter()
        .map(|r| {
            let standing = crate::uptime::standing::placement_of(ctx, &r.id);
            node_state(r, ctx.fleet.live(&r.id).as_ref(), standing)
        })
        .collect();
    // Its own replicas count as placed: a re-sent deploy forecasts what is, not a second copy.
    let deployments = [Deployment {
        spec: spec.clone(),
        info,
        moving: None,
        calm_until_ms: u64::MAX,
        rolling: true,
        failed: Default::default(),
    }];
    let snap = Snapshot {
        deployments: &deployments,
        nodes: &nodes,
        assignments,
        now_ms: now_ms(),
        start: 0,
        policy: Policy {
            rebalance: false,
            ..Policy::default()
        },
    };
    plan(&snap, |_, _| Readiness::Waiting)
        .outcomes
        .into_values()
        .flat_map(|o| o.conditions)
        .map(|c| c.detail)
        .collect()
}
