//! Several masters on one shared store (issue 19). Every master serves node sessions and the
//! operator API; this module keeps them one system:
//!
//! - **the scheduler lease**: taken or renewed every second for [`LEASE_TTL_MS`]; only its
//!   holder runs the scheduler, whose writes carry the lease's fence (a master that lost the
//!   lease cannot place anything);
//! - **the registry**: each master refreshes its record (name, QUIC and API addresses) every
//!   second; the live ones are the addresses given to nodes in desired states and tokens;
//! - **liveness across masters**: each master publishes when it heard its nodes and the
//!   instance reports they sent, and takes the others' into its fleet, so a node is down only
//!   when no master has heard it;
//! - **changes wherever the session is**: the store's events (PostgreSQL's LISTEN/NOTIFY) push
//!   desired states to the nodes connected here, take other masters' enrolments and admin
//!   states into the fleet, and wake the scheduler.
//!
//! On SQLite (one master) the same loops run against the same tables and the lease is always
//! this master's; no events ever come.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::InstanceStatus;

use crate::clock::now_ms;
use crate::context::Context;
use crate::store::coord::SCHEDULER_LEASE;
use crate::store::{Fence, MasterRecord, SharedReport, StoreError, StoreEvent};

/// How long the scheduler lease lasts without renewal: a dead holder's lease is taken over
/// within this plus one renewal period.
pub const LEASE_TTL_MS: u64 = 3_000;
/// How often the lease and the registry record are renewed, and heard times published.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often instance reports received here are published.
const REPORTS_EVERY: Duration = Duration::from_millis(200);
/// A master whose record is older than this is not given to nodes.
const MASTER_STALE_MS: u64 = 15_000;

/// This master's place among the masters sharing the store.
#[derive(Debug)]
pub struct Cluster {
    /// Unique name of this master process.
    pub name: String,
    /// This master's own record (its addresses).
    me: MasterRecord,
    fence: Mutex<Option<Fence>>,
    live: Mutex<Vec<MasterRecord>>,
    outbox: Mutex<Vec<SharedReport>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each value is replaced whole under its lock: a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// This master, named `name`, reachable by nodes at `quic` and by operators at `api`.
    pub fn new(name: String, quic: SocketAddr, api: Option<SocketAddr>) -> Self {
        let me = MasterRecord {
            name: name.clone(),
            quic_addr: quic,
            api_addr: api,
            seen_ms: now_ms(),
        };
        Self {
            name,
            live: Mutex::new(vec![me.clone()]),
            me,
            fence: Mutex::new(None),
            outbox: Mutex::new(Vec::new()),
        }
    }

    /// The scheduler lease's fence while this master holds it.
    pub fn fence(&self) -> Option<Fence> {
        lock(&self.fence).clone()
    }

    /// Drops the fence (a write found it stale): the scheduler stops until it is taken again.
    pub fn lost(&self, epoch: u64) {
        let mut fence = lock(&self.fence);
        if fence.as_ref().is_some_and(|f| f.epoch == epoch) {
            tracing::warn!(epoch, "scheduler lease lost (another master took it)");
            *fence = None;
        }
    }

    /// The QUIC addresses of every live master, this one included, in name order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = lock(&self.live).iter().map(|m| m.quic_addr).collect();
        out.dedup();
        out
    }

    /// Every live master's record.
    pub fn masters(&self) -> Vec<MasterRecord> {
        lock(&self.live).clone()
    }

    /// Queues a report received over a session here, for the other masters.
    pub fn report(&self, node: &NodeId, status: &InstanceStatus) {
        lock(&self.outbox).push(SharedReport {
            node: *node,
            master: self.name.clone(),
            status: status.clone(),
            at_ms: now_ms(),
        });
    }
}

/// Runs the lease, registry, heard-times and reports loops, and the store's events, until
/// `stop`; gives the lease up on the way out so that another master takes it at once.
pub async fn run(ctx: Arc<Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let events = tokio::spawn(events(ctx.clone(), stop.clone()));
    let shared = ctx.clone();
    match blocking(move || crate::shared_files::catch_up(&shared)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(files = n, "copied shared blobs and metadata from the store"),
        Err(e) => tracing::warn!(error = %e, "could not copy the shared blobs and metadata"),
    }
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reports = tokio::time::interval(REPORTS_EVERY);
    reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard_until = 0u64;
    loop {
        tokio::select! {
            _ = renew.tick() => {
                if let Err(e) = renew_once(&ctx, &mut heard_until).await {
                    tracing::warn!(error = %e, "could not renew the scheduler lease or the registry (retried every second)");
                }
            }
            _ = reports.tick() => publish_reports(&ctx).await,
            _ = stop.changed() => break,
        }
    }
    events.abort();
    publish_reports(&ctx).await;
    let held = lock(&ctx.cluster.fence).take();
    if let Some(fence) = held {
        let store = ctx.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.release_lease(&fence)).await;
        tracing::info!("scheduler lease released");
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Writer(e.to_string()))?
}

/// One renewal: the lease, this master's record, the live masters, heard times both ways.
async fn renew_once(ctx: &Arc<Context>, heard_until: &mut u64) -> Result<(), StoreError> {
    let store = ctx.store.clone();
    let name = ctx.cluster.name.clone();
    let taken = blocking(move || store.take_lease(SCHEDULER_LEASE, &name, LEASE_TTL_MS)).await;
    {
        let mut fence = lock(&ctx.cluster.fence);
        match (&*fence, &taken) {
            (None, Ok(Some(f))) => {
                tracing::info!(
                    epoch = f.epoch,
                    "scheduler lease taken: this master schedules"
                );
                // Another master may have written statuses meanwhile: read them again.
                ctx.scheduler.forget_statuses();
                ctx.scheduler.changed();
            }
            (Some(_), Ok(None)) => tracing::warn!("scheduler lease lost to another master"),
            // Unsure whether it is still ours: stop scheduling until a renewal says so.
            (Some(_), Err(_)) => tracing::warn!("scheduler lease unknown: not scheduling"),
            _ => {}
        }
        *fence = taken.as_ref().ok().cloned().flatten();
        ctx.metrics.scheduling.set(i64::from(fence.is_some()));
    }
    taken?;
    let me = MasterRecord {
        seen_ms: now_ms(),
        ..ctx.cluster.me.clone()
    };
    let store = ctx.store.clone();
    let masters = blocking(move || {
        store.register_master(&me)?;
        store.masters()
    })
    .await?;
    let now = now_ms();
    let live: Vec<MasterRecord> = masters
        .into_iter()
        .filter(|m| m.name == ctx.cluster.name || now.saturating_sub(m.seen_ms) < MASTER_STALE_MS)
        .collect();
    ctx.metrics
        .masters
        .set(i64::try_from(live.len()).unwrap_or(i64::MAX));
    *lock(&ctx.cluster.live) = live;
    if !ctx.store.shared() {
        return Ok(());
    }
    // Publish what this master heard since the last round; take what the others heard.
    let heard = ctx.fleet.heard_here(*heard_until);
    if let Some(latest) = heard.iter().map(|(_, t)| *t).max() {
        *heard_until = latest;
    }
    let store = ctx.store.clone();
    let name = ctx.cluster.name.clone();
    let since = now.saturating_sub(
        u64::try_from(ctx.fleet.config().down_after.as_millis()).unwrap_or(u64::MAX),
    );
    let others = blocking(move || {
        store.publish_heard(&name, &heard)?;
        store.heard_since(since)
    })
    .await?;
    for (node, master, at) in others {
        if master != ctx.cluster.name {
            ctx.fleet.remote_heard(&node, at, now);
        }
    }
    if ctx.cluster.fence().is_none() {
        // Not scheduling: keep the statuses shown by this master's API fresh.
        ctx.scheduler.forget_statuses();
    }
    Ok(())
}

async fn publish_reports(ctx: &Arc<Context>) {
    if !ctx.store.shared() {
        lock(&ctx.cluster.outbox).clear();
        return;
    }
    let batch = std::mem::take(&mut *lock(&ctx.cluster.outbox));
    if batch.is_empty() {
        return;
    }
    let store = ctx.store.clone();
    let name = ctx.cluster.name.clone();
    let kept = batch.clone();
    if let Err(e) = blocking(move || store.publish_reports(&name, &batch)).await {
        tracing::warn!(error = %e, "could not publish instance reports (retried)");
        let mut outbox = lock(&ctx.cluster.outbox);
        let newer = std::mem::take(&mut *outbox);
        *outbox = kept;
        outbox.extend(newer);
    }
}

/// Follows what other masters write (see the module doc).
async fn events(ctx: Arc<Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut rx = ctx.store.subscribe();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = stop.changed() => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "store events lagged: reading everything again");
                StoreEvent::Resync
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if let Err(e) = take(&ctx, event).await {
            tracing::warn!(error = %e, "could not follow another master's write");
        }
    }
}

async fn take(ctx: &Arc<Context>, event: StoreEvent) -> Result<(), StoreError> {
    match event {
        StoreEvent::Revisions(nodes) => {
            crate::overlay::peers::push(ctx, nodes).await;
        }
        StoreEvent::Data => ctx.scheduler.changed(),
        StoreEvent::Files(files) => {
            let shared = ctx.clone();
            blocking(move || {
                for (kind, name) in &files {
                    crate::shared_files::take(&shared, *kind, name)?;
                }
                Ok(())
            })
            .await?;
            // A recipe or artifact a deployment waited for may be here now.
            ctx.scheduler.changed();
        }
        StoreEvent::Nodes(nodes) => {
            let store = ctx.store.clone();
            let records = blocking(move || {
                nodes
                    .iter()
                    .filter_map(|n| store.node(n).transpose())
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
            learn(ctx, &records);
        }
        StoreEvent::Reports(instances) => {
            let store = ctx.store.clone();
            let reports = blocking(move || store.reports(Some(&instances))).await?;
            take_reports(ctx, reports);
        }
        StoreEvent::Resync => {
            let store = ctx.store.clone();
            let (records, reports) =
                blocking(move || Ok((store.nodes()?, store.reports(None)?))).await?;
            learn(ctx, &records);
            take_reports(ctx, reports);
            let shared = ctx.clone();
            blocking(move || crate::shared_files::catch_up(&shared)).await?;
            let here: Vec<NodeId> = records
                .iter()
                .map(|r| r.id)
                .filter(|n| ctx.fleet.has_session(n))
                .collect();
            crate::overlay::peers::push(ctx, here).await;
            ctx.scheduler.changed();
        }
    }
    Ok(())
}

fn learn(ctx: &Context, records: &[crate::store::NodeRecord]) {
    for record in records {
        if let Some(conn) = ctx.fleet.learn(record) {
            let code = if record.admin == crate::store::AdminState::Revoked {
                hearth_transport::close::REVOKED
            } else {
                hearth_transport::close::NORMAL
            };
            conn.close(code, format!("node {}", record.admin.as_str()).as_bytes());
        }
    }
}

fn take_reports(ctx: &Context, reports: Vec<SharedReport>) {
    for r in reports {
        // Reports over a session here are already in the fleet, and newer.
        if r.master != ctx.cluster.name && !ctx.fleet.has_session(&r.node) {
            ctx.fleet.record_status(&r.node, r.status);
        }
    }
}
