//! The recorder: appends the prober's outcomes to the credits ledger in batches (each one group
//! commit), appends due score entries every `--score-every`, and re-checks the standings of the
//! nodes concerned.

use std::sync::Arc;
use std::time::Duration;

use hearth_ledger::entry::{Body, ProbeEntry};
use tokio::sync::mpsc;

use crate::clock::now_ms;
use crate::context::Context;

/// Records outcomes until the prober drops its sender.
pub(super) async fn run(
    ctx: Arc<Context>,
    mut outcomes: mpsc::UnboundedReceiver<Vec<ProbeEntry>>,
    score_every: Duration,
) {
    let mut scores = tokio::time::interval(score_every);
    scores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            batch = outcomes.recv() => {
                let Some(mut batch) = batch else { return };
                while let Ok(more) = outcomes.try_recv() {
                    batch.extend(more);
                }
                let nodes: Vec<_> = batch.iter().map(|e| e.node).collect();
                let bodies = batch.into_iter().map(Body::Probe).collect();
                append(&ctx, bodies, "probe").await;
                super::standing::refresh(&ctx, nodes.into_iter());
            }
            _ = scores.tick() => score(&ctx).await,
        }
    }
}

/// Appends the score entries due now, then re-checks every probed node's standing (a closed
/// window can change it, and an old one rolling out of the score too).
pub(super) async fn score(ctx: &Context) {
    let due = ctx.ledger.books().due_scores(now_ms());
    if !due.is_empty() {
        append(ctx, due, "score").await;
    }
    super::standing::refresh(ctx, ctx.fleet.probe_targets().into_iter());
}

async fn append(ctx: &Context, bodies: Vec<Body>, kind: &str) {
    let n = bodies.len();
    if let Err(e) = ctx.ledger.append(bodies).await {
        tracing::error!(error = %e, entries = n, kind, "cannot append to the ledger: these outcomes are lost");
    }
}
