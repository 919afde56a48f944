//! Benchmark: fan-out of one 50 MB artifact to 50 agents on loopback (issue 17), once with
//! `--overlay off` on every agent (everything from the master) and once with the overlay (a
//! gateway relays it; peers serve each other chunks). Prints the bytes the master sent
//! (`hearth_master_blob_bytes_sent_total`), the seconds until all 50 run the instance (it
//! runs only once its artifacts are verified), and the agents' idle RSS with the overlay on.
//!
//! ```text
//! cargo build --release -p hearth-master -p hearth-node-agent -p hearth-gateway -p hearth-cli \
//!     -p hearth-catalogue -p hearth-tests --bin hearth-bench-fanout
//! HEARTH_BIN_DIR=target/release target/release/hearth-bench-fanout --agents 50 --mb 50
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use hearth_tests::deploy::cli_ok;
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::MasterProc;
use hearth_tests::node::NodeProc;
use hearth_tests::procstat::rss_kib;

/// Fan-out benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Agents (one home each; the deployment has one replica per agent).
    #[arg(long, default_value_t = 50)]
    agents: usize,
    /// Size of the artifact, MB (10^6 bytes).
    #[arg(long, default_value_t = 50)]
    mb: u64,
    /// Each agent's `--upload-budget-mbps` in the overlay run.
    #[arg(long, default_value_t = 20)]
    budget_mbps: u64,
    /// Longest wait for all replicas, seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Keep the runs' directories (logs, caches) here instead of a temporary directory.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    /// Only the run with the overlay.
    #[arg(long)]
    only_overlay: bool,
}

struct Run {
    master_bytes: u64,
    rationed: u64,
    secs: f64,
    rss_kib: Vec<u64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("HEARTH_BIN_DIR").is_none() {
        anyhow::bail!("set HEARTH_BIN_DIR=target/release (the release binaries)");
    }
    let tmp = tempfile::tempdir()?;
    let base = args.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&base)?;
    let payload = base.join("payload.bin");
    write_payload(&payload, args.mb * 1_000_000)?;
    let size = args.mb * 1_000_000;
    let off = if args.only_overlay {
        Run {
            master_bytes: 0,
            rationed: 0,
            secs: 0.0,
            rss_kib: Vec::new(),
        }
    } else {
        run(&args, &base.join("off"), &payload, false).await?
    };
    println!(
        "overlay off: master sent {} bytes ({:.2} copies of the artifact), all {} verified and running after {:.1} s",
        off.master_bytes,
        off.master_bytes as f64 / size as f64,
        args.agents,
        off.secs
    );
    let on = run(&args, &base.join("on"), &payload, true).await?;
    println!(
        "overlay on (budget {} Mbit/s per agent): master sent {} bytes ({:.2} copies, {:.1} % of overlay off), all {} verified and running after {:.1} s",
        args.budget_mbps,
        on.master_bytes,
        on.master_bytes as f64 / size as f64,
        on.master_bytes as f64 / off.master_bytes.max(1) as f64 * 100.0,
        args.agents,
        on.secs
    );
    println!(
        "overlay on: the master answered {} chunk requests busy (a peer could serve them)",
        on.rationed
    );
    let mut rss = on.rss_kib.clone();
    rss.sort_unstable();
    if !rss.is_empty() {
        println!(
            "agent idle RSS with the overlay on: median {} KiB, max {} KiB (of {})",
            rss[rss.len() / 2],
            rss[rss.len() - 1],
            rss.len()
        );
    }
    Ok(())
}

/// Incompressible bytes, from a counter hashed (deterministic, no RNG needed).
fn write_payload(path: &Path, len: u64) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < len {
        let block = hearth_protocol::Sha256::digest(&i.to_be_bytes()).0;
        let n = (len - written).min(32) as usize;
        f.write_all(&block[..n])?;
        written += n as u64;
        i += 1;
    }
    f.flush()?;
    Ok(())
}

async fn run(args: &Args, root: &Path, payload: &Path, overlay: bool) -> anyhow::Result<Run> {
    std::fs::create_dir_all(root)?;
    let m = MasterProc::start(root, &[]);
    let _gw =
        overlay.then(|| GatewayProc::start(root, "gw1", &m, &["--overlay-listen", "127.0.0.1:0"]));
    let budget = args.budget_mbps.to_string();
    let flags: Vec<&str> = if overlay {
        vec![
            "--overlay-listen",
            "127.0.0.1:0",
            "--upload-budget-mbps",
            &budget,
        ]
    } else {
        vec!["--overlay", "off"]
    };
    let mut nodes = Vec::new();
    for i in 0..args.agents {
        let dir = root.join(format!("n{i}"));
        let out = std::process::Command::new(hearth_tests::bin("hearth-node"))
            .args(["enrol", "--master", &m.quic.to_string(), "--token"])
            .arg(m.token(&[]))
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "--country",
                "BE",
                "--isp",
                "Proximus",
                "--home",
                &format!("home-{i}"),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "enrol: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        nodes.push(NodeProc::run_with(&dir, &flags));
    }
    let t = Instant::now();
    loop {
        let (_, v) = m.get("/v1/nodes").await;
        let active = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["state"] == "active").count());
        if active == args.agents {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "only {active} agents active"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let binary = hearth_tests::bin("hearth-static");
    let placeholder = hearth_protocol::Sha256::digest(b"filled in by hearth recipe build");
    let server_size = std::fs::metadata(&binary)?.len();
    let text = hearth_tests::recipes::static_site(&placeholder, server_size).replacen(
        "[run]",
        &format!(
            "[[artifacts]]\nname = \"payload\"\nsha256 = \"{placeholder}\"\nsize = {}\n[run]",
            args.mb * 1_000_000
        ),
        1,
    );
    let recipe = hearth_tests::recipes::sign_and_publish(
        &m,
        &text,
        &[("server", &binary), ("payload", payload)],
    );
    // Settle (overlay links, holdings) before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = master_blob_bytes(&m).await?;
    let replicas = args.agents.to_string();
    cli_ok(
        &m,
        &[
            "deploy",
            "fan",
            "--recipe",
            &recipe,
            "--replicas",
            &replicas,
        ],
    );
    let t = Instant::now();
    loop {
        let (_, v) = m.get("/v1/instances").await;
        let up = v.as_array().map_or(0, |a| {
            a.iter()
                .filter(|i| i["state"] == "running" || i["health"] == "healthy")
                .count()
        });
        if up >= args.agents {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(args.timeout_secs),
            "only {up} of {} running after {} s",
            args.agents,
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let master_bytes = master_blob_bytes(&m).await? - before;
    let rationed = metric(&m, "hearth_master_chunks_rationed_total").await?;
    let mut rss = Vec::new();
    if overlay {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for n in &nodes {
            rss.push(rss_kib(n.pid())?);
        }
    }
    Ok(Run {
        master_bytes,
        rationed,
        secs,
        rss_kib: rss,
    })
}

async fn master_blob_bytes(m: &MasterProc) -> anyhow::Result<u64> {
    metric(m, "hearth_master_blob_bytes_sent_total").await
}

async fn metric(m: &MasterProc, name: &str) -> anyhow::Result<u64> {
    let text = reqwest::Client::new()
        .get(format!("http://{}/metrics", m.http))
        .bearer_auth(&m.token)
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .ok_or_else(|| anyhow::anyhow!("no {name} in the master's metrics"))
}
