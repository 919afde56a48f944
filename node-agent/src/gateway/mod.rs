//! The node's side of the gateway links (SPEC §14): one outbound QUIC connection per gateway
//! its desired state names, on which gateways open tunnels to the node's exposed instances and
//! deliver bandwidth receipts.
//!
//! - [`Gateways`]: opens and closes links as the set of gateways changes ([`link`]).
//! - [`registry`]: what a tunnel may reach, shared with the supervisor, which publishes its
//!   instances' port numbers there and marks instances draining before it stops them.
//! - [`tunnel`]: the streams a gateway opens (tunnels, receipts).
//! - [`receipts`]: the durable, bounded receipt store; [`status`]: `gateways.json`.
//! - [`settle`]: the usage reporter, which settles the receipts with the master.
//!
//! A tunnel reaches only a published port of an instance the node runs: the instance, the port
//! name and the port number all come from the node's own state, never from the gateway.

pub mod drain;
pub mod link;
pub mod receipts;
pub mod registry;
pub mod settle;
pub mod status;
pub mod tunnel;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use hearth_protocol::messages::tunnel::GatewayRef;
use hearth_protocol::{NodeId, SecretKey};
use hearth_transport::{Identity, client_endpoint, gateway_client_config, tunnel_tuning};
use tokio::sync::watch;

pub use receipts::{RECEIPTS_KEPT, ReceiptError, ReceiptStore, Stored};
pub use registry::{Published, Refusal, Registry, RunState};
pub use status::{GatewayLinkStatus, GatewaysStatus};

use link::LinkTask;
use status::StatusBoard;
use tunnel::StreamContext;

/// Longest wait for an instance's tunnels to close before it is stopped anyway.
pub const DRAIN_MAX: Duration = Duration::from_secs(5);

/// Why the gateway links could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The node's TLS identity could not be made.
    #[error("cannot make the node's certificate: {0}")]
    Identity(String),
    /// The client endpoint could not be bound.
    #[error("cannot bind the gateway links' endpoint: {0}")]
    Endpoint(String),
    /// The receipt store could not be opened.
    #[error(transparent)]
    Receipts(#[from] ReceiptError),
}

/// Where the links keep their files, and what they share.
#[derive(Debug, Clone)]
pub struct GatewayConfig<'a> {
    /// The node's key (its certificate is presented to gateways).
    pub key: &'a SecretKey,
    /// This node's id (receipts must credit it).
    pub node: NodeId,
    /// Local address of the links' UDP socket (`0.0.0.0:0` on a node).
    pub bind: SocketAddr,
    /// Data directory: `receipts/` and `gateways.json` go there.
    pub dir: &'a Path,
    /// Receipts kept at most ([`RECEIPTS_KEPT`]).
    pub receipts_kept: usize,
}

/// The gateway links of one node.
#[derive(Debug)]
pub struct Gateways {
    identity: Identity,
    node: NodeId,
    endpoint: quinn::Endpoint,
    registry: Registry,
    receipts: ReceiptStore,
    board: StatusBoard,
    /// One stop handle per running link: dropping it ends the link.
    links: Mutex<HashMap<GatewayRef, watch::Sender<()>>>,
}

impl Gateways {
    /// Binds the links' endpoint and opens the receipt store; no link runs yet.
    pub fn new(config: GatewayConfig<'_>) -> Result<Self, GatewayError> {
        let identity = Identity::new(config.key, "hearth-node")
            .map_err(|e| GatewayError::Identity(e.to_string()))?;
        let endpoint =
            client_endpoint(config.bind).map_err(|e| GatewayError::Endpoint(e.to_string()))?;
        let receipts = ReceiptStore::open(&config.dir.join("receipts"), config.receipts_kept)?;
        let board = StatusBoard::new(Some(config.dir), receipts.clone());
        board.touch();
        Ok(Self {
            identity,
            node: config.node,
            endpoint,
            registry: Registry::new(),
            receipts,
            board,
            links: Mutex::new(HashMap::new()),
        })
    }

    /// The table the supervisor publishes its instances in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The receipts held.
    pub fn receipts(&self) -> &ReceiptStore {
        &self.receipts
    }

    /// The links' state now.
    pub fn status(&self) -> GatewaysStatus {
        self.board.snapshot()
    }

    /// Converges the links to `gateways`: opens the new ones, closes those no longer named.
    /// Must be called inside a tokio runtime.
    pub fn set(&self, gateways: &[GatewayRef]) {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gone: Vec<GatewayRef> = links
            .keys()
            .filter(|g| !gateways.contains(g))
            .cloned()
            .collect();
        for g in gone {
            tracing::info!(gateway = %g.gateway, addr = %g.addr, "closing gateway link");
            links.remove(&g);
            if !links.keys().any(|other| other.gateway == g.gateway) {
                self.board.removed(&g.gateway);
            }
        }
        for g in gateways {
            if links.contains_key(g) {
                continue;
            }
            let config = match gateway_client_config(&self.identity, &g.gateway, &tunnel_tuning()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(gateway = %g.gateway, error = %e, "cannot configure a gateway link");
                    continue;
                }
            };
            let (stop, stopped) = watch::channel(());
            self.board.added(g.gateway, g.addr);
            let task = LinkTask {
                target: g.clone(),
                endpoint: self.endpoint.clone(),
                config,
                streams: StreamContext {
                    gateway: g.gateway,
                    node: self.node,
                    registry: self.registry.clone(),
                    receipts: self.receipts.clone(),
                    board: self.board.clone(),
                    warnings: Default::default(),
                },
                board: self.board.clone(),
            };
            tokio::spawn(link::run(task, stopped));
            links.insert(g.clone(), stop);
        }
    }
}

impl Drop for Gateways {
    fn drop(&mut self) {
        self.endpoint
            .close(hearth_transport::close::NORMAL, b"node shutting down");
    }
}
