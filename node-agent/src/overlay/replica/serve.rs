//! The serving side of replica links: a `replica_open {instance, from}` stream from another
//! member reaches `instance`'s peer port on 127.0.0.1 only if `instance` runs here now and
//! `from`, on the asking node, is one of its peers. Refusals are `error` frames
//! (`unknown_instance`, `not_yours`, `connect_failed`); one bad stream never hurts the others.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::messages::error::ErrorCode;
use hearth_protocol::messages::overlay::{ReplicaOpen, ReplicaPeer};
use hearth_protocol::messages::tunnel::TunnelReady;
use hearth_protocol::{Message, NodeId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::pipe::{LogGate, copy_both};
use super::{ReplicaLinks, Serving};
use crate::overlay::Incoming;

/// How long connecting to the instance's peer port may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A refusal: the code and the sentence sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// Decides a `replica_open` from node `asker`: the port to connect to, or why not.
pub fn authorize(
    serving: Option<&Serving>,
    open: &ReplicaOpen,
    asker: &NodeId,
) -> Result<u16, Refusal> {
    let Some(serving) = serving else {
        return Err(Refusal {
            code: ErrorCode::UnknownInstance,
            message: format!("instance {} does not run on this node", open.instance),
        });
    };
    let allowed = ReplicaPeer {
        instance: open.from.clone(),
        node: *asker,
    };
    if !serving.peers.contains(&allowed) {
        return Err(Refusal {
            code: ErrorCode::NotYours,
            message: format!(
                "{} on {asker} is not a peer of instance {}",
                open.from, open.instance
            ),
        });
    }
    Ok(serving.port)
}

/// Serves incoming replica streams until the overlay closes the channel.
pub(super) async fn run(links: ReplicaLinks, mut incoming: mpsc::Receiver<Incoming>) {
    let gates: Arc<std::sync::Mutex<HashMap<NodeId, Arc<LogGate>>>> = Arc::default();
    while let Some(inc) = incoming.recv().await {
        let gate = gates
            .lock()
            .map(|mut g| g.entry(inc.from).or_default().clone())
            .unwrap_or_default();
        let span = tracing::info_span!("replica_serve", from = %inc.from);
        tokio::spawn(serve_one(links.clone(), inc, gate).instrument(span));
    }
}

async fn serve_one(links: ReplicaLinks, inc: Incoming, gate: Arc<LogGate>) {
    let Incoming {
        from,
        first,
        mut stream,
    } = inc;
    let Message::ReplicaOpen(open) = first else {
        let _ = stream
            .send_error(ErrorCode::UnexpectedMessage, "expected replica_open")
            .await;
        return;
    };
    let refuse = |code: ErrorCode, message: String| Refusal { code, message };
    let result = match authorize(links.serving(&open.instance).as_ref(), &open, &from) {
        Err(r) => Err(r),
        Ok(port) => match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
        )
        .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(refuse(
                ErrorCode::ConnectFailed,
                format!("instance {} port {port}: {e}", open.instance),
            )),
            Err(_) => Err(refuse(
                ErrorCode::ConnectFailed,
                format!(
                    "instance {} port {port}: no answer within {CONNECT_TIMEOUT:?}",
                    open.instance
                ),
            )),
        },
    };
    let conn = match result {
        Ok(conn) => conn,
        Err(r) => {
            gate.warn(|| tracing::warn!(instance = %open.instance, asking = %open.from, code = %r.code, "replica link refused: {}", r.message));
            let _ = stream.send_error(r.code, r.message).await;
            let _ = stream.finish().await;
            return;
        }
    };
    if let Err(e) = stream.send(&Message::TunnelReady(TunnelReady {})).await {
        gate.warn(|| tracing::warn!(error = %e, "cannot answer replica_open"));
        return;
    }
    tracing::debug!(instance = %open.instance, asking = %open.from, "replica link up");
    if let Err(e) = copy_both(conn, stream.into_io(), links.overlay().stats()).await {
        gate.warn(|| tracing::warn!(instance = %open.instance, error = %e, "replica link closed"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::from_key(hearth_protocol::SecretKey::generate().public())
    }

    #[test]
    fn only_a_listed_peer_on_its_own_node_reaches_a_running_instance() -> anyhow::Result<()> {
        let (a, b, stranger) = (node(), node(), node());
        let serving = Serving {
            port: 4100,
            peers: vec![ReplicaPeer {
                instance: "kv-1".parse()?,
                node: a,
            }],
        };
        let open = |from: &str| -> anyhow::Result<ReplicaOpen> {
            Ok(ReplicaOpen {
                instance: "kv-2".parse()?,
                from: from.parse()?,
            })
        };
        assert_eq!(authorize(Some(&serving), &open("kv-1")?, &a), Ok(4100));
        // A listed instance name, asked for from another node: not its peer.
        let e = authorize(Some(&serving), &open("kv-1")?, &stranger).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotYours);
        let e = authorize(Some(&serving), &open("kv-1")?, &b).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotYours);
        // An instance that is not a peer, from a member node.
        let e = authorize(Some(&serving), &open("web-1")?, &a).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotYours);
        assert!(e.message.contains("web-1"), "{}", e.message);
        // Not running here.
        let e = authorize(None, &open("kv-1")?, &a).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownInstance);
        Ok(())
    }
}
