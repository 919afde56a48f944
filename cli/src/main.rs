//! `hearth`: the operator CLI.

use clap::Parser as _;
use hearth_cli::{Cli, is_closed_pipe, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`hearth … | head -1`): nobody is left to tell; exit as a tool
        // killed by SIGPIPE does.
        Err(e) if is_closed_pipe(&e) => std::process::ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
