//! Tunnel connections kept for reuse: per replica, HTTP/1.1 client connections over tunnels
//! that finished their last exchange, at most [`MAX_IDLE_PER_REPLICA`] each, and the count of
//! requests outstanding on the replica (what [`crate::balance`] compares). A replica that leaves
//! the routing table, stops serving, loses its link or drains is retired: its idle connections
//! are closed and never reused, and connections in use are dropped when they finish.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::InstanceId;
use hyper::client::conn::http1::SendRequest;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::balance::least_loaded;
use crate::http::body::RequestBody;
use crate::table::{Replica, Routing};

/// Idle tunnel connections kept per replica.
pub const MAX_IDLE_PER_REPLICA: usize = 256;

/// How long an idle tunnel connection is reused. Short, to stay under the keep-alive timeout
/// of common servers (Node.js closes idle connections after 5 s): a connection the service
/// closes just as a request is sent on it would fail that request.
pub const MAX_IDLE_AGE: Duration = Duration::from_secs(4);

/// A tunnel connection's sending half.
pub(crate) type Sender = SendRequest<RequestBody>;

/// Every replica's slot.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<InstanceId, Arc<Slot>>>,
}

/// One replica's idle connections and load.
#[derive(Debug)]
pub(crate) struct Slot {
    node: NodeId,
    outstanding: AtomicUsize,
    retired: AtomicBool,
    /// Oldest first.
    idle: Mutex<Vec<(Sender, Instant)>>,
}

/// One request outstanding on a replica, until dropped.
#[derive(Debug)]
pub(crate) struct LoadGuard(Arc<Slot>);

impl Pool {
    /// Picks the least loaded replica among `replicas` that pass `eligible` and counts a
    /// request on it.
    pub(crate) fn pick<'r>(
        &self,
        replicas: &'r [Replica],
        mut eligible: impl FnMut(&Replica) -> bool,
    ) -> Option<(&'r Replica, Arc<Slot>, LoadGuard)> {
        let mut slots = self.lock();
        let candidates = replicas.iter().filter(|r| eligible(r)).map(|r| {
            let load = slots
                .get(&r.instance)
                .map_or(0, |s| s.outstanding.load(Ordering::Relaxed));
            (r, load)
        });
        let chosen = least_loaded(candidates, &mut rand::thread_rng())?;
        let slot = match slots.get(&chosen.instance) {
            Some(slot) => Arc::clone(slot),
            None => {
                let slot = Arc::new(Slot {
                    node: chosen.node,
                    outstanding: AtomicUsize::new(0),
                    retired: AtomicBool::new(false),
                    idle: Mutex::new(Vec::new()),
                });
                slots.insert(chosen.instance.clone(), Arc::clone(&slot));
                slot
            }
        };
        slot.outstanding.fetch_add(1, Ordering::Relaxed);
        let guard = LoadGuard(Arc::clone(&slot));
        Some((chosen, slot, guard))
    }

    /// Retires `instance` (it refused a tunnel: draining, gone): its idle connections close.
    pub(crate) fn retire(&self, instance: &InstanceId) {
        if let Some(slot) = self.lock().remove(instance) {
            slot.retire();
        }
    }

    /// Retires every replica for which `keep` is false.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&InstanceId, &NodeId) -> bool) {
        self.lock().retain(|id, slot| {
            let k = keep(id, &slot.node);
            if !k {
                slot.retire();
            }
            k
        });
    }

    /// Idle connections kept, over every replica.
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().values().map(|s| s.idle_lock().len()).sum()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<InstanceId, Arc<Slot>>> {
        // Only counts and idle connections behind it: usable after a panic elsewhere.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Slot {
    /// The most recently used idle connection that is still open and young enough, if any.
    pub(crate) fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle_lock();
        let now = Instant::now();
        while let Some((sender, since)) = idle.pop() {
            if now.saturating_duration_since(since) >= MAX_IDLE_AGE {
                // Everything below is older still.
                idle.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request, unless the replica was retired, the connection
    /// closed, or enough are kept already.
    pub(crate) fn put_idle(&self, sender: Sender) {
        if self.retired.load(Ordering::Acquire) || sender.is_closed() {
            return;
        }
        let mut idle = self.idle_lock();
        let now = Instant::now();
        if idle
            .first()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= MAX_IDLE_AGE)
        {
            idle.retain(|(s, since)| {
                now.saturating_duration_since(*since) < MAX_IDLE_AGE && !s.is_closed()
            });
        }
        if idle.len() < MAX_IDLE_PER_REPLICA && !self.retired.load(Ordering::Acquire) {
            idle.push((sender, now));
        }
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.idle_lock().clear();
    }

    fn idle_lock(&self) -> MutexGuard<'_, Vec<(Sender, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Retires replicas as the routing table and the links change; ends when the pool is dropped
/// or the routing table's sender is gone.
pub(crate) fn spawn_pruner(
    pool: Weak<Pool>,
    mut routing: watch::Receiver<Arc<Routing>>,
    links: Arc<dyn Backend>,
) {
    tokio::spawn(async move {
        let mut changes = links.changes();
        let mut links_open = true;
        loop {
            tokio::select! {
                r = routing.changed() => if r.is_err() { return },
                r = changes.changed(), if links_open => if r.is_err() { links_open = false },
            }
            let Some(pool) = pool.upgrade() else { return };
            let table = Arc::clone(&routing.borrow_and_update());
            let serving: HashSet<&InstanceId> = table
                .host_names()
                .filter_map(|h| table.http(h.as_str()))
                .flat_map(|route| route.target.replicas.iter())
                .filter(|r| r.serving)
                .map(|r| &r.instance)
                .collect();
            pool.retain(|id, node| serving.contains(id) && links.available(node, id));
        }
    });
}
