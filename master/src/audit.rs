//! Uptime audit probes (SPEC.md, "Audit"): the master sends a node, over its session, a probe
//! carrying 32 fresh random bytes, and the node must answer within 10 s with its signature over
//! them. A passed probe is evidence the node cannot forge that it was up and holding its key at
//! that moment; a late, unsigned, mis-echoed or missing answer fails.
//!
//! `POST /v1/nodes/{id}/probe` probes one node now, once, and reports the outcome: a diagnostic
//! for operators. Its outcome is not recorded in the credits ledger, since an operator chooses
//! its moment; uptime comes only from the random-time probes of [`crate::uptime`], which share
//! this numbering (probe numbers are unique per master).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_protocol::messages::audit::{AuditAnswer, AuditProbe};
use hearth_protocol::{Hex, Message, NodeId};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::clock::now_ms;
use crate::fleet::Fleet;

/// An answer later than this after the probe fails it (SPEC.md, "Audit answer deadline").
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(10);
/// Probes awaiting an answer at once; more are refused until some end.
pub const MAX_PENDING: usize = 100_000;

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A valid signed answer within the deadline.
    Passed {
        /// From sending the probe to receiving the answer, ms (µs precision).
        rtt_ms: f64,
    },
    /// Anything else.
    Failed {
        /// Why, as a sentence.
        reason: String,
    },
}

/// Why a probe could not be sent at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Too many probes are waiting for answers.
    #[error("{MAX_PENDING} probes are already waiting for answers; try again shortly")]
    Busy,
}

struct Pending {
    node: NodeId,
    answer: oneshot::Sender<AuditAnswer>,
}

/// Probes waiting for their answers.
pub struct Probes {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes")
            .field("pending", &self.lock().len())
            .finish()
    }
}

impl Default for Probes {
    fn default() -> Self {
        Self::new()
    }
}

impl Probes {
    /// Numbers probes from the clock in microseconds, so they stay unique across restarts.
    pub fn new() -> Self {
        Self {
            next: AtomicU64::new(now_ms().saturating_mul(1000)),
            pending: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh probe number.
    pub fn number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Probes `node` through `fleet` and waits for the answer or the deadline.
    pub async fn probe(&self, fleet: &Fleet, node: NodeId) -> Result<Outcome, ProbeError> {
        let number = self.number();
        let probe = AuditProbe {
            probe: number,
            nonce: Hex(rand::random()),
            issued_at_ms: now_ms(),
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.lock();
            if pending.len() >= MAX_PENDING {
                return Err(ProbeError::Busy);
            }
            let entry = Pending { node, answer: tx };
            pending.insert(number, entry);
        }
        // Removes the entry however this ends, also when the caller gives up waiting (an API
        // client that disconnects drops this future).
        let _withdraw = Withdraw {
            probes: self,
            number,
        };
        let sent = Instant::now();
        let outcome = if !fleet.push(&node, Message::AuditProbe(probe.clone())) {
            failed("the node has no open session")
        } else {
            match tokio::time::timeout(ANSWER_DEADLINE, rx).await {
                Ok(Ok(answer)) => judge(&probe, &node, &answer, sent.elapsed()),
                Ok(Err(_)) => failed("the probe was withdrawn before an answer came"),
                Err(_) => failed("no answer within 10 s"),
            }
        };
        Ok(outcome)
    }

    /// Hands an answer received on `node`'s session to its waiting probe. An answer to no
    /// probe of this node's that is waiting here is given back (`Some`).
    pub fn answered(&self, node: &NodeId, answer: AuditAnswer) -> Option<AuditAnswer> {
        match self.lock().entry(answer.probe) {
            Entry::Occupied(p) if p.get().node == *node => {
                // A receiver gone means the caller gave up just now: the answer was still ours.
                let _ = p.remove().answer.send(answer);
                None
            }
            _ => Some(answer),
        }
    }
}

/// Forgets a probe when dropped.
struct Withdraw<'a> {
    probes: &'a Probes,
    number: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.probes.lock().remove(&self.number);
    }
}

fn failed(reason: &str) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
    }
}

/// Checks an answer against its probe.
fn judge(probe: &AuditProbe, node: &NodeId, answer: &AuditAnswer, rtt: Duration) -> Outcome {
    if let Err(reason) = crate::uptime::check_answer(probe, node, answer) {
        return failed(reason);
    }
    if rtt > ANSWER_DEADLINE {
        return failed("the answer came after 10 s");
    }
    Outcome::Passed {
        rtt_ms: rtt.as_micros() as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use hearth_protocol::SecretKey;

    use super::*;

    #[test]
    fn only_a_fresh_answer_signed_by_the_probed_node_passes() {
        let key = SecretKey::generate();
        let node = NodeId::from_key(key.public());
        let probe = AuditProbe {
            probe: 7,
            nonce: Hex([9; 32]),
            issued_at_ms: 1_000,
        };
        let quick = Duration::from_millis(3);
        let good = AuditAnswer::signed(&probe, &key);
        assert_eq!(
            judge(&probe, &node, &good, quick),
            Outcome::Passed { rtt_ms: 3.0 }
        );

        let other = AuditAnswer::signed(&probe, &SecretKey::generate());
        let mut forged = good.clone();
        forged.signature = Hex([1; 64]);
        let mut replayed = good.clone();
        replayed.nonce = Hex([8; 32]);
        for (answer, rtt, why) in [
            (&other, quick, "another node"),
            (&forged, quick, "signature"),
            (&replayed, quick, "echo"),
            (&good, Duration::from_secs(11), "after 10 s"),
        ] {
            match judge(&probe, &node, answer, rtt) {
                Outcome::Failed { reason } => assert!(reason.contains(why), "{reason}"),
                passed => panic!("{why}: {passed:?}"),
            }
        }
    }

    #[test]
    fn answers_reach_only_their_own_probe() {
        let probes = Probes::default();
        let key = SecretKey::generate();
        let node = NodeId::from_key(key.public());
        let stranger = NodeId::from_key(SecretKey::generate().public());
        let probe = AuditProbe {
            probe: 5,
            nonce: Hex([2; 32]),
            issued_at_ms: 1,
        };
        let (tx, mut rx) = oneshot::channel();
        probes.lock().insert(5, Pending { node, answer: tx });
        let answer = AuditAnswer::signed(&probe, &key);
        assert!(
            probes.answered(&stranger, answer.clone()).is_some(),
            "another session's answer"
        );
        let mut unknown = answer.clone();
        unknown.probe = 6;
        assert_eq!(probes.answered(&node, unknown.clone()), Some(unknown));
        assert!(probes.answered(&node, answer.clone()).is_none());
        assert_eq!(rx.try_recv().ok(), Some(answer.clone()));
        assert!(
            probes.answered(&node, answer).is_some(),
            "a probe is answered once"
        );
    }
}
