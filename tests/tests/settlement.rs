//! Bandwidth settlement end to end (SPEC.md §9.16/§9.17): a raw node sends crafted usage
//! reports to a real master with a registered gateway whose key the test holds; valid receipts
//! are credited once (a re-sent report gets the same settlement, and the ledger one entry per
//! receipt), and replayed, forged, foreign, overlapping, unknown-signer and bad-window receipts
//! are each refused with their code and credited nothing. A running agent settles the receipts
//! it holds by itself and shows them in `hearth-node status`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_protocol::messages::usage::{BandwidthReceipt, Settlement, UsageReport};
use hearth_protocol::{ErrorCode, Hex, Message, NodeId, SecretKey, SignerId};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, TestSession, enrol_node};
use serde_json::{Value, json};

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A receipt signed by `gateway` (window `[end - len, end)`).
fn receipt(
    gateway: &SecretKey,
    node: NodeId,
    id: u8,
    instance: &str,
    end: u64,
) -> BandwidthReceipt {
    let mut r = BandwidthReceipt {
        receipt: Hex([id; 32]),
        gateway: SignerId::from_key(gateway.public()),
        node,
        instance: instance.parse().unwrap(),
        window_start_ms: end - 5_000,
        window_end_ms: end,
        bytes_from_node: 10_000 + u64::from(id),
        bytes_to_node: 500,
        signature: Hex([0; 64]),
    };
    r.signature = gateway.sign(&r.signing_bytes());
    r
}

fn bytes(r: &BandwidthReceipt) -> u64 {
    r.bytes_from_node + r.bytes_to_node
}

/// Sends a report and returns the master's answer (skipping probes and desired states).
async fn send(s: &mut TestSession, report: u64, receipts: Vec<BandwidthReceipt>) -> Message {
    s.control
        .send(&Message::UsageReport(UsageReport { report, receipts }))
        .await
        .unwrap();
    for _ in 0..20 {
        match s.next().await {
            Some(m @ (Message::Settlement(_) | Message::Error(_))) => return m,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("no answer to usage_report {report}");
}

async fn settle(s: &mut TestSession, report: u64, receipts: Vec<BandwidthReceipt>) -> Settlement {
    match send(s, report, receipts).await {
        Message::Settlement(st) => st,
        other => panic!("expected a settlement, got {other:?}"),
    }
}

/// The receipt entries in the master's ledger file: (receipt id, node, report).
fn ledger_receipts(m: &MasterProc) -> Vec<(String, String, u64)> {
    let text =
        std::fs::read_to_string(m.dir.join("ledger").join("entries.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            let r = e["body"].get("receipt")?.clone();
            Some((
                r["receipt"]["receipt"].as_str()?.to_owned(),
                r["receipt"]["node"].as_str()?.to_owned(),
                r["report"].as_u64()?,
            ))
        })
        .collect()
}

async fn register_gateway(m: &MasterProc, name: &str, key: &SecretKey) {
    let spec = json!({ "name": name, "key": SignerId::from_key(key.public()).to_string(),
                       "tunnel_addr": "127.0.0.1:7443" });
    let (status, v) = m
        .call(
            reqwest::Method::POST,
            "/v1/gateways",
            Some(&spec.to_string()),
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_credited_once_and_bad_ones_refused_with_their_code() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let gateway = SecretKey::generate();
    register_gateway(&m, "edge-1", &gateway).await;
    let (node, key) = enrol_node(&tmp.path().join("a"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let (other, _) = enrol_node(&tmp.path().join("b"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut s = TestSession::open(m.quic, m.id, &key).await;
    // Windows end after the gateway's registration (receipts are credited only for gateways
    // registered when the window ended).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end = now_ms();

    // Two good receipts: both credited, one ledger entry each, naming report 1.
    let good = [
        receipt(&gateway, node, 1, "web-0", end),
        receipt(&gateway, node, 2, "web-1", end),
    ];
    let first = settle(&mut s, 1, good.to_vec()).await;
    assert_eq!(first.report, 1);
    assert_eq!(first.credited_bytes, bytes(&good[0]) + bytes(&good[1]));
    assert!(first.rejected.is_empty(), "{first:?}");
    // The same report again (its settlement lost, say): the same answer, no second credit.
    assert_eq!(settle(&mut s, 1, good.to_vec()).await, first);
    let logged = ledger_receipts(&m);
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(
        logged
            .iter()
            .all(|(_, n, r)| *n == node.to_string() && *r == 1)
    );

    // Each bad kind, in one report: refused with its code, nothing credited.
    let forged = {
        let mut r = receipt(&gateway, node, 3, "web-0", end + 10_000);
        r.bytes_from_node *= 10; // inflated after signing
        r
    };
    let foreign = receipt(&gateway, other, 4, "web-0", end + 10_000);
    let overlapping = receipt(&gateway, node, 5, "web-0", end + 2_000);
    let stranger = receipt(&SecretKey::generate(), node, 6, "web-0", end + 10_000);
    let backwards = {
        let mut r = receipt(&gateway, node, 7, "web-2", end);
        r.window_start_ms = end + 1;
        r.signature = gateway.sign(&r.signing_bytes());
        r
    };
    let ahead = receipt(&gateway, node, 8, "web-3", end + 3_600_000);
    let fresh = receipt(&gateway, node, 9, "web-4", end);
    let bad = vec![
        good[0].clone(), // replayed in a later report
        forged.clone(),
        foreign.clone(),
        overlapping.clone(),
        stranger.clone(),
        backwards.clone(),
        ahead.clone(),
        fresh.clone(),
        fresh.clone(), // repeated inside the report
    ];
    let second = settle(&mut s, 2, bad).await;
    let codes: Vec<(Hex<32>, ErrorCode)> = second
        .rejected
        .iter()
        .map(|r| (r.receipt, r.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (good[0].receipt, ErrorCode::Duplicate),
            (forged.receipt, ErrorCode::BadSignature),
            (foreign.receipt, ErrorCode::NotYours),
            (overlapping.receipt, ErrorCode::Overlapping),
            (stranger.receipt, ErrorCode::UnknownSigner),
            (backwards.receipt, ErrorCode::BadWindow),
            (ahead.receipt, ErrorCode::BadWindow),
            (fresh.receipt, ErrorCode::Duplicate),
        ]
    );
    assert_eq!(second.credited_bytes, bytes(&fresh), "only the fresh one");
    let logged = ledger_receipts(&m);
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert_eq!(logged[2], (fresh.receipt.to_string(), node.to_string(), 2));

    // A report over the limit is refused whole, and the session goes on.
    let many: Vec<BandwidthReceipt> = (0..1001u32)
        .map(|_| receipt(&gateway, node, 10, "web-5", end))
        .collect();
    match send(&mut s, 3, many).await {
        Message::Error(e) => {
            assert_eq!(
                (e.code, e.fatal),
                (ErrorCode::InvalidMessage, false),
                "{e:?}"
            );
            assert!(e.message.contains("1000"), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    s.heartbeat().await;
    assert_eq!(ledger_receipts(&m).len(), 3);

    // After a restart the master still answers a re-sent report with what it credited.
    drop(s);
    let m = m.kill9_and_restart_same_quic();
    let mut s = TestSession::open(m.quic, m.id, &key).await;
    assert_eq!(settle(&mut s, 1, good.to_vec()).await, first);
    assert_eq!(ledger_receipts(&m).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_settles_the_receipts_it_holds_and_shows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let gateway = SecretKey::generate();
    register_gateway(&m, "edge-1", &gateway).await;
    let dir = tmp.path().join("agent");
    // Enrol, stop, drop receipts into its store as a gateway link would, run again.
    let mut agent = NodeProc::enrol_and_run(&dir, m.quic, &m.token(&[]));
    let node: NodeId = agent.status()["node"].as_str().unwrap().parse().unwrap();
    agent.kill9();
    drop(agent);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end = now_ms();
    let store = hearth_node_agent::gateway::ReceiptStore::open(&dir.join("receipts"), 100).unwrap();
    let good = receipt(&gateway, node, 1, "web-0", end);
    let stranger = receipt(&SecretKey::generate(), node, 2, "web-0", end);
    store.store(&good).unwrap();
    store.store(&stranger).unwrap();
    drop(store);
    let agent = NodeProc::run(&dir);
    let settled = eventually(Duration::from_secs(30), || async {
        let s = agent.status();
        (s["settlement"]["pending"] == 0 && s["settlement"]["credited"] == 1).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("not settled: {}", agent.log()));
    assert_eq!(settled["settlement"]["credited_bytes"], bytes(&good));
    assert_eq!(settled["settlement"]["rejected"]["unknown_signer"], 1);
    let logged = ledger_receipts(&m);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, good.receipt.to_string());
}
