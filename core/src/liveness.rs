//! Node liveness as a sans-IO state machine: `(state, config, now, event) -> (state, transition)`.
//!
//! Heartbeats are hints of life: a node that stops sending them becomes `suspect` after
//! `suspect_after`, then `down` after `down_after`. Any heartbeat brings it back `up`. Times are
//! Unix milliseconds passed in by the driver (or the simulator's virtual clock).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Timeouts of the liveness machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// Interval nodes are told to heartbeat at.
    #[serde(with = "humantime_serde_ms")]
    pub heartbeat_interval: Duration,
    /// Silence after which a node is `suspect`.
    #[serde(with = "humantime_serde_ms")]
    pub suspect_after: Duration,
    /// Silence after which a node is `down` and its replicas are re-placed.
    #[serde(with = "humantime_serde_ms")]
    pub down_after: Duration,
    /// After a master restart, how long nodes that were up get to come back before they are
    /// `down` (all of them reconnect at once; Nomad's failover heartbeat TTL plays this role).
    #[serde(with = "humantime_serde_ms")]
    pub restart_grace: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(3),
            suspect_after: Duration::from_secs(6),
            down_after: Duration::from_secs(10),
            restart_grace: Duration::from_secs(60),
        }
    }
}

/// Durations in config files as integer milliseconds.
mod humantime_serde_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Liveness of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Enrolled, never seen in a session.
    Pending,
    /// Heartbeating.
    Up {
        /// Last heartbeat, Unix ms.
        last_heartbeat: u64,
    },
    /// Silent for longer than `suspect_after`.
    Suspect {
        /// Last heartbeat, Unix ms.
        last_heartbeat: u64,
    },
    /// Up before a master restart, not back yet: `down` at `until` unless it returns.
    Returning {
        /// End of the grace, Unix ms.
        until: u64,
        /// Last heartbeat the previous master saw, if known.
        last_heartbeat: Option<u64>,
    },
    /// Silent for longer than `down_after`.
    Down {
        /// When it was declared down, Unix ms.
        since: u64,
        /// Last heartbeat, if it ever sent one.
        last_heartbeat: Option<u64>,
    },
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A heartbeat (or a session opening) arrived.
    Heartbeat,
    /// Time passed.
    Tick,
}

/// A change of liveness the driver acts on (persist, metrics, re-placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Previous state name.
    pub from: &'static str,
    /// New state name.
    pub to: &'static str,
}

impl Liveness {
    /// State name: `pending`, `up`, `suspect`, `returning`, `down`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Returning { .. } => "returning",
            Self::Up { .. } => "up",
            Self::Suspect { .. } => "suspect",
            Self::Down { .. } => "down",
        }
    }

    /// Last heartbeat, if any.
    pub fn last_heartbeat(&self) -> Option<u64> {
        match *self {
            Self::Pending => None,
            Self::Up { last_heartbeat } | Self::Suspect { last_heartbeat } => Some(last_heartbeat),
            Self::Down { last_heartbeat, .. } | Self::Returning { last_heartbeat, .. } => {
                last_heartbeat
            }
        }
    }

    /// The next state after `event` at `now_ms`, and the transition if the state name changed.
    pub fn step(
        self,
        cfg: &LivenessConfig,
        now_ms: u64,
        event: Event,
    ) -> (Self, Option<Transition>) {
        let next = match (self, event) {
            (_, Event::Heartbeat) => Self::Up {
                last_heartbeat: now_ms,
            },
            (Self::Up { last_heartbeat } | Self::Suspect { last_heartbeat }, Event::Tick) => {
                let silent = Duration::from_millis(now_ms.saturating_sub(last_heartbeat));
                if silent >= cfg.down_after {
                    Self::Down {
                        since: now_ms,
                        last_heartbeat: Some(last_heartbeat),
                    }
                } else if silent >= cfg.suspect_after {
                    Self::Suspect { last_heartbeat }
                } else {
                    Self::Up { last_heartbeat }
                }
            }
            (
                Self::Returning {
                    until,
                    last_heartbeat,
                },
                Event::Tick,
            ) if now_ms >= until => Self::Down {
                since: now_ms,
                last_heartbeat,
            },
            (state @ (Self::Pending | Self::Down { .. } | Self::Returning { .. }), Event::Tick) => {
                state
            }
        };
        let changed = next.name() != self.name();
        (
            next,
            changed.then_some(Transition {
                from: self.name(),
                to: next.name(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_restart_a_node_is_returning_until_it_heartbeats_or_the_grace_ends() {
        let cfg = LivenessConfig::default();
        let returning = Liveness::Returning {
            until: 61_000,
            last_heartbeat: Some(500),
        };
        // Longer than down_after, still within the restart grace: not down.
        let (s, t) = returning.step(&cfg, 30_000, Event::Tick);
        assert_eq!((s.name(), t), ("returning", None));
        let (back, t) = s.step(&cfg, 40_000, Event::Heartbeat);
        assert_eq!((back.name(), t.map(|t| t.from)), ("up", Some("returning")));
        let (gone, t) = s.step(&cfg, 61_000, Event::Tick);
        assert_eq!(t.map(|t| t.to), Some("down"));
        assert_eq!(
            gone,
            Liveness::Down {
                since: 61_000,
                last_heartbeat: Some(500)
            }
        );
    }

    #[test]
    fn silence_leads_to_suspect_then_down_and_a_heartbeat_revives() {
        let cfg = LivenessConfig::default();
        let (s, t) = Liveness::Pending.step(&cfg, 1_000, Event::Heartbeat);
        assert_eq!(t.map(|t| t.to), Some("up"));
        let (s, t) = s.step(&cfg, 6_999, Event::Tick);
        assert_eq!((s.name(), t), ("up", None));
        let (s, t) = s.step(&cfg, 7_000, Event::Tick);
        assert_eq!(
            t,
            Some(Transition {
                from: "up",
                to: "suspect"
            })
        );
        let (s, t) = s.step(&cfg, 11_000, Event::Tick);
        assert_eq!(
            t,
            Some(Transition {
                from: "suspect",
                to: "down"
            })
        );
        assert_eq!(
            s,
            Liveness::Down {
                since: 11_000,
                last_heartbeat: Some(1_000)
            }
        );
        let (s, _) = s.step(&cfg, 50_000, Event::Tick);
        assert_eq!(s.name(), "down");
        let (s, t) = s.step(&cfg, 60_000, Event::Heartbeat);
        assert_eq!((s.name(), t.map(|t| t.from)), ("up", Some("down")));
    }

    #[test]
    fn a_long_gap_goes_straight_to_down() {
        let cfg = LivenessConfig::default();
        let (_, t) = Liveness::Up { last_heartbeat: 0 }.step(&cfg, 60_000, Event::Tick);
        assert_eq!(
            t,
            Some(Transition {
                from: "up",
                to: "down"
            })
        );
    }
}
