//! Benchmark of the ingress gateway, in one loopback run: the same `hearth-static` instance
//! serving a 1 KiB page and a 1 MiB file, loaded by `wrk` three ways — directly on the
//! instance's port, through `hearth-gateway` (plain HTTP, routed by `Host`), and through rathole
//! (a reverse tunnel from crates.io, TCP transport) forwarding to the same port. Then the
//! gateway's memory with 10,000 idle keep-alive client connections, and failover: load on a
//! deployment with 3 replicas while one replica's agent is killed with `kill -9`.
//!
//! ```text
//! cargo build --release --workspace && cargo install rathole
//! HEARTH_BIN_DIR=target/release target/release/hearth-bench-gateway --rathole ~/.cargo/bin/rathole
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use hearth_tests::deploy::{cli_ok, homes, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::gateway::GatewayProc;
use hearth_tests::load_http::Load;
use hearth_tests::master::MasterProc;
use hearth_tests::procstat::rss_kib;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Gateway benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// The rathole binary.
    #[arg(long, default_value = "rathole")]
    rathole: PathBuf,
    /// wrk duration per run, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Idle client connections held for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Skip parts: any of `wrk`, `idle`, `failover`.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

const HOST: &str = "bench.example.coop";
const LIVENESS: &[&str] = &[
    "--heartbeat-ms",
    "1000",
    "--suspect-after-ms",
    "2000",
    "--down-after-ms",
    "4000",
];

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[derive(Debug, Default, Clone)]
struct Wrk {
    rps: f64,
    transfer: String,
    p50: String,
    p99: String,
    errors: String,
}

fn wrk(args: &Args, url: &str, host: Option<&str>) -> Wrk {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", &format!("-c{}", args.connections)])
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency");
    if let Some(h) = host {
        cmd.args(["-H", &format!("Host: {h}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .map(|l| l.trim_start()[prefix.len()..].trim().to_owned())
            .unwrap_or_default()
    };
    let errors = [field("Socket errors:"), field("Non-2xx or 3xx responses:")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Wrk {
        rps: field("Requests/sec:").parse().unwrap_or(0.0),
        transfer: field("Transfer/sec:"),
        p50: field("50%"),
        p99: field("99%"),
        errors: if errors.is_empty() {
            "none".into()
        } else {
            errors
        },
    }
}

fn rathole(bin: &Path, dir: &Path, local: SocketAddr) -> (Vec<Killed>, SocketAddr) {
    let control = free_port();
    let public = free_port();
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n[server.services.web]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{public}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("client.toml"),
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n[client.services.web]\ntoken = \"bench\"\nlocal_addr = \"{local}\"\n"
        ),
    )
    .unwrap();
    let spawn = |mode: &str, file: &str| {
        Killed(
            Command::new(bin)
                .arg(mode)
                .arg(dir.join(file))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run rathole"),
        )
    };
    let procs = vec![
        spawn("--server", "server.toml"),
        spawn("--client", "client.toml"),
    ];
    (procs, format!("127.0.0.1:{public}").parse().unwrap())
}

async fn get_ok(url: &str, host: Option<&str>) -> bool {
    let client = reqwest::Client::new();
    let mut req = client.get(url).timeout(Duration::from_secs(2));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    matches!(req.send().await, Ok(r) if r.status() == 200)
}

async fn serving(m: &MasterProc, name: &str) -> Vec<Value> {
    let (_, v) = m.get(&format!("/v1/deployments/{name}")).await;
    v["replicas"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["serving"] == true)
        .cloned()
        .collect()
}

fn raise_nofile() {
    let _ =
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 65_536, 65_536);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_nofile();
    let dir = tempfile::tempdir()?;
    let m = MasterProc::start(dir.path(), LIVENESS);
    let idle_cap = (args.idle + 1000).to_string();
    let gw = GatewayProc::start(
        dir.path(),
        "gw1",
        &m,
        &[
            "--per-ip-connections",
            &idle_cap,
            "--max-connections",
            &idle_cap,
            "--per-ip-rate",
            "10000000",
            "--per-ip-burst",
            "10000000",
        ],
    );
    let places = [
        ("BE", "Proximus", "home-a"),
        ("FR", "Free", "home-b"),
        ("DE", "Telekom", "home-c"),
    ];
    let (mut nodes, ids) = homes(&m, dir.path(), &places, Duration::from_secs(60)).await;
    let recipe = upload_static_site(&m, dir.path(), |t| t);
    cli_ok(
        &m,
        &[
            "deploy",
            "web",
            "--recipe",
            &recipe,
            "--replicas",
            "1",
            "--host",
            HOST,
            "--plain-http",
        ],
    );
    let replica = eventually(Duration::from_secs(60), async || {
        serving(&m, "web").await.into_iter().next()
    })
    .await
    .expect("web serving");
    let node = ids
        .iter()
        .position(|id| replica["node"] == id.as_str())
        .unwrap();
    let instance = replica["instance"].as_str().unwrap();
    let port = replica["endpoints"][0]["port"].as_u64().unwrap();
    let site = nodes[node]
        .dir
        .join("instances")
        .join(instance)
        .join("data/site");
    std::fs::write(site.join("page.html"), vec![b'x'; 1024])?;
    std::fs::write(site.join("file.bin"), vec![b'y'; 1 << 20])?;
    let direct: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let through = gw.http;
    assert!(
        get_ok(&format!("http://{through}/page.html"), Some(HOST)).await,
        "gateway route"
    );

    if !args.skip.iter().any(|s| s == "wrk") {
        let rat_dir = dir.path().join("rathole");
        std::fs::create_dir_all(&rat_dir)?;
        let (_rat, rat_addr) = rathole(&args.rathole, &rat_dir, direct);
        let up = eventually(Duration::from_secs(20), async || {
            get_ok(&format!("http://{rat_addr}/page.html"), None)
                .await
                .then_some(())
        })
        .await;
        anyhow::ensure!(up.is_some(), "rathole never forwarded");
        println!(
            "wrk -t2 -c{} -d{}s, everything on this machine's 2 cores\n",
            args.connections, args.seconds
        );
        println!("| path | size | requests/s | transfer/s | p50 | p99 | errors |");
        println!("|---|---|---|---|---|---|---|");
        for (file, size) in [("page.html", "1 KiB"), ("file.bin", "1 MiB")] {
            for (name, addr, host) in [
                ("direct", direct, None),
                ("hearth-gateway", through, Some(HOST)),
                ("rathole", rat_addr, None),
            ] {
                let w = wrk(&args, &format!("http://{addr}/{file}"), host);
                println!(
                    "| {name} | {size} | {:.0} | {} | {} | {} | {} |",
                    w.rps, w.transfer, w.p50, w.p99, w.errors
                );
            }
        }
        println!();
    }

    if !args.skip.iter().any(|s| s == "idle") {
        let pid = gw.pid();
        let before = rss_kib(pid)?;
        let mut held = Vec::with_capacity(args.idle);
        let request = format!("GET /page.html HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
        for _ in 0..args.idle {
            let mut s = tokio::net::TcpStream::connect(through).await?;
            s.write_all(request.as_bytes()).await?;
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while got < 1024 {
                let n = s.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "connection closed");
                got += n;
            }
            held.push(s);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid)?;
        println!(
            "idle: {} keep-alive client connections held; gateway RSS {:.1} MB before, {:.1} MB with them ({:.1} KiB each)\n",
            held.len(),
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / held.len() as f64
        );
        drop(held);
    }

    if !args.skip.iter().any(|s| s == "failover") {
        cli_ok(
            &m,
            &[
                "deploy",
                "web3",
                "--recipe",
                &recipe,
                "--replicas",
                "3",
                "--host",
                "three.example.coop",
                "--plain-http",
            ],
        );
        let three = eventually(Duration::from_secs(60), async || {
            let s = serving(&m, "web3").await;
            (s.len() == 3).then_some(s)
        })
        .await
        .expect("web3 serving 3 replicas");
        let url = format!("http://{through}/");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(args.connections as usize)
            .build()?;
        let run = Duration::from_secs(args.seconds.max(10));
        let load = Load::start(
            &client,
            &url,
            Some("three.example.coop"),
            args.connections as usize,
            run,
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = three[0]["node"].as_str().unwrap();
        let at = ids.iter().position(|id| id == victim).unwrap();
        let killed = load.elapsed();
        nodes[at].kill9();
        let report = load.finish(false).await;
        println!(
            "failover: {} clients for {} s on 3 replicas, agent of one killed (kill -9) at {:.1} s: {} ok, {} failed ({:.3}%), last failure {}",
            args.connections,
            run.as_secs(),
            killed.as_secs_f64(),
            report.ok,
            report.failed,
            report.failed as f64 * 100.0 / (report.ok + report.failed).max(1) as f64,
            match report.last_failure {
                None => "none".to_owned(),
                Some(last) => format!(
                    "{:.2} s after the kill",
                    last.saturating_sub(killed).as_secs_f64()
                ),
            }
        );
        nodes[at].kill_instances();
    }
    drop(nodes);
    Ok(())
}
