//! `hearth-sim`: runs a scenario and prints its summary; writes JSON and an SVG plot on request;
//! `bench` measures simulated time per wall second.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hearth_simulator::{RunOptions, Scenario, Sim, summary, svg};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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

/// CPU time of this (single) thread so far, from `/proc/self/schedstat` (Linux).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}
