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
