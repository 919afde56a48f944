//! Benchmark: write latency and throughput of a real `hearth-master`'s operator API on loopback,
//! with keep-alive (one HTTP client per simulated operator, reused for all its requests).
//!
//! Four cases: creating deployments and placing instances, each by one client in sequence and by
//! N clients at once, against a fleet of simulated nodes with live sessions (so each write also
//! pushes the changed nodes' desired states). Every write counted was acknowledged (`2xx`), so it
//! is on disk (SQLite) or committed (PostgreSQL). The fsync time of the disk under the data dir
//! is printed first, for reference.
//!
//! With `--postgres URL` (or `HEARTH_TEST_POSTGRES`, as `scripts/pg-cluster start` prints) the
//! same cases run a second time, in the same run, against a master on a fresh database of that
//! server (`--store postgres://…`), so the two engines are compared on the same machine at the
//! same moment.
//!
//! ```text
//! cargo build --release -p hearth-master -p hearth-cli -p hearth-catalogue -p hearth-tests
//! eval "$(scripts/pg-cluster start)"
//! HEARTH_BIN_DIR=target/release target/release/hearth-bench-api --writes 2000 --clients 16
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use hearth_simulator::live::database::ScratchDatabase;
use hearth_tests::deploy::upload_static_site;
use hearth_tests::master::MasterProc;
use serde_json::{Value, json};

/// Operator API write benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Writes per case.
    #[arg(long, default_value_t = 2000)]
    writes: usize,
    /// Clients of the concurrent cases.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Enrolled nodes with a live session (simulated agents), instances spread over them.
    #[arg(long, default_value_t = 16)]
    nodes: usize,
    /// A PostgreSQL server (URL): run every case on a fresh database of it too.
    #[arg(long, env = "HEARTH_TEST_POSTGRES")]
    postgres: Option<String>,
}

/// What one case writes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Deployment,
    Instance,
}

/// Latencies of acknowledged writes and the wall time they took.
struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// p50 of `n` 4 KiB writes each followed by `fdatasync`, in `dir`.
fn fsync_p50(dir: &Path, n: usize) -> anyhow::Result<Duration> {
    let mut f = std::fs::File::create(dir.join("fsync-probe"))?;
    let block = vec![7u8; 4096];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(percentile(&times, 0.5))
}

struct Target {
    base: String,
    token: String,
    nodes: Vec<String>,
    recipe: Value,
}

fn body(t: &Target, kind: Kind, case: &str, i: usize) -> (String, Value) {
    match kind {
        Kind::Deployment => (
            format!("{}/v1/deployments", t.base),
            json!({ "name": format!("{case}-{i}"), "recipe": t.recipe, "replicas": 1 }),
        ),
        Kind::Instance => (
            format!("{}/v1/instances", t.base),
            json!({
                "instance": format!("{case}-{i}"), "node": t.nodes[i % t.nodes.len()],
                "deployment": case, "recipe": t.recipe,
            }),
        ),
    }
}

async fn run(t: &Target, kind: Kind, case: &str, clients: usize, writes: usize) -> Run {
    let start = Instant::now();
    let per_client = writes.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let jobs: Vec<(String, Value)> = (c * per_client..((c + 1) * per_client).min(writes))
                .map(|i| body(t, kind, case, i))
                .collect();
            let token = t.token.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut lat = Vec::with_capacity(jobs.len());
                for (url, body) in jobs {
                    let t0 = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .expect("API reachable");
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    assert!(status.is_success(), "{url}: {status}: {text}");
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(writes);
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    Run {
        latencies,
        wall: start.elapsed(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.writes > 0 && args.clients > 0 && args.nodes > 0,
        "--writes, --clients and --nodes must be > 0"
    );
    anyhow::ensure!(
        std::env::var_os("HEARTH_BIN_DIR").is_some(),
        "set HEARTH_BIN_DIR to the release binaries"
    );
    let tmp = tempfile::tempdir()?;
    println!(
        "fsync (4 KiB + fdatasync, p50 of 200): {} ms",
        ms(fsync_p50(tmp.path(), 200)?)
    );
    println!(
        "{:<10} {:<12} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "store", "writes", "clients", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "writes/s"
    );
    bench_engine(&args, &tmp.path().join("sqlite"), "sqlite", &[]).await?;
    match &args.postgres {
        Some(server) => {
            let db = ScratchDatabase::create(server, "bench_api")
                .await
                .map_err(|e| anyhow::anyhow!("PostgreSQL at {server}: {e}"))?;
            let store = ["--store", db.url()];
            bench_engine(&args, &tmp.path().join("postgres"), "postgres", &store).await?;
        }
        None => println!("(postgres: not run; give --postgres URL or HEARTH_TEST_POSTGRES)"),
    }
    Ok(())
}

/// Starts a master with `extra`, its nodes' sessions, and runs and prints every case.
async fn bench_engine(
    args: &Args,
    root: &Path,
    engine: &str,
    extra: &[&str],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(root)?;
    let m = MasterProc::start(root, extra);
    // Nodes with live sessions: every write pushes the changed desired states, as in a fleet.
    let keys = hearth_tests::load::enrol_all(args.nodes, m.quic, m.http, &m.token).await?;
    let _sessions = hearth_tests::load::spawn_sessions(keys, m.quic, m.id, 1)?;
    let (_, nodes) = m.get("/v1/nodes").await;
    let nodes: Vec<String> = nodes
        .as_array()
        .expect("node list")
        .iter()
        .map(|n| n["id"].as_str().expect("node id").to_owned())
        .collect();
    let up = hearth_tests::eventually(Duration::from_secs(30), async || {
        let (_, v) = m.get("/v1/nodes").await;
        let active = v
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "active")
            .count();
        (active == nodes.len()).then_some(())
    })
    .await;
    anyhow::ensure!(
        up.is_some(),
        "the nodes' sessions did not all come up within 30 s"
    );
    let recipe = upload_static_site(&m, root, |s| s);
    let (name, rest) = recipe.split_once('@').expect("name@version:sha");
    let (version, sha) = rest.split_once(':').expect("version:sha");
    let target = Target {
        base: format!("http://{}", m.http),
        token: m.token.clone(),
        nodes,
        recipe: json!({ "name": name, "version": version, "sha256": sha }),
    };
    for (kind, label) in [
        (Kind::Deployment, "deployment"),
        (Kind::Instance, "instance"),
    ] {
        for clients in [1, args.clients] {
            let case = format!("b{}{clients}", &label[..1]);
            let mut r = run(&target, kind, &case, clients, args.writes).await;
            r.latencies.sort();
            println!(
                "{:<10} {:<12} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10.0}",
                engine,
                label,
                clients,
                r.latencies.len(),
                ms(percentile(&r.latencies, 0.5)),
                ms(percentile(&r.latencies, 0.9)),
                ms(percentile(&r.latencies, 0.99)),
                ms(*r.latencies.last().expect("writes > 0")),
                r.latencies.len() as f64 / r.wall.as_secs_f64(),
            );
        }
    }
    Ok(())
}
