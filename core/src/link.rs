//! The agent's session link, sans-IO: `(link, now, event) -> actions`.
//!
//! One state machine for the agent's connection to its master, driven by the agent
//! (`hearth_node_agent::link`) and by the simulator's live agents: connect, `hello`, wait for
//! `welcome`, heartbeat at the interval the master asked, answer desired states and audit
//! probes, declare the master silent after [`silence_ms`] without a packet, move to the next
//! master address ([`Masters`]) after every failed attempt and every lost session, back off
//! only once a whole round of addresses failed ([`Backoff::RECONNECT`], reset by an established
//! session), and stop for good when the master refuses the node. The drivers own the QUIC
//! connection and the clock; they say what happened (an [`Event`]) and do what the core asks
//! (the [`Action`]s). Times are a monotonic clock in ms; jitter comes in with the loss that
//! needs it.

use std::net::SocketAddr;

use hearth_protocol::messages::audit::AuditProbe;
use hearth_protocol::messages::session::{Counters, Heartbeat, Hello};
use hearth_protocol::messages::state::{DesiredState, DesiredStateAck, InstanceReport};
use hearth_protocol::{ErrorCode, Message, NodeId, PROTOCOL_VERSION, Resources};

use crate::backoff::Backoff;

mod masters;

pub use masters::{Masters, MastersError};

/// Shortest heartbeat interval taken from a `welcome`, ms.
pub const MIN_INTERVAL_MS: u64 = 100;

/// Shortest silence after which a master is given up, ms (short test intervals on a loaded
/// machine must not flap).
pub const MIN_SILENCE_MS: u64 = 1_000;

/// How long the master may be silent (no packet at all: the QUIC ACK of each heartbeat, which
/// it sends at once, counts) before the node gives it up: 4/3 of the heartbeat interval, at
/// least [`MIN_SILENCE_MS`]; 4 s at the default 3 s, so that with [`check_ms`] the master is
/// given up within 4.8 s of its last packet. A live master answers every heartbeat within a
/// round trip, so only a dead one, or a path losing nearly every packet for a second, stays
/// silent that long; a master busy at the application level still acknowledges.
pub fn silence_ms(interval_ms: u64) -> u64 {
    (interval_ms.saturating_mul(4) / 3).max(MIN_SILENCE_MS)
}

/// How often a driver should send [`Event::Check`] between heartbeats, so that silence is seen
/// within a tenth of [`silence_ms`] of its onset (400 ms at the default 3 s). A packet is
/// noticed up to one check late, and silence too: at most 2 × `check_ms` beyond
/// [`silence_ms`] in all.
pub fn check_ms(interval_ms: u64) -> u64 {
    (silence_ms(interval_ms) / 10).max(50)
}

/// Where the link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Opening a connection and its control stream.
    Connecting,
    /// `hello` sent, waiting for `welcome`.
    Handshaking {
        /// Datagrams received when the connection opened.
        rx: u64,
    },
    /// A session is open.
    Connected {
        /// Heartbeat interval, ms.
        interval_ms: u64,
        /// Last time anything came from the master, ms.
        last_heard_ms: u64,
        /// Datagrams received as last seen by a tick.
        rx_seen: u64,
        /// Last heartbeat sequence number sent.
        seq: u64,
    },
    /// Waiting before the next attempt.
    Backoff {
        /// When to connect again, ms.
        until_ms: u64,
    },
    /// The master will not take this node back.
    Refused,
}

/// What happened, as the driver saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connect now (at start, and when the backoff is over).
    Start,
    /// The connection and its control stream are open (`rx`: datagrams received so far).
    Opened {
        /// Datagrams received on the connection so far.
        rx: u64,
    },
    /// A message on the control stream.
    Received(Message),
    /// The silence timer fired ([`check_ms`]): `rx` is the datagrams received so far on the
    /// connection. Drivers that send none are checked at each [`Event::Tick`] only.
    Check {
        /// Datagrams received on the connection so far.
        rx: u64,
    },
    /// The heartbeat timer fired: `rx` is the datagrams received so far on the connection,
    /// `instances` the summary to carry.
    Tick {
        /// Datagrams received on the connection so far.
        rx: u64,
        /// Instances to report.
        instances: Vec<InstanceReport>,
    },
    /// The attempt or session ended: `refused` when the master closed with a refusal code;
    /// `jitter` uniform in `[0, 1)` for the backoff.
    Lost {
        /// Why.
        reason: String,
        /// Closed with close code 2 or 3.
        refused: bool,
        /// Jitter in `[0, 1)`.
        jitter: f64,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a connection (to [`Link::master`] when the link has [`Masters`]) and its control
    /// stream, then send [`Event::Opened`] or [`Event::Lost`].
    Connect,
    /// Send this on the control stream.
    Send(Message),
    /// The session is open: heartbeat every `interval_ms`.
    Up {
        /// Heartbeat interval, ms.
        interval_ms: u64,
    },
    /// Hand this desired state to whoever runs instances (its ack is sent too).
    Desired(DesiredState),
    /// Sign this probe with the node's key and send the answer.
    AnswerProbe(AuditProbe),
    /// The master answered a heartbeat (a packet since the last tick, or a `heartbeat_ack`).
    Acked,
    /// A message the link does not act on (errors, newer types): log it if you like.
    Ignored(Message),
    /// Close the connection with this reason, then send [`Event::Lost`].
    Close(String),
    /// Wait this long (0 when the next master address is tried at once), then send
    /// [`Event::Start`].
    Retry {
        /// Delay, ms.
        delay_ms: u64,
        /// Why the last attempt or session ended.
        reason: String,
    },
    /// Stop for good: the master refuses this node.
    Refused(String),
}

/// One node's link.
#[derive(Debug, Clone)]
pub struct Link {
    node: NodeId,
    agent: String,
    phase: Phase,
    failures: u32,
    /// Attempts failed since the round of addresses began.
    tried: usize,
    masters: Option<Masters>,
    sessions: u64,
    revision: u64,
    overlay: Option<hearth_protocol::messages::overlay::OverlayRevision>,
}

impl Link {
    /// A link for `node` announcing itself as `agent`, connecting at the first [`Event::Start`]
    /// to the one master its driver knows (a round of one address).
    pub fn new(node: NodeId, agent: String) -> Self {
        Self {
            node,
            agent,
            phase: Phase::Connecting,
            failures: 0,
            tried: 0,
            masters: None,
            sessions: 0,
            revision: 0,
            overlay: None,
        }
    }

    /// A link that rotates through `masters`, starting at its first address.
    pub fn with_masters(node: NodeId, agent: String, masters: Masters) -> Self {
        Self {
            masters: Some(masters),
            ..Self::new(node, agent)
        }
    }

    /// The address the next (or the open) connection goes to, when the link has [`Masters`].
    pub fn master(&self) -> Option<SocketAddr> {
        self.masters.as_ref().map(Masters::current)
    }

    /// The master addresses, when the link has them.
    pub fn masters(&self) -> Option<&Masters> {
        self.masters.as_ref()
    }

    /// Adopts the master's list of addresses (`DesiredState.masters`): the open session is
    /// kept, the next attempt uses the new list. Returns whether it changed; a bad list (empty,
    /// too long, an address twice) is refused and the old one kept.
    pub fn set_masters(&mut self, addrs: Vec<SocketAddr>) -> Result<bool, MastersError> {
        match &mut self.masters {
            Some(m) => m.replace(addrs),
            None => {
                self.masters = Some(Masters::new(addrs)?);
                Ok(true)
            }
        }
    }

    /// Records the overlay member set the driver holds, announced in the next `hello`.
    pub fn set_overlay_revision(
        &mut self,
        revision: Option<hearth_protocol::messages::overlay::OverlayRevision>,
    ) {
        self.overlay = revision;
    }

    /// Where the link is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Its name as shown by `hearth-node status`: `connecting`, `connected`, `backoff`, `refused`.
    pub fn state(&self) -> &'static str {
        match self.phase {
            Phase::Connecting | Phase::Handshaking { .. } => "connecting",
            Phase::Connected { .. } => "connected",
            Phase::Backoff { .. } => "backoff",
            Phase::Refused => "refused",
        }
    }

    /// Sessions opened so far.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Latest desired-state revision received.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Consecutive failed rounds of attempts (1 after the loss of an established session): each
    /// round tries every master address once.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Advances the link.
    pub fn step(&mut self, now_ms: u64, event: Event) -> Vec<Action> {
        match (&mut self.phase, event) {
            (Phase::Refused, _) => Vec::new(),
            (
                _,
                Event::Lost {
                    reason,
                    refused,
                    jitter,
                },
            ) => self.lost(now_ms, reason, refused, jitter),
            (Phase::Connecting | Phase::Backoff { .. }, Event::Start) => {
                self.phase = Phase::Connecting;
                vec![Action::Connect]
            }
            (Phase::Connecting, Event::Opened { rx }) => {
                self.phase = Phase::Handshaking { rx };
                vec![Action::Send(Message::Hello(Hello {
                    min_version: PROTOCOL_VERSION,
                    max_version: PROTOCOL_VERSION,
                    node: self.node,
                    agent: self.agent.clone(),
                    applied_revision: self.revision,
                    overlay: self.overlay,
                }))]
            }
            (&mut Phase::Handshaking { rx }, Event::Received(message)) => {
                self.handshake(now_ms, rx, message)
            }
            (Phase::Connected { .. }, Event::Received(message)) => self.received(now_ms, message),
            (Phase::Connected { .. }, Event::Check { rx }) => self.observe(now_ms, rx),
            (Phase::Connected { .. }, Event::Tick { rx, instances }) => {
                let mut out = self.observe(now_ms, rx);
                if matches!(out.last(), Some(Action::Close(_))) {
                    return out;
                }
                let Phase::Connected { seq, .. } = &mut self.phase else {
                    return out;
                };
                *seq += 1;
                out.push(Action::Send(Message::Heartbeat(Heartbeat {
                    seq: *seq,
                    used: Resources::default(),
                    applied_revision: self.revision,
                    instances,
                    counters: Counters {
                        sessions: self.sessions,
                        ..Counters::default()
                    },
                    ack: false,
                })));
                out
            }
            // Out of order (a tick before the welcome, a stale start): nothing to do.
            _ => Vec::new(),
        }
    }

    /// Notes a packet seen since the last look (`rx` moved), and closes a silent session.
    fn observe(&mut self, now_ms: u64, rx: u64) -> Vec<Action> {
        let Phase::Connected {
            interval_ms,
            last_heard_ms,
            rx_seen,
            ..
        } = &mut self.phase
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // Any packet from the master (its QUIC ACKs, fetch data) shows it is alive.
        if rx != *rx_seen {
            *rx_seen = rx;
            *last_heard_ms = now_ms;
            out.push(Action::Acked);
        }
        let silence = silence_ms(*interval_ms);
        if now_ms.saturating_sub(*last_heard_ms) > silence {
            out.push(Action::Close(format!(
                "nothing heard from the master for {silence} ms (4/3 of the heartbeat interval)"
            )));
        }
        out
    }

    fn handshake(&mut self, now_ms: u64, rx: u64, message: Message) -> Vec<Action> {
        match message {
            Message::Welcome(w) => {
                let interval_ms = w.heartbeat_interval_ms.max(MIN_INTERVAL_MS);
                self.sessions += 1;
                self.tried = 0;
                self.phase = Phase::Connected {
                    interval_ms,
                    last_heard_ms: now_ms,
                    rx_seen: rx,
                    seq: 0,
                };
                vec![Action::Up { interval_ms }]
            }
            Message::Error(e)
                if e.fatal && matches!(e.code, ErrorCode::UnknownNode | ErrorCode::NodeRevoked) =>
            {
                let reason = format!("{}: {}", e.code, e.message);
                self.phase = Phase::Refused;
                vec![Action::Refused(reason)]
            }
            Message::Error(e) if e.fatal => {
                vec![Action::Close(format!("{}: {}", e.code, e.message))]
            }
            other => vec![Action::Close(format!(
                "expected welcome, got {}",
                other.type_tag()
            ))],
        }
    }

    fn received(&mut self, now_ms: u64, message: Message) -> Vec<Action> {
        if let Phase::Connected { last_heard_ms, .. } = &mut self.phase {
            *last_heard_ms = now_ms;
        }
        match message {
            Message::HeartbeatAck(_) => vec![Action::Acked],
            Message::DesiredState(ds) => {
                let revision = ds.revision;
                self.revision = self.revision.max(revision);
                vec![
                    Action::Desired(ds),
                    Action::Send(Message::DesiredStateAck(DesiredStateAck { revision })),
                ]
            }
            Message::AuditProbe(p) => vec![Action::AnswerProbe(p)],
            other => vec![Action::Ignored(other)],
        }
    }

    fn lost(&mut self, now_ms: u64, reason: String, refused: bool, jitter: f64) -> Vec<Action> {
        if refused {
            self.phase = Phase::Refused;
            return vec![Action::Refused(reason)];
        }
        let round = self.masters.as_ref().map_or(1, Masters::len);
        if let Some(m) = &mut self.masters {
            m.advance();
        }
        let delay_ms = if matches!(self.phase, Phase::Connected { .. }) {
            // A lost session: the next address soon (the quick first step), a new round.
            self.failures = 1;
            self.tried = 0;
            Backoff::RECONNECT.jittered_ms(self.failures, jitter)
        } else {
            self.tried = self.tried.saturating_add(1);
            if self.tried < round {
                // Addresses left in this round: the next one at once.
                0
            } else {
                self.tried = 0;
                self.failures = self.failures.saturating_add(1);
                Backoff::RECONNECT.jittered_ms(self.failures, jitter)
            }
        };
        self.phase = Phase::Backoff {
            until_ms: now_ms.saturating_add(delay_ms),
        };
        vec![Action::Retry { delay_ms, reason }]
    }
}

#[cfg(test)]
mod tests;
