//! Make-before-break moves, as part of a pass: the move under way is settled (done when its new
//! copy is ready, abandoned when that copy fails, is late or loses its node), and a new one
//! starts for a replica on a draining node, or for the replica whose move restores a degraded
//! spread.

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{Assignment, InstanceId};

use super::model::{Deployment, Event, EventKind, Move, MoveReason, Outcome};
use super::plan::{Pass, Replica, event};
use crate::placement::{Achieved, Candidate, Placement, achieved, place_indexed};
use crate::rollout::Readiness;

impl<'a> Pass<'a> {
    /// Settles the move under way: done, abandoned, or still waiting.
    pub(super) fn settle_move(
        &mut self,
        mine: &mut Vec<Replica<'a>>,
        out: &mut Outcome,
        ready: &impl Fn(&NodeId, &Assignment) -> Readiness,
    ) {
        let Some(m) = out.moving.clone() else {
            return;
        };
        let find = |id: &InstanceId| mine.iter().copied().find(|(_, a)| a.instance == *id);
        let (from, to) = (find(&m.from), find(&m.to));
        let mut drop_id = None;
        match (from, to) {
            (_, None) => {
                out.events.push(abandoned(&m, "its new copy is gone"));
                out.calm_until_ms = self.snap.now_ms + self.snap.policy.retry_ms;
            }
            (None, Some(_)) => {
                let text = format!("{} is gone; {} takes its place", m.from, m.to);
                out.events.push(event(EventKind::Moved, text));
            }
            (Some((fnode, _)), Some(_)) if !self.keeps(fnode) => {
                self.remove(&m.from);
                drop_id = Some(m.from.clone());
                let text = format!(
                    "{} was lost with node {}; {} on {} takes its place",
                    m.from,
                    self.describe(fnode),
                    m.to,
                    self.describe(&m.to_node)
                );
                out.events.push(event(EventKind::Moved, text));
            }
            (Some(_), Some((tnode, ta))) => {
                let verdict = if !self.keeps(tnode) {
                    Err(format!("node {} was lost", self.describe(tnode)))
                } else {
                    match ready(tnode, ta) {
                        Readiness::Ready => Ok(true),
                        Readiness::Broken(why) => Err(format!("{} failed: {why}", m.to)),
                        Readiness::Waiting
                            if self.snap.now_ms
                                >= m.started_ms + self.snap.policy.move_deadline_ms =>
                        {
                            Err(format!(
                                "{} was not ready within {} s",
                                m.to,
                                self.snap.policy.move_deadline_ms / 1000
                            ))
                        }
                        Readiness::Waiting => Ok(false),
                    }
                };
                match verdict {
                    Ok(false) => return,
                    Ok(true) => {
                        self.remove(&m.from);
                        drop_id = Some(m.from.clone());
                        let text = format!(
                            "{} on {} replaces {} on {} ({})",
                            m.to,
                            self.describe(&m.to_node),
                            m.from,
                            self.describe(&m.from_node),
                            reason(m.reason)
                        );
                        out.events.push(event(EventKind::Moved, text));
                    }
                    Err(why) => {
                        self.remove(&m.to);
                        drop_id = Some(m.to.clone());
                        out.events.push(abandoned(&m, &why));
                        out.calm_until_ms = self.snap.now_ms + self.snap.policy.retry_ms;
                    }
                }
            }
        }
        if let Some(id) = drop_id {
            mine.retain(|(_, a)| a.instance != id);
        }
        out.moving = None;
    }

    /// Starts moving the first replica on a draining node; true if there is one (moved or not).
    pub(super) fn start_drain_move(
        &mut self,
        d: &Deployment,
        kept: &[Replica<'a>],
        out: &mut Outcome,
    ) -> bool {
        let Some(pos) = kept.iter().position(|(n, _)| self.draining(n)) else {
            return false;
        };
        let Some(from) = kept.get(pos).copied() else {
            return false;
        };
        let (_, p) = self.instead_of(d, kept, from);
        match p.added.first() {
            Some(target) => self.start_move(d, from, *target, MoveReason::Drain, out),
            None => {
                let why = p.shortfall.map_or_else(String::new, |s| format!(": {s}"));
                self.drain_condition(kept, &format!(" with nowhere to go{why}"), out);
            }
        }
        true
    }

    /// Where a copy of `from` would go if it left: the other replicas' nodes, and the placement
    /// of one replica beside them.
    fn instead_of(
        &self,
        d: &Deployment,
        kept: &[Replica<'a>],
        from: Replica<'a>,
    ) -> (Vec<NodeId>, Placement) {
        let others: Vec<NodeId> = kept
            .iter()
            .filter(|(_, a)| a.instance != from.1.instance)
            .map(|(n, _)| *n)
            .collect();
        let req = self.request(d, others.len() + 1);
        let p = place_indexed(
            &self.fleet,
            Some(&self.countries),
            &others,
            &req,
            self.snap.start,
        );
        (others, p)
    }

    /// Starts the move that raises the spread the most, if the fleet allows one.
    pub(super) fn start_spread_move(
        &mut self,
        d: &Deployment,
        kept: &[Replica<'a>],
        got: Achieved,
        avail: (usize, usize),
        out: &mut Outcome,
    ) {
        let spread = self.request(d, 0).spread;
        let n = got.replicas;
        let score = |a: &Achieved| {
            (
                if spread.country { a.countries } else { 0 },
                if spread.isp { a.isps } else { 0 },
            )
        };
        let can_gain = (spread.country && got.countries < n && avail.0 > got.countries)
            || (spread.isp && got.isps < n && avail.1 > got.isps);
        if !can_gain {
            return;
        }
        let before = score(&got);
        // Replicas sharing a country (or an ISP) with another are the ones worth moving.
        for from in kept.iter().rev().take(16) {
            let (others, p) = self.instead_of(d, kept, from);
            let Some(target) = p.added.first().copied() else {
                continue;
            };
            let mut after_nodes: Vec<&Candidate> =
                others.iter().filter_map(|o| self.candidate(o)).collect();
            after_nodes.extend(self.candidate(&target));
            if score(&achieved(&after_nodes)) > before {
                self.start_move(d, from, target, MoveReason::Spread, out);
                return;
            }
        }
    }

    pub(super) fn start_move(
        &mut self,
        d: &Deployment,
        from: Replica<'a>,
        target: NodeId,
        why: MoveReason,
        out: &mut Outcome,
    ) {
        let mut k = 0;
        let Some(id) = self.fresh_id(&d.spec.name, &mut k) else {
            return;
        };
        self.budget = self.budget.saturating_sub(1);
        let m = Move {
            from: from.1.instance.clone(),
            from_node: from.0,
            to: id.clone(),
            to_node: target,
            reason: why,
            started_ms: self.snap.now_ms,
        };
        let text = format!(
            "{} on {} to replace {} on {} ({}); the old copy stops once the new one is ready",
            m.to,
            self.describe(&target),
            m.from,
            self.describe(&from.0),
            reason(why)
        );
        out.events.push(event(EventKind::Moving, text));
        self.place(target, d, id);
        out.moving = Some(m);
    }
}

fn reason(r: MoveReason) -> &'static str {
    match r {
        MoveReason::Drain => "its node is draining",
        MoveReason::Spread => "restoring the spread",
    }
}

pub(super) fn abandoned(m: &Move, why: &str) -> Event {
    event(
        EventKind::MoveAbandoned,
        format!("{} stays on its node: {why}", m.from),
    )
}
