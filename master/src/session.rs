//! The QUIC driver: accepts connections, runs enrolments and node sessions.
//!
//! One task per connection. A node's bad frames close that node's connection only; the lines
//! they log are rate-limited per connection.

use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::messages::overlay::OverlayRevision;
use hearth_protocol::messages::session::{HeartbeatAck, Hello, Welcome};
use hearth_protocol::{ALPN_ENROL, ALPN_SESSION, ErrorCode, Message, NodeId, PROTOCOL_VERSION};
use hearth_transport::cert::peer_key;
use hearth_transport::{MessageStream, StreamError, close};
use rustls::pki_types::CertificateDer;
use tracing::Instrument as _;

use crate::clock::now_ms;
use crate::context::Context;
use crate::enrol::enrol_reply;
use crate::fleet::Refusal;
use crate::ratelimit::LogLimiter;

/// Time a peer has to open its first stream and send its first message.
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// `fetch_metadata` streams (root files only) an enrolment connection may open before its
/// `enrol_request` (SPEC §7.2).
const MAX_ROOT_FETCHES: u32 = 4;
/// Recoverable bad frames tolerated in one session before it is closed.
const MAX_BAD_FRAMES: u32 = 10;

/// Accepts connections until the endpoint is closed.
pub async fn serve(endpoint: quinn::Endpoint, ctx: Arc<Context>) {
    let mut refused_log = LogLimiter::new(10, 60);
    while let Some(incoming) = endpoint.accept().await {
        let ctx = ctx.clone();
        let remote = incoming.remote_address();
        match incoming.accept() {
            Ok(connecting) => {
                tokio::spawn(async move {
                    match connecting.await {
                        Ok(conn) => handle(conn, ctx).await,
                        Err(e) => {
                            ctx.metrics.handshakes_refused.inc();
                            tracing::debug!(%remote, error = %e, "handshake failed");
                        }
                    }
                });
            }
            Err(e) => {
                if let Some(suppressed) = refused_log.allow(now_ms()) {
                    tracing::warn!(%remote, error = %e, suppressed, "connection refused");
                }
            }
        }
    }
}

async fn handle(conn: quinn::Connection, ctx: Arc<Context>) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    let node = conn
        .peer_identity()
        .and_then(|p| p.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| certs.first().and_then(|c| peer_key(c).ok()))
        .map(NodeId::from_key);
    let remote = conn.remote_address();
    match (alpn.as_deref(), node) {
        (Some(a), _) if a == ALPN_ENROL => {
            enrol(conn, &ctx)
                .instrument(tracing::info_span!("enrol", %remote))
                .await;
        }
        (Some(a), Some(node)) if a == ALPN_SESSION => {
            session(conn, node, &ctx)
                .instrument(tracing::info_span!("session", %node))
                .await;
        }
        (Some(a), None) if a == ALPN_SESSION => {
            conn.close(
                close::UNKNOWN_NODE,
                b"a session needs the node's enrolled certificate",
            );
        }
        _ => conn.close(close::PROTOCOL_ERROR, b"unsupported ALPN"),
    }
}

async fn enrol(conn: quinn::Connection, ctx: &Context) {
    // Root fetches first (at most MAX_ROOT_FETCHES, one stream each), then the request.
    let mut fetches = 0;
    let (mut stream, reply) = loop {
        let Ok(Ok((send, recv))) =
            tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, conn.accept_bi()).await
        else {
            conn.close(close::PROTOCOL_ERROR, b"no enrolment request");
            return;
        };
        let mut stream = MessageStream::new(send, recv, ctx.max_frame);
        match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, stream.recv()).await {
            Ok(Ok(Some(Message::EnrolRequest(req)))) => {
                break (stream, enrol_reply(ctx, *req).await);
            }
            Ok(Ok(Some(Message::FetchMetadata(m)))) if fetches < MAX_ROOT_FETCHES => {
                fetches += 1;
                let reply = if m.file.ends_with(".root.json") {
                    crate::fetch::metadata_reply(ctx, m.file)
                } else {
                    Message::error(
                        ErrorCode::NotFound,
                        "before enrolment only root metadata (`N.root.json`) is served",
                        false,
                    )
                };
                let _ = stream.send(&reply).await;
                let _ = stream.finish();
            }
            // A protocol error, not a refusal: the connection closes with code 1 (SPEC §3.5, §7.2).
            Ok(Ok(Some(other))) => {
                ctx.metrics.enrolment(ErrorCode::UnexpectedMessage.as_str());
                let msg = format!(
                    "an enrolment connection takes at most {MAX_ROOT_FETCHES} root fetches, then one enrol_request, not {}",
                    other.type_tag()
                );
                close_fatally(&conn, &mut stream, ErrorCode::UnexpectedMessage, &msg).await;
                return;
            }
            Ok(Err(StreamError::Frame(e))) => {
                ctx.metrics.frame_error(e.code().as_str());
                ctx.metrics.enrolment(e.code().as_str());
                close_fatally(&conn, &mut stream, e.code(), &e.to_string()).await;
                return;
            }
            _ => {
                conn.close(close::PROTOCOL_ERROR, b"no enrolment request");
                return;
            }
        }
    };
    if let Message::Error(e) = &reply {
        ctx.metrics.enrolment(e.code.as_str());
        let allowed = ctx
            .enrol_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(now_ms());
        if let Some(suppressed) = allowed {
            tracing::info!(code = %e.code, suppressed, "enrolment refused: {}", e.message);
        }
    } else {
        ctx.metrics.enrolment("accepted");
    }
    if stream.send(&reply).await.is_ok() && stream.finish().is_ok() {
        // Let the node read the answer and close; then make sure the connection ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    }
    conn.close(close::NORMAL, b"enrolment done");
}

/// Ends `conn` after a fatal protocol error met on `stream`: a fatal `error` with `code`, then
/// close code 1 (SPEC §3.5).
pub(crate) async fn close_fatally(
    conn: &quinn::Connection,
    stream: &mut MessageStream,
    code: ErrorCode,
    message: &str,
) {
    refuse(conn.clone(), stream, code, message, close::PROTOCOL_ERROR).await;
}

async fn session(conn: quinn::Connection, node: NodeId, ctx: &Arc<Context>) {
    let Ok(Ok((send, recv))) = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, conn.accept_bi()).await
    else {
        conn.close(close::PROTOCOL_ERROR, b"no control stream");
        return;
    };
    let mut control = MessageStream::new(send, recv, ctx.max_frame);
    control.set_priority(1);
    let hello = match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, control.recv()).await {
        Ok(Ok(Some(Message::Hello(hello)))) => hello,
        Ok(Err(StreamError::Frame(e))) => {
            ctx.metrics.frame_error(e.code().as_str());
            let code = if e.code() == ErrorCode::UnsupportedVersion {
                close::UNSUPPORTED_VERSION
            } else {
                close::PROTOCOL_ERROR
            };
            refuse(conn, &mut control, e.code(), &e.to_string(), code).await;
            return;
        }
        _ => {
            let msg = "a session starts with hello";
            refuse(
                conn,
                &mut control,
                ErrorCode::UnexpectedMessage,
                msg,
                close::PROTOCOL_ERROR,
            )
            .await;
            return;
        }
    };
    if let Err((code, msg, close_code)) = check_hello(&hello, &node) {
        refuse(conn, &mut control, code, &msg, close_code).await;
        return;
    }
    let (outbox, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    let (session, superseded, transition) =
        match ctx
            .fleet
            .open_session(&node, conn.clone(), outbox, now_ms())
        {
            Ok(opened) => opened,
            Err(Refusal::Unknown) => {
                refuse(
                    conn,
                    &mut control,
                    ErrorCode::UnknownNode,
                    "not enrolled",
                    close::UNKNOWN_NODE,
                )
                .await;
                return;
            }
            Err(Refusal::Revoked) => {
                refuse(
                    conn,
                    &mut control,
                    ErrorCode::NodeRevoked,
                    "revoked",
                    close::REVOKED,
                )
                .await;
                return;
            }
        };
    if let Some(old) = superseded {
        old.close(
            close::SUPERSEDED,
            b"a newer session of this node replaced this one",
        );
    }
    if let Some(t) = transition {
        tracing::info!(from = t.from, to = t.to, "node liveness");
    }
    tracing::info!(agent = %hello.agent, remote = %conn.remote_address(), "session open");
    let welcome = Welcome {
        version: PROTOCOL_VERSION,
        master: ctx.id,
        heartbeat_interval_ms: ms(ctx.fleet.config().heartbeat_interval),
        server_time_ms: now_ms(),
    };
    if control.send(&Message::Welcome(welcome)).await.is_ok()
        && send_desired_state(ctx, &mut control, node).await
        && let Some(held) = send_overlay(ctx, &mut control, hello.overlay).await
    {
        crate::uptime::standing::session_opened(ctx, &node);
        let mut s = Session {
            conn: &conn,
            node,
            id: session,
            overlay: held,
        };
        run_session(&mut s, &mut control, &mut inbox, ctx).await;
    }
    ctx.fleet.close_session(&node, session);
    ctx.overlay.holdings.session_ended(&node, session);
    tracing::info!(reason = ?conn.close_reason(), "session closed");
}

fn check_hello(hello: &Hello, node: &NodeId) -> Result<(), (ErrorCode, String, quinn::VarInt)> {
    if hello.node != *node {
        let msg = format!("hello names {} but the certificate is {node}", hello.node);
        return Err((ErrorCode::IdentityMismatch, msg, close::PROTOCOL_ERROR));
    }
    if hello.min_version > PROTOCOL_VERSION || hello.max_version < PROTOCOL_VERSION {
        let msg = format!(
            "node speaks versions {}..={}, this master speaks {PROTOCOL_VERSION}",
            hello.min_version, hello.max_version
        );
        return Err((
            ErrorCode::UnsupportedVersion,
            msg,
            close::UNSUPPORTED_VERSION,
        ));
    }
    Ok(())
}

/// Sends the node's current desired state, if it has one. False if the stream failed.
async fn send_desired_state(ctx: &Arc<Context>, control: &mut MessageStream, node: NodeId) -> bool {
    let shared = ctx.clone();
    match tokio::task::spawn_blocking(move || crate::overlay::peers::desired_state(&shared, &node))
        .await
    {
        Ok(Ok(ds)) if ds.revision > 0 => control.send(&Message::DesiredState(ds)).await.is_ok(),
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot load desired state");
            true
        }
        Err(_) => true,
    }
}

/// Sends the `overlay` messages that bring the node from the member set its `hello` names to
/// the current one (SPEC §16.2); the revision the node then holds, or `None` if the stream failed.
/// The session is registered in the fleet already, so a change made meanwhile is also queued
/// on its outbox; [`run_session`] drops what this already covered.
async fn send_overlay(
    ctx: &Context,
    control: &mut MessageStream,
    held: Option<OverlayRevision>,
) -> Option<Option<OverlayRevision>> {
    let mut now = held;
    for m in ctx.overlay.catch_up(held) {
        now = Some(m.revision);
        control.send(&Message::Overlay(m)).await.ok()?;
    }
    Some(now)
}

/// One node's session, as [`run_session`] drives it.
struct Session<'a> {
    conn: &'a quinn::Connection,
    node: NodeId,
    id: u64,
    /// The member set the node holds, as sent on this session.
    overlay: Option<OverlayRevision>,
}

impl Session<'_> {
    /// Whether a queued message is still to be sent: an `overlay` delta the session's first
    /// messages already covered is not.
    fn wants(&mut self, out: &Message) -> bool {
        let Message::Overlay(o) = out else {
            return true;
        };
        let stale = self
            .overlay
            .is_some_and(|h| h.epoch == o.revision.epoch && h.seq >= o.revision.seq);
        if !stale {
            self.overlay = Some(o.revision);
        }
        !stale
    }
}

async fn run_session(
    s: &mut Session<'_>,
    control: &mut MessageStream,
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Message>,
    ctx: &Arc<Context>,
) {
    let (conn, node, session) = (s.conn, s.node, s.id);
    let mut log = LogLimiter::new(5, 10);
    let mut bad_frames = 0u32;
    let mut last_seq = 0u64;
    loop {
        let received = tokio::select! {
            r = control.recv() => r,
            Some(out) = inbox.recv() => {
                if s.wants(&out) && control.send(&out).await.is_err() {
                    return;
                }
                continue;
            }
            bi = conn.accept_bi() => {
                let Ok((send, recv)) = bi else { return };
                let ctx = ctx.clone();
                let stream = MessageStream::new(send, recv, ctx.max_frame);
                let conn = conn.clone();
                tokio::spawn(async move {
                    crate::fetch::serve_fetch(&ctx, &conn, node, stream).await;
                });
                continue;
            }
        };
        let reply = match received {
            Ok(Some(Message::Heartbeat(hb))) => {
                if ctx.fleet.heartbeat(&node, session, now_ms()).is_none() {
                    return; // superseded or revoked meanwhile
                }
                ctx.metrics.heartbeats.inc();
                if hb.seq <= last_seq && log.allow(now_ms()).is_some() {
                    tracing::warn!(seq = hb.seq, last_seq, "heartbeat sequence went backwards");
                }
                last_seq = hb.seq;
                // Only on request: the QUIC acknowledgement already answers (SPEC.md §8.4).
                hb.ack
                    .then_some(Message::HeartbeatAck(HeartbeatAck { seq: hb.seq }))
            }
            Ok(Some(Message::DesiredStateAck(_))) => None,
            Ok(Some(Message::Holdings(h))) => ctx
                .overlay
                .holdings
                .report(node, session, h)
                .err()
                .map(|e| Message::error(ErrorCode::InvalidMessage, e.to_string(), false)),
            Ok(Some(Message::InstanceStatus(status))) => {
                tracing::debug!(instance = %status.report.instance, state = ?status.report.state, "instance status");
                if ctx.store.shared() {
                    ctx.cluster.report(&node, &status);
                }
                ctx.fleet.record_status(&node, status);
                None
            }
            Ok(Some(Message::SnapshotReport(report))) => {
                let shared = ctx.clone();
                let answer = tokio::task::spawn_blocking(move || {
                    crate::backups::report(&shared, &node, report)
                })
                .await;
                match answer {
                    Ok(Ok(None)) => None,
                    Ok(Ok(Some(refusal))) => {
                        if let (Message::Error(e), Some(suppressed)) =
                            (&refusal, log.allow(now_ms()))
                        {
                            tracing::warn!(code = %e.code, suppressed, "snapshot report refused: {}", e.message);
                        }
                        Some(refusal)
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not store a snapshot report");
                        Some(Message::error(
                            ErrorCode::Internal,
                            "the master could not store the snapshot report; send it again later",
                            false,
                        ))
                    }
                    Err(_) => None,
                }
            }
            Ok(Some(Message::UsageReport(report))) => {
                Some(ctx.settlement.settle(&ctx.ledger, node, report).await)
            }
            Ok(Some(Message::AuditAnswer(answer))) => {
                let probe = answer.probe;
                let unclaimed = ctx.probes.answered(&node, answer);
                if unclaimed.is_some_and(|a| !ctx.uptime.answered(node, a))
                    && log.allow(now_ms()).is_some()
                {
                    tracing::warn!(probe, "answer to no probe of this node's that is waiting");
                }
                None
            }
            // Informative (SPEC §8.4): e.g. `unknown_message_type` from a node that predates a
            // message such as `standing`. Never answered, so two peers cannot loop on errors.
            Ok(Some(Message::Error(e))) => {
                if log.allow(now_ms()).is_some() {
                    tracing::debug!(code = %e.code, "node reported: {}", e.message);
                }
                None
            }
            Ok(Some(other)) => Some(Message::error(
                ErrorCode::UnexpectedMessage,
                format!(
                    "`{}` is not accepted from a node in a session",
                    other.type_tag()
                ),
                false,
            )),
            Ok(None) => {
                conn.close(close::NORMAL, b"control stream finished");
                return;
            }
            Err(StreamError::Frame(e)) => {
                ctx.metrics.frame_error(e.code().as_str());
                bad_frames += 1;
                if let Some(suppressed) = log.allow(now_ms()) {
                    tracing::warn!(error = %e, suppressed, "bad frame from node");
                }
                if !e.is_recoverable() || bad_frames > MAX_BAD_FRAMES {
                    let msg = e.to_string();
                    refuse(conn.clone(), control, e.code(), &msg, close::PROTOCOL_ERROR).await;
                    return;
                }
                Some(Message::error(e.code(), e.to_string(), false))
            }
            Err(_) => return, // connection lost
        };
        if let Some(reply) = reply
            && control.send(&reply).await.is_err()
        {
            return;
        }
    }
}

async fn refuse(
    conn: quinn::Connection,
    control: &mut MessageStream,
    code: ErrorCode,
    message: &str,
    close_code: quinn::VarInt,
) {
    tracing::info!(%code, "closing the connection: {message}");
    let _ = control.send(&Message::error(code, message, true)).await;
    let _ = control.finish();
    // A close discards unacknowledged stream data: give the peer a moment to read the error.
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
    conn.close(close_code, message.as_bytes());
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
