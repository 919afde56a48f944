//! Benchmark: idle RSS and CPU of a real `hearth-node run` with 0 and then N instances.
//!
//! ```text
//! cargo build --release --workspace
//! target/release/hearth-bench-agent --instances 10 --measure-secs 600
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::time::{Duration, Instant};

use clap::Parser;
use hearth_tests::master::MasterProc;
use hearth_tests::node::NodeProc;
use hearth_tests::procstat::{cpu_ticks, rss_kib, ticks_per_second};
use serde_json::json;

/// Agent idle benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Instances for the second measurement.
    #[arg(long, default_value_t = 10)]
    instances: usize,
    /// Length of each measurement window.
    #[arg(long, default_value_t = 600)]
    measure_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()?.parent().unwrap().to_owned();
    if std::env::var_os("HEARTH_BIN_DIR").is_none() {
        anyhow::bail!(
            "set HEARTH_BIN_DIR={} (the release binaries) to run this benchmark",
            bin_dir.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let m = MasterProc::start(tmp.path(), &[]);
    let node = NodeProc::enrol_and_run(&tmp.path().join("n1"), m.quic, &m.token(&[]));
    let pid = node.pid();
    let node_id = loop {
        if let Some(id) = node.status()["node"].as_str() {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    measure("0 instances", pid, args.measure_secs).await?;

    let reference = hearth_tests::deploy::upload_static_site(&m, tmp.path(), |r| r);
    let sha = reference
        .rsplit_once(':')
        .map(|(_, s)| s.to_owned())
        .unwrap_or_default();
    for i in 0..args.instances {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let body = json!({ "instance": format!("web-{i}"), "node": node_id, "deployment": "web",
            "recipe": { "name": "static-site", "version": "1.0.0", "sha256": sha.to_string() }, "ports": { "http": port } });
        let (status, v) = m
            .call(
                reqwest::Method::POST,
                "/v1/instances",
                Some(&body.to_string()),
                Some(&m.token),
            )
            .await;
        anyhow::ensure!(status == 201, "place: {v}");
    }
    let t = Instant::now();
    loop {
        let (_, v) = m.get("/v1/instances").await;
        let healthy = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["health"] == "healthy").count());
        if healthy == args.instances {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "only {healthy} healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} instances running and healthy after {:.1} s",
        args.instances,
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    measure(
        &format!("{} instances", args.instances),
        pid,
        args.measure_secs,
    )
    .await?;
    Ok(())
}

async fn measure(label: &str, pid: u32, secs: u64) -> anyhow::Result<()> {
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        peak = peak.max(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu =
        (cpu_ticks(pid)? - c0) as f64 / ticks_per_second() / t0.elapsed().as_secs_f64() * 100.0;
    println!(
        "{label}: agent RSS {} KiB (peak {peak} KiB), CPU {cpu:.3} % of one core over {secs} s",
        rss_kib(pid)?
    );
    Ok(())
}
