//! `hearth-gateway`: initialise a data directory, or run the gateway.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hearth_gateway::config::{GatewayConfig, RunArgs};
use hearth_gateway::data_dir::DataDir;

/// The Hearth ingress gateway.
#[derive(Debug, Parser)]
#[command(name = "hearth-gateway", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the gateway's identity (prints its id, `hk-…`, to register with the master).
    Init {
        /// Data directory to create.
        #[arg(long)]
        data: PathBuf,
    },
    /// Accept nodes' gateway links and serve the public.
    Run(Box<RunArgs>),
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
        Command::Init { data } => {
            let id = DataDir::new(&data).init()?;
            // A closed pipe (`hearth-… init | true`) is an error like any other, not a panic.
            writeln!(std::io::stdout().lock(), "{id}").context("printing the gateway key")?;
            eprintln!(
                "gateway initialised in {}; register it with `hearth gateway add NAME --key {id} \
                 --tunnel-addr HOST:PORT`, then start it with `hearth-gateway run --data {} \
                 --master URL`",
                data.display(),
                data.display()
            );
        }
        Command::Run(run) => {
            let config = GatewayConfig::try_from(*run)?;
            hearth_gateway::run(config, shutdown_signal()).await?;
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
