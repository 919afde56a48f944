//! One gateway link: an outbound QUIC connection to one gateway, kept up with
//! `Backoff::RECONNECT` (full jitter), serving the streams the gateway opens and announcing
//! the node's draining set on the one stream the node opens.
//!
//! The link has its own endpoint socket and tasks, apart from the master session: whatever a
//! gateway does (or fails to do), the session's heartbeats are not delayed by it.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_core::backoff::Backoff;
use hearth_protocol::messages::tunnel::{Drain, GatewayRef};
use hearth_protocol::{DEFAULT_MAX_FRAME, Message};
use hearth_transport::{GATEWAY_SERVER_NAME, MessageStream, close};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::status::StatusBoard;
use super::tunnel::{self, StreamContext};

/// Time to finish a handshake with a gateway.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the backoff; a gateway that accepts and drops at
/// once is redialled ever more slowly, never in a hot loop.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What one link needs.
pub(crate) struct LinkTask {
    pub target: GatewayRef,
    pub endpoint: quinn::Endpoint,
    pub config: quinn::ClientConfig,
    pub streams: StreamContext,
    pub board: StatusBoard,
}

/// Runs the link until `stop` changes or its sender is dropped.
pub(crate) async fn run(task: LinkTask, stop: watch::Receiver<()>) {
    let span =
        tracing::info_span!("gateway", gateway = %task.target.gateway, addr = %task.target.addr);
    task.run(stop).instrument(span).await;
}

/// How one connection ended.
enum Ended {
    /// The link was removed from the desired state.
    Stopped,
    /// Lost or refused; `stable` when the connection had lasted [`STABLE_AFTER`].
    Lost { reason: String, stable: bool },
}

impl LinkTask {
    async fn run(self, mut stop: watch::Receiver<()>) {
        let gateway = self.target.gateway;
        let mut failures = 0u32;
        loop {
            self.board.connecting(&gateway);
            match self.connect_and_serve(&mut stop).await {
                Ended::Stopped => return,
                Ended::Lost { reason, stable } => {
                    if stable {
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    let delay = Backoff::RECONNECT.jittered(failures, rand::random::<f64>());
                    tracing::warn!(%reason, retry_in = ?delay, "gateway link lost");
                    self.board.lost(&gateway, reason);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    async fn connect_and_serve(&self, stop: &mut watch::Receiver<()>) -> Ended {
        let addr: SocketAddr = self.target.addr.get();
        let connecting =
            match self
                .endpoint
                .connect_with(self.config.clone(), addr, GATEWAY_SERVER_NAME)
            {
                Ok(c) => c,
                Err(e) => return lost(e.to_string(), false),
            };
        let conn = tokio::select! {
            done = tokio::time::timeout(CONNECT_WITHIN, connecting) => match done {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return lost(e.to_string(), false),
                Err(_) => return lost("handshake timed out".into(), false),
            },
            _ = stop.changed() => return Ended::Stopped,
        };
        self.streams.registry.link_up();
        self.board.connected(&self.target.gateway);
        tracing::info!("gateway link open");
        let opened = tokio::time::Instant::now();
        let ended = match self.serve(&conn, stop).await {
            Ended::Lost { reason, .. } => lost(reason, opened.elapsed() >= STABLE_AFTER),
            stopped => stopped,
        };
        self.streams.registry.link_down();
        if matches!(ended, Ended::Stopped) {
            conn.close(close::NORMAL, b"gateway no longer in the desired state");
        }
        ended
    }

    async fn serve(&self, conn: &quinn::Connection, stop: &mut watch::Receiver<()>) -> Ended {
        let mut draining = self.streams.registry.watch_draining();
        let (send, recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return lost(e.to_string(), false),
        };
        let mut drain = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let mut announce = Some(draining.borrow_and_update().clone());
        loop {
            if let Some(instances) = announce.take() {
                tracing::debug!(draining = instances.len(), "announcing the draining set");
                if let Err(e) = drain.send(&Message::Drain(Drain { instances })).await {
                    return lost(format!("drain stream: {e}"), false);
                }
            }
            tokio::select! {
                accepted = conn.accept_bi() => match accepted {
                    Ok((send, recv)) => {
                        let ctx = self.streams.clone();
                        tokio::spawn(tunnel::serve(ctx, send, recv).in_current_span());
                    }
                    Err(e) => return lost(e.to_string(), false),
                },
                changed = draining.changed() => {
                    if changed.is_err() {
                        return Ended::Stopped;
                    }
                    announce = Some(draining.borrow_and_update().clone());
                }
                _ = stop.changed() => return Ended::Stopped,
            }
        }
    }
}

fn lost(reason: String, stable: bool) -> Ended {
    Ended::Lost { reason, stable }
}
