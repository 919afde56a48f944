//! The prober's sans-IO core: when to probe each node, containment of unanswered probes, and
//! each probe's final outcome (SPEC.md §9.10–9.11).
//!
//! Every member node has one timer in one heap (no task per node). Its next probe comes after
//! an exponential random interval (mean [`ProberConfig::mean_us`]), drawn when the previous
//! probe ended, so a node cannot tell when the next one comes. A probe that gets no valid answer
//! within the answer timeout is re-sent with the same number, nonce and `issued_at_ms`, up to
//! [`ProberConfig::attempts`] sends in all; while it is outstanding the node gets no new probe,
//! so dropping a chosen probe only brings the same probe back. A wrong answer (another node, a
//! changed nonce or time, a bad signature) fails the probe at once. Probes in flight are
//! bounded: due nodes beyond the cap wait their turn in order.
//!
//! The driver (`super::driver`) feeds [`Event`]s with the time in Unix µs and performs the
//! [`Action`]s; [`Prober::next_wakeup`] says when to call again.

use std::cmp::Reverse;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use hearth_ledger::entry::{ProbeEntry, ProbeOutcome};
use hearth_protocol::messages::audit::{AuditAnswer, AuditProbe};
use hearth_protocol::{Hex, NodeId};
use rand::Rng as _;
use rand::rngs::StdRng;

/// How the prober works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProberConfig {
    /// Mean time between two probes of one node, µs (reference: 5 min).
    pub mean_us: u64,
    /// Sends of one probe in all, the first included (reference: 3).
    pub attempts: u32,
    /// Time each send gets for its answer, µs (SPEC: 10 s).
    pub answer_timeout_us: u64,
    /// Probes outstanding at once; due nodes beyond this wait.
    pub max_in_flight: usize,
}

impl Default for ProberConfig {
    fn default() -> Self {
        Self {
            mean_us: 300_000_000,
            attempts: 3,
            answer_timeout_us: 10_000_000,
            max_in_flight: 4096,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The nodes to probe from now on (enrolled, neither retired nor revoked): new ones get a
    /// first probe time, absent ones are forgotten with any probe they had outstanding.
    Members(Vec<NodeId>),
    /// An `audit_answer` came on `node`'s session.
    Answer {
        /// The session's node (from its certificate).
        node: NodeId,
        /// The answer as received.
        answer: AuditAnswer,
    },
    /// A send found no session for `node`: that attempt will time out.
    NoSession {
        /// The node.
        node: NodeId,
        /// The probe number sent.
        probe: u64,
    },
    /// Only time passed.
    Tick,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `probe` to `node` over its session (a re-send carries the same probe).
    Send {
        /// The node.
        node: NodeId,
        /// The probe, identical in every attempt.
        probe: AuditProbe,
        /// Which send this is, from 1.
        attempt: u32,
    },
    /// A probe ended: append its outcome to the ledger.
    Record(ProbeEntry),
}

/// A node's place in the prober.
#[derive(Debug)]
enum Slot {
    /// Its next probe is due when the heap timer `timer` fires.
    Waiting { timer: u64 },
    /// Due, but the in-flight cap is reached: queued in `ready`.
    Ready,
    /// A probe awaits its answer.
    Outstanding(Outstanding),
}

#[derive(Debug)]
struct Outstanding {
    probe: AuditProbe,
    /// Sends so far.
    attempts: u32,
    /// When the latest copy was sent, Unix µs.
    last_send_us: u64,
    /// The heap timer of the latest copy's deadline.
    timer: u64,
    /// Sends that found no session.
    sessionless: u32,
}

/// The prober's state: one slot per member node and one timer heap.
#[derive(Debug)]
pub struct Prober {
    cfg: ProberConfig,
    rng: StdRng,
    slots: HashMap<NodeId, Slot>,
    /// `(due µs, timer id, node)`; an entry whose id is no longer its node's is stale.
    timers: BinaryHeap<Reverse<(u64, u64, NodeId)>>,
    next_timer: u64,
    ready: VecDeque<NodeId>,
    in_flight: usize,
}

impl Prober {
    /// An empty prober. `rng` draws the intervals and the nonces: seed it from the OS (a node
    /// that could predict either could plan its absences).
    pub fn new(cfg: ProberConfig, rng: StdRng) -> Self {
        Self {
            cfg,
            rng,
            slots: HashMap::new(),
            timers: BinaryHeap::new(),
            next_timer: 0,
            ready: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Nodes probed.
    pub fn members(&self) -> usize {
        self.slots.len()
    }

    /// Probes outstanding now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The probe outstanding for `node`, if any.
    pub fn outstanding(&self, node: &NodeId) -> Option<&AuditProbe> {
        match self.slots.get(node) {
            Some(Slot::Outstanding(o)) => Some(&o.probe),
            _ => None,
        }
    }

    /// When the next timer fires, Unix µs (it may turn out to be stale: call anyway).
    pub fn next_wakeup(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Advances to `now_us` (firing every timer due), then applies `event`. `number` gives
    /// fresh probe numbers, unique per master.
    pub fn step(
        &mut self,
        now_us: u64,
        event: Event,
        number: &mut dyn FnMut() -> u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.fire(now_us, number, &mut out);
        match event {
            Event::Members(nodes) => self.members_now(now_us, nodes),
            Event::Answer { node, answer } => self.answered(now_us, node, &answer, &mut out),
            Event::NoSession { node, probe } => {
                if let Some(Slot::Outstanding(o)) = self.slots.get_mut(&node)
                    && o.probe.probe == probe
                {
                    o.sessionless += 1;
                }
            }
            Event::Tick => {}
        }
        self.start_ready(now_us, number, &mut out);
        out
    }

    fn members_now(&mut self, now_us: u64, mut nodes: Vec<NodeId>) {
        // In a fixed order, so that a seed fixes the schedule.
        nodes.sort_unstable();
        nodes.dedup();
        let wanted: HashSet<NodeId> = nodes.iter().copied().collect();
        let before = self.slots.len();
        self.slots.retain(|node, slot| {
            let keep = wanted.contains(node);
            if !keep && matches!(slot, Slot::Outstanding(_)) {
                self.in_flight -= 1;
            }
            keep
        });
        if self.slots.len() != before {
            let slots = &self.slots;
            self.ready
                .retain(|n| matches!(slots.get(n), Some(Slot::Ready)));
        }
        for node in nodes {
            if let MapEntry::Vacant(v) = self.slots.entry(node) {
                let due = now_us.saturating_add(interval_us(&mut self.rng, self.cfg.mean_us));
                let timer = push_timer(&mut self.timers, &mut self.next_timer, due, node);
                v.insert(Slot::Waiting { timer });
            }
        }
    }

    fn answered(&mut self, now_us: u64, node: NodeId, answer: &AuditAnswer, out: &mut Vec<Action>) {
        let Some(Slot::Outstanding(o)) = self.slots.get(&node) else {
            return;
        };
        if o.probe.probe != answer.probe {
            return; // not an answer to this probe: as if none came
        }
        let outcome = match check_answer(&o.probe, &node, answer) {
            Ok(()) => ProbeOutcome::Passed {
                rtt_us: now_us.saturating_sub(o.last_send_us),
                signature: answer.signature,
            },
            Err(reason) => ProbeOutcome::Failed {
                reason: reason.into(),
            },
        };
        self.finish(now_us, node, outcome, out);
    }

    /// Fires every timer due at `now_us`.
    fn fire(&mut self, now_us: u64, number: &mut dyn FnMut() -> u64, out: &mut Vec<Action>) {
        while let Some(Reverse((due, id, node))) = self.timers.peek().copied() {
            if due > now_us {
                break;
            }
            self.timers.pop();
            match self.slots.get_mut(&node) {
                Some(Slot::Waiting { timer }) if *timer == id => {
                    if self.in_flight < self.cfg.max_in_flight {
                        self.start(now_us, node, number, out);
                    } else {
                        self.slots.insert(node, Slot::Ready);
                        self.ready.push_back(node);
                    }
                }
                Some(Slot::Outstanding(o)) if o.timer == id => {
                    if o.attempts < self.cfg.attempts {
                        o.attempts += 1;
                        o.last_send_us = now_us;
                        let deadline = now_us.saturating_add(self.cfg.answer_timeout_us);
                        o.timer =
                            push_timer(&mut self.timers, &mut self.next_timer, deadline, node);
                        out.push(Action::Send {
                            node,
                            probe: o.probe.clone(),
                            attempt: o.attempts,
                        });
                    } else {
                        let reason = timed_out(o, self.cfg.answer_timeout_us);
                        self.finish(now_us, node, ProbeOutcome::Failed { reason }, out);
                    }
                }
                _ => {} // stale
            }
        }
    }

    /// Starts queued probes while there is room.
    fn start_ready(&mut self, now_us: u64, number: &mut dyn FnMut() -> u64, out: &mut Vec<Action>) {
        while self.in_flight < self.cfg.max_in_flight {
            let Some(node) = self.ready.pop_front() else {
                break;
            };
            if matches!(self.slots.get(&node), Some(Slot::Ready)) {
                self.start(now_us, node, number, out);
            }
        }
    }

    fn start(
        &mut self,
        now_us: u64,
        node: NodeId,
        number: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        let probe = AuditProbe {
            probe: number(),
            nonce: Hex(self.rng.r#gen()),
            issued_at_ms: now_us / 1000,
        };
        let deadline = now_us.saturating_add(self.cfg.answer_timeout_us);
        let timer = push_timer(&mut self.timers, &mut self.next_timer, deadline, node);
        self.in_flight += 1;
        out.push(Action::Send {
            node,
            probe: probe.clone(),
            attempt: 1,
        });
        self.slots.insert(
            node,
            Slot::Outstanding(Outstanding {
                probe,
                attempts: 1,
                last_send_us: now_us,
                timer,
                sessionless: 0,
            }),
        );
    }

    /// Ends `node`'s outstanding probe with `outcome` and draws its next probe time.
    fn finish(&mut self, now_us: u64, node: NodeId, outcome: ProbeOutcome, out: &mut Vec<Action>) {
        let due = now_us.saturating_add(interval_us(&mut self.rng, self.cfg.mean_us));
        let timer = push_timer(&mut self.timers, &mut self.next_timer, due, node);
        let Some(Slot::Outstanding(o)) = self.slots.insert(node, Slot::Waiting { timer }) else {
            return;
        };
        self.in_flight -= 1;
        out.push(Action::Record(ProbeEntry {
            node,
            probe: o.probe.probe,
            nonce: o.probe.nonce,
            issued_at_ms: o.probe.issued_at_ms,
            attempts: o.attempts,
            outcome,
        }));
    }
}

/// Checks an answer to `probe` received on `node`'s session: it must name the node, echo the
/// probe and carry the node's signature. The reason is a sentence for the ledger.
pub fn check_answer(
    probe: &AuditProbe,
    node: &NodeId,
    answer: &AuditAnswer,
) -> Result<(), &'static str> {
    if answer.node != *node {
        return Err("the answer names another node");
    }
    if answer.probe != probe.probe
        || answer.nonce != probe.nonce
        || answer.issued_at_ms != probe.issued_at_ms
    {
        return Err("the answer does not echo the probe's nonce and time");
    }
    if answer.verify().is_err() {
        return Err("the answer's signature does not verify under the node's key");
    }
    Ok(())
}

fn timed_out(o: &Outstanding, timeout_us: u64) -> String {
    let secs = timeout_us / 1_000_000;
    let sends = o.attempts;
    match o.sessionless {
        0 => format!("no answer to {sends} sends within {secs} s each"),
        n if n >= sends => format!("no session at any of {sends} sends"),
        n => format!("no answer to {sends} sends within {secs} s each (no session at {n})"),
    }
}

fn push_timer(
    timers: &mut BinaryHeap<Reverse<(u64, u64, NodeId)>>,
    next: &mut u64,
    due_us: u64,
    node: NodeId,
) -> u64 {
    *next += 1;
    timers.push(Reverse((due_us, *next, node)));
    *next
}

/// An exponential random interval with mean `mean_us` (at least 1 µs).
fn interval_us(rng: &mut StdRng, mean_us: u64) -> u64 {
    let u: f64 = rng.r#gen(); // [0, 1)
    let x = -(1.0 - u).ln() * mean_us as f64;
    // Saturating float-to-int conversion; the tail beyond a year is cut off.
    (x as u64).clamp(1, 365 * 86_400_000_000)
}

#[cfg(test)]
#[path = "prober_tests.rs"]
mod tests;
