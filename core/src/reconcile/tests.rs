use std::collections::BTreeMap;

use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceState, RecipeRef};
use hearth_protocol::{Resources, Sha256};

use super::*;

fn spec(id: &str, generation: u64, lease_ms: Option<u64>) -> Assignment {
    Assignment {
        backup: None,
        instance: id.parse().unwrap(),
        deployment: "web".parse().unwrap(),
        generation,
        recipe: RecipeRef {
            name: "site".parse().unwrap(),
            version: "1".into(),
            sha256: Sha256::digest(b"r"),
        },
        params: BTreeMap::new(),
        ports: BTreeMap::new(),
        resources: Resources::default(),
        lease_ms,
        exposed: Vec::new(),
        peers: Vec::new(),
    }
}

fn desired(revision: u64, specs: Vec<Assignment>) -> Event {
    Event::Desired(DesiredState {
        holds: Vec::new(),
        masters: Vec::new(),
        gateways: Vec::new(),
        revision,
        instances: specs,
    })
}

fn id(s: &str) -> InstanceId {
    s.parse().unwrap()
}

/// Runs an instance up to Running with `pid`.
fn running(agent: &mut Agent, s: Assignment, pid: u32) {
    let (i, g) = (s.instance.clone(), s.generation);
    let rev = agent.applied_revision + 1;
    agent.step(0, desired(rev, vec![s]));
    let a = agent.step(
        0,
        Event::Prepared {
            instance: i.clone(),
            generation: g,
            result: Ok(()),
        },
    );
    assert!(matches!(a.as_slice(), [Action::Start(_)]), "{a:?}");
    agent.step(
        0,
        Event::Started {
            instance: i,
            generation: g,
            pid,
            start_ticks: 7,
        },
    );
}

fn state(agent: &Agent, s: &str) -> Option<InstanceState> {
    agent
        .reports()
        .into_iter()
        .find(|r| r.instance.as_str() == s)
        .map(|r| r.state)
}

#[test]
fn a_new_instance_is_prepared_started_and_reported_running() {
    let mut a = Agent::default();
    let actions = a.step(0, desired(1, vec![spec("web-0", 1, None)]));
    assert!(actions.contains(&Action::Prepare(spec("web-0", 1, None))));
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Fetching));
    running(&mut a, spec("web-0", 1, None), 42);
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Running));
}

#[test]
fn the_same_desired_state_twice_changes_nothing() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    let before = a.clone();
    assert!(
        a.step(5, desired(1, vec![spec("web-0", 1, None)]))
            .is_empty()
    );
    let actions = a.step(5, desired(2, vec![spec("web-0", 1, None)]));
    assert_eq!(actions, vec![Action::Persist]);
    assert_eq!(a.instances, before.instances);
}

#[test]
fn a_crash_is_restarted_after_a_growing_backoff() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    a.step(
        1_000,
        Event::Exited {
            instance: id("web-0"),
            pid: 42,
            status: "signal 9".into(),
        },
    );
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Restarting));
    assert!(a.step(1_500, Event::Tick).is_empty());
    assert_eq!(
        a.step(2_000, Event::Tick),
        vec![Action::Prepare(spec("web-0", 1, None))]
    );
    a.step(
        2_000,
        Event::Prepared {
            instance: id("web-0"),
            generation: 1,
            result: Ok(()),
        },
    );
    a.step(
        2_000,
        Event::Started {
            instance: id("web-0"),
            generation: 1,
            pid: 43,
            start_ticks: 8,
        },
    );
    a.step(
        2_100,
        Event::Exited {
            instance: id("web-0"),
            pid: 43,
            status: "exit 1".into(),
        },
    );
    assert!(
        a.step(3_100, Event::Tick).is_empty(),
        "second backoff is 2 s"
    );
    assert!(!a.step(4_100, Event::Tick).is_empty());
}

#[test]
fn an_exit_of_an_unknown_pid_is_ignored() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    assert!(
        a.step(
            1,
            Event::Exited {
                instance: id("web-0"),
                pid: 99,
                status: "x".into()
            }
        )
        .is_empty()
    );
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Running));
}

#[test]
fn a_removed_instance_is_terminated_then_killed_then_forgotten() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    let actions = a.step(0, desired(2, vec![]));
    assert!(actions.contains(&Action::Signal {
        instance: id("web-0"),
        pid: 42,
        kill: false
    }));
    assert_eq!(
        a.step(10_000, Event::Tick),
        vec![Action::Signal {
            instance: id("web-0"),
            pid: 42,
            kill: true
        }]
    );
    let actions = a.step(
        10_001,
        Event::Exited {
            instance: id("web-0"),
            pid: 42,
            status: "signal 9".into(),
        },
    );
    assert!(actions.contains(&Action::Forget(id("web-0"))));
    assert!(a.instances.is_empty());
}

#[test]
fn a_new_generation_replaces_the_running_process() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    let actions = a.step(0, desired(2, vec![spec("web-0", 2, None)]));
    assert!(actions.contains(&Action::Signal {
        instance: id("web-0"),
        pid: 42,
        kill: false
    }));
    let actions = a.step(
        1,
        Event::Exited {
            instance: id("web-0"),
            pid: 42,
            status: "exit 0".into(),
        },
    );
    assert!(actions.contains(&Action::Prepare(spec("web-0", 2, None))));
    // A report for the old generation is stale: ignored.
    assert!(
        a.step(
            2,
            Event::Prepared {
                instance: id("web-0"),
                generation: 1,
                result: Ok(())
            }
        )
        .is_empty()
    );
    // An older generation never replaces a newer one.
    assert!(
        !a.step(3, desired(3, vec![spec("web-0", 1, None)]))
            .iter()
            .any(|x| matches!(x, Action::Prepare(_)))
    );
}

#[test]
fn a_refused_recipe_fails_and_never_starts() {
    let mut a = Agent::default();
    a.step(0, desired(1, vec![spec("web-0", 1, None)]));
    let actions = a.step(
        0,
        Event::Prepared {
            instance: id("web-0"),
            generation: 1,
            result: Err(Prepare::Refused("hash mismatch".into())),
        },
    );
    assert!(!actions.iter().any(|x| matches!(x, Action::Start(_))));
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Failed));
    assert!(a.step(100_000, Event::Tick).is_empty());
}

#[test]
fn a_leased_instance_stops_when_the_master_is_gone_too_long_and_returns_with_it() {
    let mut a = Agent::default();
    a.step(
        0,
        desired(
            1,
            vec![spec("db-0", 1, Some(30_000)), spec("web-0", 1, None)],
        ),
    );
    for (name, pid) in [("db-0", 42), ("web-0", 43)] {
        a.step(
            0,
            Event::Prepared {
                instance: id(name),
                generation: 1,
                result: Ok(()),
            },
        );
        a.step(
            0,
            Event::Started {
                instance: id(name),
                generation: 1,
                pid,
                start_ticks: 1,
            },
        );
    }
    a.step(1_000, Event::LinkDown);
    assert!(a.step(30_000, Event::Tick).is_empty());
    let actions = a.step(31_000, Event::Tick);
    assert_eq!(
        actions.first(),
        Some(&Action::Signal {
            instance: id("db-0"),
            pid: 42,
            kill: false
        })
    );
    a.step(
        31_500,
        Event::Exited {
            instance: id("db-0"),
            pid: 42,
            status: "exit 0".into(),
        },
    );
    assert_eq!(state(&a, "db-0"), Some(InstanceState::Stopped));
    assert_eq!(state(&a, "web-0"), Some(InstanceState::Running));
    let actions = a.step(40_000, Event::LinkUp);
    assert!(actions.contains(&Action::Prepare(spec("db-0", 1, Some(30_000)))));
}

fn health(agent: &Agent, s: &str) -> Option<Health> {
    agent
        .reports()
        .into_iter()
        .find(|r| r.instance.as_str() == s)
        .map(|r| r.health)
}

#[test]
fn unhealthy_only_after_several_failed_checks_in_a_row_healthy_after_one_pass() {
    let mut a = Agent::default();
    running(&mut a, spec("web-0", 1, None), 42);
    let check = |a: &mut Agent, healthy: bool| {
        a.step(
            0,
            Event::Health {
                instance: id("web-0"),
                pid: 42,
                healthy,
            },
        )
    };
    // Still starting up: the first failures are not reported.
    for _ in 1..UNHEALTHY_AFTER {
        assert!(check(&mut a, false).is_empty());
        assert_eq!(health(&a, "web-0"), Some(Health::Unknown));
    }
    let reported = check(&mut a, false);
    assert!(reported.iter().any(|x| matches!(x, Action::Report { .. })));
    assert_eq!(health(&a, "web-0"), Some(Health::Unhealthy));
    check(&mut a, true);
    assert_eq!(health(&a, "web-0"), Some(Health::Healthy));
    // One failure after a pass is not enough either.
    check(&mut a, false);
    assert_eq!(health(&a, "web-0"), Some(Health::Healthy));
    // A check of another process (an old pid) counts for nothing.
    let stale = a.step(
        0,
        Event::Health {
            instance: id("web-0"),
            pid: 41,
            healthy: false,
        },
    );
    assert!(stale.is_empty());
}
