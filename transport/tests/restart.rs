//! A master that dies without a word (its process killed) and restarts on the same address with
//! the same identity resets its predecessor's connections at their next packet, so nodes learn
//! of the restart at once instead of after their silence timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{MasterId, NodeId, SecretKey};
use hearth_transport::{
    Admission, EndpointError, Identity, NodeGate, Purpose, SERVER_NAME, TransportTuning,
    client_config, client_endpoint, server_endpoint,
};

const NODES: usize = 20;

struct AdmitAll;

impl Admission for AdmitAll {
    fn admits(&self, _node: &NodeId) -> bool {
        true
    }
}

/// Serves on `addr` from its own runtime, holding every connection and reading its streams.
fn master(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    key: &SecretKey,
) -> Result<SocketAddr, EndpointError> {
    let identity = Identity::new(key, "hearth-master").unwrap();
    let gate = NodeGate::new(Arc::new(AdmitAll));
    let endpoint = {
        let _entered = runtime.enter();
        server_endpoint(addr, &identity, gate, &TransportTuning::default())?
    };
    let local = endpoint.local_addr().unwrap();
    runtime.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((_send, mut recv)) = conn.accept_bi().await {
                    let _ = recv.read_to_end(1024).await;
                }
            });
        }
    });
    Ok(local)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_resets_every_old_connection_at_its_next_packet() {
    let master_key = SecretKey::generate();
    let pin = MasterId::from_key(master_key.public());
    let first = runtime();
    let addr = master(&first, SocketAddr::from(([127, 0, 0, 1], 0)), &master_key).unwrap();

    // Idle timeout 30 s, keep-alive 10 s: without a reset, a node would hear nothing for far
    // longer than this test waits.
    let tuning = TransportTuning::default();
    let client = client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut conns = Vec::new();
    for _ in 0..NODES {
        let node = Identity::new(&SecretKey::generate(), "node").unwrap();
        let config = client_config(Purpose::Session, Some(&node), pin, &tuning).unwrap();
        let connecting = client.connect_with(config, addr, SERVER_NAME).unwrap();
        let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .unwrap()
            .unwrap();
        let (mut s, _recv) = tokio::time::timeout(Duration::from_secs(10), conn.open_bi())
            .await
            .unwrap()
            .unwrap();
        s.write_all(b"hello").await.unwrap();
        s.finish().unwrap();
        conns.push(conn);
    }

    // "kill -9": the runtime stops with every task dropped; no close is ever sent.
    first.shutdown_background();
    let second = runtime();
    let mut restarted = None;
    for _ in 0..100 {
        // The old socket is released once its tasks are dropped.
        if let Ok(local) = master(&second, addr, &master_key) {
            restarted = Some(local);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(restarted, Some(addr), "could not restart on the same port");

    // The next "heartbeat" of each node: opening a stream sends nothing until data is written.
    let mut streams = Vec::new();
    for conn in &conns {
        let opened = tokio::time::timeout(Duration::from_secs(10), conn.open_bi()).await;
        let (mut s, recv) = opened.unwrap().unwrap();
        let _ = s.write_all(b"heartbeat").await;
        streams.push((s, recv));
    }
    for (i, conn) in conns.iter().enumerate() {
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
            .await
            .unwrap_or_else(|_| panic!("connection {i} was never reset"));
        assert!(
            matches!(reason, quinn::ConnectionError::Reset),
            "connection {i} ended with {reason:?}, not a stateless reset"
        );
    }
    second.shutdown_background();
}
