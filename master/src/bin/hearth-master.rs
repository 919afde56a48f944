//! `hearth-master`: initialise a data directory, or run the master.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hearth_master::data_dir::DataDir;
use hearth_master::liveness::LivenessConfig;
use hearth_master::server::{ServeOptions, serve};

/// The Hearth master.
#[derive(Debug, Parser)]
#[command(name = "hearth-master", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Create the master's identity, admin token and database.
    Init {
        /// Data directory to create.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Serve nodes (QUIC) and operators (HTTP).
    Run {
        /// Data directory made by `init`.
        #[arg(long)]
        data_dir: PathBuf,
        /// QUIC address for nodes (port 0 picks one; written to quic.addr).
        #[arg(long, default_value = "127.0.0.1:7443")]
        quic: SocketAddr,
        /// HTTP address for the API (port 0 picks one; written to http.addr).
        #[arg(long, default_value = "127.0.0.1:7080")]
        http: SocketAddr,
        /// Heartbeat interval asked of nodes, in milliseconds.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(100..))]
        heartbeat_ms: u64,
        /// Silence after which a node is suspect, in milliseconds.
        #[arg(long, default_value_t = 6000)]
        suspect_after_ms: u64,
        /// Silence after which a node is down, in milliseconds.
        #[arg(long, default_value_t = 10000)]
        down_after_ms: u64,
        /// After a restart, how long nodes get to reconnect before they are down, in ms.
        #[arg(long, default_value_t = 60000)]
        restart_grace_ms: u64,
        /// Threads for QUIC (node sessions); one suits heartbeat ingest, more speed up the
        /// TLS handshakes of many nodes reconnecting at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        quic_threads: u16,
        /// Most HTTP connections at once (kept below the open-files limit; at the cap the
        /// connection idle longest is closed).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
        http_max_connections: u32,
        /// Time an HTTP client gets to send its request head, in ms.
        #[arg(long, default_value_t = 10000, value_parser = clap::value_parser!(u64).range(100..))]
        http_header_timeout_ms: u64,
        /// Longest pause in an HTTP request body, in ms.
        #[arg(long, default_value_t = 30000, value_parser = clap::value_parser!(u64).range(100..))]
        http_body_timeout_ms: u64,
        /// Mean time between two uptime probes of a node (exponential random intervals), e.g.
        /// `5m`, `30s`, `800ms`; `0` or `off`: no random probes.
        #[arg(long, default_value = "5m", value_parser = parse_probe_mean)]
        probe_mean: ProbeMean,
        /// Sends of one unanswered probe in all, the first included (each gets 10 s).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
        probe_attempts: u32,
        /// How often due score entries are appended to the ledger and standings re-checked.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        score_every: Duration,
        /// The credits policy: a TOML file with any of the policy's keys (the others keep their
        /// defaults; unknown keys are refused). A policy entry is logged when it changes.
        #[arg(long)]
        credit_policy: Option<PathBuf>,
        /// How often a ledger checkpoint is signed when the log grew (10s, 500ms, or seconds).
        #[arg(long, default_value = "10s", value_parser = parse_interval)]
        checkpoint_interval: Duration,
        /// Where the state lives: `sqlite:PATH` (default: master.db in the data dir, one
        /// master) or `postgres://USER@HOST:PORT/DB` (several masters may share it; each needs
        /// a copy of the same master.key). Also read from HEARTH_STORE.
        #[arg(long, env = "HEARTH_STORE")]
        store: Option<hearth_master::store::StoreUrl>,
        /// This master's unique name among the masters sharing the store (default: its
        /// advertised QUIC address).
        #[arg(long)]
        name: Option<String>,
        /// The QUIC address nodes are told to reach this master at (default: the bound one;
        /// give it when binding 0.0.0.0 or behind a NAT).
        #[arg(long)]
        advertise: Option<SocketAddr>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    hearth_transport::init_logging();
    match main_inner(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn main_inner(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Init { data_dir } => {
            let id = DataDir::new(&data_dir).init()?;
            // A closed pipe (`hearth-… init | true`) is an error like any other, not a panic.
            writeln!(std::io::stdout().lock(), "{id}").context("printing the master id")?;
            eprintln!(
                "master initialised in {}; start it with `hearth-master run --data-dir {}`",
                data_dir.display(),
                data_dir.display()
            );
        }
        Command::Run {
            data_dir,
            quic,
            http,
            heartbeat_ms,
            suspect_after_ms,
            down_after_ms,
            restart_grace_ms,
            quic_threads,
            http_max_connections,
            http_header_timeout_ms,
            http_body_timeout_ms,
            probe_mean,
            probe_attempts,
            score_every,
            credit_policy,
            checkpoint_interval,
            store,
            name,
            advertise,
        } => {
            let credit_policy = match credit_policy {
                Some(path) => hearth_master::ledger::config::read_policy(&path)?,
                None => hearth_ledger::Policy::default(),
            };
            if !(heartbeat_ms < suspect_after_ms && suspect_after_ms < down_after_ms) {
                anyhow::bail!("timeouts must grow: heartbeat < suspect-after < down-after");
            }
            let opts = ServeOptions {
                quic,
                http,
                liveness: LivenessConfig {
                    heartbeat_interval: Duration::from_millis(heartbeat_ms),
                    suspect_after: Duration::from_millis(suspect_after_ms),
                    down_after: Duration::from_millis(down_after_ms),
                    restart_grace: Duration::from_millis(restart_grace_ms),
                },
                quic_threads: usize::from(quic_threads),
                http_limits: hearth_master::http::HttpLimits {
                    max_connections: usize::try_from(http_max_connections).unwrap_or(usize::MAX),
                    header_timeout: Duration::from_millis(http_header_timeout_ms),
                    body_timeout: Duration::from_millis(http_body_timeout_ms),
                },
                uptime: hearth_master::uptime::UptimeConfig {
                    mean: probe_mean.0,
                    attempts: probe_attempts,
                    score_every,
                },
                credit_policy,
                checkpoint_interval,
                store,
                name,
                advertise,
                ..ServeOptions::default()
            };
            serve(&DataDir::new(data_dir), opts, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// `--probe-mean`: a duration, or none.
#[derive(Debug, Clone, Copy)]
struct ProbeMean(Option<Duration>);

fn parse_probe_mean(s: &str) -> Result<ProbeMean, String> {
    if s == "off" || s == "0" {
        return Ok(ProbeMean(None));
    }
    parse_duration(s).map(|d| ProbeMean(Some(d)))
}

/// `250ms`, `10s`, `5m`, `1h`: a positive whole number and a unit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 800ms, 30s, 5m or 1h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .filter(|ms| *ms > 0)
    .ok_or_else(|| format!("`{s}` is not a positive duration such as 800ms, 30s, 5m or 1h"))?;
    Ok(Duration::from_millis(ms))
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    hearth_master::ledger::config::parse_interval(text).map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
