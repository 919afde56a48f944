//! Property: whatever the order of desired states, preparations, exits, health reports, ticks and
//! link changes, the agent's core never starts an instance while a process of it is alive, and
//! never starts a generation older than the newest one it was asked to run.
//!
//! The test is the driver: it keeps the processes' world (alive or not), answers `Start` at once
//! as the supervisor does (a spawn is synchronous there), answers `Prepare` later, and delivers
//! exits of live processes (crashes, or the result of a signal).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::BTreeMap;

use hearth_core::reconcile::{Action, Agent, Event, Prepare};
use hearth_protocol::messages::state::{Assignment, DesiredState, InstanceId, RecipeRef};
use hearth_protocol::{Resources, Sha256};
use proptest::prelude::*;

mod common;

const INSTANCES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// A new desired state: per instance, absent, same generation, or one generation more.
    Desired([u8; INSTANCES]),
    /// Answers the oldest pending preparation: ok, retry, or refused.
    Prepared(u8),
    /// A live process of this instance exits.
    Exit(usize),
    /// The start of the next `Start`: fails instead of running.
    FailNextStart,
    /// A health check result for a live process of this instance.
    Health(usize, bool),
    /// Time passes, then a tick.
    Tick(u64),
    LinkDown,
    LinkUp,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::array::uniform3(0u8..3).prop_map(Op::Desired),
        4 => (0u8..3).prop_map(Op::Prepared),
        2 => (0..INSTANCES).prop_map(Op::Exit),
        1 => Just(Op::FailNextStart),
        1 => ((0..INSTANCES), any::<bool>()).prop_map(|(i, h)| Op::Health(i, h)),
        3 => (0u64..90_000).prop_map(Op::Tick),
        1 => Just(Op::LinkDown),
        1 => Just(Op::LinkUp),
    ]
}

fn spec(i: usize, generation: u64) -> Assignment {
    Assignment {
        backup: None,
        instance: format!("web-{i}").parse().unwrap(),
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
        lease_ms: None,
        exposed: Vec::new(),
        peers: Vec::new(),
    }
}

/// The processes' world and the answers still owed to the core.
#[derive(Debug, Default)]
struct World {
    now: u64,
    /// Live processes: pid → (instance, generation).
    alive: BTreeMap<u32, (InstanceId, u64)>,
    next_pid: u32,
    /// Preparations asked for, not answered yet.
    preparing: Vec<(InstanceId, u64)>,
    fail_next_start: bool,
    /// The newest generation asked for, per instance (the master never lowers it).
    newest: BTreeMap<InstanceId, u64>,
}

impl World {
    /// A live process of instance `i`, if any.
    fn process_of(&self, i: usize) -> Option<(InstanceId, u32)> {
        let instance: InstanceId = format!("web-{i}").parse().unwrap();
        let pid = self
            .alive
            .iter()
            .find(|(_, (id, _))| *id == instance)
            .map(|(pid, _)| *pid)?;
        Some((instance, pid))
    }

    /// Runs the core on `event` and every answer it gets at once; checks each `Start`.
    fn feed(&mut self, agent: &mut Agent, event: Event) -> Result<(), TestCaseError> {
        let mut queue = vec![event];
        let mut steps = 0;
        while let Some(e) = queue.pop() {
            steps += 1;
            prop_assert!(steps < 1_000, "the core keeps asking for more");
            for action in agent.step(self.now, e) {
                match action {
                    Action::Prepare(a) => self.preparing.push((a.instance, a.generation)),
                    Action::Restore(a) => {
                        let seq = a
                            .backup
                            .as_ref()
                            .and_then(|b| b.restore.as_ref())
                            .map_or(0, |r| r.seq);
                        queue.push(Event::Restored {
                            instance: a.instance,
                            generation: a.generation,
                            seq,
                            result: Ok(()),
                        });
                    }
                    Action::Start(a) => {
                        prop_assert!(
                            !self.alive.values().any(|(i, _)| *i == a.instance),
                            "{} started while a process of it is alive: {:?}",
                            a.instance,
                            self.alive
                        );
                        let newest = self.newest.get(&a.instance).copied().unwrap_or(0);
                        prop_assert!(
                            a.generation >= newest,
                            "{} started at generation {} after {} was asked",
                            a.instance,
                            a.generation,
                            newest
                        );
                        if std::mem::take(&mut self.fail_next_start) {
                            queue.push(Event::StartFailed {
                                instance: a.instance,
                                generation: a.generation,
                                reason: "exec failed".into(),
                            });
                        } else {
                            self.next_pid += 1;
                            let pid = self.next_pid;
                            self.alive.insert(pid, (a.instance.clone(), a.generation));
                            queue.push(Event::Started {
                                instance: a.instance,
                                generation: a.generation,
                                pid,
                                start_ticks: u64::from(pid),
                            });
                        }
                    }
                    // A signal is answered by an `Op::Exit` later (or never: a stuck process).
                    Action::Signal { .. }
                    | Action::Report { .. }
                    | Action::Forget(_)
                    | Action::Persist => {}
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(common::config())]

    #[test]
    fn never_twice_never_older(ops in proptest::collection::vec(op(), 1..120)) {
        let mut agent = Agent::default();
        let mut world = World::default();
        let mut revision = 0u64;
        let mut generation = [1u64; INSTANCES];
        for op in ops {
            let event = match op {
                Op::Desired(choice) => {
                    revision += 1;
                    let mut instances = Vec::new();
                    for (i, c) in choice.iter().enumerate() {
                        if *c == 2 {
                            generation[i] += 1;
                        }
                        if *c != 0 {
                            let a = spec(i, generation[i]);
                            world.newest.insert(a.instance.clone(), a.generation);
                            instances.push(a);
                        }
                    }
                    Event::Desired(DesiredState { holds: Vec::new(), masters: Vec::new(), revision, instances, gateways: Vec::new() })
                }
                Op::Prepared(kind) => {
                    if world.preparing.is_empty() {
                        continue;
                    }
                    let (instance, generation) = world.preparing.remove(0);
                    let result = match kind {
                        0 => Ok(()),
                        1 => Err(Prepare::Retry("fetch failed".into())),
                        _ => Err(Prepare::Refused("bad recipe".into())),
                    };
                    Event::Prepared { instance, generation, result }
                }
                Op::Exit(i) => {
                    let Some((instance, pid)) = world.process_of(i) else {
                        continue;
                    };
                    world.alive.remove(&pid);
                    Event::Exited { instance, pid, status: "exit status: 1".into() }
                }
                Op::FailNextStart => {
                    world.fail_next_start = true;
                    continue;
                }
                Op::Health(i, healthy) => {
                    let Some((instance, pid)) = world.process_of(i) else {
                        continue;
                    };
                    Event::Health { instance, pid, healthy }
                }
                Op::Tick(dt) => {
                    world.now += dt;
                    Event::Tick
                }
                Op::LinkDown => Event::LinkDown,
                Op::LinkUp => Event::LinkUp,
            };
            world.feed(&mut agent, event)?;
        }
    }
}
