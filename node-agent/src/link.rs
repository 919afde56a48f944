//! The node's one outbound session to the master: hello, heartbeats, probes, reconnects.
//!
//! Reconnects use exponential backoff with full jitter (0.5 s doubling to 30 s), reset after each
//! `welcome`. A node the master says is unknown or revoked stops reconnecting. The link state is
//! written to `link.json` in the data directory for `hearth-node status`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth_core::backoff::Backoff;
use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::messages::session::{Counters, Heartbeat, Hello};
use hearth_protocol::messages::state::DesiredStateAck;
use hearth_protocol::{
    DEFAULT_MAX_FRAME, Envelope, Message, PROTOCOL_VERSION, Resources, SecretKey,
};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
    close,
};
use serde::{Deserialize, Serialize};

use crate::now_ms;
use crate::reconcile::Event;
use crate::state::{Enrolment, NodeDir};
use crate::supervisor::Input;

/// What the link shares with the supervisor.
#[derive(Debug)]
pub struct Hooks {
    /// Desired states and link up/down go here.
    pub inputs: tokio::sync::mpsc::UnboundedSender<Input>,
    /// Messages to forward to the master.
    pub outbound: tokio::sync::mpsc::UnboundedReceiver<Message>,
    /// Instance summary for heartbeats.
    pub reports:
        tokio::sync::watch::Receiver<Vec<hearth_protocol::messages::state::InstanceReport>>,
    /// The current connection, for fetches.
    pub conn: tokio::sync::watch::Sender<Option<quinn::Connection>>,
}

/// Why the link stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Local setup failed.
    #[error("cannot set up the QUIC client: {0}")]
    Setup(String),
    /// The master no longer accepts this node.
    #[error(
        "the master refuses this node ({0}); it was revoked or retired, or its enrolment was removed"
    )]
    Refused(String),
}

/// Link state, as shown by `hearth-node status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// `connecting`, `connected`, `backoff` or `refused`.
    pub state: String,
    /// Master address.
    pub master: String,
    /// Sessions opened since start.
    pub sessions: u64,
    /// Last time a heartbeat was acknowledged (at the QUIC level, or by a `heartbeat_ack`), Unix
    /// ms; updated at each heartbeat tick.
    pub last_ack_ms: Option<u64>,
    /// Last error.
    pub last_error: Option<String>,
    /// Latest desired-state revision received.
    pub revision: u64,
}

/// How one session ended.
enum Ended {
    /// Shutdown requested.
    Shutdown,
    /// Lost or closed; reconnect. `established` says whether a welcome was received.
    Lost { established: bool, reason: String },
    /// Refused for good.
    Refused(String),
}

/// Runs the link until `shutdown` fires or the master refuses the node.
pub async fn run(
    dir: &NodeDir,
    enrolment: &Enrolment,
    key: &SecretKey,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut hooks: Hooks,
) -> Result<(), LinkError> {
    let identity =
        Identity::new(key, "hearth-node").map_err(|e| LinkError::Setup(e.to_string()))?;
    let tuning = TransportTuning::default();
    let config = client_config(Purpose::Session, Some(&identity), enrolment.master, &tuning)
        .map_err(|e| LinkError::Setup(e.to_string()))?;
    let bind = if enrolment.master_addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let endpoint = client_endpoint(bind).map_err(|e| LinkError::Setup(e.to_string()))?;
    let mut status = LinkStatus {
        master: enrolment.master_addr.to_string(),
        ..LinkStatus::default()
    };
    let mut failures = 0u32;
    loop {
        status.state = "connecting".into();
        write_status(dir, &status);
        let ended = session(
            &endpoint,
            config.clone(),
            enrolment,
            key,
            &mut status,
            dir,
            &mut shutdown,
            &mut hooks,
        )
        .await;
        let _ = hooks.conn.send(None);
        let _ = hooks.inputs.send(Input::Core(Event::LinkDown));
        match ended {
            Ended::Shutdown => {
                endpoint.close(close::NORMAL, b"node shutting down");
                let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
                return Ok(());
            }
            Ended::Refused(reason) => {
                status.state = "refused".into();
                status.last_error = Some(reason.clone());
                write_status(dir, &status);
                return Err(LinkError::Refused(reason));
            }
            Ended::Lost {
                established,
                reason,
            } => {
                failures = if established {
                    1
                } else {
                    failures.saturating_add(1)
                };
                let delay = backoff(failures);
                tracing::warn!(%reason, retry_in = ?delay, "link to master lost");
                status.state = "backoff".into();
                status.last_error = Some(reason);
                write_status(dir, &status);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(30 s, 0.5 s · 2^(n-1))]`.
/// (`hearth_core::backoff::Backoff::RECONNECT`, the jitter drawn here).
pub fn backoff(failures: u32) -> Duration {
    Backoff::RECONNECT.jittered(failures, rand::random::<f64>())
}

#[allow(clippy::too_many_arguments)]
async fn session(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    enrolment: &Enrolment,
    key: &SecretKey,
    status: &mut LinkStatus,
    dir: &NodeDir,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    hooks: &mut Hooks,
) -> Ended {
    let lost = |reason: String| Ended::Lost {
        established: false,
        reason,
    };
    let connecting = match endpoint.connect_with(config, enrolment.master_addr, SERVER_NAME) {
        Ok(c) => c,
        Err(e) => return lost(e.to_string()),
    };
    let conn = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return classify_close(&e).unwrap_or_else(|| lost(e.to_string())),
        Err(_) => return lost("connection attempt timed out".into()),
    };
    let (send, recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return classify_close(&e).unwrap_or_else(|| lost(e.to_string())),
    };
    let mut control = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    let hello = Hello {
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        node: enrolment.node,
        agent: enrolment.facts.agent.clone(),
        applied_revision: status.revision,
    };
    let envelope = Envelope {
        v: PROTOCOL_VERSION,
        message: Message::Hello(hello),
    };
    if let Err(e) = control.send_envelope(&envelope).await {
        return lost(e.to_string());
    }
    let interval = match tokio::time::timeout(Duration::from_secs(10), control.recv()).await {
        Ok(Ok(Some(Message::Welcome(w)))) => {
            Duration::from_millis(w.heartbeat_interval_ms.max(100))
        }
        Ok(Ok(Some(Message::Error(e)))) if e.fatal => {
            let reason = format!("{}: {}", e.code, e.message);
            return match e.code {
                hearth_protocol::ErrorCode::UnknownNode
                | hearth_protocol::ErrorCode::NodeRevoked => Ended::Refused(reason),
                _ => lost(reason),
            };
        }
        Ok(Ok(other)) => return lost(format!("expected welcome, got {other:?}")),
        Ok(Err(e)) => return classify_close_stream(&conn).unwrap_or_else(|| lost(e.to_string())),
        Err(_) => return lost("no welcome within 10 s".into()),
    };
    status.sessions += 1;
    status.state = "connected".into();
    status.last_error = None;
    write_status(dir, status);
    tracing::info!(master = %enrolment.master_addr, ?interval, "session open");
    let _ = hooks.conn.send(Some(conn.clone()));
    let _ = hooks.inputs.send(Input::Core(Event::LinkUp));
    let established = |reason: String| Ended::Lost {
        established: true,
        reason,
    };
    let mut tick = tokio::time::interval(interval);
    let mut seq = 0u64;
    let mut last_heard = Instant::now();
    let mut rx_seen = conn.stats().udp_rx.datagrams;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Any packet from the master (fetch data included) shows it is alive.
                let received = conn.stats().udp_rx.datagrams;
                if received != rx_seen {
                    rx_seen = received;
                    last_heard = Instant::now();
                    // The master acknowledges each heartbeat at the QUIC level (it sends no
                    // `heartbeat_ack` unless asked): a packet since the last tick is that answer.
                    status.last_ack_ms = Some(now_ms());
                }
                if last_heard.elapsed() > interval * 3 {
                    conn.close(close::NORMAL, b"master silent");
                    return established("nothing heard from the master for 3 heartbeat intervals".into());
                }
                seq += 1;
                let hb = Heartbeat {
                    seq,
                    used: Resources::default(),
                    applied_revision: status.revision,
                    instances: hooks.reports.borrow().clone(),
                    counters: Counters { sessions: status.sessions, ..Counters::default() },
                    ack: false,
                };
                if let Err(e) = control.send(&Message::Heartbeat(hb)).await {
                    return classify_close_stream(&conn).unwrap_or_else(|| established(e.to_string()));
                }
            }
            msg = control.recv() => {
                last_heard = Instant::now();
                match msg {
                    Ok(Some(Message::HeartbeatAck(_))) => {
                        status.last_ack_ms = Some(now_ms());
                    }
                    Ok(Some(Message::DesiredState(ds))) => {
                        let revision = ds.revision;
                        if revision > status.revision {
                            status.revision = revision;
                            write_status(dir, status);
                        }
                        let _ = hooks.inputs.send(Input::Core(Event::Desired(ds)));
                        let ack = Message::DesiredStateAck(DesiredStateAck { revision });
                        if control.send(&ack).await.is_err() {
                            return established("send failed".into());
                        }
                    }
                    Ok(Some(Message::AuditProbe(p))) => {
                        let answer = AuditAnswer::signed(&p, key);
                        if control.send(&Message::AuditAnswer(answer)).await.is_err() {
                            return established("send failed".into());
                        }
                    }
                    Ok(Some(Message::Error(e))) => {
                        tracing::warn!(code = %e.code, fatal = e.fatal, "master reported: {}", e.message);
                    }
                    Ok(Some(other)) => tracing::debug!(kind = other.type_tag(), "ignored message"),
                    Ok(None) => return established("master finished the control stream".into()),
                    Err(e) => return classify_close_stream(&conn).unwrap_or_else(|| established(e.to_string())),
                }
            }
            Some(out) = hooks.outbound.recv() => {
                if let Err(e) = control.send(&out).await {
                    return established(e.to_string());
                }
            }
            _ = shutdown.changed() => {
                conn.close(close::NORMAL, b"node shutting down");
                return Ended::Shutdown;
            }
        }
    }
}

/// Close codes 2 and 3 mean the master will not take this node back.
fn classify_close(e: &quinn::ConnectionError) -> Option<Ended> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == close::UNKNOWN_NODE || c.error_code == close::REVOKED =>
        {
            Some(Ended::Refused(format!(
                "closed by master: {}",
                String::from_utf8_lossy(&c.reason)
            )))
        }
        quinn::ConnectionError::TransportError(t) if t.reason.contains("certificate") => {
            Some(Ended::Lost {
                established: false,
                reason: format!("TLS refused: {t}"),
            })
        }
        _ => None,
    }
}

fn classify_close_stream(conn: &quinn::Connection) -> Option<Ended> {
    conn.close_reason().as_ref().and_then(classify_close)
}

fn write_status(dir: &NodeDir, status: &LinkStatus) {
    let path = dir.path().join("link.json");
    let tmp = dir.path().join("link.json.tmp");
    let Ok(text) = serde_json::to_vec_pretty(status) else {
        return;
    };
    if std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_err()
    {
        tracing::warn!(path = %path.display(), "cannot write link status");
    }
}
