//! `hearth-master`: initialise a data directory, or run the master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
            println!("{id}");
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
        } => {
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
                ..ServeOptions::default()
            };
            serve(&DataDir::new(data_dir), opts, shutdown_signal()).await?;
        }
    }
    Ok(())
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
