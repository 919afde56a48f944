//! `hearth-bench-ledger-append [--appenders 1,16,256] [--seconds 5]`: the master's ledger
//! service (`hearth_master::ledger::Ledger`, the real group-commit writer and `fdatasync`) on a
//! temporary directory, N concurrent appenders each appending one probe entry at a time and
//! waiting for it to be durable. Prints entries/s and the p50/p99 append latency per N.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark binary: a panic is its report

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_ledger::Body;
use hearth_ledger::entry::{ProbeEntry, ProbeOutcome};
use hearth_master::ledger::Ledger;
use hearth_protocol::{Hex, NodeId, SecretKey};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn probe(node: NodeId, n: u64) -> Body {
    Body::Probe(ProbeEntry {
        node,
        probe: n,
        nonce: Hex([7; 32]),
        issued_at_ms: 1_796_000_000_000 + n,
        attempts: 1,
        outcome: ProbeOutcome::Failed {
            reason: "no answer within 10 s".into(),
        },
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let levels: Vec<usize> = arg("--appenders")
        .unwrap_or_else(|| "1,16,256".into())
        .split(',')
        .map(|s| s.parse().expect("--appenders N,N,…"))
        .collect();
    let seconds: u64 = arg("--seconds").map_or(5, |s| s.parse().expect("--seconds N"));
    let node = NodeId::from_key(SecretKey::generate().public());
    println!("appenders  entries/s  p50_ms  p99_ms  entries");
    for n in levels {
        let dir = tempfile::tempdir().unwrap();
        let ledger =
            Arc::new(Ledger::open(&dir.path().join("ledger"), &SecretKey::generate()).unwrap());
        let stop = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..n {
            let l = ledger.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < stop {
                    let t0 = Instant::now();
                    l.append(vec![probe(node, (t as u64) << 32 | i)])
                        .await
                        .unwrap();
                    lat.push(t0.elapsed());
                    i += 1;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort_unstable();
        assert_eq!(
            ledger.size() as usize,
            all.len(),
            "every acknowledged append is in the log"
        );
        println!(
            "{n:>9}  {:>9.0}  {:>6.2}  {:>6.2}  {}",
            all.len() as f64 / elapsed.as_secs_f64(),
            pct(&all, 0.50).as_secs_f64() * 1e3,
            pct(&all, 0.99).as_secs_f64() * 1e3,
            all.len()
        );
        ledger.close();
    }
}
