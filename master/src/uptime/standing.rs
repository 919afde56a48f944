//! Standings: what the node is told (`standing`, SPEC §9.19) after its `welcome` and whenever
//! its standing, score or reason changes, and what the scheduler reads (reliability, suspended),
//! all from the ledger's books (`hearth_ledger::books::Books::score`).

use hearth_api::NodeStanding;
use hearth_ledger::entry::Standing as Level;
use hearth_ledger::score::NodeScore;
use hearth_protocol::messages::standing::{Standing, StandingLevel};
use hearth_protocol::{Message, NodeId};

use crate::context::Context;

/// What placement reads of a node's standing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// The live online score in `[0, 1]` (1.0 while unknown).
    pub reliability: f64,
    /// Suspended: no new replicas.
    pub suspended: bool,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            reliability: 1.0,
            suspended: false,
        }
    }
}

/// The `standing` message for a score.
pub fn message(score: &NodeScore) -> Standing {
    Standing {
        standing: level(score.standing),
        score_ppm: score.score_ppm,
        probes: score.probes_passed.saturating_add(score.probes_failed),
        since_ms: score.since_ms,
        reason: score.reason.clone(),
    }
}

/// The API's view of a score.
pub fn api_view(score: &NodeScore) -> NodeStanding {
    NodeStanding {
        standing: level(score.standing),
        score_ppm: score.score_ppm,
        probes_passed: score.probes_passed,
        probes_failed: score.probes_failed,
        since_ms: score.since_ms,
        reason: score.reason.clone(),
    }
}

/// What placement reads of a score.
pub fn placement(score: &NodeScore) -> Placement {
    Placement {
        reliability: f64::from(score.live_ppm.min(1_000_000)) / 1e6,
        suspended: score.standing == Level::Suspended,
    }
}

fn level(s: Level) -> StandingLevel {
    match s {
        Level::Good => StandingLevel::Good,
        Level::Warned => StandingLevel::Warned,
        Level::Suspended => StandingLevel::Suspended,
    }
}

/// The score `node` has now (None: never probed).
pub fn score_of(ctx: &Context, node: &NodeId) -> Option<NodeScore> {
    ctx.ledger.books().score(node)
}

/// Sends `node` its standing on a session just opened (queued behind the welcome).
pub fn session_opened(ctx: &Context, node: &NodeId) {
    let Some(score) = score_of(ctx, node) else {
        return;
    };
    let now = message(&score);
    if ctx.fleet.push(node, Message::Standing(now.clone())) {
        lock(&ctx.uptime.sent).insert(*node, now);
    }
}

/// Re-reads the scores of `nodes`: updates what placement reads and sends each node with a
/// session its standing if that changed since the last one it was sent.
pub fn refresh(ctx: &Context, nodes: impl Iterator<Item = NodeId>) {
    let scores: Vec<(NodeId, NodeScore)> = {
        let books = ctx.ledger.books();
        nodes
            .filter_map(|n| books.score(&n).map(|s| (n, s)))
            .collect()
    };
    {
        let mut placed = lock(&ctx.uptime.placement);
        for (node, score) in &scores {
            placed.insert(*node, placement(score));
        }
    }
    let mut sent = lock(&ctx.uptime.sent);
    for (node, score) in scores {
        let now = message(&score);
        if sent.get(&node) != Some(&now) && ctx.fleet.push(&node, Message::Standing(now.clone())) {
            sent.insert(node, now);
        }
    }
}

/// What placement reads of `node` (neutral while never probed).
pub fn placement_of(ctx: &Context, node: &NodeId) -> Placement {
    lock(&ctx.uptime.placement)
        .get(node)
        .copied()
        .unwrap_or_default()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_becomes_the_message_the_api_view_and_the_placement_view() {
        let score = NodeScore {
            score_ppm: 400_000,
            live_ppm: 250_000,
            standing: Level::Suspended,
            probes_passed: 4,
            probes_failed: 6,
            since_ms: 1_790_000_000_000,
            reason: "online score 40.00% is below the suspension threshold 60.00%".into(),
        };
        let m = message(&score);
        assert_eq!(
            (m.standing, m.score_ppm, m.probes, m.since_ms),
            (StandingLevel::Suspended, 400_000, 10, 1_790_000_000_000)
        );
        assert_eq!(m.reason, score.reason);
        let v = api_view(&score);
        assert_eq!((v.probes_passed, v.probes_failed), (4, 6));
        // Placement ranks by the live score and keeps new replicas off a suspended node.
        assert_eq!(
            placement(&score),
            Placement {
                reliability: 0.25,
                suspended: true
            }
        );
        let good = NodeScore {
            standing: Level::Warned,
            ..score
        };
        assert!(
            !placement(&good).suspended,
            "a warned node still takes replicas"
        );
        assert_eq!(Placement::default().reliability, 1.0);
    }
}
