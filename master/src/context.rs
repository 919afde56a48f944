//! What every driver of the master shares.

use std::sync::Arc;

use hearth_protocol::MasterId;

use crate::blobs::BlobStore;
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::store::Store;

/// Shared state of a running master.
#[derive(Debug)]
pub struct Context {
    /// The master's identity.
    pub id: MasterId,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Live view of the nodes.
    pub fleet: Arc<Fleet>,
    /// Metrics.
    pub metrics: Metrics,
    /// Largest frame accepted from nodes.
    pub max_frame: usize,
    /// Content-addressed blobs served to nodes.
    pub blobs: BlobStore,
    /// Signed repository metadata served to nodes.
    pub repository: crate::repository::Repository,
    /// The scheduler's wake-up and notes.
    pub scheduler: crate::scheduler::SchedulerState,
    /// Audit probes awaiting answers.
    pub probes: crate::audit::Probes,
    /// Random-time uptime probing: answers for the prober, standings sent.
    pub uptime: crate::uptime::Uptime,
    /// SHA-256 of the admin API token.
    pub admin_token_hash: hearth_protocol::Sha256,
    /// Gateways' soft state (last reads) and the long-poll cap.
    pub gateways: crate::gateway_api::GatewayState,
    /// The credits ledger (SPEC.md §15): append entries, read the books.
    pub ledger: Arc<crate::ledger::Ledger>,
    /// Settles nodes' usage reports against the ledger, one at a time.
    pub settlement: crate::settlement::Settler,
    /// The node overlay: members, relays, holdings (SPEC §16).
    pub overlay: crate::overlay::OverlayState,
    /// This master among the masters sharing the store: the scheduler lease, the registry.
    pub cluster: crate::cluster::Cluster,
    /// Refused enrolments a peer can make us log: rate-limited like refused handshakes.
    pub enrol_log: std::sync::Mutex<crate::ratelimit::LogLimiter>,
    /// The dashboard's session keys and sign-in limiter.
    pub ui: crate::ui::session::Sessions,
}
