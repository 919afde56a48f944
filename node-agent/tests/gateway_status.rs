//! `hearth-node status` shows the gateway links (gateway, address, connected since or last
//! error) and the receipts held, from the files the running agent writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hearth_node_agent::facts::{Declared, detect};
use hearth_node_agent::gateway::{GatewayConfig, Gateways, ReceiptStore};
use hearth_node_agent::state::{Enrolment, NodeDir};
use hearth_protocol::messages::tunnel::GatewayRef;
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{Hex, MasterId, NodeId, SecretKey, SignerId};
use hearth_transport::{Admission, Identity, gateway_endpoint, tunnel_tuning};

struct Any;

impl Admission for Any {
    fn admits(&self, _: &NodeId) -> bool {
        true
    }
}

fn receipt(key: &SecretKey, node: NodeId, id: u8) -> BandwidthReceipt {
    let mut r = BandwidthReceipt {
        receipt: Hex([id; 32]),
        gateway: SignerId::from_key(key.public()),
        node,
        instance: "web-1".parse().unwrap(),
        window_start_ms: 0,
        window_end_ms: 1,
        bytes_from_node: 1,
        bytes_to_node: 1,
        signature: key.sign(b"placeholder"),
    };
    r.signature = key.sign(&r.signing_bytes());
    r
}

fn status(dir: &std::path::Path, json: bool) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-node"));
    cmd.arg("status").arg("--data-dir").arg(dir);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run hearth-node status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test]
async fn status_lists_gateway_links_and_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = NodeDir::new(tmp.path());
    let key = SecretKey::generate();
    let node = NodeId::from_key(key.public());
    let declared = Declared {
        country: "BE".parse().unwrap(),
        isp: "test".into(),
        asn: None,
        home: "home".parse().unwrap(),
        uplink_mbps: 100,
        downlink_mbps: 100,
        labels: BTreeMap::new(),
        power_w: None,
        disk_mib: None,
    };
    let master = MasterId::from_key(SecretKey::generate().public());
    let facts = detect(declared, tmp.path());
    dir.save_enrolment(&Enrolment::new(
        vec!["127.0.0.1:9".parse().unwrap()],
        master,
        node,
        1000,
        facts,
    ))
    .unwrap();
    let gateway_key = SecretKey::generate();
    let store = ReceiptStore::open(&tmp.path().join("receipts"), 100).unwrap();
    for id in [1, 2] {
        store.store(&receipt(&gateway_key, node, id)).unwrap();
    }
    drop(store);

    let identity = Identity::new(&gateway_key, "hearth-gateway").unwrap();
    let endpoint = gateway_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        Arc::new(Any),
        &tunnel_tuning(),
    )
    .unwrap();
    let up = GatewayRef {
        gateway: SignerId::from_key(gateway_key.public()),
        addr: endpoint.local_addr().unwrap().into(),
    };
    // A second gateway whose key is not the one the node pins: refused at the handshake.
    let other = gateway_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &Identity::new(&SecretKey::generate(), "hearth-gateway").unwrap(),
        Arc::new(Any),
        &tunnel_tuning(),
    )
    .unwrap();
    let down = GatewayRef {
        gateway: SignerId::from_key(SecretKey::generate().public()),
        addr: other.local_addr().unwrap().into(),
    };
    tokio::spawn(async move {
        while let Some(incoming) = other.accept().await {
            tokio::spawn(async move { incoming.await.is_err() });
        }
    });
    let gateways = Gateways::new(GatewayConfig {
        key: &key,
        node,
        bind: "127.0.0.1:0".parse().unwrap(),
        dir: tmp.path(),
        receipts_kept: 100,
    })
    .unwrap();
    gateways.set(&[up.clone(), down.clone()]);
    let incoming = tokio::time::timeout(Duration::from_secs(10), endpoint.accept())
        .await
        .unwrap()
        .unwrap();
    let _conn = tokio::time::timeout(
        Duration::from_secs(10),
        std::future::IntoFuture::into_future(incoming),
    )
    .await
    .unwrap()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = status(tmp.path(), false);
        let connected = format!("gateway:  {} at {} connected since 20", up.gateway, up.addr);
        let refused = text
            .lines()
            .any(|l| l.contains(&down.gateway.to_string()) && l.contains("last error:"));
        if text.contains(&connected) && refused {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never showed both links:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.contains("receipts: 2 stored"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&status(tmp.path(), true)).unwrap();
    let links = json["gateways"]["links"].as_array().unwrap();
    assert_eq!(links.len(), 2);
    assert_eq!(json["gateways"]["receipts"], 2);
    let connected = links
        .iter()
        .find(|l| l["gateway"] == up.gateway.to_string())
        .unwrap();
    assert_eq!(connected["state"], "connected");
    assert!(connected["connected_since_ms"].as_u64().is_some());
}
