use std::collections::BTreeMap;

use hearth_protocol::{Resources, SecretKey, Sha256};

use super::*;

fn recipe(version: &str) -> RecipeRef {
    RecipeRef {
        name: "site".parse().unwrap(),
        version: version.into(),
        sha256: Sha256::digest(version.as_bytes()),
    }
}

fn node(seed: u8) -> NodeId {
    NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

/// A tiny world: replicas with assignments and the reports their nodes send.
struct World {
    replicas: Vec<(NodeId, Assignment, Option<InstanceReport>)>,
}

impl World {
    fn new(n: u8, recipe: &RecipeRef) -> Self {
        let replicas = (0..n)
            .map(|i| {
                let a = Assignment {
                    backup: None,
                    instance: format!("web-{i}").parse().unwrap(),
                    deployment: "web".parse().unwrap(),
                    generation: 1,
                    recipe: recipe.clone(),
                    params: BTreeMap::new(),
                    ports: BTreeMap::new(),
                    resources: Resources::default(),
                    lease_ms: None,
                    exposed: Vec::new(),
                    peers: Vec::new(),
                };
                let report = report(&a, InstanceState::Running, Health::Healthy);
                (node(i), a, Some(report))
            })
            .collect();
        Self { replicas }
    }

    fn view(&self) -> Vec<Replica<'_>> {
        self.replicas
            .iter()
            .map(|(node, assignment, report)| Replica {
                node: *node,
                assignment,
                report: report.as_ref(),
            })
            .collect()
    }

    /// Applies an update as the store and node would: next generation, not reported yet.
    fn apply(&mut self, update: Option<(NodeId, Assignment)>) -> Option<String> {
        let (node, mut spec) = update?;
        let slot = self
            .replicas
            .iter_mut()
            .find(|(_, a, _)| a.instance == spec.instance)
            .unwrap();
        assert_eq!(slot.0, node, "updates happen in place");
        spec.generation = slot.1.generation + 1;
        slot.1 = spec;
        slot.2 = None;
        Some(slot.1.instance.to_string())
    }

    fn report(&mut self, instance: &str, state: InstanceState, health: Health) {
        let slot = self
            .replicas
            .iter_mut()
            .find(|(_, a, _)| a.instance.as_str() == instance)
            .unwrap();
        slot.2 = Some(report(&slot.1, state, health));
    }

    fn down(&self) -> usize {
        self.view()
            .iter()
            .filter(|r| readiness(r, true) != Readiness::Ready)
            .count()
    }
}

fn report(a: &Assignment, state: InstanceState, health: Health) -> InstanceReport {
    InstanceReport {
        instance: a.instance.clone(),
        generation: a.generation,
        state,
        health,
    }
}

fn step(world: &World, rollout: &Rollout, now: u64) -> Advance {
    advance(rollout, &world.view(), |_| true, now)
}

#[test]
fn a_good_version_rolls_one_replica_at_a_time() {
    let (v1, v2) = (recipe("1"), recipe("2"));
    let mut world = World::new(3, &v1);
    let mut rollout = Rollout::new(v1, v2.clone(), 10_000);
    let mut order = Vec::new();
    for now in 0..20 {
        let adv = step(&world, &rollout, now);
        rollout = adv.rollout;
        if let Some(id) = world.apply(adv.update) {
            order.push(id);
        }
        assert!(world.down() <= 1, "two replicas down at once");
        // Each updated replica comes up on the next tick.
        let waiting: Vec<String> = world
            .replicas
            .iter()
            .filter(|(_, _, r)| r.is_none())
            .map(|(_, a, _)| a.instance.to_string())
            .collect();
        for id in waiting {
            world.report(&id, InstanceState::Running, Health::Healthy);
        }
    }
    assert_eq!(rollout.state, RolloutState::Complete);
    assert_eq!(order, ["web-0", "web-1", "web-2"]);
    assert!(world.replicas.iter().all(|(_, a, _)| a.recipe == v2));
    assert_eq!(rollout.updated, 3);
}

#[test]
fn an_unhealthy_version_rolls_back_and_touches_no_other_replica() {
    let (v1, v2) = (recipe("1"), recipe("2"));
    let mut world = World::new(3, &v1);
    let mut rollout = Rollout::new(v1.clone(), v2, 10_000);
    let adv = step(&world, &rollout, 0);
    rollout = adv.rollout;
    let first = world.apply(adv.update).unwrap();
    // Still coming up: nothing else moves.
    world.report(&first, InstanceState::Starting, Health::Unknown);
    let adv = step(&world, &rollout, 1);
    assert!(adv.update.is_none());
    rollout = adv.rollout;
    world.report(&first, InstanceState::Running, Health::Unhealthy);
    let adv = step(&world, &rollout, 2);
    rollout = adv.rollout;
    assert!(matches!(
        &rollout.state,
        RolloutState::RollingBack { reason, .. } if reason.contains("failed its health check")
    ));
    // The broken replica goes back first.
    assert_eq!(world.apply(adv.update).as_deref(), Some(first.as_str()));
    world.report(&first, InstanceState::Running, Health::Healthy);
    let adv = step(&world, &rollout, 3);
    assert!(adv.update.is_none());
    assert!(matches!(adv.rollout.state, RolloutState::RolledBack { .. }));
    assert!(world.replicas.iter().all(|(_, a, _)| a.recipe == v1));
    let generations: Vec<u64> = world
        .replicas
        .iter()
        .map(|(_, a, _)| a.generation)
        .collect();
    assert_eq!(generations, [3, 1, 1], "only the first replica was touched");
}

#[test]
fn a_replica_that_never_becomes_ready_fails_at_the_deadline() {
    let (v1, v2) = (recipe("1"), recipe("2"));
    let mut world = World::new(2, &v1);
    let rollout = Rollout::new(v1, v2, 5_000);
    let adv = step(&world, &rollout, 1_000);
    world.apply(adv.update);
    let waiting = step(&world, &adv.rollout, 6_000);
    assert!(waiting.update.is_none(), "within the deadline it waits");
    let failed = step(&world, &waiting.rollout, 6_001);
    assert!(matches!(
        &failed.rollout.state,
        RolloutState::RollingBack { reason, .. } if reason.contains("not ready within 5 s")
    ));
}

#[test]
fn a_crash_counts_as_a_failure_and_a_down_replica_is_updated_first() {
    let (v1, v2) = (recipe("1"), recipe("2"));
    let mut world = World::new(3, &v1);
    world.report("web-2", InstanceState::Fetching, Health::Unknown);
    let rollout = Rollout::new(v1, v2, 5_000);
    let adv = step(&world, &rollout, 0);
    assert_eq!(world.apply(adv.update).as_deref(), Some("web-2"));
    world.report("web-2", InstanceState::Restarting, Health::Unknown);
    let adv = step(&world, &adv.rollout, 1);
    assert!(matches!(
        &adv.rollout.state,
        RolloutState::RollingBack { reason, .. } if reason.contains("crashed")
    ));
}

#[test]
fn it_waits_while_another_replica_is_down() {
    let (v1, v2) = (recipe("1"), recipe("2"));
    let mut world = World::new(2, &v1);
    let rollout = Rollout::new(v1.clone(), v2.clone(), 5_000);
    let adv = step(&world, &rollout, 0);
    world.apply(adv.update);
    world.report("web-0", InstanceState::Running, Health::Healthy);
    // web-1 went unhealthy meanwhile: it is behind and already down, so it goes next.
    world.report("web-1", InstanceState::Running, Health::Unhealthy);
    let adv = step(&world, &adv.rollout, 1);
    assert_eq!(world.apply(adv.update).as_deref(), Some("web-1"));
    // A replica on the target that is down blocks a ready one from going down.
    let mut world = World::new(2, &v1);
    world.replicas[0].1.recipe = v2.clone();
    world.report("web-0", InstanceState::Starting, Health::Unknown);
    let adv = step(&world, &Rollout::new(v1.clone(), v2, 5_000), 0);
    assert!(adv.update.is_none());
}

#[test]
fn the_record_round_trips_and_is_versioned() {
    let mut rollout = Rollout::new(recipe("1"), recipe("2"), 5_000);
    rollout.state = RolloutState::RollingBack {
        reason: "x".into(),
        step: Some(Step {
            instance: "web-0".parse().unwrap(),
            started_ms: 7,
        }),
    };
    let json = serde_json::to_value(&rollout).unwrap();
    assert_eq!(json["v"], 1);
    assert_eq!(json["state"]["state"], "rolling_back");
    let back: Rollout = serde_json::from_value(json).unwrap();
    assert_eq!(back, rollout);
}
