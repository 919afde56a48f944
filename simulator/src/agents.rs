//! The agents' side of a run: the real reconciliation core (`hearth_core::reconcile::Agent`)
//! of every node that was given work, driven by a modelled driver.
//!
//! The driver's work takes modelled time: preparing an instance fetches its recipe and artifacts
//! (`artifact_mib` over the home's downlink plus a round trip, or a quick local check when the
//! recipe is already cached; the fetch fails, and the core backs off, while the master is
//! unreachable), starting takes `start_seconds`, stopping `stop_seconds`. A power cut kills the
//! processes: at boot the driver reports them exited to the core (as the real supervisor does
//! when it cannot re-adopt them) and resumes preparations and starts that were under way.

use hearth_core::reconcile::{Action, Event as AgentEvent, Phase, Prepare};
use hearth_protocol::messages::state::{DesiredState, InstanceId};

use crate::engine::Sim;
use crate::fleet::SimAgent;
use crate::queue::{Event, HomeIx};

/// Preparing an instance whose recipe is cached (verify, set up the partition), ms.
const CACHED_PREPARE_MS: u64 = 200;
/// SIGKILL to exit, ms.
const KILL_MS: u64 = 100;

impl Sim {
    /// Feeds one event to the agent of `h` and carries out its actions.
    pub(crate) fn agent_step(&mut self, h: HomeIx, event: AgentEvent) {
        let now = self.q.now();
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        if !home.running() {
            return;
        }
        let agent = home.agent.get_or_insert_with(Box::default);
        let actions = agent.core.step(now, event);
        for action in actions {
            self.act(h, action);
        }
        self.schedule_wake(h);
        self.refresh_home(h);
    }

    fn act(&mut self, h: HomeIx, action: Action) {
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        let power = home.power_epoch;
        match action {
            Action::Prepare(a) => {
                let delay = if home.cache.contains(a.deployment.as_str()) {
                    CACHED_PREPARE_MS
                } else {
                    let bits = self.scenario.agent.artifact_mib * 8.0 * 1_048_576.0;
                    let down = f64::from(home.model.down_mbps.max(1)) * 1_000_000.0;
                    home.rtt_ms() + crate::distr::to_ms(bits / down * 1000.0)
                };
                let ev = Event::Prepared {
                    home: h,
                    power,
                    instance: a.instance,
                    generation: a.generation,
                };
                self.q.after(delay, ev);
            }
            // The simulated master gives no backup plans, so the core never asks to restore.
            Action::Restore(_) => {}
            Action::Start(a) => {
                let delay = crate::distr::to_ms(self.scenario.agent.start_seconds * 1000.0);
                let ev = Event::Started {
                    home: h,
                    power,
                    instance: a.instance,
                    generation: a.generation,
                };
                self.q.after(delay, ev);
            }
            Action::Signal {
                instance,
                pid,
                kill,
            } => {
                let delay = if kill {
                    KILL_MS
                } else {
                    crate::distr::to_ms(self.scenario.agent.stop_seconds * 1000.0)
                };
                let ev = Event::Exited {
                    home: h,
                    power,
                    instance,
                    pid,
                };
                self.q.after(delay, ev);
            }
            Action::Report { .. } => {
                // Sent only over an open session; the core reports everything again on LinkUp.
                if matches!(home.session, crate::fleet::Session::Online { .. }) {
                    self.msgs.reports += 1;
                    self.count_msgs(1);
                }
            }
            Action::Forget(_) | Action::Persist => {}
        }
    }

    /// Schedules the core's earliest timer (backoff end, stop deadline).
    fn schedule_wake(&mut self, h: HomeIx) {
        let now = self.q.now();
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        let power = home.power_epoch;
        let Some(agent) = home.agent.as_mut() else {
            return;
        };
        let next = agent
            .core
            .instances
            .values()
            .filter_map(|i| match i.phase {
                Phase::Backoff { until_ms } if i.wanted => Some(until_ms),
                Phase::Stopping {
                    deadline_ms,
                    killed: false,
                    ..
                } => Some(deadline_ms),
                _ => None,
            })
            .min();
        if let Some(t) = next
            && agent.wake.is_none_or(|w| t < w || w < now)
        {
            agent.wake = Some(t);
            self.q.at(t, Event::AgentTick { home: h, power });
        }
    }

    fn powered(&self, h: HomeIx, power: u64) -> bool {
        self.homes
            .get(h)
            .is_some_and(|x| x.running() && x.power_epoch == power)
    }

    /// A desired state arrives over session `epoch`.
    pub(crate) fn on_deliver(&mut self, h: HomeIx, epoch: u64, state: DesiredState) {
        if self
            .homes
            .get(h)
            .is_some_and(|x| x.session_epoch == epoch && x.reachable)
        {
            self.agent_step(h, AgentEvent::Desired(state));
        }
    }

    /// Preparation finished: fetched (or failed to, while cut off) and verified.
    pub(crate) fn on_prepared(&mut self, h: HomeIx, power: u64, instance: InstanceId, gen_: u64) {
        if !self.powered(h, power) {
            return;
        }
        let net = self.net_up(h);
        let Some(home) = self.homes.get_mut(h) else {
            return;
        };
        let deployment = home
            .agent
            .as_ref()
            .and_then(|a| a.core.instances.get(&instance))
            .map(|i| i.spec.deployment.to_string());
        let cached = deployment
            .as_ref()
            .is_some_and(|d| home.cache.contains(d.as_str()));
        let result = if cached || net {
            if let Some(d) = deployment {
                home.cache.insert(d);
            }
            Ok(())
        } else {
            Err(Prepare::Retry("master unreachable".into()))
        };
        let event = AgentEvent::Prepared {
            instance,
            generation: gen_,
            result,
        };
        self.agent_step(h, event);
    }

    /// A process started.
    pub(crate) fn on_started(&mut self, h: HomeIx, power: u64, instance: InstanceId, gen_: u64) {
        if !self.powered(h, power) {
            return;
        }
        let pid = self.next_pid(h);
        let event = AgentEvent::Started {
            instance,
            generation: gen_,
            pid,
            start_ticks: u64::from(pid),
        };
        self.agent_step(h, event);
    }

    /// A process exited after a signal.
    pub(crate) fn on_exited(&mut self, h: HomeIx, power: u64, instance: InstanceId, pid: u32) {
        if !self.powered(h, power) {
            return;
        }
        let status = "signalled".to_owned();
        self.agent_step(
            h,
            AgentEvent::Exited {
                instance,
                pid,
                status,
            },
        );
    }

    /// The core's timer.
    pub(crate) fn on_agent_tick(&mut self, h: HomeIx, power: u64) {
        if !self.powered(h, power) {
            return;
        }
        if let Some(a) = self.homes.get_mut(h).and_then(|x| x.agent.as_mut()) {
            a.wake = None;
        }
        self.agent_step(h, AgentEvent::Tick);
    }

    /// The home booted after a power cut: its processes are gone.
    pub(crate) fn agent_boot(&mut self, h: HomeIx) {
        let Some(agent) = self.homes.get_mut(h).and_then(|x| x.agent.as_mut()) else {
            return;
        };
        agent.wake = None;
        let mut exited = Vec::new();
        let mut redo = Vec::new();
        for (id, i) in &agent.core.instances {
            match &i.phase {
                Phase::Running { pid, .. } | Phase::Stopping { pid, .. } => {
                    exited.push((id.clone(), *pid));
                }
                Phase::Preparing => redo.push(Action::Prepare(i.spec.clone())),
                Phase::Starting => redo.push(Action::Start(i.spec.clone())),
                _ => {}
            }
        }
        self.agent_step(h, AgentEvent::LinkDown);
        for (instance, pid) in exited {
            let status = "host lost power".to_owned();
            self.agent_step(
                h,
                AgentEvent::Exited {
                    instance,
                    pid,
                    status,
                },
            );
        }
        for action in redo {
            self.act(h, action);
        }
        self.schedule_wake(h);
    }

    fn next_pid(&mut self, h: HomeIx) -> u32 {
        let agent: &mut SimAgent = match self.homes.get_mut(h).and_then(|x| x.agent.as_mut()) {
            Some(a) => a,
            None => return 1,
        };
        agent.next_pid = agent.next_pid.wrapping_add(1).max(2);
        agent.next_pid
    }
}
