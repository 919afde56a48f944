//! The accept side of [`Links`]: nodes' connections on the tunnel endpoint, each node's own
//! `drain` streams, and the handshake check against the routing table.

use std::collections::HashSet;
use std::sync::Arc;

use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, Message, NodeId};
use hearth_transport::cert::peer_key;
use hearth_transport::{Admission, MessageStream, close};
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;
use tracing::Instrument as _;

use super::{Links, NodeLink};
use crate::table::Routing;

/// Admits the nodes the current routing table names (the handshake check of the endpoint).
#[derive(Debug)]
pub struct RoutingAdmission(pub watch::Receiver<Arc<Routing>>);

impl Admission for RoutingAdmission {
    fn admits(&self, node: &NodeId) -> bool {
        self.0.borrow().admits(node)
    }
}

impl Links {
    /// Accepts nodes' connections on `endpoint` until it is closed.
    pub async fn serve(self, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(self.clone().link(incoming));
        }
    }

    async fn link(self, incoming: quinn::Incoming) {
        let remote = incoming.remote_address();
        let conn = match incoming.await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(%remote, "gateway link handshake failed: {e}");
                return;
            }
        };
        let Some(node) = peer_node(&conn) else {
            conn.close(close::PROTOCOL_ERROR, b"no node certificate");
            return;
        };
        let span = tracing::info_span!("link", %node, %remote);
        async move {
            tracing::info!("gateway link up");
            self.insert(node, conn.clone());
            loop {
                match conn.accept_bi().await {
                    Ok((send, recv)) => {
                        let task = self
                            .clone()
                            .drain_stream(node, conn.stable_id(), send, recv);
                        tokio::spawn(task.in_current_span());
                    }
                    Err(e) => {
                        tracing::info!("gateway link down: {e}");
                        break;
                    }
                }
            }
            self.remove(node, conn.stable_id());
        }
        .instrument(span)
        .await;
    }

    /// A node-opened stream: `drain` messages, each replacing the node's draining set.
    async fn drain_stream(
        self,
        node: NodeId,
        link: usize,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        loop {
            match stream.recv().await {
                Ok(Some(Message::Drain(drain))) => {
                    let set: HashSet<InstanceId> = drain.instances.into_iter().collect();
                    let draining = set.len();
                    let changed = match self.lock().get_mut(&node) {
                        Some(l) if l.conn.stable_id() == link && l.draining != set => {
                            l.draining = set;
                            true
                        }
                        _ => false,
                    };
                    if changed {
                        tracing::info!(draining, "node's draining set changed");
                        self.bump();
                    }
                }
                Ok(Some(other)) => {
                    tracing::warn!("node sent `{}` on its own stream", other.type_tag());
                    let error = Message::error(
                        ErrorCode::UnexpectedMessage,
                        "a node opens streams only to send `drain`",
                        false,
                    );
                    let _ = stream.send(&error).await;
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!("drain stream ended: {e}");
                    return;
                }
            }
        }
    }

    fn insert(&self, node: NodeId, conn: quinn::Connection) {
        let old = self.lock().insert(
            node,
            NodeLink {
                conn,
                draining: HashSet::new(),
            },
        );
        if let Some(old) = old {
            old.conn
                .close(close::SUPERSEDED, b"replaced by a newer link");
        }
        self.bump();
        let _ = self.inner.connects.send(node);
    }

    fn remove(&self, node: NodeId, link: usize) {
        let removed = {
            let mut nodes = self.lock();
            let current = nodes.get(&node).is_some_and(|l| l.conn.stable_id() == link);
            current && nodes.remove(&node).is_some()
        };
        if removed {
            self.bump();
        }
    }
}

/// The node of a connection, from its certificate.
pub fn peer_node(conn: &quinn::Connection) -> Option<NodeId> {
    conn.peer_identity()
        .and_then(|p| p.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().and_then(|c| peer_key(c).ok()))
        .map(NodeId::from_key)
}
