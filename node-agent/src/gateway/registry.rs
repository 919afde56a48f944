//! What a gateway tunnel may reach: the instances this node runs, their port numbers by name,
//! the names the master exposed, whether each drains, and how many tunnels each has open.
//!
//! The supervisor writes it (after every step of the reconciliation core, from the instances'
//! partitions, so port numbers are always the node's own, never a gateway's) and marks
//! instances draining before it stops them; the gateway links read it for every
//! `tunnel_open`. Admission and the open-tunnel count change under one lock, so once an
//! instance drains no new tunnel is counted for it and its count only goes down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hearth_protocol::ErrorCode;
use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::messages::tunnel::TunnelOpen;
use tokio::sync::{Notify, watch};

/// Where an instance is in its life, as far as tunnels care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its process runs at the current generation.
    Running,
    /// Its process is being stopped (a new generation, a removal, a lease).
    Stopping,
    /// Anything else: preparing, starting, backing off, stopped, failed.
    Down,
}

/// One instance as the supervisor publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The instance.
    pub instance: InstanceId,
    /// Its current generation.
    pub generation: u64,
    /// Whether its process runs.
    pub state: RunState,
    /// Its TCP port numbers by name, from its partition's endpoints.
    pub ports: BTreeMap<Name, u16>,
    /// The port names the master exposed through gateways (`Assignment.exposed`).
    pub exposed: BTreeSet<Name>,
}

/// A `tunnel_open` the node refuses: the `error` frame's code and sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// The shared table (cheap to clone: one `Arc`).
#[derive(Debug, Clone)]
pub struct Registry(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    table: Mutex<Table>,
    /// Woken whenever an open-tunnel count goes down.
    closed: Notify,
    /// The draining set, for the links' drain streams.
    draining: watch::Sender<Vec<InstanceId>>,
}

#[derive(Debug, Default)]
struct Table {
    entries: BTreeMap<InstanceId, Entry>,
    links_up: usize,
}

#[derive(Debug)]
struct Entry {
    published: Published,
    draining: bool,
    open: usize,
}

/// An open tunnel, counted against its instance until dropped.
#[derive(Debug)]
pub struct TunnelGuard {
    registry: Registry,
    instance: InstanceId,
}

impl Default for Registry {
    fn default() -> Self {
        Self(Arc::new(Inner {
            table: Mutex::new(Table::default()),
            closed: Notify::new(),
            draining: watch::Sender::new(Vec::new()),
        }))
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the published instances. An instance keeps draining while it is stopping;
    /// open-tunnel counts carry over.
    pub fn update(&self, list: Vec<Published>) {
        let mut table = self.lock();
        let mut old = std::mem::take(&mut table.entries);
        for published in list {
            let (draining, open) = old
                .remove(&published.instance)
                .map_or((false, 0), |e| (e.draining, e.open));
            let draining = draining && published.state == RunState::Stopping;
            table.entries.insert(
                published.instance.clone(),
                Entry {
                    published,
                    draining,
                    open,
                },
            );
        }
        self.announce(&table);
    }

    /// Marks `instance` draining when it has exposed ports and at least one gateway link is
    /// up; true when it did (the caller then waits for its tunnels before stopping it).
    pub fn begin_drain(&self, instance: &InstanceId) -> bool {
        let mut table = self.lock();
        let links = table.links_up;
        let Some(entry) = table.entries.get_mut(instance) else {
            return false;
        };
        if entry.published.exposed.is_empty() || links == 0 {
            return false;
        }
        entry.draining = true;
        self.announce(&table);
        true
    }

    /// Waits until `instance` has no open tunnel, at most `max`; true when it has none.
    pub async fn wait_idle(&self, instance: &InstanceId, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let closed = self.0.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open_tunnels(instance) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.open_tunnels(instance) == 0;
            }
        }
    }

    /// Tunnels open to `instance` now.
    pub fn open_tunnels(&self, instance: &InstanceId) -> usize {
        self.lock().entries.get(instance).map_or(0, |e| e.open)
    }

    /// The instances draining now, sorted.
    pub fn draining(&self) -> Vec<InstanceId> {
        self.0.draining.borrow().clone()
    }

    /// Follows the draining set.
    pub fn watch_draining(&self) -> watch::Receiver<Vec<InstanceId>> {
        self.0.draining.subscribe()
    }

    /// Gateway links connected now.
    pub fn links_up(&self) -> usize {
        self.lock().links_up
    }

    /// Decides a `tunnel_open`: the port number to connect to and the tunnel's count, or the
    /// refusal. Checks, in order: the node runs the instance (or is draining it), the port is
    /// exposed and the instance has it, the instance is not draining.
    pub fn admit(&self, open: &TunnelOpen) -> Result<(u16, TunnelGuard), Refusal> {
        let mut table = self.lock();
        let refuse = |code, message: String| Err(Refusal { code, message });
        let Some(entry) = table.entries.get_mut(&open.instance).filter(|e| {
            e.published.state == RunState::Running
                || (e.draining && e.published.state == RunState::Stopping)
        }) else {
            return refuse(
                ErrorCode::UnknownInstance,
                format!("this node does not run instance {}", open.instance),
            );
        };
        let port = entry
            .published
            .ports
            .get(&open.port)
            .copied()
            .filter(|_| entry.published.exposed.contains(&open.port));
        let Some(port) = port else {
            return refuse(
                ErrorCode::PortNotPublished,
                format!(
                    "port {} of instance {} is not published through gateways",
                    open.port, open.instance
                ),
            );
        };
        if entry.draining {
            return refuse(
                ErrorCode::Draining,
                format!(
                    "instance {} is about to stop; try another replica",
                    open.instance
                ),
            );
        }
        entry.open += 1;
        Ok((
            port,
            TunnelGuard {
                registry: self.clone(),
                instance: open.instance.clone(),
            },
        ))
    }

    /// A gateway link came up.
    pub(crate) fn link_up(&self) {
        self.lock().links_up += 1;
    }

    /// A gateway link went down.
    pub(crate) fn link_down(&self) {
        let mut table = self.lock();
        table.links_up = table.links_up.saturating_sub(1);
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves counts that are still meaningful.
        self.0
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn announce(&self, table: &Table) {
        let set: Vec<InstanceId> = table
            .entries
            .iter()
            .filter(|(_, e)| e.draining)
            .map(|(id, _)| id.clone())
            .collect();
        self.0.draining.send_if_modified(|current| {
            let changed = *current != set;
            if changed {
                current.clone_from(&set);
            }
            changed
        });
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        {
            let mut table = self.registry.lock();
            if let Some(entry) = table.entries.get_mut(&self.instance) {
                entry.open = entry.open.saturating_sub(1);
            }
        }
        self.registry.0.closed.notify_waiters();
    }
}
