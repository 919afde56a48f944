//! The in-memory view of every enrolled node: administrative state, liveness and its session.
//!
//! The fleet answers the TLS handshake's admission question, takes heartbeats without touching
//! the disk, and hands the driver the liveness changes to persist. Locks are held for map
//! operations only, never across I/O or `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use hearth_protocol::messages::state::{InstanceId, InstanceStatus};
use hearth_protocol::{Message, NodeId};
use hearth_transport::Admission;

use crate::liveness::{Event, Liveness, LivenessConfig, Transition};
use crate::store::{AdminState, LivenessUpdate, NodeRecord};

pub use hearth_core::node::display_state;

/// Live facts about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLive {
    /// Operator state.
    pub admin: AdminState,
    /// Liveness.
    pub liveness: Liveness,
    /// Whether a session is open now.
    pub connected: bool,
    /// Heartbeats received since the master started.
    pub heartbeats: u64,
}

#[derive(Debug)]
struct Entry {
    admin: AdminState,
    liveness: Liveness,
    session: Option<(u64, quinn::Connection)>,
    outbox: Option<tokio::sync::mpsc::UnboundedSender<Message>>,
    heartbeats: u64,
    /// A liveness change (or a `last_seen` refresh) awaits `take_dirty`.
    dirty: bool,
    /// Last heartbeat time handed to `take_dirty`, Unix ms.
    persisted_seen: u64,
}

/// How stale the stored last-heartbeat time of an up node may get. Liveness changes are persisted
/// at the next flush; routine heartbeats only refresh the stored time this often, which keeps
/// heartbeat ingest off the disk (it matters only for the "last seen" of a node that is down when
/// the master restarts).
const LAST_SEEN_REFRESH_MS: u64 = 60_000;

/// Why a session was refused after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not enrolled.
    Unknown,
    /// Revoked or retired.
    Revoked,
}

/// Every enrolled node.
#[derive(Debug)]
pub struct Fleet {
    cfg: LivenessConfig,
    nodes: RwLock<HashMap<NodeId, Entry>>,
    next_session: std::sync::atomic::AtomicU64,
    instances: RwLock<BTreeMap<InstanceId, (NodeId, InstanceStatus)>>,
    /// Bumped by every change the scheduler looks at: membership, liveness transitions, admin
    /// states, instance reports. A heartbeat that changes nothing leaves it alone.
    epoch: std::sync::atomic::AtomicU64,
    /// Tells watchers (routing-table long polls) that [`Self::epoch`] moved.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Fleet {
    /// A fleet loaded from stored records. Nodes that were not down are `returning` for the
    /// restart grace from `now_ms` (a master restart must not mark the fleet down while the
    /// whole fleet reconnects at once).
    pub fn load(cfg: LivenessConfig, records: &[NodeRecord], now_ms: u64) -> Self {
        let nodes = records
            .iter()
            .map(|r| {
                let liveness = match r.liveness.as_str() {
                    "pending" => Liveness::Pending,
                    "down" => Liveness::Down {
                        since: now_ms,
                        last_heartbeat: r.last_seen_ms,
                    },
                    _ => Liveness::Returning {
                        until: now_ms.saturating_add(
                            u64::try_from(cfg.restart_grace.max(cfg.down_after).as_millis())
                                .unwrap_or(u64::MAX),
                        ),
                        last_heartbeat: r.last_seen_ms,
                    },
                };
                let entry = Entry {
                    admin: r.admin,
                    liveness,
                    session: None,
                    outbox: None,
                    heartbeats: 0,
                    dirty: false,
                    persisted_seen: r.last_seen_ms.unwrap_or(0),
                };
                (r.id, entry)
            })
            .collect();
        Self {
            cfg,
            nodes: RwLock::new(nodes),
            next_session: 1.into(),
            instances: RwLock::new(BTreeMap::new()),
            epoch: 0.into(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A counter that changes whenever something the scheduler reads of the fleet changes.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn changed(&self) {
        let epoch = self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changes.send_replace(epoch.wrapping_add(1));
    }

    /// Wakes at every change of [`Self::epoch`] (liveness, admin states, instance reports).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The liveness configuration.
    pub fn config(&self) -> &LivenessConfig {
        &self.cfg
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, Entry>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, Entry>> {
        self.nodes.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Nodes known (enrolled, whatever their state).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Adds a newly enrolled node.
    pub fn enrolled(&self, record: &NodeRecord) {
        let entry = Entry {
            admin: record.admin,
            liveness: Liveness::Pending,
            session: None,
            outbox: None,
            heartbeats: 0,
            dirty: false,
            persisted_seen: 0,
        };
        self.write().insert(record.id, entry);
        self.changed();
    }

    /// Takes a node record written by another master (an enrolment, an admin state): adds the
    /// node if unknown, else sets its admin state. Returns the connection to cut, if any.
    pub fn learn(&self, record: &NodeRecord) -> Option<quinn::Connection> {
        let known = self.read().get(&record.id).map(|e| e.admin);
        match known {
            None => {
                self.enrolled(record);
                None
            }
            Some(admin) if admin != record.admin => self.set_admin(&record.id, record.admin).1,
            Some(_) => None,
        }
    }

    /// Takes the time another master heard `node` (a node is down only when no master heard
    /// it): a heartbeat at `at_ms` if it is newer than the last one and recent enough to count
    /// (older than `down_after`, it would only flap the node up and down again).
    pub fn remote_heard(&self, node: &NodeId, at_ms: u64, now_ms: u64) {
        if now_ms.saturating_sub(at_ms) >= millis(self.cfg.down_after) {
            return;
        }
        let mut nodes = self.write();
        let Some(entry) = nodes.get_mut(node) else {
            return;
        };
        if entry.liveness.last_heartbeat().is_some_and(|t| t >= at_ms) {
            return;
        }
        let (next, transition) = entry.liveness.step(&self.cfg, at_ms, Event::Heartbeat);
        entry.liveness = next;
        if transition.is_some() {
            entry.dirty = true;
        }
        drop(nodes);
        if transition.is_some() {
            self.changed();
        }
    }

    /// Nodes with a session here heard after `since_ms`, with their last heartbeat: what this
    /// master publishes for the others.
    pub fn heard_here(&self, since_ms: u64) -> Vec<(NodeId, u64)> {
        self.read()
            .iter()
            .filter(|(_, e)| e.session.is_some())
            .filter_map(|(id, e)| {
                e.liveness
                    .last_heartbeat()
                    .filter(|t| *t > since_ms)
                    .map(|t| (*id, t))
            })
            .collect()
    }

    /// Registers a session; returns its id and the superseded connection to close, if any.
    pub fn open_session(
        &self,
        node: &NodeId,
        conn: quinn::Connection,
        outbox: tokio::sync::mpsc::UnboundedSender<Message>,
        now_ms: u64,
    ) -> Result<(u64, Option<quinn::Connection>, Option<Transition>), Refusal> {
        let mut nodes = self.write();
        let entry = nodes.get_mut(node).ok_or(Refusal::Unknown)?;
        if !entry.admin.admits_sessions() {
            return Err(Refusal::Revoked);
        }
        let id = self
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let old = entry.session.replace((id, conn)).map(|(_, c)| c);
        entry.outbox = Some(outbox);
        let (next, transition) = entry.liveness.step(&self.cfg, now_ms, Event::Heartbeat);
        entry.liveness = next;
        entry.dirty = true;
        drop(nodes);
        if transition.is_some() {
            self.changed();
        }
        Ok((id, old, transition))
    }

    /// Records a heartbeat of session `session`. `None` if that session is no longer current.
    pub fn heartbeat(
        &self,
        node: &NodeId,
        session: u64,
        now_ms: u64,
    ) -> Option<Option<Transition>> {
        let mut nodes = self.write();
        let entry = nodes.get_mut(node)?;
        if entry.session.as_ref().map(|(id, _)| *id) != Some(session) {
            return None;
        }
        let (next, transition) = entry.liveness.step(&self.cfg, now_ms, Event::Heartbeat);
        entry.liveness = next;
        entry.heartbeats += 1;
        if transition.is_some()
            || now_ms.saturating_sub(entry.persisted_seen) >= LAST_SEEN_REFRESH_MS
        {
            entry.dirty = true;
        }
        drop(nodes);
        if transition.is_some() {
            self.changed();
        }
        Some(transition)
    }

    /// Forgets session `session` if it is still the node's current one.
    pub fn close_session(&self, node: &NodeId, session: u64) {
        if let Some(entry) = self.write().get_mut(node)
            && entry.session.as_ref().is_some_and(|(id, _)| *id == session)
        {
            entry.session = None;
            entry.outbox = None;
        }
    }

    /// Advances every node's liveness to `now_ms`; returns the changes.
    pub fn tick(&self, now_ms: u64) -> Vec<(NodeId, Transition)> {
        let mut changes = Vec::new();
        for (id, entry) in self.write().iter_mut() {
            let (next, transition) = entry.liveness.step(&self.cfg, now_ms, Event::Tick);
            entry.liveness = next;
            if let Some(t) = transition {
                entry.dirty = true;
                changes.push((*id, t));
            }
        }
        if !changes.is_empty() {
            self.changed();
        }
        changes
    }

    /// Liveness records changed since the last call, to persist.
    pub fn take_dirty(&self) -> Vec<LivenessUpdate> {
        let mut out = Vec::new();
        for (id, entry) in self.write().iter_mut().filter(|(_, e)| e.dirty) {
            entry.dirty = false;
            entry.persisted_seen = entry.liveness.last_heartbeat().unwrap_or(0);
            out.push(LivenessUpdate {
                node: *id,
                liveness: entry.liveness.name(),
                last_seen_ms: entry.liveness.last_heartbeat(),
            });
        }
        out
    }

    /// Sets the administrative state (a revoked node stays revoked: false then); returns
    /// whether it was set and the open connection if it must be cut now.
    pub fn set_admin(&self, node: &NodeId, admin: AdminState) -> (bool, Option<quinn::Connection>) {
        let mut nodes = self.write();
        let Some(entry) = nodes.get_mut(node) else {
            return (true, None);
        };
        if entry.admin == AdminState::Revoked && admin != AdminState::Revoked {
            return (false, None);
        }
        entry.admin = admin;
        self.changed();
        if admin.admits_sessions() {
            (true, None)
        } else {
            (true, entry.session.take().map(|(_, c)| c))
        }
    }

    /// Queues a message for a node's session; false if it has none.
    pub fn push(&self, node: &NodeId, message: Message) -> bool {
        self.read()
            .get(node)
            .and_then(|e| e.outbox.as_ref())
            .is_some_and(|tx| tx.send(message).is_ok())
    }

    /// Whether `node` has a session to push to now. Callers check it before building a message
    /// that only a session can use; a session that opens later reads the stored state at its
    /// hello, after registering here, so it misses nothing committed before this check.
    pub fn has_session(&self, node: &NodeId) -> bool {
        self.read()
            .get(node)
            .and_then(|e| e.outbox.as_ref())
            .is_some_and(|tx| !tx.is_closed())
    }

    /// Records an instance status reported by `node`. Reports of an older generation than the
    /// one recorded are ignored (fencing).
    pub fn record_status(&self, node: &NodeId, status: InstanceStatus) {
        let mut instances = self.instances.write().unwrap_or_else(|p| p.into_inner());
        let id = status.report.instance.clone();
        let stale = instances
            .get(&id)
            .is_some_and(|(_, s)| s.report.generation > status.report.generation);
        if !stale {
            instances.insert(id, (*node, status));
            self.changed();
        }
    }

    /// Forgets the status of a removed instance.
    pub fn forget_instance(&self, instance: &InstanceId) {
        self.instances
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance);
        self.changed();
    }

    /// The last status of an instance.
    pub fn instance_status(&self, instance: &InstanceId) -> Option<(NodeId, InstanceStatus)> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .cloned()
    }

    /// Nodes to probe for uptime: enrolled, neither retired nor revoked (SPEC §9.10).
    pub fn probe_targets(&self) -> Vec<NodeId> {
        self.read()
            .iter()
            .filter(|(_, e)| e.admin.admits_sessions())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The overlay's members (SPEC §16.2): enrolled nodes neither retired nor revoked.
    pub fn members(&self) -> std::collections::BTreeSet<NodeId> {
        self.read()
            .iter()
            .filter(|(_, e)| e.admin.admits_sessions())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Live facts of one node.
    pub fn live(&self, node: &NodeId) -> Option<NodeLive> {
        self.read().get(node).map(|e| NodeLive {
            admin: e.admin,
            liveness: e.liveness,
            connected: e.session.is_some(),
            heartbeats: e.heartbeats,
        })
    }

    /// Number of nodes per display state, and of open sessions.
    pub fn census(&self) -> (BTreeMap<&'static str, u64>, u64) {
        let nodes = self.read();
        let mut by_state = BTreeMap::new();
        let mut sessions = 0;
        for e in nodes.values() {
            *by_state
                .entry(display_state(e.admin, &e.liveness))
                .or_insert(0) += 1;
            sessions += u64::from(e.session.is_some());
        }
        (by_state, sessions)
    }

    /// Closes every session (master shutdown).
    pub fn close_all(&self, code: quinn::VarInt, reason: &[u8]) {
        for e in self.write().values_mut() {
            if let Some((_, conn)) = e.session.take() {
                conn.close(code, reason);
            }
        }
    }
}

impl Admission for Fleet {
    fn admits(&self, node: &NodeId) -> bool {
        self.read()
            .get(node)
            .is_some_and(|e| e.admin.admits_sessions())
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
