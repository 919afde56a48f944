//! Benchmark: heartbeat ingest of a real `hearth-master` process with N sessions over real QUIC
//! on loopback. Prints the master's CPU share and RSS per session.
//!
//! This is `hearth-sim live` without the restart (`hearth_simulator::live::run`): the CPU share
//! is the master process's CPU time (user + system, all threads, from `/proc`) over the
//! measurement window divided by the window's wall time. The window starts two heartbeat
//! intervals after the last session connected, so enrolments, handshakes and the first
//! heartbeats are not counted. Heartbeats are counted twice: sent by the simulated nodes, and
//! ingested by the master (its `/metrics` counter, read outside the window).
//!
//! ```text
//! cargo build --release -p hearth-master -p hearth-tests
//! target/release/hearth-bench-heartbeats --nodes 1000 --interval-ms 5000 --measure-secs 60
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hearth_simulator::live::{self, AgentsConfig, LiveOptions, MasterConfig};

/// Heartbeat ingest benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Number of simulated nodes (sessions).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Heartbeat interval (the master marks a node suspect after 3, down after 6).
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
    let bin = match &args.master_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("hearth-master"),
    };
    let interval = Duration::from_millis(args.interval_ms);
    let opts = LiveOptions {
        nodes: args.nodes,
        master: MasterConfig {
            bin,
            heartbeat: interval,
            suspect_after: interval * 3,
            down_after: interval * 6,
            quic_threads: 1,
            // Heartbeat ingest alone, as this benchmark has always measured.
            probe_mean: "off".into(),
            store: None,
        },
        agents: AgentsConfig {
            endpoints: args.endpoints,
            max_handshakes: 256,
            silence_checks: false,
        },
        enrol_concurrency: 64,
        measure: Duration::from_secs(args.measure_secs),
        settle: interval * 2,
        restart: false,
        connect_limit: Duration::from_secs(300),
        deployments: 0,
        replicas: 1,
        probes: false,
        masters: 1,
        failover: false,
    };
    let report = live::run(&opts, &|line| println!("{line}")).await?;
    print!("{}", live::summary(&report));
    Ok(())
}
