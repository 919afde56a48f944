//! Drain before stop (SPEC §14): the supervisor's bookkeeping for instances it stops while
//! gateways may be tunnelling to them.
//!
//! When the reconciliation core asks for an instance's SIGTERM and the instance has exposed
//! ports and a gateway link is up, the instance is marked draining (new tunnels are refused
//! with `draining`, every link announces the set), and a task waits until its open tunnels
//! are 0 or [`DRAIN_MAX`] passed before it hands the SIGTERM back to the supervisor loop. The
//! loop is never blocked by the wait. The core's SIGKILL deadline counts from its stop
//! decision, so a SIGKILL it asks for is deferred by the time the drain took: the process
//! still gets its full grace after SIGTERM.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_protocol::messages::state::InstanceId;

use super::DRAIN_MAX;
use super::registry::Registry;

/// Drains under way or done, by instance.
#[derive(Debug, Default)]
pub struct Drains {
    records: HashMap<InstanceId, Record>,
}

#[derive(Debug)]
struct Record {
    pid: u32,
    started: Instant,
    termed: Option<Instant>,
}

/// What to do with a signal the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferral {
    /// Send it now.
    Now,
    /// Send it after this long (the SIGTERM waits for the drain, the SIGKILL keeps its grace).
    After(Duration),
}

impl Drains {
    /// Decides a SIGTERM (`kill: false`) or SIGKILL the core asked for. A SIGTERM of an
    /// instance `registry` can drain starts a drain: the returned delay is at most
    /// [`DRAIN_MAX`], and the caller must then wait for [`Registry::wait_idle`] (not this
    /// delay) before it sends SIGTERM and calls [`Drains::termed`].
    pub fn signal(
        &mut self,
        registry: &Registry,
        instance: &InstanceId,
        pid: u32,
        kill: bool,
    ) -> Deferral {
        if !kill {
            if !registry.begin_drain(instance) {
                return Deferral::Now;
            }
            tracing::info!(%instance, "draining before stop");
            self.records.insert(
                instance.clone(),
                Record {
                    pid,
                    started: Instant::now(),
                    termed: None,
                },
            );
            return Deferral::After(DRAIN_MAX);
        }
        match self.records.remove(instance).filter(|r| r.pid == pid) {
            None => Deferral::Now,
            Some(Record {
                started,
                termed: Some(termed),
                ..
            }) => Deferral::After(termed.saturating_duration_since(started)),
            // Still waiting for the tunnels: the SIGTERM comes within DRAIN_MAX.
            Some(Record { termed: None, .. }) => Deferral::After(DRAIN_MAX),
        }
    }

    /// The drained SIGTERM of `instance`'s process `pid` was sent.
    pub fn termed(&mut self, instance: &InstanceId, pid: u32) {
        if let Some(r) = self.records.get_mut(instance).filter(|r| r.pid == pid) {
            r.termed = Some(Instant::now());
        }
    }

    /// Forgets drains of processes no longer being stopped.
    pub fn retain(&mut self, mut stopping: impl FnMut(&InstanceId, u32) -> bool) {
        self.records.retain(|id, r| stopping(id, r.pid));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::gateway::{Published, RunState};

    fn registry(exposed: &[&str]) -> (Registry, InstanceId) {
        let registry = Registry::new();
        let id: InstanceId = "web-1".parse().unwrap();
        registry.update(vec![Published {
            instance: id.clone(),
            generation: 1,
            state: RunState::Running,
            ports: BTreeMap::from([("http".parse().unwrap(), 8080)]),
            exposed: exposed
                .iter()
                .map(|n| n.parse().unwrap())
                .collect::<BTreeSet<_>>(),
        }]);
        (registry, id)
    }

    #[test]
    fn only_exposed_instances_with_a_link_up_drain() {
        let mut drains = Drains::default();
        let (unexposed, id) = registry(&[]);
        unexposed.link_up();
        assert_eq!(drains.signal(&unexposed, &id, 7, false), Deferral::Now);
        let (no_link, id) = registry(&["http"]);
        assert_eq!(drains.signal(&no_link, &id, 7, false), Deferral::Now);
        assert!(no_link.draining().is_empty());
    }

    #[test]
    fn a_drained_stop_keeps_its_kill_grace() {
        let mut drains = Drains::default();
        let (registry, id) = registry(&["http"]);
        registry.link_up();
        assert_eq!(
            drains.signal(&registry, &id, 7, false),
            Deferral::After(DRAIN_MAX)
        );
        assert_eq!(registry.draining(), vec![id.clone()]);
        // SIGKILL asked before the drained SIGTERM went out: deferred by the drain's bound.
        assert_eq!(
            drains.signal(&registry, &id, 7, true),
            Deferral::After(DRAIN_MAX)
        );
        // Another process of the instance, or no drain: at once.
        assert_eq!(drains.signal(&registry, &id, 8, true), Deferral::Now);

        let mut drains = Drains::default();
        assert!(matches!(
            drains.signal(&registry, &id, 9, false),
            Deferral::After(_)
        ));
        std::thread::sleep(Duration::from_millis(20));
        drains.termed(&id, 9);
        let Deferral::After(delay) = drains.signal(&registry, &id, 9, true) else {
            panic!("a drained stop defers its SIGKILL");
        };
        assert!(
            delay >= Duration::from_millis(20) && delay < DRAIN_MAX,
            "{delay:?}"
        );
        // Once the instance runs again it no longer drains.
        registry.update(vec![]);
        assert!(registry.draining().is_empty());
    }
}
