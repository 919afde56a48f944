//! The supervisor's side of the gateway links: it publishes what tunnels may reach after every
//! step of the core, and drains an exposed instance before its SIGTERM
//! ([`crate::gateway::drain`]), without blocking its loop.

use hearth_protocol::messages::state::InstanceId;

use super::{Input, Supervisor, signal};
use crate::gateway::drain::Deferral;
use crate::gateway::{Published, RunState};
use crate::reconcile::Phase;

impl Supervisor {
    /// Publishes the instances to the gateway registry; forgets drains that are over.
    pub(super) fn publish_to_gateways(&mut self) {
        let Some(gateways) = &self.wiring.gateways else {
            return;
        };
        gateways.registry().update(self.published());
        let instances = &self.agent.instances;
        self.drains.retain(|id, pid| {
            instances
                .get(id)
                .is_some_and(|i| matches!(i.phase, Phase::Stopping { pid: p, .. } if p == pid))
        });
    }

    /// A signal the core asked for: now, or after the instance's drain (a spawned task waits
    /// and hands it back as [`Input::Signal`]).
    pub(super) fn signal_or_drain(&mut self, instance: InstanceId, pid: u32, kill: bool) {
        let Some(gateways) = &self.wiring.gateways else {
            return signal(&instance, pid, kill);
        };
        let registry = gateways.registry().clone();
        let delay = match self.drains.signal(&registry, &instance, pid, kill) {
            Deferral::Now => return signal(&instance, pid, kill),
            Deferral::After(delay) => delay,
        };
        let inputs = self.wiring.inputs.clone();
        tokio::spawn(async move {
            if kill {
                tokio::time::sleep(delay).await;
            } else if !registry.wait_idle(&instance, delay).await {
                tracing::info!(%instance, "tunnels still open after the drain: stopping anyway");
            }
            let _ = inputs.send(Input::Signal {
                instance,
                pid,
                kill,
            });
        });
    }

    /// A deferred signal, sent only if the process is still the one being stopped.
    pub(super) fn delayed_signal(&mut self, instance: &InstanceId, pid: u32, kill: bool) {
        let stopping = self
            .agent
            .instances
            .get(instance)
            .is_some_and(|i| matches!(i.phase, Phase::Stopping { pid: p, .. } if p == pid));
        if stopping {
            if !kill {
                self.drains.termed(instance, pid);
            }
            signal(instance, pid, kill);
        }
    }

    /// What gateway tunnels may reach: each instance's state, its TCP port numbers (from its
    /// prepared partition: the current generation's, or while stopping the one it runs) and its
    /// exposed port names.
    fn published(&self) -> Vec<Published> {
        self.agent
            .instances
            .iter()
            .map(|(id, i)| {
                let stopping = matches!(i.phase, Phase::Stopping { .. });
                let plan = self
                    .plans
                    .get(id)
                    .filter(|(g, _)| *g == i.spec.generation || stopping);
                let state = match (&i.phase, plan) {
                    (Phase::Running { .. }, Some(_)) => RunState::Running,
                    (Phase::Stopping { .. }, _) => RunState::Stopping,
                    _ => RunState::Down,
                };
                let ports = plan
                    .map(|(_, p)| {
                        p.endpoints
                            .iter()
                            .filter(|e| e.protocol == "tcp")
                            .map(|e| (e.name.clone(), e.port))
                            .collect()
                    })
                    .unwrap_or_default();
                Published {
                    instance: id.clone(),
                    generation: i.spec.generation,
                    state,
                    ports,
                    exposed: i.spec.exposed.iter().cloned().collect(),
                }
            })
            .collect()
    }
}
