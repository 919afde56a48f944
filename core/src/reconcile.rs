//! The agent's reconciliation core, sans-IO: `(state, now, event) -> actions`.
//!
//! The master sends the *whole* desired state with a revision; the core converges the instances
//! it runs to it, whatever it missed, and emits actions for the driver (prepare, start, signal,
//! report, persist). It never touches processes, files or sockets, so the simulator can drive
//! thousands of them and tests can replay any sequence.

use std::collections::BTreeMap;

use hearth_protocol::messages::state::{
    Assignment, DesiredState, Health, InstanceId, InstanceReport, InstanceState,
};
use serde::{Deserialize, Serialize};

use crate::backoff::Backoff;

// Restart backoff: `Backoff::RESTART` (1 s doubling to 60 s); a run longer than [`STABLE_MS`]
// resets it.
/// A process that ran this long is considered stable.
pub const STABLE_MS: u64 = 60_000;

/// Failing health checks in a row before an instance is reported unhealthy.
pub const UNHEALTHY_AFTER: u32 = 3;

/// One instance's lifecycle. Each variant carries what is valid in that state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Recipe and artifacts are being fetched and verified.
    Preparing,
    /// Verified; the driver restores a snapshot of the data before the first start
    /// (`Assignment.backup.restore`).
    Restoring,
    /// Verified; the driver is starting the process.
    Starting,
    /// The process runs.
    Running {
        /// Process id (also its process group).
        pid: u32,
        /// Kernel start time of the process (`/proc/PID/stat` field 22), to recognise it.
        start_ticks: u64,
        /// When it started, Unix ms.
        since_ms: u64,
    },
    /// Waiting before a restart.
    Backoff {
        /// When to try again, Unix ms.
        until_ms: u64,
    },
    /// Stop requested.
    Stopping {
        /// Process id.
        pid: u32,
        /// When SIGKILL follows SIGTERM, Unix ms.
        deadline_ms: u64,
        /// Whether SIGKILL was sent.
        killed: bool,
    },
    /// Stopped on purpose (its lease expired while the master was unreachable).
    Stopped,
    /// Cannot run (verification failed); waits for a new generation.
    Failed {
        /// Why.
        reason: String,
    },
}

/// An instance the agent knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// What the master asked for.
    pub spec: Assignment,
    /// Where it is.
    pub phase: Phase,
    /// Restarts since it was last stable.
    pub restarts: u32,
    /// Health: healthy after a passing check, unhealthy after [`UNHEALTHY_AFTER`] failing
    /// checks in a row (so a service still starting up is not called unhealthy).
    pub health: Health,
    /// Failing checks in a row.
    #[serde(default)]
    pub failed_checks: u32,
    /// False once the master no longer wants it: it is stopped and forgotten.
    pub wanted: bool,
    /// The restore step last done: `Some(0)` once a first start checked for a snapshot to
    /// restore, `Some(n)` once the operator's restore request `n` was applied.
    #[serde(default)]
    pub restored: Option<u64>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A desired state arrived.
    Desired(DesiredState),
    /// Preparation finished.
    Prepared {
        instance: InstanceId,
        generation: u64,
        result: Result<(), Prepare>,
    },
    /// The process was started.
    Started {
        instance: InstanceId,
        generation: u64,
        pid: u32,
        start_ticks: u64,
    },
    /// The process could not be started.
    StartFailed {
        instance: InstanceId,
        generation: u64,
        reason: String,
    },
    /// A restore finished (or was not needed: the data directory already held data).
    Restored {
        instance: InstanceId,
        generation: u64,
        /// The restore step done (`Restore.seq`).
        seq: u64,
        result: Result<(), Prepare>,
    },
    /// A process exited.
    Exited {
        instance: InstanceId,
        pid: u32,
        status: String,
    },
    /// A health check finished.
    Health {
        instance: InstanceId,
        pid: u32,
        healthy: bool,
    },
    /// Time passed.
    Tick,
    /// The session to the master is up.
    LinkUp,
    /// The session to the master was lost.
    LinkDown,
}

/// Why preparation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepare {
    /// Try again later (master unreachable, transfer interrupted).
    Retry(String),
    /// Refused for good at this generation (hash mismatch, invalid recipe).
    Refused(String),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch and verify the recipe and artifacts, set up the partition.
    Prepare(Assignment),
    /// Restore the snapshot `spec.backup.restore` names into the instance's data directory (for
    /// `seq` 0, only if that directory holds nothing yet), then answer `Restored`.
    Restore(Assignment),
    /// Start the prepared instance.
    Start(Assignment),
    /// Signal a process group: SIGTERM, or SIGKILL when `kill`.
    Signal {
        instance: InstanceId,
        pid: u32,
        kill: bool,
    },
    /// Tell the master about a change.
    Report {
        report: InstanceReport,
        message: Option<String>,
    },
    /// Forget everything about an instance (keeps its data directory).
    Forget(InstanceId),
    /// Persist the state.
    Persist,
}

/// The agent's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// Latest desired-state revision applied.
    pub applied_revision: u64,
    /// Instances by id.
    pub instances: BTreeMap<InstanceId, Instance>,
    /// Since when the master is unreachable, Unix ms.
    #[serde(default)]
    pub link_down_since: Option<u64>,
}

impl Agent {
    /// Heartbeat summary.
    pub fn reports(&self) -> Vec<InstanceReport> {
        self.instances.values().map(report_of).collect()
    }

    /// Applies one event.
    pub fn step(&mut self, now_ms: u64, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Desired(ds) => self.desired(now_ms, ds, &mut out),
            Event::Prepared {
                instance,
                generation,
                result,
            } => {
                if let Some(i) = self.current(&instance, generation)
                    && i.phase == Phase::Preparing
                    && i.wanted
                {
                    match result {
                        Ok(()) if restore_due(i).is_some() => {
                            i.phase = Phase::Restoring;
                            out.push(Action::Restore(i.spec.clone()));
                            out.push(report(i, None));
                        }
                        Ok(()) => {
                            i.phase = Phase::Starting;
                            out.push(Action::Start(i.spec.clone()));
                        }
                        Err(Prepare::Retry(why)) => {
                            i.restarts += 1;
                            i.phase = Phase::Backoff {
                                until_ms: now_ms + backoff(i.restarts),
                            };
                            out.push(report(i, Some(why)));
                        }
                        Err(Prepare::Refused(why)) => {
                            i.phase = Phase::Failed {
                                reason: why.clone(),
                            };
                            out.push(report(i, Some(why)));
                            out.push(Action::Persist);
                        }
                    }
                }
            }
            Event::Restored {
                instance,
                generation,
                seq,
                result,
            } => {
                if let Some(i) = self.current(&instance, generation)
                    && i.phase == Phase::Restoring
                    && i.wanted
                {
                    match result {
                        Ok(()) => {
                            i.restored = Some(seq);
                            i.phase = Phase::Starting;
                            out.push(Action::Start(i.spec.clone()));
                            out.push(Action::Persist);
                        }
                        Err(Prepare::Retry(why)) => {
                            i.restarts += 1;
                            i.phase = Phase::Backoff {
                                until_ms: now_ms + backoff(i.restarts),
                            };
                            out.push(report(i, Some(why)));
                        }
                        Err(Prepare::Refused(why)) if seq > 0 => {
                            // The operator's restore failed its checks: the data was left as
                            // it was, so the instance starts on it again, saying why.
                            i.restored = Some(seq);
                            i.phase = Phase::Starting;
                            out.push(report(i, Some(why)));
                            out.push(Action::Start(i.spec.clone()));
                            out.push(Action::Persist);
                        }
                        Err(Prepare::Refused(why)) => {
                            i.phase = Phase::Failed {
                                reason: why.clone(),
                            };
                            out.push(report(i, Some(why)));
                            out.push(Action::Persist);
                        }
                    }
                }
            }
            Event::Started {
                instance,
                generation,
                pid,
                start_ticks,
            } => {
                if let Some(i) = self.current(&instance, generation) {
                    if i.phase == Phase::Starting {
                        i.phase = Phase::Running {
                            pid,
                            start_ticks,
                            since_ms: now_ms,
                        };
                        i.health = Health::Unknown;
                        i.failed_checks = 0;
                        out.push(report(i, None));
                        out.push(Action::Persist);
                    } else {
                        // Started after it was no longer wanted: stop it at once.
                        out.push(Action::Signal {
                            instance,
                            pid,
                            kill: true,
                        });
                    }
                }
            }
            Event::StartFailed {
                instance,
                generation,
                reason,
            } => {
                if let Some(i) = self.current(&instance, generation) {
                    i.restarts += 1;
                    i.phase = Phase::Backoff {
                        until_ms: now_ms + backoff(i.restarts),
                    };
                    out.push(report(i, Some(reason)));
                }
            }
            Event::Exited {
                instance,
                pid,
                status,
            } => self.exited(now_ms, instance, pid, status, &mut out),
            Event::Health {
                instance,
                pid,
                healthy,
            } => {
                if let Some(i) = self
                    .instances
                    .get_mut(&instance)
                    .filter(|i| matches!(i.phase, Phase::Running { pid: p, .. } if p == pid))
                {
                    i.failed_checks = if healthy {
                        0
                    } else {
                        i.failed_checks.saturating_add(1)
                    };
                    let health = match (healthy, i.failed_checks >= UNHEALTHY_AFTER) {
                        (true, _) => Health::Healthy,
                        (false, true) => Health::Unhealthy,
                        (false, false) => i.health,
                    };
                    if i.health != health {
                        i.health = health;
                        out.push(report(i, None));
                        out.push(Action::Persist);
                    }
                }
            }
            Event::Tick => self.tick(now_ms, &mut out),
            Event::LinkDown => {
                self.link_down_since.get_or_insert(now_ms);
            }
            Event::LinkUp => {
                self.link_down_since = None;
                for i in self.instances.values_mut() {
                    if i.phase == Phase::Stopped && i.wanted {
                        i.phase = Phase::Preparing;
                        out.push(Action::Prepare(i.spec.clone()));
                    }
                    // The master may have lost what we told it: report everything again.
                    out.push(report(i, None));
                }
            }
        }
        out
    }

    fn current(&mut self, instance: &InstanceId, generation: u64) -> Option<&mut Instance> {
        self.instances
            .get_mut(instance)
            .filter(|i| i.spec.generation == generation)
    }

    fn desired(&mut self, now_ms: u64, ds: DesiredState, out: &mut Vec<Action>) {
        if ds.revision <= self.applied_revision {
            return;
        }
        self.applied_revision = ds.revision;
        let mut wanted = BTreeMap::new();
        for spec in ds.instances {
            wanted.insert(spec.instance.clone(), spec);
        }
        for (id, i) in &mut self.instances {
            if !wanted.contains_key(id) && i.wanted {
                i.wanted = false;
                stop(i, now_ms, out);
            }
        }
        for (id, spec) in wanted {
            match self.instances.get_mut(&id) {
                None => {
                    out.push(Action::Prepare(spec.clone()));
                    let i = Instance {
                        spec,
                        phase: Phase::Preparing,
                        restarts: 0,
                        health: Health::Unknown,
                        failed_checks: 0,
                        wanted: true,
                        restored: None,
                    };
                    out.push(report(&i, None));
                    self.instances.insert(id, i);
                }
                Some(i) if spec.generation > i.spec.generation || !i.wanted => {
                    // A new generation (or a return): replace, stopping the old process first.
                    i.spec = spec;
                    i.wanted = true;
                    i.restarts = 0;
                    match i.phase {
                        Phase::Running { .. } => stop(i, now_ms, out),
                        Phase::Stopping { .. } => {}
                        _ => {
                            i.phase = Phase::Preparing;
                            out.push(Action::Prepare(i.spec.clone()));
                        }
                    }
                }
                Some(i) if spec.generation == i.spec.generation => {
                    // The backup plan changes without a new generation (holders, `now`, a
                    // restore the operator asked for): it is taken in place.
                    i.spec.backup = spec.backup;
                    if restore_due(i).is_some_and(|seq| seq > 0) {
                        // The operator's restore: stop, then prepare and restore again.
                        i.restarts = 0;
                        match i.phase {
                            Phase::Running { .. } => stop(i, now_ms, out),
                            Phase::Failed { .. } | Phase::Backoff { .. } | Phase::Stopped => {
                                i.phase = Phase::Preparing;
                                out.push(Action::Prepare(i.spec.clone()));
                                out.push(report(i, None));
                            }
                            _ => {} // preparing, restoring, starting, stopping: it comes round
                        }
                    }
                }
                Some(_) => {} // older generation: nothing to do
            }
        }
        self.forget_stopped(out);
        out.push(Action::Persist);
    }

    fn exited(
        &mut self,
        now_ms: u64,
        instance: InstanceId,
        pid: u32,
        status: String,
        out: &mut Vec<Action>,
    ) {
        let Some(i) = self.instances.get_mut(&instance) else {
            return;
        };
        match i.phase.clone() {
            Phase::Running {
                pid: p, since_ms, ..
            } if p == pid => {
                if now_ms.saturating_sub(since_ms) >= STABLE_MS {
                    i.restarts = 0;
                }
                i.restarts += 1;
                i.health = Health::Unknown;
                i.failed_checks = 0;
                i.phase = Phase::Backoff {
                    until_ms: now_ms + backoff(i.restarts),
                };
                out.push(report(
                    i,
                    Some(format!("process exited ({status}); restarting")),
                ));
                out.push(Action::Persist);
            }
            Phase::Stopping { pid: p, .. } if p == pid => {
                i.health = Health::Unknown;
                i.failed_checks = 0;
                if i.wanted && self.link_down_since.is_none() {
                    i.phase = Phase::Preparing;
                    out.push(Action::Prepare(i.spec.clone()));
                } else {
                    i.phase = Phase::Stopped;
                }
                out.push(report(i, None));
                self.forget_stopped(out);
                out.push(Action::Persist);
            }
            _ => {}
        }
    }

    fn tick(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let down_for = self
            .link_down_since
            .map(|since| now_ms.saturating_sub(since));
        for (id, i) in &mut self.instances {
            match i.phase {
                Phase::Backoff { until_ms } if until_ms <= now_ms && i.wanted => {
                    i.phase = Phase::Preparing;
                    out.push(Action::Prepare(i.spec.clone()));
                }
                Phase::Stopping {
                    pid,
                    deadline_ms,
                    killed: false,
                } if deadline_ms <= now_ms => {
                    i.phase = Phase::Stopping {
                        pid,
                        deadline_ms,
                        killed: true,
                    };
                    out.push(Action::Signal {
                        instance: id.clone(),
                        pid,
                        kill: true,
                    });
                }
                _ => {}
            }
            let lease_over =
                matches!((i.spec.lease_ms, down_for), (Some(lease), Some(d)) if d >= lease);
            if lease_over
                && !matches!(
                    i.phase,
                    Phase::Stopping { .. } | Phase::Stopped | Phase::Failed { .. }
                )
            {
                stop(i, now_ms, out);
                out.push(Action::Persist);
            }
        }
    }

    fn forget_stopped(&mut self, out: &mut Vec<Action>) {
        let gone: Vec<_> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                !i.wanted && !matches!(i.phase, Phase::Stopping { .. } | Phase::Starting)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.instances.remove(&id);
            out.push(Action::Forget(id));
        }
    }
}

/// Starts stopping `i`: SIGTERM now, SIGKILL after the grace period.
fn stop(i: &mut Instance, now_ms: u64, out: &mut Vec<Action>) {
    match i.phase {
        Phase::Running { pid, .. } => {
            let grace = 10_000;
            i.phase = Phase::Stopping {
                pid,
                deadline_ms: now_ms + grace,
                killed: false,
            };
            out.push(Action::Signal {
                instance: i.spec.instance.clone(),
                pid,
                kill: false,
            });
            out.push(report(i, None));
        }
        Phase::Stopping { .. } => {}
        _ => {
            i.phase = Phase::Stopped;
            out.push(report(i, None));
        }
    }
}

/// The restore step `i` still has to do before it starts: `Some(0)` at a first start when its
/// plan names a snapshot, `Some(n)` for an operator's restore request not yet applied.
fn restore_due(i: &Instance) -> Option<u64> {
    let r = i.spec.backup.as_ref()?.restore.as_ref()?;
    match (r.seq, i.restored) {
        (0, None) => Some(0),
        (0, Some(_)) => None,
        (n, done) if done.is_none_or(|d| d < n) => Some(n),
        _ => None,
    }
}

fn backoff(restarts: u32) -> u64 {
    Backoff::RESTART.ceiling_ms(restarts)
}

fn state_of(phase: &Phase) -> InstanceState {
    match phase {
        Phase::Preparing => InstanceState::Fetching,
        Phase::Restoring => InstanceState::Restoring,
        Phase::Starting => InstanceState::Starting,
        Phase::Running { .. } => InstanceState::Running,
        Phase::Backoff { .. } => InstanceState::Restarting,
        Phase::Stopping { .. } => InstanceState::Stopping,
        Phase::Stopped => InstanceState::Stopped,
        Phase::Failed { .. } => InstanceState::Failed,
    }
}

fn report_of(i: &Instance) -> InstanceReport {
    InstanceReport {
        instance: i.spec.instance.clone(),
        generation: i.spec.generation,
        state: state_of(&i.phase),
        health: i.health,
    }
}

fn report(i: &Instance, message: Option<String>) -> Action {
    let message = message.or_else(|| match &i.phase {
        Phase::Failed { reason } => Some(reason.clone()),
        _ => None,
    });
    Action::Report {
        report: report_of(i),
        message,
    }
}

#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod tests;
