//! Benchmark: heartbeat ingest of a real `hearth-master` process with N sessions over real QUIC
//! on loopback. Prints the master's CPU share and RSS per session.
//!
//! The CPU share is the master process's CPU time (user + system, all threads, from `/proc`)
//! over the measurement window divided by the window's wall time. The window starts two
//! heartbeat intervals after the last session connected, so enrolments, handshakes and the first
//! heartbeats are not counted. Heartbeats are counted twice: sent by the simulated nodes, and
//! ingested by the master (its `/metrics` counter).
//!
//! ```text
//! cargo build --release -p hearth-master -p hearth-tests
//! target/release/hearth-bench-heartbeats --nodes 1000 --interval-ms 5000 --measure-secs 60
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hearth_protocol::MasterId;
use hearth_tests::load::{enrol_all, spawn_sessions};
use hearth_tests::procstat::{cpu_ticks, rss_kib, ticks_per_second};

/// Heartbeat ingest benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Number of simulated nodes (sessions).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Heartbeat interval.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 60)]
    measure_secs: u64,
    /// Client UDP endpoints to spread the sessions over.
    #[arg(long, default_value_t = 8)]
    endpoints: usize,
    /// The master binary (default: next to this one).
    #[arg(long)]
    master_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let master_bin = match &args.master_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("hearth-master"),
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("master");
    let out = Command::new(&master_bin)
        .arg("init")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .with_context(|| format!("running {}", master_bin.display()))?;
    if !out.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let master_id: MasterId = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let i = args.interval_ms;
    let mut child = Command::new(&master_bin)
        .arg("run")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args([
            "--heartbeat-ms",
            &i.to_string(),
            "--suspect-after-ms",
            &(3 * i).to_string(),
            "--down-after-ms",
            &(6 * i).to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let result = run(&args, &dir, master_id, pid).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run(
    args: &Args,
    dir: &std::path::Path,
    master_id: MasterId,
    pid: u32,
) -> anyhow::Result<()> {
    let mut addrs = None;
    for _ in 0..400 {
        let read = |n: &str| {
            std::fs::read_to_string(dir.join(n))
                .ok()?
                .trim()
                .parse::<SocketAddr>()
                .ok()
        };
        if let (Some(q), Some(h)) = (read("quic.addr"), read("http.addr")) {
            addrs = Some((q, h));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (quic, http) = addrs.context("master did not start")?;
    let admin = std::fs::read_to_string(dir.join("admin.token"))?
        .trim()
        .to_owned();

    let t = Instant::now();
    let keys = enrol_all(args.nodes, quic, http, &admin).await?;
    println!(
        "enrolled {} nodes in {:.1} s",
        keys.len(),
        t.elapsed().as_secs_f64()
    );
    let rss_idle = rss_kib(pid)?;

    let t = Instant::now();
    let interval = Duration::from_millis(args.interval_ms);
    let sessions = spawn_sessions(keys, quic, master_id, interval, args.endpoints)?;
    let (connected, sent) = (sessions.connected.clone(), sessions.heartbeats.clone());
    let mut last_report = Instant::now();
    while connected.load(Ordering::Relaxed) < args.nodes as u64 {
        if t.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {} sessions connected",
                connected.load(Ordering::Relaxed),
                args.nodes
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "  {} sessions connected after {:.0} s",
                connected.load(Ordering::Relaxed),
                t.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} sessions connected in {:.1} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    // Let the heartbeat phases spread out, then measure.
    tokio::time::sleep(interval * 2).await;
    let client = reqwest::Client::new();
    // The /metrics requests stay outside the window.
    let ingested0 = ingested(&client, http).await?;
    let (cpu0, sent0, t0) = (
        cpu_ticks(pid)?,
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.measure_secs)).await;
    let (cpu1, sent1, elapsed) = (cpu_ticks(pid)?, sent.load(Ordering::Relaxed), t0.elapsed());
    let ingested1 = ingested(&client, http).await?;
    let rss = rss_kib(pid)?;
    let tick = ticks_per_second();
    let cpu_share = (cpu1 - cpu0) as f64 / tick / elapsed.as_secs_f64() * 100.0;
    println!("nodes:                 {}", args.nodes);
    println!("heartbeat interval:    {} ms", args.interval_ms);
    println!(
        "heartbeats sent/s:     {:.0}",
        (sent1 - sent0) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "heartbeats ingested/s: {:.0} (master's counter)",
        (ingested1 - ingested0) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "master CPU:            {cpu_share:.2} % of one core (over {:.0} s)",
        elapsed.as_secs_f64()
    );
    println!(
        "master RSS idle:       {} KiB (after enrolment, no sessions)",
        rss_idle
    );
    println!("master RSS sessions:   {} KiB", rss);
    println!(
        "RSS per session:       {:.1} KiB",
        (rss.saturating_sub(rss_idle)) as f64 / args.nodes as f64
    );
    println!(
        "sessions at the end:   {}",
        connected.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Heartbeats the master has taken so far, from its `/metrics`.
async fn ingested(client: &reqwest::Client, http: SocketAddr) -> anyhow::Result<u64> {
    let text = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let line = text
        .lines()
        .find(|l| l.starts_with("hearth_master_heartbeats_total "))
        .context("no heartbeat counter in /metrics")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("counter value")?
        .parse()?)
}
