use hearth_protocol::{SecretKey, Sha256};

use super::*;

fn node(seed: u16, keeps: bool) -> NodeState {
    let mut key = [0u8; 32];
    key[..2].copy_from_slice(&seed.to_le_bytes());
    NodeState {
        candidate: Candidate {
            id: NodeId::from_key(SecretKey::from_seed(&key).public()),
            home: format!("home-{seed}").parse().unwrap(),
            isp: format!("isp-{}", seed % 7),
            country: ["BE", "FR", "DE"][usize::from(seed % 3)].parse().unwrap(),
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
    }
}

fn deployment(name: &str, replicas: u32) -> (DeploymentSpec, RecipeInfo) {
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
    };
    (
        spec,
        RecipeInfo {
            resources: Resources {
                cpu_millis: 10,
                memory_mib: 10,
                disk_mib: 10,
                bandwidth_mbps: 1,
            },
            ports: vec![],
        },
    )
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
    let (first, _) = plan(&[deployment("web", 3)], &nodes, &[], 0);
    let placed = assigned(&first);
    assert_eq!(placed.len(), 3);
    let lost = placed[0].0;
    nodes
        .iter_mut()
        .filter(|n| n.candidate.id == lost)
        .for_each(|n| {
            n.keeps = false;
            n.candidate.schedulable = false;
        });
    let (second, _) = plan(&[deployment("web", 3)], &nodes, &placed, 5);
    let moved = assigned(&second);
    assert_eq!(moved.len(), 1, "{second:?}");
    assert_eq!(moved[0].1.instance, placed[0].1.instance);
    assert_ne!(moved[0].0, lost);
    // Nothing to do once everything is where it should be.
    let mut now = placed.clone();
    now[0] = moved[0].clone();
    assert!(plan(&[deployment("web", 3)], &nodes, &now, 9).0.is_empty());
}

#[test]
fn a_correlated_outage_is_re_placed_at_a_bounded_rate() {
    let mut nodes: Vec<NodeState> = (0..400).map(|i| node(i, true)).collect();
    let deployments: Vec<_> = (0..300).map(|i| deployment(&format!("d{i}"), 1)).collect();
    let (first, _) = plan(&deployments, &nodes, &[], 0);
    let placed = assigned(&first);
    assert_eq!(placed.len(), 300);
    // Every node holding a replica goes dark at once.
    let dark: BTreeSet<NodeId> = placed.iter().map(|(n, _)| *n).collect();
    for n in nodes.iter_mut().filter(|n| dark.contains(&n.candidate.id)) {
        n.keeps = false;
        n.candidate.schedulable = false;
    }
    let (second, _) = plan(&deployments, &nodes, &placed, 1);
    assert_eq!(assigned(&second).len(), REPLACE_BUDGET);
    assert!(
        !second.iter().any(|c| matches!(c, Change::Remove(_))),
        "deferred replicas are not dropped"
    );
}

#[test]
fn scaling_down_removes_the_surplus() {
    let nodes: Vec<NodeState> = (0..10).map(|i| node(i, true)).collect();
    let placed = assigned(&plan(&[deployment("web", 3)], &nodes, &[], 0).0);
    let (changes, _) = plan(&[deployment("web", 1)], &nodes, &placed, 0);
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Remove(_)))
            .count(),
        2
    );
}
