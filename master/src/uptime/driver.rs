//! The prober's driver: one task runs the [`Prober`] for the whole fleet on the wall clock,
//! sends its probes over the nodes' sessions, hands it the answers the sessions receive, and
//! passes each final outcome to the recorder (`super::record`), which appends it to the ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_ledger::entry::ProbeEntry;
use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::messages::standing::Standing;
use hearth_protocol::{Message, NodeId};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};

use crate::context::Context;
use crate::ratelimit::LogLimiter;
use crate::uptime::prober::{Action, Event, Prober, ProberConfig};
use crate::uptime::standing::Placement;

/// Answers queued for the prober at most; beyond that they are dropped (a node flooding
/// answers loses only its own probes).
const ANSWER_QUEUE: usize = 8192;
/// How often the prober re-reads the fleet's membership when nothing signals a change.
const MEMBERS_EVERY: Duration = Duration::from_secs(30);
/// How often it checks the fleet's change counter for membership changes.
const MEMBERS_POLL: Duration = Duration::from_secs(1);

/// How the master probes for uptime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UptimeConfig {
    /// Mean time between two probes of a node; `None`: no random probes.
    pub mean: Option<Duration>,
    /// Sends of one probe in all (the first included).
    pub attempts: u32,
    /// How often due score entries are appended and standings re-checked.
    pub score_every: Duration,
}

impl Default for UptimeConfig {
    fn default() -> Self {
        Self {
            mean: Some(Duration::from_secs(300)),
            attempts: 3,
            score_every: Duration::from_secs(60),
        }
    }
}

/// The prober's side of the master's shared state.
#[derive(Debug)]
pub struct Uptime {
    config: UptimeConfig,
    answers: mpsc::Sender<(NodeId, AuditAnswer)>,
    inbox: Mutex<Option<mpsc::Receiver<(NodeId, AuditAnswer)>>>,
    /// The standing last sent to each node.
    pub(crate) sent: Mutex<HashMap<NodeId, Standing>>,
    /// What placement reads of each probed node.
    pub(crate) placement: Mutex<HashMap<NodeId, Placement>>,
}

impl Uptime {
    /// The shared state for `config`.
    pub fn new(config: UptimeConfig) -> Self {
        let (answers, inbox) = mpsc::channel(ANSWER_QUEUE);
        Self {
            config,
            answers,
            inbox: Mutex::new(Some(inbox)),
            sent: Mutex::default(),
            placement: Mutex::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &UptimeConfig {
        &self.config
    }

    /// Hands an `audit_answer` received on `node`'s session to the prober; false if it is not
    /// running or its queue is full (the answer is dropped).
    pub fn answered(&self, node: NodeId, answer: AuditAnswer) -> bool {
        self.config.mean.is_some() && self.answers.try_send((node, answer)).is_ok()
    }
}

/// Runs the prober and the recorder until `stop`. With probing off only the recorder runs
/// (score entries still close the windows of earlier probes).
pub async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let config = *ctx.uptime.config();
    let (record_tx, record_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(super::record::run(
        ctx.clone(),
        record_rx,
        config.score_every,
    ));
    let inbox = ctx
        .uptime
        .inbox
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match (config.mean, inbox) {
        (Some(mean), Some(inbox)) => probe(&ctx, mean, inbox, &record_tx, &mut stop).await,
        _ => {
            let _ = stop.wait_for(|s| *s).await;
        }
    }
    drop(record_tx);
    let _ = recorder.await;
}

/// The prober's loop.
async fn probe(
    ctx: &Arc<Context>,
    mean: Duration,
    mut inbox: mpsc::Receiver<(NodeId, AuditAnswer)>,
    record_tx: &mpsc::UnboundedSender<Vec<ProbeEntry>>,
    stop: &mut watch::Receiver<bool>,
) {
    let config = *ctx.uptime.config();
    let mut prober = Prober::new(
        ProberConfig {
            mean_us: u64::try_from(mean.as_micros()).unwrap_or(u64::MAX).max(1),
            attempts: config.attempts.max(1),
            ..ProberConfig::default()
        },
        StdRng::from_entropy(),
    );
    let mut members = tokio::time::interval(MEMBERS_POLL);
    let mut seen: Option<(u64, Instant)> = None;
    let mut stray_log = LogLimiter::new(5, 60);
    let started = Instant::now();
    let clock = Clock::new();
    loop {
        let wake = prober
            .next_wakeup()
            .map_or(started + Duration::from_secs(3600), |us| clock.instant(us));
        let event = tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => Event::Tick,
            Some((node, answer)) = inbox.recv() => {
                if prober.outstanding(&node).is_none_or(|p| p.probe != answer.probe)
                    && stray_log.allow(crate::clock::now_ms()).is_some()
                {
                    tracing::warn!(%node, probe = answer.probe, "answer to no outstanding probe of this node's");
                }
                Event::Answer { node, answer }
            }
            _ = members.tick() => {
                let epoch = ctx.fleet.epoch();
                if seen.is_some_and(|(e, at)| e == epoch && at.elapsed() < MEMBERS_EVERY) {
                    continue;
                }
                seen = Some((epoch, Instant::now()));
                Event::Members(ctx.fleet.probe_targets())
            }
            _ = stop.changed() => break,
        };
        let mut events = vec![event];
        while let Some(event) = events.pop() {
            let actions = prober.step(clock.now_us(), event, &mut || ctx.probes.number());
            let mut outcomes = Vec::new();
            for action in actions {
                match action {
                    Action::Send {
                        node,
                        probe,
                        attempt,
                    } => {
                        let number = probe.probe;
                        tracing::trace!(%node, probe = number, attempt, "probe sent");
                        if !ctx.fleet.push(&node, Message::AuditProbe(probe)) {
                            events.push(Event::NoSession {
                                node,
                                probe: number,
                            });
                        }
                    }
                    Action::Record(entry) => {
                        ctx.metrics
                            .probe(if entry.passed() { "passed" } else { "failed" });
                        outcomes.push(entry);
                    }
                }
            }
            if !outcomes.is_empty() {
                let _ = record_tx.send(outcomes);
            }
        }
    }
}

/// The wall clock in Unix µs, with a monotonic clock for sleeping.
struct Clock {
    base: Instant,
    base_us: u64,
}

impl Clock {
    fn new() -> Self {
        // The master's clock (tests may move it: `clock::TEST_CLOCK_OFFSET_ENV`).
        let base_us = crate::clock::now_us();
        Self {
            base: Instant::now(),
            base_us,
        }
    }

    /// Unix µs now (monotonic from the start: a wall-clock step does not bunch probes).
    fn now_us(&self) -> u64 {
        self.base_us
            .saturating_add(u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The instant at Unix µs `us`.
    fn instant(&self, us: u64) -> Instant {
        self.base + Duration::from_micros(us.saturating_sub(self.base_us))
    }
}
