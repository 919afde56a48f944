//! The restore step: a replica placed in a new home restores its deployment's latest snapshot
//! before its first start (state `restoring`), once; an operator's restore request stops a
//! running instance, restores, and starts it again; a snapshot refused at a first start leaves
//! the instance failed, one refused on an operator's request leaves it on its old data.

use std::collections::BTreeMap;

use hearth_protocol::messages::backup::{BackupPlan, BackupSecret, Restore};
use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceState, RecipeRef};
use hearth_protocol::{Hex, Resources, Sha256};

use super::*;

fn spec(seq: Option<u64>) -> Assignment {
    Assignment {
        instance: "kv-0".parse().unwrap(),
        deployment: "kv".parse().unwrap(),
        generation: 1,
        recipe: RecipeRef {
            name: "kv-store".parse().unwrap(),
            version: "1".into(),
            sha256: Sha256::digest(b"r"),
        },
        params: BTreeMap::new(),
        ports: BTreeMap::new(),
        resources: Resources::default(),
        lease_ms: None,
        exposed: Vec::new(),
        peers: Vec::new(),
        backup: Some(BackupPlan {
            key: BackupSecret(Hex([7; 32])),
            every_s: 60,
            keep: 3,
            now: 0,
            holders: Vec::new(),
            restore: seq.map(|seq| Restore {
                snapshot: Hex([1; 32]),
                seq,
                from: Vec::new(),
            }),
        }),
    }
}

fn desired(revision: u64, s: Assignment) -> Event {
    Event::Desired(DesiredState {
        revision,
        instances: vec![s],
        gateways: Vec::new(),
        holds: Vec::new(),
        masters: Vec::new(),
    })
}

fn state(a: &Agent) -> InstanceState {
    a.reports()[0].state
}

fn prepared(a: &mut Agent) -> Vec<Action> {
    a.step(
        0,
        Event::Prepared {
            instance: "kv-0".parse().unwrap(),
            generation: 1,
            result: Ok(()),
        },
    )
}

fn restored(a: &mut Agent, seq: u64, result: Result<(), Prepare>) -> Vec<Action> {
    a.step(
        0,
        Event::Restored {
            instance: "kv-0".parse().unwrap(),
            generation: 1,
            seq,
            result,
        },
    )
}

fn started(a: &mut Agent, pid: u32) {
    a.step(
        0,
        Event::Started {
            instance: "kv-0".parse().unwrap(),
            generation: 1,
            pid,
            start_ticks: 1,
        },
    );
}

fn exited(a: &mut Agent, now: u64, pid: u32) -> Vec<Action> {
    a.step(
        now,
        Event::Exited {
            instance: "kv-0".parse().unwrap(),
            pid,
            status: "exit 1".into(),
        },
    )
}

#[test]
fn a_first_start_restores_once_then_starts() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(Some(0))));
    let acts = prepared(&mut a);
    assert!(matches!(acts.first(), Some(Action::Restore(_))), "{acts:?}");
    assert_eq!(state(&a), InstanceState::Restoring);
    let acts = restored(&mut a, 0, Ok(()));
    assert!(matches!(acts.first(), Some(Action::Start(_))), "{acts:?}");
    started(&mut a, 10);
    // A crash and its restart do not restore again: the data is the instance's own now.
    exited(&mut a, 1_000, 10);
    let acts = a.step(60_000, Event::Tick);
    assert!(matches!(acts.first(), Some(Action::Prepare(_))), "{acts:?}");
    let acts = prepared(&mut a);
    assert!(matches!(acts.first(), Some(Action::Start(_))), "{acts:?}");
}

#[test]
fn without_a_snapshot_to_restore_the_instance_starts_at_once() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(None)));
    let acts = prepared(&mut a);
    assert!(matches!(acts.first(), Some(Action::Start(_))), "{acts:?}");
}

#[test]
fn an_operators_restore_stops_restores_and_starts_again() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(Some(0))));
    prepared(&mut a);
    restored(&mut a, 0, Ok(()));
    started(&mut a, 10);
    // Request 1 at the same generation: stop first.
    let acts = a.step(5, desired(2, spec(Some(1))));
    assert!(
        acts.iter().any(|x| matches!(
            x,
            Action::Signal {
                pid: 10,
                kill: false,
                ..
            }
        )),
        "{acts:?}"
    );
    let acts = exited(&mut a, 6, 10);
    assert!(
        acts.iter().any(|x| matches!(x, Action::Prepare(_))),
        "{acts:?}"
    );
    let acts = prepared(&mut a);
    assert!(
        matches!(acts.first(), Some(Action::Restore(s)) if s.backup.as_ref().unwrap().restore.as_ref().unwrap().seq == 1)
    );
    let acts = restored(&mut a, 1, Ok(()));
    assert!(matches!(acts.first(), Some(Action::Start(_))), "{acts:?}");
    started(&mut a, 11);
    // The same request again is done already.
    assert_eq!(a.step(7, desired(3, spec(Some(1)))), vec![Action::Persist]);
}

#[test]
fn a_snapshot_refused_at_a_first_start_fails_the_instance_until_another_is_asked_for() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(Some(0))));
    prepared(&mut a);
    restored(&mut a, 0, Err(Prepare::Refused("chunk tampered".into())));
    assert_eq!(state(&a), InstanceState::Failed);
    let acts = a.step(5, desired(2, spec(Some(1))));
    assert!(
        acts.iter().any(|x| matches!(x, Action::Prepare(_))),
        "{acts:?}"
    );
}

#[test]
fn a_snapshot_refused_on_request_leaves_the_instance_on_its_data() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(Some(0))));
    prepared(&mut a);
    restored(&mut a, 0, Ok(()));
    started(&mut a, 10);
    a.step(5, desired(2, spec(Some(1))));
    exited(&mut a, 6, 10);
    prepared(&mut a);
    let acts = restored(&mut a, 1, Err(Prepare::Refused("chunk tampered".into())));
    assert!(
        acts.iter().any(|x| matches!(x, Action::Start(_))),
        "{acts:?}"
    );
    let message = acts.iter().find_map(|x| match x {
        Action::Report { message, .. } => message.clone(),
        _ => None,
    });
    assert_eq!(message.as_deref(), Some("chunk tampered"));
}

#[test]
fn a_restore_that_may_work_later_is_retried_after_a_backoff() {
    let mut a = Agent::default();
    a.step(0, desired(1, spec(Some(0))));
    prepared(&mut a);
    restored(&mut a, 0, Err(Prepare::Retry("no holder reachable".into())));
    assert_eq!(state(&a), InstanceState::Restarting);
    let acts = a.step(120_000, Event::Tick);
    assert!(matches!(acts.first(), Some(Action::Prepare(_))), "{acts:?}");
    let acts = prepared(&mut a);
    assert!(matches!(acts.first(), Some(Action::Restore(_))), "{acts:?}");
}
