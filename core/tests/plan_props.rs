//! Property: over passes of `plan` on a random fleet (homes holding several nodes, nodes lost and
//! back between passes), no deployment ever has two replicas in one home on nodes that keep them,
//! and nothing is ever placed outside a deployment's allowed countries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::{BTreeMap, BTreeSet};

use hearth_core::placement::Candidate;
use hearth_core::rollout::Readiness;
use hearth_core::scheduler::{
    Change, Deployment, DeploymentSpec, NodeState, Policy, RecipeInfo, Snapshot, plan,
};
use hearth_protocol::messages::state::{Assignment, RecipeRef};
use hearth_protocol::{CountryCode, NodeId, Resources, SecretKey, Sha256};
use proptest::prelude::*;

mod common;

const COUNTRIES: [&str; 4] = ["BE", "FR", "DE", "NL"];

/// A node: its home (a small pool, so homes hold several nodes; a home's country and ISP follow
/// from it) and whether it is up at first.
fn nodes() -> impl Strategy<Value = Vec<(u8, bool)>> {
    proptest::collection::vec((0u8..12, proptest::bool::weighted(0.8)), 1..30)
}

/// A deployment: replicas, allowed countries (a bit set; 0 is anywhere), spread bits.
fn deployments() -> impl Strategy<Value = Vec<(u32, u8, u8)>> {
    proptest::collection::vec((1u32..6, 0u8..16, 0u8..4), 1..4)
}

/// Between passes: which nodes flip (lost or back), by index.
fn flips() -> impl Strategy<Value = Vec<Vec<usize>>> {
    proptest::collection::vec(proptest::collection::vec(0usize..30, 0..4), 1..6)
}

fn node(i: usize, home: u8, up: bool) -> NodeState {
    let country = usize::from(home) % COUNTRIES.len();
    let isp = home % 3;
    let mut key = [7u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_le_bytes());
    NodeState {
        candidate: Candidate {
            id: NodeId::from_key(SecretKey::from_seed(&key).public()),
            home: format!("home-{home}").parse().unwrap(),
            isp: format!("isp-{isp}"),
            country: COUNTRIES[country].parse().unwrap(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis: 4_000,
                memory_mib: 4_000,
                disk_mib: 40_000,
                bandwidth_mbps: 100,
            },
            allocated: Resources::default(),
            schedulable: up,
            reliability: 1.0,
        },
        keeps: up,
        draining: false,
        state: if up { "active" } else { "down" },
    }
}

fn deployment(i: usize, replicas: u32, countries: u8, spread: u8) -> Deployment {
    let allowed: BTreeSet<CountryCode> = COUNTRIES
        .iter()
        .enumerate()
        .filter(|(c, _)| countries & (1 << c) != 0)
        .map(|(_, c)| c.parse().unwrap())
        .collect();
    let mut spreads = BTreeSet::new();
    if spread & 1 != 0 {
        spreads.insert("isp".to_owned());
    }
    if spread & 2 != 0 {
        spreads.insert("country".to_owned());
    }
    Deployment {
        spec: DeploymentSpec {
            name: format!("d{i}").parse().unwrap(),
            recipe: RecipeRef {
                name: "site".parse().unwrap(),
                version: "1".into(),
                sha256: Sha256::digest(b"r"),
            },
            replicas,
            spread: spreads,
            countries: allowed,
            params: BTreeMap::new(),
            labels: BTreeMap::new(),
            hosts: Vec::new(),
            tcp: Vec::new(),
        },
        info: RecipeInfo {
            resources: Resources {
                cpu_millis: 1_000,
                memory_mib: 1_000,
                disk_mib: 1_000,
                bandwidth_mbps: 10,
            },
            ports: vec![],
        },
        moving: None,
        calm_until_ms: 0,
        rolling: false,
        failed: BTreeSet::new(),
    }
}

fn apply(assignments: &mut Vec<(NodeId, Assignment)>, changes: &[Change]) {
    for c in changes {
        match c {
            Change::Place { node, spec } => {
                assignments.retain(|(_, a)| a.instance != spec.instance);
                assignments.push((*node, (**spec).clone()));
            }
            Change::Remove(id) => assignments.retain(|(_, a)| a.instance != *id),
        }
    }
}

proptest! {
    #![proptest_config(common::config())]

    #[test]
    fn one_home_per_replica_inside_the_allowed_countries(
        fleet in nodes(),
        wanted in deployments(),
        flips in flips(),
    ) {
        check(&fleet, &wanted, &flips)?;
    }
}

/// A case proptest found (CI, 2026-12-04): a replica re-placed in the same home while its node
/// was down, then the node returns.
#[test]
fn a_home_whose_node_returns_keeps_one_replica() {
    let mut fleet = vec![(0u8, false); 23];
    for (i, home, up) in [
        (4, 5, false),
        (11, 3, false),
        (12, 2, true),
        (13, 5, false),
        (18, 5, false),
        (19, 5, false),
        (20, 5, false),
        (21, 2, true),
        (22, 4, true),
    ] {
        fleet[i] = (home, up);
    }
    check(&fleet, &[(3, 5, 0)], &[vec![22, 12], vec![12], vec![]]).unwrap();
}

fn check(
    fleet: &[(u8, bool)],
    wanted: &[(u32, u8, u8)],
    flips: &[Vec<usize>],
) -> Result<(), TestCaseError> {
    {
        let mut nodes: Vec<NodeState> = fleet
            .iter()
            .enumerate()
            .map(|(i, &(home, up))| node(i, home, up))
            .collect();
        let deployments: Vec<Deployment> = wanted
            .iter()
            .enumerate()
            .map(|(i, &(r, c, s))| deployment(i, r, c, s))
            .collect();
        let mut assignments: Vec<(NodeId, Assignment)> = Vec::new();
        for (pass, flip) in flips.iter().enumerate() {
            let snap = Snapshot {
                deployments: &deployments,
                nodes: &nodes,
                assignments: &assignments,
                now_ms: 1_000 * (pass as u64 + 1),
                start: pass * 7919,
                policy: Policy::default(),
            };
            let planned = plan(&snap, |_, _| Readiness::Ready);
            let by_id: BTreeMap<NodeId, &NodeState> =
                nodes.iter().map(|n| (n.candidate.id, n)).collect();
            for c in &planned.changes {
                if let Change::Place { node, spec } = c {
                    let n = by_id.get(node).expect("placed on a node of the snapshot");
                    prop_assert!(n.candidate.schedulable, "placed on an unschedulable node");
                    let d = deployments
                        .iter()
                        .find(|d| d.spec.name == spec.deployment)
                        .expect("placed for a deployment of the snapshot");
                    prop_assert!(
                        d.spec.countries.is_empty()
                            || d.spec.countries.contains(&n.candidate.country),
                        "{} placed in {} outside {:?}",
                        d.spec.name,
                        n.candidate.country,
                        d.spec.countries
                    );
                }
            }
            apply(&mut assignments, &planned.changes);
            for d in &deployments {
                let mut homes = BTreeSet::new();
                for (node, _) in assignments
                    .iter()
                    .filter(|(_, a)| a.deployment == d.spec.name)
                {
                    let n = by_id[node];
                    if n.keeps {
                        prop_assert!(
                            homes.insert(n.candidate.home.clone()),
                            "{} has two replicas in {} after pass {pass}",
                            d.spec.name,
                            n.candidate.home
                        );
                    }
                }
            }
            for &i in flip {
                if let Some(n) = nodes.get_mut(i) {
                    let up = !n.keeps;
                    n.keeps = up;
                    n.candidate.schedulable = up;
                    n.state = if up { "active" } else { "down" };
                }
            }
        }
    }
    Ok(())
}
