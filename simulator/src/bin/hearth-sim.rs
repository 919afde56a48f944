//! `hearth-sim`: runs a scenario and prints its summary; writes JSON and an SVG plot on request;
//! `bench` measures simulated time per wall second; `live` runs N real agent sessions against a
//! real master and measures its load and the reconnect storm after a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hearth_simulator::live::database::ScratchDatabase;
use hearth_simulator::live::{AgentsConfig, LiveOptions, MasterConfig};
use hearth_simulator::{RunOptions, Scenario, Sim, live, summary, svg};

#[derive(Debug, Parser)]
#[command(name = "hearth-sim", version, about = "Hearth's fleet simulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario (discrete-event, seeded, deterministic) and prints its summary.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Simulated days (default: the scenario's).
        #[arg(long)]
        days: Option<f64>,
        /// Writes the full report as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Writes a plot of availability and fleet size as SVG.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Runs a scenario and prints simulated time per wall-clock second (build with --release).
    Bench {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Simulated days (default: the scenario's).
        #[arg(long)]
        days: Option<f64>,
    },
    /// Runs N real agent sessions over loopback QUIC against a real `hearth-master` (in a
    /// temporary data dir) and measures its CPU and RSS; with --restart, kills it (-9), restarts
    /// it on the same QUIC port and measures how fast every agent is back (build with --release).
    Live(LiveArgs),
}

#[derive(Debug, clap::Args)]
struct LiveArgs {
    /// Number of agents (each enrolled, each with its own session).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The master binary (default: `hearth-master` next to this binary).
    #[arg(long)]
    master_bin: Option<PathBuf>,
    /// Heartbeat interval the master asks for.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..))]
    interval_ms: u64,
    /// The master's --suspect-after-ms (default: 3 intervals).
    #[arg(long)]
    suspect_after_ms: Option<u64>,
    /// The master's --down-after-ms (default: 6 intervals).
    #[arg(long)]
    down_after_ms: Option<u64>,
    /// Length of the steady-state measurement window.
    #[arg(long, default_value_t = 30)]
    measure_secs: u64,
    /// Kill -9 the master after the steady state, restart it and measure the agents' return.
    #[arg(long)]
    restart: bool,
    /// Writes the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Client UDP endpoints the agents share (a real agent has its own; this bounds open files).
    #[arg(long, default_value_t = 16)]
    endpoints: usize,
    /// QUIC handshakes in flight at once in this process.
    #[arg(long, default_value_t = 512)]
    max_handshakes: usize,
    /// The master's --quic-threads.
    #[arg(long, default_value_t = 1)]
    quic_threads: u16,
    /// Longest wait for all sessions to open (at the start and after the restart), seconds.
    #[arg(long, default_value_t = 300)]
    connect_limit_secs: u64,
    /// Deployments to create once every session is open (placed by the master's scheduler and
    /// delivered to the agents as desired states); 0 for none.
    #[arg(long, default_value_t = 0)]
    deployments: usize,
    /// Audit-probe every agent once through the master's API before the steady state.
    #[arg(long)]
    probes: bool,
    /// The master's --probe-mean: mean interval of its random uptime probes (`5m`, `30s`, or
    /// `off` to measure without them).
    #[arg(long, default_value = "5m")]
    probe_mean: String,
    /// Replicas of each deployment (spread over ISPs and countries).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    replicas: u32,
    /// Masters sharing one PostgreSQL store (needs --postgres when more than one); the agents
    /// are enrolled through them in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    masters: u16,
    /// A PostgreSQL server (URL, e.g. what `scripts/pg-cluster start` prints): the masters'
    /// store is a fresh database made on it for this run and dropped afterwards.
    #[arg(long)]
    postgres: Option<String>,
    /// After the steady state, kill -9 the master holding the scheduler lease while
    /// deployments are written through every master, and measure the failover (--masters ≥ 2).
    #[arg(long)]
    failover: bool,
    /// Agents also check for a silent master between heartbeats, as the real agent does (on
    /// with --failover).
    #[arg(long)]
    silence_checks: bool,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Live(args) => live_mode(&args)?,
        Command::Run {
            scenario,
            seed,
            days,
            json,
            svg: svg_out,
        } => {
            let sc = Scenario::load(&scenario)?;
            let started = Instant::now();
            let report = Sim::new(
                sc,
                RunOptions {
                    seed,
                    days,
                    check_skips: false,
                },
            )?
            .run();
            let wall = started.elapsed();
            print!("{}", summary::summary(&report));
            println!("wall time: {:.2} s", wall.as_secs_f64());
            if let Some(path) = json {
                let mut text = serde_json::to_string_pretty(&report)?;
                text.push('\n');
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("report: {}", path.display());
            }
            if let Some(path) = svg_out {
                std::fs::write(&path, svg::plot(&report))
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("plot: {}", path.display());
            }
        }
        Command::Bench {
            scenario,
            seed,
            days,
        } => {
            let sc = Scenario::load(&scenario)?;
            let homes = sc.homes();
            let started = Instant::now();
            let sim = Sim::new(
                sc,
                RunOptions {
                    seed,
                    days,
                    check_skips: false,
                },
            )?;
            let built = started.elapsed();
            let report = sim.run();
            let wall = started.elapsed();
            let cpu = cpu_seconds();
            let sim_s = report.days * 86_400.0;
            println!(
                "{} homes at start ({} at end), {} simulated days, {} events, {} plan() calls",
                homes, report.homes_end, report.days, report.events, report.scheduler.planned
            );
            println!(
                "wall {:.2} s (fleet built in {:.2} s): {:.0} simulated seconds per wall second ({:.1} simulated days per wall second), {:.0} events/s",
                wall.as_secs_f64(),
                built.as_secs_f64(),
                sim_s / wall.as_secs_f64(),
                report.days / wall.as_secs_f64(),
                report.events as f64 / wall.as_secs_f64()
            );
            if let Some(cpu) = cpu {
                println!(
                    "cpu {cpu:.2} s (this thread, /proc/self/schedstat): {:.0} simulated seconds per cpu second",
                    sim_s / cpu
                );
            }
        }
    }
    Ok(())
}

fn live_mode(args: &LiveArgs) -> anyhow::Result<()> {
    let bin = match &args.master_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("hearth-master"),
    };
    let interval = Duration::from_millis(args.interval_ms);
    if args.masters > 1 && args.postgres.is_none() {
        anyhow::bail!(
            "--masters {} needs --postgres URL: several masters share one PostgreSQL store",
            args.masters
        );
    }
    if args.failover && args.masters < 2 {
        anyhow::bail!("--failover needs --masters 2 or more");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let database = match &args.postgres {
        Some(server) => Some(
            runtime
                .block_on(ScratchDatabase::create(server, "live"))
                .with_context(|| format!("creating a database on {server}"))?,
        ),
        None => None,
    };
    let opts = LiveOptions {
        nodes: args.nodes,
        master: MasterConfig {
            bin,
            heartbeat: interval,
            suspect_after: args
                .suspect_after_ms
                .map_or(interval * 3, Duration::from_millis),
            down_after: args
                .down_after_ms
                .map_or(interval * 6, Duration::from_millis),
            quic_threads: args.quic_threads,
            probe_mean: args.probe_mean.clone(),
            store: database.as_ref().map(|d| d.url().to_owned()),
        },
        agents: AgentsConfig {
            endpoints: args.endpoints,
            max_handshakes: args.max_handshakes,
            silence_checks: args.silence_checks || args.failover,
        },
        enrol_concurrency: 64,
        measure: Duration::from_secs(args.measure_secs),
        settle: interval * 2,
        restart: args.restart,
        connect_limit: Duration::from_secs(args.connect_limit_secs),
        deployments: args.deployments,
        replicas: args.replicas,
        probes: args.probes,
        masters: usize::from(args.masters),
        failover: args.failover,
    };
    let report = runtime.block_on(live::run(&opts, &|line| println!("{line}")))?;
    print!("{}", live::summary(&report));
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if report.restart.as_ref().is_some_and(|r| !r.ok()) {
        anyhow::bail!("after the restart, not every agent came back, or a node was marked down");
    }
    if report.failover.as_ref().is_some_and(|f| !f.ok()) {
        anyhow::bail!(
            "the failover did not complete: see the verdict above (lease, placement, agents back, lost or unplaced writes, nodes down)"
        );
    }
    drop(database);
    Ok(())
}

/// CPU time of this (single) thread so far, from `/proc/self/schedstat` (Linux).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}
