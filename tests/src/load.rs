//! Simulated nodes for load benchmarks: real enrolments and real QUIC sessions that heartbeat,
//! many per process, without running instances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // bench code: a panic is a failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use hearth_node_agent::enrol::request_enrolment;
use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::messages::session::{Counters, Heartbeat, Hello};
use hearth_protocol::{
    Arch, EnrolToken, Hex, MasterId, Message, NodeFacts, NodeId, PROTOCOL_VERSION, Resources,
    SecretKey,
};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
};
use tokio::sync::Semaphore;

/// Counters of a running simulated fleet.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// Sessions open now.
    pub connected: Arc<AtomicU64>,
    /// Heartbeats sent so far. Like the agent, the simulated nodes ask for no `heartbeat_ack`:
    /// the master's QUIC acknowledgement answers (count ingested heartbeats on the master).
    pub heartbeats: Arc<AtomicU64>,
}

/// Starts one task per key that keeps a session (reconnecting like an agent) and heartbeats.
pub fn spawn_sessions(
    keys: Vec<SecretKey>,
    quic: SocketAddr,
    master_id: MasterId,
    interval: Duration,
    endpoints: usize,
) -> anyhow::Result<Sessions> {
    let out = Sessions {
        connected: Arc::new(AtomicU64::new(0)),
        heartbeats: Arc::new(AtomicU64::new(0)),
    };
    let endpoints: Vec<_> = (0..endpoints.max(1))
        .map(|_| client_endpoint("127.0.0.1:0".parse().unwrap()))
        .collect::<Result<_, _>>()?;
    let gate = Arc::new(Semaphore::new(256));
    for (n, key) in keys.into_iter().enumerate() {
        let endpoint = endpoints[n % endpoints.len()].clone();
        let (connected, sent, gate) = (out.connected.clone(), out.heartbeats.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let e = session(
                    &endpoint, quic, master_id, &key, interval, &gate, &connected, &sent,
                )
                .await
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("ended"));
                eprintln!("session {n} ended: {e:#}");
                tokio::time::sleep(Duration::from_millis(500 + rand::random::<u64>() % 2000)).await;
            }
        });
    }
    Ok(out)
}

/// Creates `n` tokens through the API and enrols a fresh key with each.
pub async fn enrol_all(
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
    sent: &AtomicU64,
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
    let result = heartbeats(&mut control, interval, sent).await;
    connected.fetch_sub(1, Ordering::Relaxed);
    drop(conn);
    result
}

async fn heartbeats(
    control: &mut MessageStream,
    interval: Duration,
    sent: &AtomicU64,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(
        rand::random::<u64>() % interval.as_millis() as u64,
    ))
    .await;
    let mut tick = tokio::time::interval(interval);
    for seq in 1.. {
        tokio::select! {
            _ = tick.tick() => {}
            // The master sends nothing unasked; anything it sends ends the session.
            msg = control.recv() => bail!("unexpected message: {:?}", msg?),
        }
        let hb = Heartbeat {
            seq,
            used: Resources::default(),
            applied_revision: 0,
            instances: vec![],
            counters: Counters::default(),
            ack: false,
        };
        control.send(&Message::Heartbeat(hb)).await?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
