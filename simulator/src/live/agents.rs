//! Live agents: one tokio task per enrolled key keeps a real session with the master, driving
//! the agent's own link core (`hearth_core::link::Link`, as `hearth_node_agent::link` does): mutual-TLS QUIC, `hello` → `welcome`, a
//! heartbeat at the interval the welcome gives (the first at once; no `heartbeat_ack` asked), a
//! `desired_state_ack` for each `desired_state`, a signed `audit_answer` for each `audit_probe`;
//! the session is given up when the link core finds the master silent (4/3 of a heartbeat interval
//! without a packet, looked at each heartbeat, and between them every `check_ms` when
//! [`AgentsConfig::silence_checks`] is on, as the agent does), and reconnects use the agent's own
//! full-jitter backoff (`Backoff::RECONNECT`), moving through the master addresses as the agent
//! does (each agent's list starts at the master it was enrolled through; the lists the masters
//! send in desired states are adopted). Close codes 2 and 3 (unknown, revoked) stop an agent for
//! good. Agents run no instances.
//!
//! Sessions share a few client UDP endpoints (a real agent has one each) so that 10,000 agents
//! fit in one process's file limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_core::link::{Action, Event as LinkEvent, Link, Masters, Phase, check_ms};
use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::{DEFAULT_MAX_FRAME, MasterId, Message, NodeId, SecretKey};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
    close,
};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Connection and welcome timeouts, as the agent's.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the agents could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    /// A client endpoint could not be bound.
    #[error("cannot bind a client UDP endpoint: {0}; raise the open-files limit (ulimit -n)")]
    Endpoint(#[from] hearth_transport::EndpointError),
    /// The master addresses are not a valid list.
    #[error("master addresses: {0}")]
    Masters(#[from] hearth_core::link::MastersError),
}

/// How the agents behave.
#[derive(Debug, Clone)]
pub struct AgentsConfig {
    /// Client UDP endpoints the sessions are spread over.
    pub endpoints: usize,
    /// QUIC handshakes (connect to `welcome`) in flight at once in this process.
    pub max_handshakes: usize,
    /// Check for a silent master between heartbeats too (every `check_ms`, as the agent does),
    /// not only at each heartbeat: a dead master is then left within 4/3 of an interval.
    pub silence_checks: bool,
}

/// Counters of the running agents, summed over all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AgentCounters {
    /// Sessions open now (welcome received, not yet lost).
    pub connected: u64,
    /// Welcomes received (sessions opened).
    pub welcomes: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// `desired_state` messages received (each acknowledged).
    pub desired_states: u64,
    /// `audit_probe` messages answered.
    pub probes: u64,
    /// Sessions lost after a welcome.
    pub lost: u64,
    /// Of those, lost because the master reset the connection (a restarted master answers a
    /// packet of its predecessor's connection with a stateless reset).
    pub lost_by_reset: u64,
    /// Of those, given up as silent (the link core's silence, seen at a heartbeat tick).
    pub lost_silent: u64,
    /// Connection attempts that failed before a welcome.
    pub failed_attempts: u64,
    /// Agents the master refused for good.
    pub refused: u64,
}

/// The running agents; aborted on drop.
#[derive(Debug)]
pub struct Agents {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Agents {
    /// Starts one task per key against the masters at `masters` (all of them `master`, sharing
    /// one key), each key's agent starting at the address of the index it is paired with.
    pub fn spawn(
        keys: Vec<(SecretKey, usize)>,
        masters: &[SocketAddr],
        master: MasterId,
        config: &AgentsConfig,
    ) -> Result<Self, AgentsError> {
        Masters::new(masters.to_vec())?;
        let endpoints = (0..config.endpoints.max(1))
            .map(|_| client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0))))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared::new(keys.len(), masters.to_vec()));
        let gate = Arc::new(Semaphore::new(config.max_handshakes.max(1)));
        let mut tasks = Vec::with_capacity(keys.len());
        for (index, ((key, first), endpoint)) in
            keys.into_iter().zip(endpoints.iter().cycle()).enumerate()
        {
            let mut list = masters.to_vec();
            list.rotate_left(first % masters.len());
            let agent = Agent {
                index,
                key,
                masters: Masters::new(list)?,
                master,
                endpoint: endpoint.clone(),
                gate: gate.clone(),
                shared: shared.clone(),
                silence_checks: config.silence_checks,
            };
            tasks.push(tokio::spawn(agent.run()));
        }
        Ok(Self { shared, tasks })
    }

    /// The agents whose session is open with the master at `addr` now.
    pub fn connected_to(&self, addr: SocketAddr) -> Vec<usize> {
        let s = &self.shared;
        let Some(want) = s.masters.iter().position(|a| *a == addr) else {
            return Vec::new();
        };
        s.at.iter()
            .enumerate()
            .filter(|(_, at)| at.load(Ordering::Relaxed) == want as u64 + 1)
            .map(|(i, _)| i)
            .collect()
    }

    /// For each agent of `which` that received a welcome at or after `mark`, how long after
    /// `mark` its latest welcome came.
    pub fn welcomed_since_of(&self, which: &[usize], mark: Instant) -> Vec<Duration> {
        let s = &self.shared;
        which
            .iter()
            .filter_map(|i| s.welcomed.get(*i))
            .filter_map(|t| s.after(t, mark))
            .collect()
    }

    /// The counters now.
    pub fn counters(&self) -> AgentCounters {
        let s = &self.shared;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AgentCounters {
            connected: get(&s.connected),
            welcomes: get(&s.welcomes),
            heartbeats: get(&s.heartbeats),
            desired_states: get(&s.desired_states),
            probes: get(&s.probes),
            lost: get(&s.lost),
            lost_by_reset: get(&s.lost_by_reset),
            lost_silent: get(&s.lost_silent),
            failed_attempts: get(&s.failed_attempts),
            refused: get(&s.refused),
        }
    }

    /// For each agent that received a welcome at or after `mark`, how long after `mark` its
    /// latest welcome came.
    pub fn welcomed_since(&self, mark: Instant) -> Vec<Duration> {
        self.shared.since(&self.shared.welcomed, mark)
    }

    /// For each agent that lost its session at or after `mark`, how long after `mark` it did.
    pub fn lost_since(&self, mark: Instant) -> Vec<Duration> {
        self.shared.since(&self.shared.lost_at, mark)
    }

    /// Instances assigned to the agents by their latest desired states, summed.
    pub fn assignments_held(&self) -> u64 {
        self.shared
            .assigned
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Agents whose latest desired state assigns them at least one instance.
    pub fn agents_with_work(&self) -> usize {
        let s = &self.shared;
        s.assigned
            .iter()
            .filter(|a| a.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Agents with work whose latest desired state came at or after `mark`.
    pub fn work_delivered_since(&self, mark: Instant) -> usize {
        let s = &self.shared;
        s.assigned
            .iter()
            .zip(&s.desired_at)
            .filter(|(a, t)| a.load(Ordering::Relaxed) > 0 && s.after(t, mark).is_some())
            .count()
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there are no agents.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// State shared by the agents' tasks: counters, and per agent the time of its latest welcome and
/// of its latest lost session (microseconds since `start`, plus one; 0 = never).
#[derive(Debug)]
struct Shared {
    start: Instant,
    connected: AtomicU64,
    welcomes: AtomicU64,
    heartbeats: AtomicU64,
    desired_states: AtomicU64,
    probes: AtomicU64,
    lost: AtomicU64,
    lost_by_reset: AtomicU64,
    lost_silent: AtomicU64,
    failed_attempts: AtomicU64,
    refused: AtomicU64,
    welcomed: Vec<AtomicU64>,
    lost_at: Vec<AtomicU64>,
    /// Per agent: time of its latest `desired_state`, and the instances it assigned.
    desired_at: Vec<AtomicU64>,
    assigned: Vec<AtomicU64>,
    /// The master addresses, and per agent the one its open session is with (index + 1; 0 =
    /// none).
    masters: Vec<SocketAddr>,
    at: Vec<AtomicU64>,
}

impl Shared {
    fn new(n: usize, masters: Vec<SocketAddr>) -> Self {
        let times = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            start: Instant::now(),
            connected: AtomicU64::new(0),
            welcomes: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            desired_states: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_by_reset: AtomicU64::new(0),
            lost_silent: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            welcomed: times(),
            lost_at: times(),
            desired_at: times(),
            assigned: times(),
            masters,
            at: times(),
        }
    }

    fn stamp(&self, times: &[AtomicU64], index: usize) {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(t) = times.get(index) {
            t.store(us.saturating_add(1), Ordering::Relaxed);
        }
    }

    fn since(&self, times: &[AtomicU64], mark: Instant) -> Vec<Duration> {
        times.iter().filter_map(|t| self.after(t, mark)).collect()
    }

    /// How long after `mark` the stamp `t` was taken; None if never or before `mark`.
    fn after(&self, t: &AtomicU64, mark: Instant) -> Option<Duration> {
        let mark = mark.saturating_duration_since(self.start);
        match t.load(Ordering::Relaxed) {
            0 => None,
            us => Duration::from_micros(us - 1).checked_sub(mark),
        }
    }
}

/// One agent's task.
struct Agent {
    index: usize,
    key: SecretKey,
    /// The master addresses, from the one this agent starts at.
    masters: Masters,
    master: MasterId,
    endpoint: quinn::Endpoint,
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    silence_checks: bool,
}

/// How one session ended.
enum Ended {
    /// Lost or closed; `refused` when closed with close code 2 or 3.
    Lost { refused: bool },
    /// The core stopped the link: the master refuses this node.
    Refused,
}

/// What a batch of actions asks of the session loop.
enum Next {
    /// Carry on.
    Continue,
    /// The session is open: heartbeat at this interval.
    Up(Duration),
    /// The session is over.
    End(Ended),
}

const LOST: Ended = Ended::Lost { refused: false };

impl Agent {
    async fn run(self) {
        let identity = match Identity::new(&self.key, "hearth-sim-live") {
            Ok(i) => i,
            Err(_) => return self.refused(),
        };
        let tuning = TransportTuning::default();
        let Ok(config) = client_config(Purpose::Session, Some(&identity), self.master, &tuning)
        else {
            return self.refused();
        };
        let clock = Instant::now();
        let ms = || u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut link = Link::with_masters(
            NodeId::from_key(self.key.public()),
            "hearth-sim-live".into(),
            self.masters.clone(),
        );
        loop {
            link.step(ms(), LinkEvent::Start);
            match self.session(config.clone(), &mut link, &ms).await {
                Ended::Refused | Ended::Lost { refused: true } => return self.refused(),
                Ended::Lost { refused: false } => {}
            }
            if matches!(link.phase(), Phase::Connected { .. }) {
                self.shared.lost.fetch_add(1, Ordering::Relaxed);
                self.shared.stamp(&self.shared.lost_at, self.index);
            } else {
                self.shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
            let lost = LinkEvent::Lost {
                reason: String::new(),
                refused: false,
                jitter: rand::random::<f64>(),
            };
            let Some(delay_ms) = link.step(ms(), lost).into_iter().find_map(|a| match a {
                Action::Retry { delay_ms, .. } => Some(delay_ms),
                _ => None,
            }) else {
                return self.refused();
            };
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
    }

    fn refused(&self) {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Connects, says hello and waits for the welcome (at most `max_handshakes` at once in this
    /// process), then runs the session.
    async fn session(
        &self,
        config: quinn::ClientConfig,
        link: &mut Link,
        ms: &impl Fn() -> u64,
    ) -> Ended {
        let addr = link.master().unwrap_or_else(|| self.masters.current());
        let (conn, mut control, interval) = {
            let Ok(_permit) = self.gate.acquire().await else {
                return Ended::Refused;
            };
            let Ok(connecting) = self.endpoint.connect_with(config, addr, SERVER_NAME) else {
                return LOST;
            };
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return classify(&e).unwrap_or(LOST),
                Err(_) => return LOST,
            };
            let Ok((send, recv)) = conn.open_bi().await else {
                return LOST;
            };
            let mut control = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
            let hello = link.step(
                ms(),
                LinkEvent::Opened {
                    rx: conn.stats().udp_rx.datagrams,
                },
            );
            if let Next::End(ended) = self.perform(hello, link, &conn, &mut control).await {
                return ended;
            }
            let welcome = match tokio::time::timeout(HANDSHAKE_TIMEOUT, control.recv()).await {
                Ok(Ok(Some(message))) => link.step(ms(), LinkEvent::Received(message)),
                Ok(Err(_)) => {
                    return conn
                        .close_reason()
                        .as_ref()
                        .and_then(classify)
                        .unwrap_or(LOST);
                }
                _ => return LOST,
            };
            match self.perform(welcome, link, &conn, &mut control).await {
                Next::Up(interval) => (conn, control, interval),
                Next::End(ended) => return ended,
                Next::Continue => return LOST,
            }
        };
        self.shared.welcomes.fetch_add(1, Ordering::Relaxed);
        self.shared.stamp(&self.shared.welcomed, self.index);
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        let at = self.shared.masters.iter().position(|a| *a == addr);
        if let (Some(slot), Some(at)) = (self.shared.at.get(self.index), at) {
            slot.store(at as u64 + 1, Ordering::Relaxed);
        }
        let ended = self
            .established(&conn, &mut control, interval, link, ms)
            .await;
        if let Some(slot) = self.shared.at.get(self.index) {
            slot.store(0, Ordering::Relaxed);
        }
        self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        ended
    }

    /// The open session: heartbeats, acknowledgements, probe answers, until it is lost.
    async fn established(
        &self,
        conn: &quinn::Connection,
        control: &mut MessageStream,
        interval: Duration,
        link: &mut Link,
        ms: &impl Fn() -> u64,
    ) -> Ended {
        let mut tick = tokio::time::interval(interval);
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        let mut check = tokio::time::interval(Duration::from_millis(check_ms(interval_ms)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let actions = tokio::select! {
                _ = tick.tick() => {
                    let tick = LinkEvent::Tick { rx: conn.stats().udp_rx.datagrams, instances: vec![] };
                    link.step(ms(), tick)
                }
                _ = check.tick(), if self.silence_checks => {
                    link.step(ms(), LinkEvent::Check { rx: conn.stats().udp_rx.datagrams })
                }
                msg = control.recv() => match msg {
                    Ok(Some(message)) => {
                        if let Message::DesiredState(ds) = &message {
                            self.shared.desired_states.fetch_add(1, Ordering::Relaxed);
                            if !ds.masters.is_empty() {
                                // As the agent: a bad list is refused by the core and the old kept.
                                let _ = link.set_masters(ds.masters.iter().map(|a| a.get()).collect());
                            }
                            if ds.revision >= link.revision() {
                                self.shared.stamp(&self.shared.desired_at, self.index);
                                if let Some(a) = self.shared.assigned.get(self.index) {
                                    a.store(ds.instances.len() as u64, Ordering::Relaxed);
                                }
                            }
                        }
                        link.step(ms(), LinkEvent::Received(message))
                    }
                    Ok(None) | Err(_) => return self.lost(conn),
                },
            };
            if let Next::End(ended) = self.perform(actions, link, conn, control).await {
                return ended;
            }
        }
    }

    /// How a session that failed on the connection ended (counting resets).
    fn lost(&self, conn: &quinn::Connection) -> Ended {
        let reason = conn.close_reason();
        if matches!(reason, Some(quinn::ConnectionError::Reset)) {
            self.shared.lost_by_reset.fetch_add(1, Ordering::Relaxed);
        }
        reason.as_ref().and_then(classify).unwrap_or(LOST)
    }

    /// Executes the link core's actions on the connection.
    async fn perform(
        &self,
        actions: Vec<Action>,
        link: &Link,
        conn: &quinn::Connection,
        control: &mut MessageStream,
    ) -> Next {
        let mut next = Next::Continue;
        for action in actions {
            let message = match action {
                Action::Send(message) => message,
                Action::AnswerProbe(p) => {
                    self.shared.probes.fetch_add(1, Ordering::Relaxed);
                    Message::AuditAnswer(AuditAnswer::signed(&p, &self.key))
                }
                Action::Up { interval_ms } => {
                    next = Next::Up(Duration::from_millis(interval_ms));
                    continue;
                }
                Action::Close(_) => {
                    if matches!(link.phase(), Phase::Connected { .. }) {
                        conn.close(close::NORMAL, b"master silent");
                        self.shared.lost_silent.fetch_add(1, Ordering::Relaxed);
                    }
                    return Next::End(LOST);
                }
                Action::Refused(_) => return Next::End(Ended::Refused),
                // Counted on receipt; heartbeat_acks, errors, newer messages; the outer loop's.
                Action::Desired(_)
                | Action::Acked
                | Action::Ignored(_)
                | Action::Connect
                | Action::Retry { .. } => continue,
            };
            let heartbeat = matches!(message, Message::Heartbeat(_));
            if control.send(&message).await.is_err() {
                return Next::End(if matches!(link.phase(), Phase::Connected { .. }) {
                    self.lost(conn)
                } else {
                    LOST
                });
            }
            if heartbeat {
                self.shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
        }
        next
    }
}

/// Close codes 2 and 3 mean the master will not take this node back.
fn classify(e: &quinn::ConnectionError) -> Option<Ended> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == close::UNKNOWN_NODE || c.error_code == close::REVOKED =>
        {
            Some(Ended::Lost { refused: true })
        }
        _ => None,
    }
}
