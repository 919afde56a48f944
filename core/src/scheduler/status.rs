//! What the scheduler keeps of each deployment between passes: its conditions with the time each
//! began, the make-before-break move under way, and the replicas waiting on lost nodes. Stored as
//! a versioned record beside the deployment (written only by the scheduler, so it never races an
//! operator's compare-and-set), so a master restart keeps the "since" of every condition.
//!
//! [`merge`] is sans-IO: the previous status and a pass's [`Outcome`] give the new status and the
//! events to append to the deployment's history.

use std::collections::BTreeMap;

use hearth_protocol::messages::state::InstanceId;
use serde::{Deserialize, Serialize};

use super::model::{ConditionKind, Event, EventKind, Move, Outcome};

/// Version of the stored status record.
pub const STATUS_VERSION: u32 = 1;

/// A deployment's status as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStatus {
    /// Record version ([`STATUS_VERSION`]).
    pub v: u32,
    /// Constraints not met, oldest first.
    #[serde(default)]
    pub conditions: Vec<StoredCondition>,
    /// The move under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<Move>,
    /// No move starts before this time, Unix ms.
    #[serde(default)]
    pub calm_until_ms: u64,
    /// Replicas on lost nodes not re-placed yet, with why.
    #[serde(default)]
    pub lost: BTreeMap<InstanceId, String>,
}

impl Default for DeploymentStatus {
    fn default() -> Self {
        Self {
            v: STATUS_VERSION,
            conditions: Vec::new(),
            moving: None,
            calm_until_ms: 0,
            lost: BTreeMap::new(),
        }
    }
}

/// A constraint not met, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCondition {
    /// Which.
    pub kind: ConditionKind,
    /// By how much and why.
    pub detail: String,
    /// When it began, Unix ms.
    pub since_ms: u64,
}

/// The status after a pass, and the events to record: the pass's own, a `lost` for each replica
/// newly waiting on a lost node, a `degraded` for each condition that began and a `restored` for
/// each that ended. A condition that goes on keeps its `since`, even if its detail changes.
pub fn merge(old: &DeploymentStatus, out: Outcome, now_ms: u64) -> (DeploymentStatus, Vec<Event>) {
    let mut events = out.events;
    let lost: BTreeMap<InstanceId, String> = out.lost.into_iter().collect();
    for (id, why) in &lost {
        if !old.lost.contains_key(id) {
            events.push(Event {
                kind: EventKind::Lost,
                text: format!("{id}: {why}, not re-placed yet"),
            });
        }
    }
    let mut conditions = Vec::new();
    for c in out.conditions {
        let since_ms = match old.conditions.iter().find(|o| o.kind == c.kind) {
            Some(o) => o.since_ms,
            None => {
                events.push(Event {
                    kind: EventKind::Degraded,
                    text: c.detail.clone(),
                });
                now_ms
            }
        };
        conditions.push(StoredCondition {
            kind: c.kind,
            detail: c.detail,
            since_ms,
        });
    }
    for o in &old.conditions {
        if !conditions.iter().any(|c| c.kind == o.kind) {
            events.push(Event {
                kind: EventKind::Restored,
                text: format!("{} (was: {})", o.kind.restored(), o.detail),
            });
        }
    }
    conditions.sort_by_key(|c| (c.since_ms, c.kind));
    let status = DeploymentStatus {
        v: STATUS_VERSION,
        conditions,
        moving: out.moving,
        calm_until_ms: out.calm_until_ms,
        lost,
    };
    (status, events)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::scheduler::model::Condition;

    fn outcome(conditions: &[(ConditionKind, &str)]) -> Outcome {
        Outcome {
            conditions: conditions
                .iter()
                .map(|(kind, detail)| Condition {
                    kind: *kind,
                    detail: (*detail).to_owned(),
                })
                .collect(),
            ..Outcome::default()
        }
    }

    #[test]
    fn a_condition_keeps_its_since_while_it_lasts_and_its_end_is_recorded() {
        let (s1, e1) = merge(
            &DeploymentStatus::default(),
            outcome(&[(ConditionKind::Countries, "2 of 3 countries (BE, FR)")]),
            1_000,
        );
        assert_eq!(s1.conditions[0].since_ms, 1_000);
        assert_eq!(e1[0].kind, EventKind::Degraded);
        // Ten passes later, with another detail: still since 1,000, no new event.
        let (s2, e2) = merge(
            &s1,
            outcome(&[(ConditionKind::Countries, "1 of 3 countries (BE)")]),
            11_000,
        );
        assert_eq!(s2.conditions[0].since_ms, 1_000);
        assert_eq!(s2.conditions[0].detail, "1 of 3 countries (BE)");
        assert!(e2.is_empty());
        let (s3, e3) = merge(&s2, outcome(&[]), 20_000);
        assert!(s3.conditions.is_empty());
        assert_eq!(e3[0].kind, EventKind::Restored);
        assert!(e3[0].text.starts_with("country spread restored"), "{e3:?}");
    }

    #[test]
    fn the_stored_record_round_trips_and_refuses_unknown_fields() {
        let (s, _) = merge(
            &DeploymentStatus::default(),
            outcome(&[(ConditionKind::Replicas, "2 of 3 replicas placed")]),
            5,
        );
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DeploymentStatus>(&text).unwrap(), s);
        let bad = text.replace("\"v\":1", "\"v\":1,\"x\":0");
        assert!(serde_json::from_str::<DeploymentStatus>(&bad).is_err());
    }
}
