//! Benchmark: time from a node's last heartbeat to its replica running elsewhere, with the
//! master's default liveness settings, in a fleet of N simulated sessions plus 3 real agents
//! (the deployment is restricted to the real agents by a label, since simulated nodes run
//! nothing).
//!
//! ```text
//! cargo build --release --workspace
//! HEARTH_BIN_DIR=target/release target/release/hearth-bench-heal --nodes 1000
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::time::{Duration, Instant};

use clap::Parser;
use hearth_tests::load::{enrol_all, spawn_sessions};
use hearth_tests::master::MasterProc;
use hearth_tests::node::NodeProc;
use serde_json::Value;

/// Healing benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Simulated nodes besides the 3 real agents.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Runs (kill one agent, measure, bring it back).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn running(m: &MasterProc) -> Vec<(String, String)> {
    let out = m.cli(&["deployment", "show", "web", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "running")
        .map(|r| {
            (
                r["instance"].as_str().unwrap_or("").to_owned(),
                r["node"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn wait<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        anyhow::ensure!(t.elapsed() < limit, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        std::env::var_os("HEARTH_BIN_DIR").is_some(),
        "set HEARTH_BIN_DIR to the release binaries"
    );
    let tmp = tempfile::tempdir()?;
    let m = MasterProc::start(tmp.path(), &[]); // default liveness settings
    let keys = enrol_all(args.nodes, m.quic, m.http, &m.token).await?;
    let sessions = spawn_sessions(keys, m.quic, m.id, 4)?;
    let places = [
        ("BE", "Proximus", "real-a"),
        ("FR", "Free", "real-b"),
        ("DE", "Telekom", "real-c"),
    ];
    let mut agents: Vec<NodeProc> = places
        .iter()
        .enumerate()
        .map(|(i, at)| {
            NodeProc::enrol_and_run_with(
                &tmp.path().join(format!("a{i}")),
                m.quic,
                &m.token(&[]),
                *at,
                &["--label", "real=yes"],
            )
        })
        .collect();
    let ids: Vec<String> = agents
        .iter()
        .map(|a| a.status()["node"].as_str().unwrap_or("").to_owned())
        .collect();
    wait(Duration::from_secs(120), || {
        (sessions.counters().connected as usize == args.nodes).then_some(())
    })
    .await?;
    let reference = hearth_tests::deploy::upload_static_site(&m, tmp.path(), |r| r);
    let out = m.cli(&[
        "deploy",
        "web",
        "--recipe",
        &reference,
        "--replicas",
        "2",
        "--spread",
        "isp,country",
        "--label",
        "real=yes",
    ]);
    anyhow::ensure!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "fleet: {} simulated nodes + 3 agents; default liveness (heartbeat 3 s, suspect 6 s, down 10 s)",
        args.nodes
    );
    for run in 0..args.runs {
        let before = wait(Duration::from_secs(120), || {
            Some(running(&m)).filter(|r| r.len() == 2)
        })
        .await?;
        let (instance, node) = before[0].clone();
        let i = ids.iter().position(|id| *id == node).unwrap();
        let dir = agents[i].dir.clone();
        // The agent dies: its last heartbeat is at most one interval before this instant.
        agents[i].kill9();
        agents[i].kill_instances();
        let t0 = Instant::now();
        wait(Duration::from_secs(120), || {
            running(&m)
                .iter()
                .any(|(inst, n)| *inst == instance && *n != node)
                .then_some(())
        })
        .await?;
        println!(
            "run {run}: replica {instance} running elsewhere {:.1} s after its node died",
            t0.elapsed().as_secs_f64()
        );
        agents[i] = NodeProc::run(&dir);
        wait(Duration::from_secs(60), || {
            (m.node_state_blocking(&node) == "active").then_some(())
        })
        .await?;
    }
    Ok(())
}
