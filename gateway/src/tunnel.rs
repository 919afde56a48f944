//! The gateway's side of the gateway link: the QUIC endpoint nodes dial, one [`Links`] entry per
//! connected node, and [`Links::open`], which opens a tunnel stream to one instance's port.
//!
//! A node's link is its newest connection (a newer one closes the older, `superseded`); it
//! goes at once when the connection is lost. The node opens streams of its own only to send
//! `drain`; each replaces the node's draining set. A tunnel stream starts with `tunnel_open`
//! from here and exactly one answer frame from the node, read header first and then exactly
//! its payload, so that no byte of the instance's that follows it is swallowed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hearth_protocol::frame::{self, HEADER_LEN};
use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::messages::tunnel::TunnelOpen;
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, Message, NodeId};
use hearth_transport::close;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{broadcast, watch};

use crate::meter::{Counters, Meter, MeterKey};
use crate::table::{Replica, Routing};

mod accept;

pub use accept::{RoutingAdmission, peer_node};

/// How long a node gets to answer `tunnel_open`.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer frame to `tunnel_open` read (an `error` with its message).
const MAX_ANSWER: usize = 64 * 1024;

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

/// Link and tunnel figures for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Nodes with a link up.
    pub links_up: u64,
    /// Tunnels open now.
    pub tunnels_open: u64,
    /// Tunnels opened since start.
    pub tunnels_total: u64,
}

/// The connected nodes. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Links {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nodes: Mutex<HashMap<NodeId, NodeLink>>,
    changes: watch::Sender<u64>,
    connects: broadcast::Sender<NodeId>,
    meter: Meter,
    tunnels_open: Arc<AtomicU64>,
    tunnels_total: AtomicU64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            nodes: Mutex::default(),
            changes: watch::channel(0).0,
            connects: broadcast::channel(1024).0,
            meter: Meter::default(),
            tunnels_open: Arc::default(),
            tunnels_total: AtomicU64::new(0),
        }
    }
}

#[derive(Debug)]
struct NodeLink {
    conn: quinn::Connection,
    draining: HashSet<InstanceId>,
}

impl Links {
    /// No links yet; tunnels are counted into `meter`.
    pub fn new(meter: Meter) -> Self {
        Self {
            inner: Arc::new(Inner {
                meter,
                ..Inner::default()
            }),
        }
    }

    /// The counters tunnels count into.
    pub fn meter(&self) -> &Meter {
        &self.inner.meter
    }

    /// True when `node` has a gateway link up and does not drain `instance`.
    pub fn available(&self, node: &NodeId, instance: &InstanceId) -> bool {
        self.lock().get(node).is_some_and(|link| {
            link.conn.close_reason().is_none() && !link.draining.contains(instance)
        })
    }

    /// True when `node` has a gateway link up.
    pub fn connected(&self, node: &NodeId) -> bool {
        self.lock()
            .get(node)
            .is_some_and(|link| link.conn.close_reason().is_none())
    }

    /// Opens a tunnel: a stream on the node's link, `tunnel_open`, and its `tunnel_ready`.
    /// Bytes through the returned [`Tunnel`] are counted for the node, instance and deployment.
    pub async fn open(&self, request: TunnelRequest<'_>) -> Result<Tunnel, TunnelError> {
        let node = request.replica.node;
        let instance = &request.replica.instance;
        let conn = {
            let nodes = self.lock();
            let link = nodes
                .get(&node)
                .filter(|l| l.conn.close_reason().is_none())
                .ok_or(TunnelError::NotConnected(node))?;
            if link.draining.contains(instance) {
                return Err(TunnelError::Refused {
                    code: ErrorCode::Draining,
                    message: format!("instance {instance} is draining"),
                });
            }
            link.conn.clone()
        };
        let open = Message::TunnelOpen(TunnelOpen {
            instance: instance.clone(),
            port: request.port.clone(),
            client: request.client.into(),
        });
        let bytes = frame::encode(&open, DEFAULT_MAX_FRAME)
            .map_err(|e| TunnelError::Stream(e.to_string()))?;
        let handshake = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(stream_error)?;
            send.write_all(&bytes).await.map_err(stream_error)?;
            match read_frame(&mut recv).await? {
                Message::TunnelReady(_) => Ok((send, recv)),
                Message::Error(e) => Err(TunnelError::Refused {
                    code: e.code,
                    message: e.message,
                }),
                other => Err(TunnelError::Stream(format!(
                    "node answered tunnel_open with `{}`",
                    other.type_tag()
                ))),
            }
        };
        let (send, recv) = tokio::time::timeout(OPEN_TIMEOUT, handshake)
            .await
            .map_err(|_| {
                TunnelError::Stream(format!(
                    "node did not answer tunnel_open within {OPEN_TIMEOUT:?}"
                ))
            })??;
        let counters = self.inner.meter.counters(MeterKey {
            node,
            instance: instance.clone(),
            deployment: request.deployment.clone(),
        });
        self.inner.tunnels_total.fetch_add(1, Ordering::Relaxed);
        self.inner.tunnels_open.fetch_add(1, Ordering::Relaxed);
        Ok(Tunnel {
            send,
            recv,
            counters,
            _open: OpenGuard(Arc::clone(&self.inner.tunnels_open)),
        })
    }

    /// Changes when a link comes or goes, or a node's draining set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Each node whose link comes up (pending receipts are re-sent then).
    pub fn connects(&self) -> broadcast::Receiver<NodeId> {
        self.inner.connects.subscribe()
    }

    /// Every node with a link up.
    pub fn nodes(&self) -> Vec<NodeId> {
        self.lock()
            .iter()
            .filter(|(_, l)| l.conn.close_reason().is_none())
            .map(|(n, _)| *n)
            .collect()
    }

    /// The node's link, when up (the receipts open their streams on it).
    pub fn connection(&self, node: &NodeId) -> Option<quinn::Connection> {
        self.lock()
            .get(node)
            .filter(|l| l.conn.close_reason().is_none())
            .map(|l| l.conn.clone())
    }

    /// Link and tunnel figures.
    pub fn stats(&self) -> LinkStats {
        LinkStats {
            links_up: self.nodes().len() as u64,
            tunnels_open: self.inner.tunnels_open.load(Ordering::Relaxed),
            tunnels_total: self.inner.tunnels_total.load(Ordering::Relaxed),
        }
    }

    /// Closes the links of nodes the routing table no longer admits.
    pub fn close_unadmitted(&self, routing: &Routing) {
        for (node, link) in self.lock().iter() {
            if !routing.admits(node) {
                tracing::info!(%node, "node no longer routed here: closing its gateway link");
                link.conn
                    .close(close::UNKNOWN_NODE, b"not routed to this gateway");
            }
        }
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, NodeLink>> {
        // Each update leaves the map consistent: a poisoned lock holds a usable map.
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open tunnel: raw bytes to and from the instance's port, counted. Shutting down the
/// write side finishes the stream (a half-close the node passes on).
#[derive(Debug)]
pub struct Tunnel {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    counters: Arc<Counters>,
    _open: OpenGuard,
}

#[derive(Debug)]
struct OpenGuard(Arc<AtomicU64>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = AsyncRead::poll_read(Pin::new(&mut this.recv), cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.counters
                .add_from_node((buf.filled().len().saturating_sub(before)) as u64);
        }
        poll
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = AsyncWrite::poll_write(Pin::new(&mut this.send), cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.counters.add_to_node(n as u64);
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

/// Reads exactly one frame: its header, then exactly its payload (never more).
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Message, TunnelError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await.map_err(stream_error)?;
    let len = frame::payload_len(header, MAX_ANSWER).map_err(stream_error)?;
    let mut payload = vec![0u8; len];
    recv.read_exact(&mut payload).await.map_err(stream_error)?;
    frame::decode_payload(&payload).map_err(stream_error)
}

fn stream_error(e: impl std::fmt::Display) -> TunnelError {
    TunnelError::Stream(e.to_string())
}
