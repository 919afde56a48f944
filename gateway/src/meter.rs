//! Byte counters per (node, instance, deployment), both directions, counted at the gateway on
//! each tunnel (never taken from a node).
//!
//! The hot path is two relaxed atomic adds: a [`crate::tunnel::Tunnel`] holds an `Arc` to its
//! [`Counters`]; the map behind [`Meter`] is only locked when a tunnel opens, when `/metrics`
//! is read and when a receipt window closes. Each counter keeps a running total (for
//! `/metrics`) and the bytes of the current receipt window, which [`Meter::take_window`] swaps
//! to zero.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{InstanceId, Name};

/// What a counter is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterKey {
    /// The node that runs the instance.
    pub node: NodeId,
    /// The instance.
    pub instance: InstanceId,
    /// Its deployment.
    pub deployment: Name,
}

/// The counters of one key.
#[derive(Debug, Default)]
pub struct Counters {
    to_node_total: AtomicU64,
    from_node_total: AtomicU64,
    to_node_window: AtomicU64,
    from_node_window: AtomicU64,
}

impl Counters {
    /// Counts `n` bytes sent to the node.
    pub fn add_to_node(&self, n: u64) {
        self.to_node_total.fetch_add(n, Ordering::Relaxed);
        self.to_node_window.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes received from the node.
    pub fn add_from_node(&self, n: u64) {
        self.from_node_total.fetch_add(n, Ordering::Relaxed);
        self.from_node_window.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes sent to the node since the gateway started.
    pub fn to_node(&self) -> u64 {
        self.to_node_total.load(Ordering::Relaxed)
    }

    /// Bytes received from the node since the gateway started.
    pub fn from_node(&self) -> u64 {
        self.from_node_total.load(Ordering::Relaxed)
    }
}

/// Running totals of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Bytes sent to the node.
    pub to_node: u64,
    /// Bytes received from the node.
    pub from_node: u64,
}

/// The bytes of one (node, instance) in a closed receipt window, summed over deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowBytes {
    /// The node.
    pub node: NodeId,
    /// The instance.
    pub instance: InstanceId,
    /// Bytes sent to the node.
    pub to_node: u64,
    /// Bytes received from the node.
    pub from_node: u64,
}

/// Every counter of the gateway. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    counters: Arc<Mutex<HashMap<MeterKey, Arc<Counters>>>>,
}

impl Meter {
    /// A meter with no counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `key`, made on first use.
    pub fn counters(&self, key: MeterKey) -> Arc<Counters> {
        let mut map = self.lock();
        Arc::clone(map.entry(key).or_default())
    }

    /// The totals of `key` (zero when never counted).
    pub fn totals_of(&self, key: &MeterKey) -> Totals {
        self.lock()
            .get(key)
            .map_or_else(Totals::default, |c| Totals {
                to_node: c.to_node(),
                from_node: c.from_node(),
            })
    }

    /// Every key's totals, sorted by key.
    pub fn totals(&self) -> BTreeMap<MeterKey, Totals> {
        self.lock()
            .iter()
            .map(|(k, c)| {
                let totals = Totals {
                    to_node: c.to_node(),
                    from_node: c.from_node(),
                };
                (k.clone(), totals)
            })
            .collect()
    }

    /// Closes the current receipt window: the bytes of each (node, instance) counted since the
    /// last call, summed over deployments, leaving out those with none. The window counters
    /// restart at zero; the totals go on.
    pub fn take_window(&self) -> Vec<WindowBytes> {
        let mut sums: BTreeMap<(NodeId, InstanceId), (u64, u64)> = BTreeMap::new();
        for (key, c) in self.lock().iter() {
            let to_node = c.to_node_window.swap(0, Ordering::Relaxed);
            let from_node = c.from_node_window.swap(0, Ordering::Relaxed);
            if to_node == 0 && from_node == 0 {
                continue;
            }
            let sum = sums
                .entry((key.node, key.instance.clone()))
                .or_insert((0, 0));
            sum.0 = sum.0.saturating_add(to_node);
            sum.1 = sum.1.saturating_add(from_node);
        }
        sums.into_iter()
            .map(|((node, instance), (to_node, from_node))| WindowBytes {
                node,
                instance,
                to_node,
                from_node,
            })
            .collect()
    }

    /// Forgets the counters of keys `keep` refuses, once no tunnel holds them and their
    /// current window is empty (nothing counted is ever dropped before its receipt).
    pub fn prune(&self, keep: impl Fn(&MeterKey) -> bool) {
        self.lock().retain(|key, c| {
            keep(key)
                || Arc::strong_count(c) > 1
                || c.to_node_window.load(Ordering::Relaxed) != 0
                || c.from_node_window.load(Ordering::Relaxed) != 0
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MeterKey, Arc<Counters>>> {
        // The map stays consistent whatever a panicking holder did: entries are only added.
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hearth_protocol::SecretKey;

    use super::*;

    fn key(instance: &str, deployment: &str) -> MeterKey {
        MeterKey {
            node: NodeId::from_key(SecretKey::from_seed(&[1; 32]).public()),
            instance: instance.parse().unwrap(),
            deployment: deployment.parse().unwrap(),
        }
    }

    #[test]
    fn a_window_sums_deployments_per_instance_and_restarts_while_totals_go_on() {
        let meter = Meter::new();
        let a = meter.counters(key("i1", "web"));
        let b = meter.counters(key("i1", "api"));
        meter.counters(key("i2", "web"));
        a.add_to_node(10);
        a.add_from_node(100);
        b.add_to_node(5);
        let window = meter.take_window();
        assert_eq!(window.len(), 1, "an instance without bytes has no entry");
        assert_eq!((window[0].to_node, window[0].from_node), (15, 100));
        assert!(meter.take_window().is_empty());
        a.add_to_node(1);
        assert_eq!(meter.take_window()[0].to_node, 1);
        assert_eq!(
            meter.totals_of(&key("i1", "web")),
            Totals {
                to_node: 11,
                from_node: 100
            }
        );
    }

    #[test]
    fn pruning_keeps_counters_in_use_or_with_unreceipted_bytes() {
        let meter = Meter::new();
        let held = meter.counters(key("held", "web"));
        meter.counters(key("unreceipted", "web")).add_to_node(1);
        meter.counters(key("idle", "web")).add_to_node(1);
        meter.counters(key("routed", "web"));
        meter.take_window();
        meter.counters(key("unreceipted", "web")).add_to_node(1);
        meter.prune(|k| k.instance.as_str() == "routed");
        let left: Vec<String> = meter
            .totals()
            .keys()
            .map(|k| k.instance.to_string())
            .collect();
        assert_eq!(left, ["held", "routed", "unreceipted"]);
        drop(held);
    }
}
