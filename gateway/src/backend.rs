//! What the proxy needs from the gateway links, as a trait: whether a replica can be reached,
//! opening a tunnel to it, and a signal when that changes. [`Links`] is the real one; tests of
//! the forwarding path plug in plain TCP connections to local servers.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::InstanceId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::tunnel::{Links, TunnelError, TunnelRequest};

/// Bytes to and from a replica's port.
pub trait TunnelIo: AsyncRead + AsyncWrite + Send {}

impl<T: AsyncRead + AsyncWrite + Send> TunnelIo for T {}

/// An open tunnel, boxed (one allocation per tunnel, not per request: tunnels are pooled).
pub type BoxedTunnel = Pin<Box<dyn TunnelIo>>;

/// The future of [`Backend::open`].
pub type OpenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<BoxedTunnel, TunnelError>> + Send + 'a>>;

/// Where the proxy's tunnels come from.
pub trait Backend: Debug + Send + Sync + 'static {
    /// True when a tunnel to `instance` on `node` can be opened now (link up, not draining).
    fn available(&self, node: &NodeId, instance: &InstanceId) -> bool;

    /// Opens a tunnel to the replica's port.
    fn open<'a>(&'a self, request: TunnelRequest<'a>) -> OpenFuture<'a>;

    /// Changes whenever [`Backend::available`] may answer differently.
    fn changes(&self) -> watch::Receiver<u64>;
}

impl Backend for Links {
    fn available(&self, node: &NodeId, instance: &InstanceId) -> bool {
        Links::available(self, node, instance)
    }

    fn open<'a>(&'a self, request: TunnelRequest<'a>) -> OpenFuture<'a> {
        Box::pin(async move {
            let tunnel = Links::open(self, request).await?;
            Ok(Box::pin(tunnel) as BoxedTunnel)
        })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        Links::changes(self)
    }
}
