//! Records for several masters sharing one database (PostgreSQL): the scheduler lease and its
//! fence, the masters' registry, what each master heard from its nodes, and the events a
//! shared engine sends when another master writes.
//!
//! A master serves the node sessions and the operator API on its own; what only one may do at a
//! time (the scheduler) runs under a lease whose epoch fences its writes. A node is down only
//! when no master has heard it: each master publishes the times it heard its nodes and the
//! instance reports they sent, and every master merges the others' into its fleet.

use std::net::SocketAddr;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{InstanceId, InstanceStatus};

/// The lease the scheduler runs under.
pub const SCHEDULER_LEASE: &str = "scheduler";

/// Proof of holding a lease at an epoch; writes made under it fail once another holder took
/// the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// Grows by one each time the lease changes hands.
    pub epoch: u64,
}

/// A master as registered in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRecord {
    /// Unique name of this master process (given at start, or made from its host and port).
    pub name: String,
    /// The QUIC address nodes connect to.
    pub quic_addr: SocketAddr,
    /// The operator API's address, if it listens on one.
    pub api_addr: Option<SocketAddr>,
    /// When it last refreshed its record, Unix ms (its own clock).
    pub seen_ms: u64,
}

/// An instance report as published by the master that received it.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedReport {
    /// The node that sent it.
    pub node: NodeId,
    /// The master whose session received it.
    pub master: String,
    /// The report.
    pub status: InstanceStatus,
    /// When the master received it, Unix ms.
    pub at_ms: u64,
}

impl SharedReport {
    /// The instance it is about.
    pub fn instance(&self) -> &InstanceId {
        &self.status.report.instance
    }
}

/// Largest part of a shared file stored in one row.
pub const FILE_PART: usize = 4 * 1024 * 1024;

/// What a shared file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// Content-addressed bytes (an artifact, a recipe document), named by their SHA-256.
    Blob,
    /// A signed repository metadata file, by its file name.
    Metadata,
}

impl FileKind {
    /// The name stored and sent in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Metadata => "metadata",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blob" => Some(Self::Blob),
            "metadata" => Some(Self::Metadata),
            _ => None,
        }
    }
}

/// What another master wrote, as told by a shared engine after it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// These nodes' desired states changed (their revisions were bumped).
    Revisions(Vec<NodeId>),
    /// These nodes were enrolled, or their administrative state was set.
    Nodes(Vec<NodeId>),
    /// Deployments, assignments or gateways changed: the engine's caches are already dropped
    /// and [`super::Store::changes`] bumped.
    Data,
    /// New reports were published for these instances.
    Reports(Vec<InstanceId>),
    /// These shared files were stored or replaced.
    Files(Vec<(FileKind, String)>),
    /// The engine may have missed events (its listening connection was lost and is back):
    /// re-read everything.
    Resync,
}
