//! The gateway's side of the gateway link: the QUIC endpoint nodes dial, one [`Links`] entry per
//! connected node, and [`Links::open`], which opens a tunnel stream to one instance's port.
//!
//! INTERFACE SKETCH (coordinator): the bodies below are placeholders that the tunnel helper
//! replaces; the signatures are what `http.rs`/`tcp.rs` code against.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{InstanceId, Name};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::table::Replica;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The replica's node has no gateway link to this gateway.
    #[error("node {0} has no gateway link")]
    NotConnected(NodeId),
    /// The node refused the tunnel before anything reached the instance (`unknown_instance`,
    /// `port_not_published`, `draining`, `connect_failed`): safe to try another replica.
    #[error("node refused the tunnel: {code}: {message}")]
    Refused {
        /// The node's error code.
        code: hearth_protocol::ErrorCode,
        /// Its message.
        message: String,
    },
    /// The stream failed or the node did not answer in time.
    #[error("tunnel stream: {0}")]
    Stream(String),
}

/// What a tunnel is for: the replica, its port, the public client, its deployment (for the
/// counters).
#[derive(Debug, Clone)]
pub struct TunnelRequest<'a> {
    /// The replica.
    pub replica: &'a Replica,
    /// The instance's port, by name.
    pub port: &'a Name,
    /// The public client.
    pub client: SocketAddr,
    /// The deployment the replica belongs to.
    pub deployment: &'a Name,
}

/// The connected nodes. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Links {}

impl Links {
    /// True when `node` has a gateway link up and does not drain `instance`.
    pub fn available(&self, node: &NodeId, instance: &InstanceId) -> bool {
        let _ = (node, instance);
        false
    }

    /// Opens a tunnel: a stream on the node's link, `tunnel_open`, and its `tunnel_ready`.
    /// Bytes through the returned [`Tunnel`] are counted for the node, instance and deployment.
    pub async fn open(&self, request: TunnelRequest<'_>) -> Result<Tunnel, TunnelError> {
        Err(TunnelError::NotConnected(request.replica.node))
    }

    /// Changes when a link comes or goes, or a node's draining set changes.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

/// An open tunnel: raw bytes to and from the instance's port, counted.
#[derive(Debug)]
pub struct Tunnel {}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
