//! The node's one outbound session to the master: the driver of `hearth_core::link`.
//!
//! The core decides (hello, welcome, heartbeats, silence, desired-state acks, probe answers,
//! which master address to dial next, exponential backoff with full jitter, 0.5 s doubling to
//! 30 s, once a whole round of addresses failed, reset after each `welcome`, and stopping for
//! good when the master says the node is unknown or revoked); this driver owns the QUIC
//! connection, the timers (heartbeats, and the silence checks between them) and the jitter,
//! and stores a new list of master addresses from a desired state in `enrolment.json`. The link
//! state is written to `link.json` in the data directory for `hearth-node status`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearth_core::backoff::Backoff;
use hearth_core::link::{Action, Event as LinkEvent, Link, Phase, check_ms};
use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::messages::standing::Standing;
use hearth_protocol::{DEFAULT_MAX_FRAME, Message, SecretKey};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
    close,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::gateway::settle::Answer;
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
    /// The usage reporter's answers (`settlement`, or the master's refusal of a report).
    pub usage: Option<tokio::sync::mpsc::UnboundedSender<crate::gateway::settle::Answer>>,
    /// The overlay (`None` with `--overlay off`): `overlay` messages are applied to it, its
    /// revision goes in each `hello`, and the replica peers of desired states are kept linked.
    pub overlay: Option<crate::overlay::Overlay>,
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
    /// The master address in use (connected to, or tried next).
    pub master: String,
    /// Every master address the link may use, in the order tried.
    #[serde(default)]
    pub masters: Vec<String>,
    /// Sessions opened since start.
    pub sessions: u64,
    /// Last time a heartbeat was acknowledged (at the QUIC level, or by a `heartbeat_ack`), Unix
    /// ms; updated at each heartbeat tick.
    pub last_ack_ms: Option<u64>,
    /// Last error.
    pub last_error: Option<String>,
    /// Latest desired-state revision received.
    pub revision: u64,
    /// The latest uptime standing the master sent (SPEC §9.19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<Standing>,
}

/// How one session ended.
enum Ended {
    /// Shutdown requested.
    Shutdown,
    /// Lost or closed; `refused` when closed with close code 2 or 3.
    Lost { reason: String, refused: bool },
    /// The core stopped the link: the master refuses this node.
    Refused(String),
}

/// How long a QUIC handshake may take: with other masters to try, the next one is tried
/// sooner (a dead address answers nothing, it only times out).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT_SEVERAL: Duration = Duration::from_secs(5);

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
    let masters = enrolment
        .masters()
        .map_err(|e| LinkError::Setup(e.to_string()))?;
    let mut endpoints = Endpoints::default();
    endpoints
        .for_addr(masters.current())
        .map_err(|e| LinkError::Setup(e.to_string()))?;
    let mut enrolment = enrolment.clone();
    let mut status = LinkStatus {
        master: masters.current().to_string(),
        masters: masters.addrs().iter().map(ToString::to_string).collect(),
        ..LinkStatus::default()
    };
    let clock = Clock(Instant::now());
    let mut link = Link::with_masters(enrolment.node, enrolment.facts.agent.clone(), masters);
    loop {
        if let Some(overlay) = &hooks.overlay {
            link.set_overlay_revision(overlay.revision());
        }
        link.step(clock.ms(), LinkEvent::Start);
        let Some(addr) = link.master() else {
            return Err(LinkError::Setup("no master address".into()));
        };
        let several = link.masters().is_some_and(|m| m.len() > 1);
        status.master = addr.to_string();
        status.state = link.state().into();
        write_status(dir, &status);
        let ended = match endpoints.for_addr(addr) {
            Ok(endpoint) => {
                let mut driver = Session {
                    link: &mut link,
                    clock: &clock,
                    key,
                    status: &mut status,
                    dir,
                    enrolment: &mut enrolment,
                    hooks: &mut hooks,
                };
                let connect = if several {
                    CONNECT_TIMEOUT_SEVERAL
                } else {
                    CONNECT_TIMEOUT
                };
                driver
                    .run(&endpoint, config.clone(), addr, connect, &mut shutdown)
                    .instrument(tracing::info_span!("link", master = %addr))
                    .await
            }
            Err(e) => lost(e.to_string()),
        };
        let _ = hooks.conn.send(None);
        let _ = hooks.inputs.send(Input::Core(Event::LinkDown));
        let (reason, refused) = match ended {
            Ended::Shutdown => {
                endpoints.close().await;
                return Ok(());
            }
            Ended::Refused(reason) => (reason, true),
            Ended::Lost { reason, refused } => (reason, refused),
        };
        let jitter = rand::random::<f64>();
        let mut delay = None;
        if link.phase() != &Phase::Refused {
            for action in link.step(
                clock.ms(),
                LinkEvent::Lost {
                    reason: reason.clone(),
                    refused,
                    jitter,
                },
            ) {
                if let Action::Retry { delay_ms, .. } = action {
                    delay = Some(Duration::from_millis(delay_ms));
                }
            }
        }
        let Some(delay) = delay else {
            status.state = link.state().into();
            status.last_error = Some(reason.clone());
            write_status(dir, &status);
            return Err(LinkError::Refused(reason));
        };
        let next = link.master().map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(master = %addr, %reason, %next, retry_in = ?delay, "link to master lost");
        status.state = link.state().into();
        status.last_error = Some(format!("{addr}: {reason}"));
        write_status(dir, &status);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {
                endpoints.close().await;
                return Ok(());
            }
        }
    }
}

/// The client endpoints, one per address family, bound when first needed (a list may mix
/// IPv4 and IPv6 masters).
#[derive(Debug, Default)]
struct Endpoints {
    v4: Option<quinn::Endpoint>,
    v6: Option<quinn::Endpoint>,
}

impl Endpoints {
    fn for_addr(
        &mut self,
        addr: SocketAddr,
    ) -> Result<quinn::Endpoint, hearth_transport::EndpointError> {
        let (slot, bind) = if addr.is_ipv4() {
            (&mut self.v4, SocketAddr::from(([0, 0, 0, 0], 0)))
        } else {
            (&mut self.v6, SocketAddr::from(([0u16; 8], 0)))
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = client_endpoint(bind)?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// Closes both (normal close) and waits up to 2 s for the closes to be sent.
    async fn close(&self) {
        for endpoint in [&self.v4, &self.v6].into_iter().flatten() {
            endpoint.close(close::NORMAL, b"node shutting down");
            let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        }
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(30 s, 0.5 s · 2^(n-1))]`
/// (`hearth_core::backoff::Backoff::RECONNECT`, the jitter drawn here).
pub fn backoff(failures: u32) -> Duration {
    Backoff::RECONNECT.jittered(failures, rand::random::<f64>())
}

/// The link's monotonic clock, ms since the link started.
struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// One session's driver: executes the core's actions on the connection.
struct Session<'a> {
    link: &'a mut Link,
    clock: &'a Clock,
    key: &'a SecretKey,
    status: &'a mut LinkStatus,
    dir: &'a NodeDir,
    /// The stored enrolment, rewritten when the master sends a new list of addresses.
    enrolment: &'a mut Enrolment,
    hooks: &'a mut Hooks,
}

/// What a batch of actions asks of the session loop.
enum Next {
    /// Carry on.
    Continue,
    /// The session is open: heartbeat at this interval, ms.
    Up(u64),
    /// The session is over.
    End(Ended),
}

impl Session<'_> {
    async fn run(
        &mut self,
        endpoint: &quinn::Endpoint,
        config: quinn::ClientConfig,
        addr: SocketAddr,
        connect: Duration,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Ended {
        let connecting = match endpoint.connect_with(config, addr, SERVER_NAME) {
            Ok(c) => c,
            Err(e) => return lost(e.to_string()),
        };
        let conn = match tokio::time::timeout(connect, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return classify_close(&e).unwrap_or_else(|| lost(e.to_string())),
            Err(_) => return lost(format!("connection attempt timed out after {connect:?}")),
        };
        let (send, recv) = match conn.open_bi().await {
            Ok(s) => s,
            Err(e) => return classify_close(&e).unwrap_or_else(|| lost(e.to_string())),
        };
        let mut control = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let hello = self.step(LinkEvent::Opened {
            rx: conn.stats().udp_rx.datagrams,
        });
        if let Next::End(ended) = self.perform(hello, &conn, &mut control).await {
            return ended;
        }
        let welcome = match tokio::time::timeout(Duration::from_secs(10), control.recv()).await {
            Ok(Ok(Some(message))) => self.step(LinkEvent::Received(message)),
            Ok(Ok(None)) => return lost("expected welcome, got None".into()),
            Ok(Err(e)) => {
                return classify_close_stream(&conn).unwrap_or_else(|| lost(e.to_string()));
            }
            Err(_) => return lost("no welcome within 10 s".into()),
        };
        let interval_ms = match self.perform(welcome, &conn, &mut control).await {
            Next::Up(interval_ms) => interval_ms,
            Next::End(ended) => return ended,
            Next::Continue => return lost("no session after the welcome".into()),
        };
        let interval = Duration::from_millis(interval_ms);
        tracing::info!(?interval, "session open");
        let mut tick = tokio::time::interval(interval);
        // Between heartbeats, look for packets from the master often enough to see it silent
        // within a tenth of the silence the core allows (SPEC §8.6).
        let mut check = tokio::time::interval(Duration::from_millis(check_ms(interval_ms)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let actions = tokio::select! {
                _ = tick.tick() => {
                    let instances = self.hooks.reports.borrow().clone();
                    self.step(LinkEvent::Tick { rx: conn.stats().udp_rx.datagrams, instances })
                }
                _ = check.tick() => self.step(LinkEvent::Check { rx: conn.stats().udp_rx.datagrams }),
                msg = control.recv() => match msg {
                    Ok(Some(message)) => self.step(LinkEvent::Received(message)),
                    Ok(None) => return lost("master finished the control stream".into()),
                    Err(e) => return classify_close_stream(&conn).unwrap_or_else(|| lost(e.to_string())),
                },
                Some(out) = self.hooks.outbound.recv() => vec![Action::Send(out)],
                _ = shutdown.changed() => {
                    conn.close(close::NORMAL, b"node shutting down");
                    return Ended::Shutdown;
                }
            };
            if let Next::End(ended) = self.perform(actions, &conn, &mut control).await {
                return ended;
            }
        }
    }

    /// Applies an `overlay` message; the next `hello` names the revision then held (none
    /// after a gap, so the master sends the full set).
    fn apply_overlay(&mut self, m: &hearth_protocol::messages::overlay::Overlay) {
        let Some(overlay) = &self.hooks.overlay else {
            tracing::debug!("overlay off: member set ignored");
            return;
        };
        match overlay.apply(m) {
            Ok(rev) => tracing::info!(
                epoch = rev.epoch,
                seq = rev.seq,
                full = m.full,
                relays = m.relays.len(),
                "overlay member set applied"
            ),
            Err(e) => tracing::warn!(error = %e, "overlay message not applied"),
        }
        self.link.set_overlay_revision(overlay.revision());
    }

    /// Takes the master's list of addresses (`DesiredState.masters`): stored when it differs,
    /// used from the next attempt on; a bad list is logged and ignored.
    async fn adopt_masters(&mut self, addrs: Vec<SocketAddr>) {
        match self.link.set_masters(addrs.clone()) {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(masters = ?addrs, "the master sent a new list of master addresses");
                self.status.masters = addrs.iter().map(ToString::to_string).collect();
                write_status(self.dir, self.status);
                self.enrolment.master_addrs = addrs;
                let (dir, enrolment) = (self.dir.clone(), self.enrolment.clone());
                match tokio::task::spawn_blocking(move || dir.save_enrolment(&enrolment)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot store the master addresses"),
                    Err(e) => tracing::warn!(error = %e, "cannot store the master addresses"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "master addresses in the desired state ignored"),
        }
    }

    fn step(&mut self, event: LinkEvent) -> Vec<Action> {
        self.link.step(self.clock.ms(), event)
    }

    /// Executes the core's actions.
    async fn perform(
        &mut self,
        actions: Vec<Action>,
        conn: &quinn::Connection,
        control: &mut MessageStream,
    ) -> Next {
        let mut next = Next::Continue;
        for action in actions {
            match action {
                Action::Send(message) => {
                    if let Err(e) = control.send(&message).await {
                        return Next::End(
                            classify_close_stream(conn).unwrap_or_else(|| lost(e.to_string())),
                        );
                    }
                }
                Action::Up { interval_ms } => {
                    self.status.sessions = self.link.sessions();
                    self.status.state = self.link.state().into();
                    self.status.last_error = None;
                    write_status(self.dir, self.status);
                    let _ = self.hooks.conn.send(Some(conn.clone()));
                    let _ = self.hooks.inputs.send(Input::Core(Event::LinkUp));
                    next = Next::Up(interval_ms);
                }
                Action::Desired(ds) => {
                    if !ds.masters.is_empty() {
                        self.adopt_masters(ds.masters.iter().map(|a| a.get()).collect())
                            .await;
                    }
                    if ds.revision > self.status.revision {
                        self.status.revision = ds.revision;
                        write_status(self.dir, self.status);
                    }
                    if let Some(overlay) = &self.hooks.overlay {
                        overlay.want_links(crate::overlay::replica_peers(&ds));
                    }
                    let _ = self.hooks.inputs.send(Input::Core(Event::Desired(ds)));
                }
                Action::AnswerProbe(p) => {
                    let answer = AuditAnswer::signed(&p, self.key);
                    if control.send(&Message::AuditAnswer(answer)).await.is_err() {
                        return Next::End(lost("send failed".into()));
                    }
                }
                Action::Acked => self.status.last_ack_ms = Some(now_ms()),
                Action::Ignored(Message::Settlement(s)) => {
                    if let Some(usage) = &self.hooks.usage {
                        let _ = usage.send(Answer::Settled(s));
                    }
                }
                Action::Ignored(Message::Overlay(m)) => self.apply_overlay(&m),
                Action::Ignored(Message::Standing(s)) => {
                    tracing::info!(
                        standing = s.standing.as_str(),
                        score_ppm = s.score_ppm,
                        "standing: {}",
                        s.reason
                    );
                    self.status.standing = Some(s);
                    write_status(self.dir, self.status);
                }
                Action::Ignored(Message::Error(e)) => {
                    tracing::warn!(code = %e.code, fatal = e.fatal, "master reported: {}", e.message);
                    // Errors name no request: one about `usage_report` answers the open report.
                    if e.message.contains("usage_report")
                        && let Some(usage) = &self.hooks.usage
                    {
                        let _ = usage.send(Answer::Refused(format!("{}: {}", e.code, e.message)));
                    }
                }
                Action::Ignored(other) => {
                    tracing::debug!(kind = other.type_tag(), "ignored message")
                }
                Action::Close(reason) => {
                    if matches!(self.link.phase(), Phase::Connected { .. }) {
                        conn.close(close::NORMAL, b"master silent");
                    }
                    return Next::End(lost(reason));
                }
                Action::Refused(reason) => return Next::End(Ended::Refused(reason)),
                // Connecting and waiting are the outer loop's.
                Action::Connect | Action::Retry { .. } => {}
            }
        }
        next
    }
}

fn lost(reason: String) -> Ended {
    Ended::Lost {
        reason,
        refused: false,
    }
}

/// Close codes 2 and 3 mean the master will not take this node back.
fn classify_close(e: &quinn::ConnectionError) -> Option<Ended> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == close::UNKNOWN_NODE || c.error_code == close::REVOKED =>
        {
            Some(Ended::Lost {
                reason: format!("closed by master: {}", String::from_utf8_lossy(&c.reason)),
                refused: true,
            })
        }
        quinn::ConnectionError::TransportError(t) if t.reason.contains("certificate") => {
            Some(lost(format!("TLS refused: {t}")))
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
