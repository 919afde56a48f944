//! Audit probes in live runs: `POST /v1/nodes/{id}/probe` for every agent, a bounded number at
//! once. The master sends each agent a fresh nonce over its session and checks the signed answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::live::master::{MasterApi, MasterError};
use crate::live::report::quantiles;

/// Outcome of a probe round.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeRound {
    /// Probes sent (one per node).
    pub sent: usize,
    /// Probes the master judged passed.
    pub passed: usize,
    /// Failure reasons the master gave, with their counts.
    pub failed: Vec<(String, usize)>,
    /// Round trip the master measured for passed probes, ms: p50, p90, p99, max.
    pub rtt_quantiles_ms: [f64; 4],
    /// Wall time of the whole round, s.
    pub secs: f64,
}

#[derive(Deserialize)]
struct Answer {
    outcome: String,
    #[serde(default)]
    rtt_ms: f64,
    #[serde(default)]
    reason: String,
}

/// Probes every node in `nodes`, `concurrency` at a time.
pub async fn probe_all(
    api: &MasterApi,
    nodes: Vec<String>,
    concurrency: usize,
) -> Result<ProbeRound, MasterError> {
    const WHAT: &str = "POST /v1/nodes/{id}/probe";
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(nodes.len());
    for id in nodes {
        let (api, gate) = (api.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            api.authed(Method::POST, &format!("/v1/nodes/{id}/probe"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|source| MasterError::Api { what: WHAT, source })?
                .json::<Answer>()
                .await
                .map_err(|source| MasterError::Api { what: WHAT, source })
        }));
    }
    let mut round = ProbeRound {
        sent: tasks.len(),
        ..ProbeRound::default()
    };
    let mut rtts = Vec::new();
    for task in tasks {
        let answer = task.await.map_err(|e| MasterError::Answer {
            what: WHAT,
            detail: e.to_string(),
        })??;
        if answer.outcome == "passed" {
            round.passed += 1;
            rtts.push(Duration::try_from_secs_f64(answer.rtt_ms / 1000.0).unwrap_or_default());
        } else {
            match round.failed.iter_mut().find(|(r, _)| *r == answer.reason) {
                Some((_, n)) => *n += 1,
                None => round.failed.push((answer.reason, 1)),
            }
        }
    }
    round.rtt_quantiles_ms = quantiles(rtts).map(|s| s * 1000.0);
    round.secs = started.elapsed().as_secs_f64();
    Ok(round)
}
