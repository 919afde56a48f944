//! Benchmark: heartbeat ingest of a real `hearth-master` process with N sessions over real QUIC
//! on loopback. Prints the master's CPU share and RSS per session.
//!
//! ```text
//! cargo build --release -p hearth-master -p hearth-tests
//! target/release/hearth-bench-heartbeats --nodes 1000 --interval-ms 5000 --measure-secs 60
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hearth_node_agent::enrol::request_enrolment;
use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::messages::session::{Counters, Heartbeat, Hello};
use hearth_protocol::{
    Arch, EnrolToken, Hex, MasterId, Message, NodeFacts, NodeId, PROTOCOL_VERSION, Resources,
    SecretKey,
};
use hearth_tests::procstat::{cpu_ticks, rss_kib, ticks_per_second};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
};
use tokio::sync::Semaphore;

/// Heartbeat ingest benchmark.
#[derive(Debug, Parser)]
struct Args {
    /// Number of simulated nodes (sessions).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Heartbeat interval.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// Length of the measurement window.
    #[arg(long, default_value_t = 60)]
    measure_secs: u64,
    /// Client UDP endpoints to spread the sessions over.
    #[arg(long, default_value_t = 8)]
    endpoints: usize,
    /// The master binary (default: next to this one).
    #[arg(long)]
    master_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let master_bin = match &args.master_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("hearth-master"),
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("master");
    let out = Command::new(&master_bin)
        .arg("init")
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .with_context(|| format!("running {}", master_bin.display()))?;
    if !out.status.success() {
        bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let master_id: MasterId = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let i = args.interval_ms;
    let mut child = Command::new(&master_bin)
        .arg("run")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args([
            "--heartbeat-ms",
            &i.to_string(),
            "--suspect-after-ms",
            &(3 * i).to_string(),
            "--down-after-ms",
            &(6 * i).to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let result = run(&args, &dir, master_id, pid).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run(
    args: &Args,
    dir: &std::path::Path,
    master_id: MasterId,
    pid: u32,
) -> anyhow::Result<()> {
    let mut addrs = None;
    for _ in 0..400 {
        let read = |n: &str| {
            std::fs::read_to_string(dir.join(n))
                .ok()?
                .trim()
                .parse::<SocketAddr>()
                .ok()
        };
        if let (Some(q), Some(h)) = (read("quic.addr"), read("http.addr")) {
            addrs = Some((q, h));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (quic, http) = addrs.context("master did not start")?;
    let admin = std::fs::read_to_string(dir.join("admin.token"))?
        .trim()
        .to_owned();

    let t = Instant::now();
    let keys = enrol_all(args.nodes, quic, http, &admin).await?;
    println!(
        "enrolled {} nodes in {:.1} s",
        keys.len(),
        t.elapsed().as_secs_f64()
    );
    let rss_idle = rss_kib(pid)?;

    let connected = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(AtomicU64::new(0));
    let endpoints: Vec<_> = (0..args.endpoints.max(1))
        .map(|_| client_endpoint("127.0.0.1:0".parse().unwrap()))
        .collect::<Result<_, _>>()?;
    let gate = Arc::new(Semaphore::new(256));
    let t = Instant::now();
    let interval = Duration::from_millis(args.interval_ms);
    for (n, key) in keys.into_iter().enumerate() {
        let endpoint = endpoints[n % endpoints.len()].clone();
        let (connected, acks, gate) = (connected.clone(), acks.clone(), gate.clone());
        tokio::spawn(async move {
            // Like an agent: reconnect after a lost session, with a jittered pause.
            loop {
                let e = session(
                    &endpoint, quic, master_id, &key, interval, &gate, &connected, &acks,
                )
                .await;
                eprintln!("session {n} ended: {e:#}");
                tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 2000)).await;
            }
        });
    }
    let mut last_report = Instant::now();
    while connected.load(Ordering::Relaxed) < args.nodes as u64 {
        if t.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {} sessions connected",
                connected.load(Ordering::Relaxed),
                args.nodes
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            println!(
                "  {} sessions connected after {:.0} s",
                connected.load(Ordering::Relaxed),
                t.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{} sessions connected in {:.1} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    // Let the heartbeat phases spread out, then measure.
    tokio::time::sleep(interval * 2).await;
    let (cpu0, acks0, t0) = (
        cpu_ticks(pid)?,
        acks.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.measure_secs)).await;
    let (cpu1, acks1, elapsed) = (cpu_ticks(pid)?, acks.load(Ordering::Relaxed), t0.elapsed());
    let rss = rss_kib(pid)?;
    let tick = ticks_per_second();
    let cpu_share = (cpu1 - cpu0) as f64 / tick / elapsed.as_secs_f64() * 100.0;
    println!("nodes:                 {}", args.nodes);
    println!("heartbeat interval:    {} ms", args.interval_ms);
    println!(
        "heartbeats acked/s:    {:.0}",
        (acks1 - acks0) as f64 / elapsed.as_secs_f64()
    );
    println!(
        "master CPU:            {cpu_share:.2} % of one core (over {:.0} s)",
        elapsed.as_secs_f64()
    );
    println!(
        "master RSS idle:       {} KiB (after enrolment, no sessions)",
        rss_idle
    );
    println!("master RSS sessions:   {} KiB", rss);
    println!(
        "RSS per session:       {:.1} KiB",
        (rss.saturating_sub(rss_idle)) as f64 / args.nodes as f64
    );
    println!(
        "sessions at the end:   {}",
        connected.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn enrol_all(
    n: usize,
    quic: SocketAddr,
    http: SocketAddr,
    admin: &str,
) -> anyhow::Result<Vec<SecretKey>> {
    let client = reqwest::Client::new();
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (client, gate, admin) = (client.clone(), gate.clone(), admin.to_owned());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let v: serde_json::Value = client
                .post(format!("http://{http}/v1/tokens"))
                .bearer_auth(&admin)
                .json(&serde_json::json!({ "label": format!("bench-{i}") }))
                .send()
                .await?
                .json()
                .await?;
            let token: EnrolToken = v["token"].as_str().context("token")?.parse()?;
            let key = SecretKey::generate();
            let mut req = EnrolRequest {
                token_id: token.id,
                token_secret: token.secret,
                node: NodeId::from_key(key.public()),
                master: token.master,
                facts: facts(i),
                proof: Hex([0; 64]),
            };
            req.proof = key.sign(&req.signing_bytes());
            request_enrolment(quic, &token, req).await?;
            anyhow::Ok(key)
        }));
    }
    let mut keys = Vec::with_capacity(n);
    for t in tasks {
        keys.push(t.await??);
    }
    Ok(keys)
}

fn facts(i: usize) -> NodeFacts {
    let countries = ["BE", "FR", "DE", "NL", "ES"];
    NodeFacts {
        agent: "bench/0".into(),
        arch: Arch::X86_64,
        capacity: Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 100_000,
            bandwidth_mbps: 500,
        },
        country: countries[i % countries.len()].parse().unwrap(),
        isp: format!("isp-{}", i % 50),
        asn: None,
        home: format!("home-{i}").parse().unwrap(),
        uplink_mbps: 500,
        downlink_mbps: 1000,
        cgroups_v2: false,
        labels: Default::default(),
    }
}

/// One session until it fails; `connected` counts the sessions open now.
#[allow(clippy::too_many_arguments)]
async fn session(
    endpoint: &quinn::Endpoint,
    quic: SocketAddr,
    master: MasterId,
    key: &SecretKey,
    interval: Duration,
    gate: &Semaphore,
    connected: &AtomicU64,
    acks: &AtomicU64,
) -> anyhow::Error {
    match session_inner(endpoint, quic, master, key, interval, gate, connected, acks).await {
        Err(e) => e,
        Ok(()) => anyhow::anyhow!("ended"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn session_inner(
    endpoint: &quinn::Endpoint,
    quic: SocketAddr,
    master: MasterId,
    key: &SecretKey,
    interval: Duration,
    gate: &Semaphore,
    connected: &AtomicU64,
    acks: &AtomicU64,
) -> anyhow::Result<()> {
    let node = NodeId::from_key(key.public());
    let (conn, mut control) = {
        let _permit = gate.acquire().await?;
        let identity = Identity::new(key, "bench")?;
        let config = client_config(
            Purpose::Session,
            Some(&identity),
            master,
            &TransportTuning::default(),
        )?;
        let conn = endpoint.connect_with(config, quic, SERVER_NAME)?.await?;
        let (send, recv) = conn.open_bi().await?;
        let mut control = MessageStream::new(send, recv, 1 << 20);
        let hello = Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            node,
            agent: "bench".into(),
            applied_revision: 0,
        };
        control.send(&Message::Hello(hello)).await?;
        match control.recv().await? {
            Some(Message::Welcome(_)) => {}
            other => bail!("expected welcome, got {other:?}"),
        }
        (conn, control)
    };
    connected.fetch_add(1, Ordering::Relaxed);
    let result = heartbeats(&mut control, interval, acks).await;
    connected.fetch_sub(1, Ordering::Relaxed);
    drop(conn);
    result
}

async fn heartbeats(
    control: &mut MessageStream,
    interval: Duration,
    acks: &AtomicU64,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(
        rand::random::<u64>() % interval.as_millis() as u64,
    ))
    .await;
    let mut tick = tokio::time::interval(interval);
    for seq in 1.. {
        tick.tick().await;
        let hb = Heartbeat {
            seq,
            used: Resources::default(),
            applied_revision: 0,
            instances: vec![],
            counters: Counters::default(),
        };
        control.send(&Message::Heartbeat(hb)).await?;
        match control.recv().await? {
            Some(Message::HeartbeatAck(_)) => {
                acks.fetch_add(1, Ordering::Relaxed);
            }
            other => bail!("expected ack, got {other:?}"),
        }
    }
    Ok(())
}
