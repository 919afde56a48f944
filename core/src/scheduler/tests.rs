use hearth_protocol::messages::state::{Assignment, InstanceId};
use hearth_protocol::{NodeId, SecretKey, Sha256};

use super::*;
use crate::rollout::Readiness;

fn node(seed: u16, keeps: bool) -> NodeState {
    at(
        seed,
        keeps,
        ["BE", "FR", "DE"][usize::from(seed % 3)],
        &format!("isp-{}", seed % 7),
    )
}

fn at(seed: u16, keeps: bool, country: &str, isp: &str) -> NodeState {
    let mut key = [0u8; 32];
    key[..2].copy_from_slice(&seed.to_le_bytes());
    NodeState {
        candidate: Candidate {
            id: NodeId::from_key(SecretKey::from_seed(&key).public()),
            home: format!("home-{seed}").parse().unwrap(),
            isp: isp.to_owned(),
            country: country.parse().unwrap(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis: 100_000,
                memory_mib: 100_000,
                disk_mib: 1_000_000,
                bandwidth_mbps: 1000,
            },
            allocated: Resources::default(),
            schedulable: keeps,
            reliability: 1.0,
        },
        keeps,
        draining: false,
        state: if keeps { "active" } else { "down" },
    }
}

fn lose(nodes: &mut [NodeState], id: NodeId) {
    for n in nodes.iter_mut().filter(|n| n.candidate.id == id) {
        n.keeps = false;
        n.candidate.schedulable = false;
        n.state = "down";
    }
}

fn deployment(name: &str, replicas: u32) -> Deployment {
    let spec = DeploymentSpec {
        name: name.parse().unwrap(),
        recipe: RecipeRef {
            name: "site".parse().unwrap(),
            version: "1".into(),
            sha256: Sha256::digest(b"r"),
        },
        replicas,
        spread: ["isp".to_owned(), "country".to_owned()].into(),
        countries: BTreeSet::new(),
        params: BTreeMap::new(),
        labels: BTreeMap::new(),
        hosts: Vec::new(),
        tcp: Vec::new(),
    };
    Deployment {
        spec,
        info: RecipeInfo {
            resources: Resources {
                cpu_millis: 10,
                memory_mib: 10,
                disk_mib: 10,
                bandwidth_mbps: 1,
            },
            ports: vec![],
        },
        moving: None,
        calm_until_ms: 0,
        rolling: false,
        failed: BTreeSet::new(),
    }
}

/// A pass at `now` where every replica is ready.
fn pass(
    deployments: &[Deployment],
    nodes: &[NodeState],
    assignments: &[(NodeId, Assignment)],
    start: usize,
) -> Plan {
    pass_at(deployments, nodes, assignments, start, 1_000, |_| {
        Readiness::Ready
    })
}

fn pass_at(
    deployments: &[Deployment],
    nodes: &[NodeState],
    assignments: &[(NodeId, Assignment)],
    start: usize,
    now_ms: u64,
    ready: impl Fn(&InstanceId) -> Readiness,
) -> Plan {
    let snap = Snapshot {
        deployments,
        nodes,
        assignments,
        now_ms,
        start,
        policy: Policy::default(),
    };
    plan(&snap, |_, a| ready(&a.instance))
}

/// The assignments after applying `changes` to `before`.
fn apply(before: &[(NodeId, Assignment)], changes: &[Change]) -> Vec<(NodeId, Assignment)> {
    let mut now = before.to_vec();
    for c in changes {
        match c {
            Change::Place { node, spec } => {
                now.retain(|(_, a)| a.instance != spec.instance);
                now.push((*node, (**spec).clone()));
            }
            Change::Remove(id) => now.retain(|(_, a)| a.instance != *id),
        }
    }
    now
}

fn removed(changes: &[Change]) -> Vec<InstanceId> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Remove(id) => Some(id.clone()),
            Change::Place { .. } => None,
        })
        .collect()
}

fn kinds(p: &Plan, name: &str) -> Vec<ConditionKind> {
    p.outcomes[&name.parse::<Name>().unwrap()]
        .conditions
        .iter()
        .map(|c| c.kind)
        .collect()
}

fn assigned(changes: &[Change]) -> Vec<(NodeId, Assignment)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Place { node, spec } => Some((*node, (**spec).clone())),
            Change::Remove(_) => None,
        })
        .collect()
}

#[test]
fn only_replicas_on_lost_nodes_move_and_keep_their_ids() {
    let mut nodes: Vec<NodeState> = (0..10).map(|i| node(i, true)).collect();
    let first = pass(&[deployment("web", 3)], &nodes, &[], 0).changes;
    let placed = assigned(&first);
    assert_eq!(placed.len(), 3);
    let lost = placed[0].0;
    lose(&mut nodes, lost);
    let second = pass(&[deployment("web", 3)], &nodes, &placed, 5).changes;
    let moved = assigned(&second);
    assert_eq!(moved.len(), 1, "{second:?}");
    assert_eq!(moved[0].1.instance, placed[0].1.instance);
    assert_ne!(moved[0].0, lost);
    // Nothing to do once everything is where it should be.
    let mut now = placed.clone();
    now[0] = moved[0].clone();
    assert!(
        pass(&[deployment("web", 3)], &nodes, &now, 9)
            .changes
            .is_empty()
    );
}

#[test]
fn a_correlated_outage_is_re_placed_at_a_bounded_rate() {
    let mut nodes: Vec<NodeState> = (0..400).map(|i| node(i, true)).collect();
    let deployments: Vec<_> = (0..300).map(|i| deployment(&format!("d{i}"), 1)).collect();
    let first = pass(&deployments, &nodes, &[], 0).changes;
    let placed = assigned(&first);
    assert_eq!(placed.len(), 300);
    // Every node holding a replica goes dark at once.
    let dark: BTreeSet<NodeId> = placed.iter().map(|(n, _)| *n).collect();
    for id in dark {
        lose(&mut nodes, id);
    }
    let second = pass(&deployments, &nodes, &placed, 1).changes;
    assert_eq!(assigned(&second).len(), REPLACE_BUDGET);
    assert!(
        !second.iter().any(|c| matches!(c, Change::Remove(_))),
        "deferred replicas are not dropped"
    );
}

#[test]
fn scaling_down_removes_the_surplus() {
    let nodes: Vec<NodeState> = (0..10).map(|i| node(i, true)).collect();
    let placed = assigned(&pass(&[deployment("web", 3)], &nodes, &[], 0).changes);
    let changes = pass(&[deployment("web", 1)], &nodes, &placed, 0).changes;
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Remove(_)))
            .count(),
        2
    );
}

#[test]
fn what_fits_is_placed_and_the_shortfall_stays_a_condition() {
    let nodes: Vec<NodeState> = (0..12).map(|i| node(i, true)).collect();
    let big = [deployment("big", 13)];
    let first = pass(&big, &nodes, &[], 0);
    let placed = assigned(&first.changes);
    assert_eq!(placed.len(), 12, "best effort: every home gets one");
    let cond = &first.outcomes[&"big".parse::<Name>().unwrap()].conditions;
    assert_eq!(cond[0].kind, ConditionKind::Replicas);
    assert!(
        cond[0].detail.starts_with("12 of 13 replicas placed: needs 13 replicas in distinct homes in the fleet, 12 possible"),
        "{}",
        cond[0].detail
    );
    assert!(!cond[0].detail.contains("labels"), "labels were not asked");
    // The next pass places nothing, and still says so.
    let again = pass(&big, &nodes, &placed, 3);
    assert!(again.changes.is_empty());
    // 12 replicas over 3 countries: the spread asked cannot be met either, and that is said too.
    assert_eq!(
        kinds(&again, "big"),
        vec![ConditionKind::Replicas, ConditionKind::Countries]
    );
}

#[test]
fn a_restricted_deployment_heals_onto_the_one_free_home() {
    // Four homes in BE, one in FR; three replicas restricted to BE; two of their homes die.
    let mut nodes: Vec<NodeState> = (0..4).map(|i| at(i, true, "BE", "proximus")).collect();
    nodes.push(at(9, true, "FR", "free"));
    let mut be = deployment("be-only", 3);
    be.spec.countries = ["BE".parse().unwrap()].into();
    let be = [be];
    let placed = assigned(&pass(&be, &nodes, &[], 0).changes);
    assert_eq!(placed.len(), 3);
    lose(&mut nodes, placed[0].0);
    lose(&mut nodes, placed[1].0);
    let heal = pass(&be, &nodes, &placed, 1);
    let moved = assigned(&heal.changes);
    assert_eq!(moved.len(), 1, "one BE home is free: {:?}", heal.changes);
    assert_eq!(nodes[3].candidate.country.as_str(), "BE");
    assert!(!placed.iter().any(|(n, _)| *n == moved[0].0));
    assert!(
        removed(&heal.changes).is_empty(),
        "the other lost replica waits, it is not dropped"
    );
    let o = &heal.outcomes[&"be-only".parse::<Name>().unwrap()];
    assert_eq!(o.lost.len(), 1);
    assert!(
        o.conditions[0]
            .detail
            .starts_with("2 of 3 replicas placed, 1 replica on lost nodes"),
        "{}",
        o.conditions[0].detail
    );
}

#[test]
fn spread_is_restored_make_before_break_once_the_country_returns() {
    let mut nodes = vec![
        at(1, true, "BE", "proximus"),
        at(2, true, "FR", "free"),
        at(3, true, "BE", "telenet"),
    ];
    let mut web = deployment("web", 2);
    web.spec.spread = ["country".to_owned()].into();
    let placed = assigned(&pass(std::slice::from_ref(&web), &nodes, &[], 0).changes);
    // FR goes dark: its replica is re-placed in BE, spread degraded.
    let fr = nodes[1].candidate.id;
    lose(&mut nodes, fr);
    let heal = pass(std::slice::from_ref(&web), &nodes, &placed, 0);
    let now = apply(&placed, &heal.changes);
    assert_eq!(kinds(&heal, "web"), vec![ConditionKind::Countries]);
    // Still degraded while FR is out: no move, the condition stays.
    let quiet = pass(std::slice::from_ref(&web), &nodes, &now, 0);
    assert!(quiet.changes.is_empty());
    assert_eq!(kinds(&quiet, "web"), vec![ConditionKind::Countries]);
    // FR returns: a new copy starts there first; nothing is removed yet.
    nodes[1] = at(2, true, "FR", "free");
    let start = pass(std::slice::from_ref(&web), &nodes, &now, 0);
    assert!(removed(&start.changes).is_empty(), "{:?}", start.changes);
    let new = assigned(&start.changes);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].0, fr);
    let m = start.outcomes[&"web".parse::<Name>().unwrap()]
        .moving
        .clone()
        .unwrap();
    assert_eq!(m.reason, MoveReason::Spread);
    let during = apply(&now, &start.changes);
    web.moving = Some(m.clone());
    // The new copy is not ready: both stay.
    let wait = pass_at(std::slice::from_ref(&web), &nodes, &during, 0, 2_000, |i| {
        if *i == m.to {
            Readiness::Waiting
        } else {
            Readiness::Ready
        }
    });
    assert!(wait.changes.is_empty(), "{:?}", wait.changes);
    // Ready: the old copy goes, and the spread condition ends.
    let done = pass_at(
        std::slice::from_ref(&web),
        &nodes,
        &during,
        0,
        3_000,
        |_| Readiness::Ready,
    );
    assert_eq!(removed(&done.changes), vec![m.from.clone()]);
    let o = &done.outcomes[&"web".parse::<Name>().unwrap()];
    assert!(o.moving.is_none());
    assert!(o.conditions.is_empty(), "{:?}", o.conditions);
    assert!(o.events.iter().any(|e| e.kind == EventKind::Moved));
}

#[test]
fn a_failed_move_removes_only_the_new_copy_and_backs_off() {
    let mut nodes: Vec<NodeState> = (0..4).map(|i| node(i, true)).collect();
    let web = deployment("web", 2);
    let placed = assigned(&pass(std::slice::from_ref(&web), &nodes, &[], 0).changes);
    let drained = placed[0].0;
    for n in nodes.iter_mut().filter(|n| n.candidate.id == drained) {
        n.draining = true;
        n.candidate.schedulable = false;
        n.state = "draining";
    }
    let start = pass(std::slice::from_ref(&web), &nodes, &placed, 0);
    assert!(
        removed(&start.changes).is_empty(),
        "drain starts the new copy first"
    );
    let m = start.outcomes[&"web".parse::<Name>().unwrap()]
        .moving
        .clone()
        .unwrap();
    assert_eq!((m.reason, m.from_node), (MoveReason::Drain, drained));
    let during = apply(&placed, &start.changes);
    let mut moving = web.clone();
    moving.moving = Some(m.clone());
    let failed = pass_at(
        std::slice::from_ref(&moving),
        &nodes,
        &during,
        0,
        5_000,
        |i| {
            if *i == m.to {
                Readiness::Broken("crashed".into())
            } else {
                Readiness::Ready
            }
        },
    );
    assert_eq!(removed(&failed.changes), vec![m.to.clone()]);
    let o = &failed.outcomes[&"web".parse::<Name>().unwrap()];
    assert!(o.calm_until_ms > 5_000);
    assert!(o.events.iter().any(|e| e.kind == EventKind::MoveAbandoned));
}

#[test]
fn a_replica_failed_for_good_is_re_placed_on_another_node_at_a_bounded_rate() {
    let nodes: Vec<NodeState> = (0..5).map(|i| node(i, true)).collect();
    let mut web = deployment("web", 2);
    let placed = assigned(&pass(std::slice::from_ref(&web), &nodes, &[], 0).changes);
    let (bad_node, bad) = placed[0].clone();
    web.failed = [bad.instance.clone()].into();
    let p = pass_at(
        std::slice::from_ref(&web),
        &nodes,
        &placed,
        0,
        10_000,
        |_| Readiness::Ready,
    );
    let moved = assigned(&p.changes);
    assert_eq!(moved.len(), 1, "{:?}", p.changes);
    assert_eq!(
        moved[0].1.instance, bad.instance,
        "same id, next generation"
    );
    assert_ne!(moved[0].0, bad_node, "not the node it failed on");
    let o = &p.outcomes[&"web".parse::<Name>().unwrap()];
    assert!(o.calm_until_ms > 10_000);
    // Failed again on its new node right away: it waits for the retry delay.
    let now = apply(&placed, &p.changes);
    web.failed = [bad.instance.clone()].into();
    web.calm_until_ms = o.calm_until_ms;
    let again = pass_at(std::slice::from_ref(&web), &nodes, &now, 0, 11_000, |_| {
        Readiness::Ready
    });
    assert!(again.changes.is_empty(), "{:?}", again.changes);
}

/// The scheduler's view of a node from its facts and standing, through `node_state`.
fn viewed(seed: u8, reliability: f64, suspended: bool) -> NodeState {
    let key = SecretKey::from_seed(&[seed; 32]);
    // From JSON, so that optional facts added later need no change here.
    let facts: hearth_protocol::NodeFacts = serde_json::from_value(serde_json::json!({
        "agent": "hearth-node/0.1.0", "arch": "x86_64",
        "capacity": {"cpu_millis": 4000, "memory_mib": 8192, "disk_mib": 100_000, "bandwidth_mbps": 100},
        "country": "BE", "isp": format!("isp-{seed}"), "home": format!("home-{seed}"),
        "uplink_mbps": 100, "downlink_mbps": 100, "cgroups_v2": true
    }))
    .unwrap();
    node_state(NodeView {
        id: NodeId::from_key(key.public()),
        facts: &facts,
        admin: AdminState::Active,
        liveness: Liveness::Up {
            last_heartbeat: 1_000,
        },
        reliability,
        suspended,
    })
}

#[test]
fn a_suspended_node_keeps_its_replicas_but_gets_no_new_ones() {
    let good = viewed(1, 1.0, false);
    let suspended = viewed(2, 1.0, true);
    assert!(good.candidate.schedulable && good.keeps);
    assert!(!suspended.candidate.schedulable, "no new placements");
    assert!(suspended.keeps, "its current replicas stay");
    let nodes = vec![good.clone(), suspended.clone()];
    let placed = assigned(&pass(&[deployment("web", 2)], &nodes, &[], 0).changes);
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0].0, good.candidate.id);
    // A replica already on the suspended node is neither removed nor moved.
    let mut on_suspended = placed[0].clone();
    on_suspended.0 = suspended.candidate.id;
    let second = pass(&[deployment("web", 1)], &nodes, &[on_suspended], 1).changes;
    assert!(second.is_empty(), "{second:?}");
}

#[test]
fn the_more_reliable_of_two_equal_nodes_is_chosen_and_bad_scores_are_clamped() {
    let shaky = viewed(3, 0.4, false);
    let steady = viewed(4, 0.9, false);
    assert_eq!(shaky.candidate.reliability, 0.4);
    assert_eq!(viewed(5, f64::NAN, false).candidate.reliability, 1.0);
    assert_eq!(viewed(6, 7.0, false).candidate.reliability, 1.0);
    assert_eq!(viewed(7, -1.0, false).candidate.reliability, 0.0);
    for order in [
        vec![shaky.clone(), steady.clone()],
        vec![steady.clone(), shaky.clone()],
    ] {
        let placed = assigned(&pass(&[deployment("web", 1)], &order, &[], 0).changes);
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].0, steady.candidate.id);
    }
}
