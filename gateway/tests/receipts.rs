//! Bandwidth receipts over real gateway links on 127.0.0.1: issued per window with the bytes
//! counted, signed by the gateway, delivered to a hand-driven node and deleted on its ack,
//! re-sent after a reconnect, kept across a gateway restart, and set aside when refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_node;

use std::path::Path;
use std::time::Duration;

use hearth_gateway::meter::MeterKey;
use hearth_gateway::receipts::{Receipts, ReceiptsConfig};
use hearth_protocol::messages::tunnel::ReceiptAck;
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{ErrorCode, Message, NodeId, SecretKey};
use tunnel_node::*;

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
        })
        .unwrap_or(0)
}

fn count_bytes(gw: &Gateway, node: NodeId, instance: &str, deployment: &str, to: u64, from: u64) {
    let counters = gw.links.meter().counters(MeterKey {
        node,
        instance: tunnel_node::instance(instance),
        deployment: name(deployment),
    });
    counters.add_to_node(to);
    counters.add_from_node(from);
}

/// The node's side: the next receipt stream, its receipt, and the stream to answer on.
async fn next_receipt(conn: &quinn::Connection) -> (quinn::SendStream, BandwidthReceipt) {
    let (send, _recv, first) = accept(conn).await;
    let Message::Receipt(receipt) = first else {
        panic!("first frame {first:?}")
    };
    (send, receipt)
}

async fn ack(mut send: quinn::SendStream, receipt: &BandwidthReceipt) {
    let ack = Message::ReceiptAck(ReceiptAck {
        receipt: receipt.receipt,
    });
    send_frame(&mut send, &ack).await;
    send.finish().unwrap();
}

fn config(window_ms: u64) -> ReceiptsConfig {
    ReceiptsConfig {
        window: Duration::from_millis(window_ms),
        ..ReceiptsConfig::default()
    }
}

#[tokio::test]
async fn each_window_signs_the_bytes_of_each_instance_and_an_ack_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id), ("web-2", node.id)], vec![]));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    let key = SecretKey::from_seed(&gw.key.seed());
    let receipts = Receipts::open(dir.path(), key, gw.links.clone(), config(300)).unwrap();
    count_bytes(&gw, node.id, "web-1", "web", 1000, 20_000);
    count_bytes(&gw, node.id, "web-1", "api", 10, 0);
    tokio::spawn(receipts.clone().run());

    let (send, receipt) = next_receipt(&conn).await;
    receipt.verify().unwrap();
    assert_eq!(receipt.gateway, gw.id);
    assert_eq!(receipt.node, node.id);
    assert_eq!(receipt.instance, instance("web-1"));
    assert_eq!(
        (receipt.bytes_to_node, receipt.bytes_from_node),
        (1010, 20_000)
    );
    assert!(receipt.window_start_ms < receipt.window_end_ms);
    let pending = dir.path().join("pending");
    assert_eq!(count(&pending), 1, "kept until acked");
    ack(send, &receipt).await;
    until("pending cleared", || count(&pending) == 0).await;
    until("acked", || receipts.stats().acked == 1).await;
    assert_eq!(receipts.stats().pending, 0);

    // The next window's bytes make the next receipt, with a fresh id.
    count_bytes(&gw, node.id, "web-2", "web", 5, 6);
    let (send, second) = next_receipt(&conn).await;
    assert_eq!(second.instance, instance("web-2"));
    assert_eq!((second.bytes_to_node, second.bytes_from_node), (5, 6));
    assert_ne!(second.receipt, receipt.receipt);
    assert!(second.window_start_ms >= receipt.window_end_ms);
    ack(send, &second).await;
    until("second acked", || count(&pending) == 0).await;
    let issued = std::fs::read_to_string(dir.path().join("issued.jsonl")).unwrap();
    assert_eq!(issued.lines().count(), 2);
    assert_eq!(receipts.stats().issued, 2);
}

#[tokio::test]
async fn an_unacked_receipt_is_resent_on_reconnect_and_survives_a_gateway_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id)], vec![]));
    let key = || SecretKey::from_seed(&gw.key.seed());
    let receipts = Receipts::open(dir.path(), key(), gw.links.clone(), config(60_000)).unwrap();
    count_bytes(&gw, node.id, "web-1", "web", 7, 8);
    let issued = receipts.issue(1_000, 2_000).unwrap();
    assert_eq!(issued.len(), 1);
    drop(receipts);

    // A restarted gateway finds it pending and sends it when the node connects.
    let restarted = Receipts::open(dir.path(), key(), gw.links.clone(), config(60_000)).unwrap();
    assert_eq!(restarted.stats().pending, 1);
    tokio::spawn(restarted.clone().run());
    let conn = node.connect(&gw).await.unwrap();
    let (_send, first) = next_receipt(&conn).await;
    assert_eq!(first, issued[0]);
    // The node goes away without answering; the receipt stays.
    conn.close(0u32.into(), b"gone");
    until("link down", || !gw.links.connected(&node.id)).await;
    assert_eq!(count(&dir.path().join("pending")), 1);

    let conn = node.connect(&gw).await.unwrap();
    let (send, again) = next_receipt(&conn).await;
    assert_eq!(again, issued[0]);
    ack(send, &again).await;
    until("pending cleared", || {
        count(&dir.path().join("pending")) == 0
    })
    .await;
}

#[tokio::test]
async fn a_receipt_refused_too_often_is_moved_to_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id)], vec![]));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    let key = SecretKey::from_seed(&gw.key.seed());
    let config = ReceiptsConfig {
        max_tries: 2,
        ..config(60_000)
    };
    let receipts = Receipts::open(dir.path(), key, gw.links.clone(), config).unwrap();
    count_bytes(&gw, node.id, "web-1", "web", 1, 1);
    let receipt = receipts.issue(0, 1).unwrap().remove(0);
    let refuse = || async {
        let (mut send, got) = next_receipt(&conn).await;
        assert_eq!(got.receipt, receipt.receipt);
        send_frame(
            &mut send,
            &Message::error(ErrorCode::NotYours, "not mine", false),
        )
        .await;
        send.finish().unwrap();
    };
    for _ in 0..2 {
        tokio::join!(receipts.deliver(receipt.clone()), refuse());
    }
    assert_eq!(count(&dir.path().join("pending")), 0);
    assert_eq!(count(&dir.path().join("refused")), 1);
    assert_eq!(receipts.stats().pending, 0);
    assert_eq!(receipts.stats().acked, 0);
}

#[tokio::test]
async fn closing_the_window_early_receipts_what_was_counted_and_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id)], vec![]));
    let key = SecretKey::from_seed(&gw.key.seed());
    let receipts = Receipts::open(dir.path(), key, gw.links.clone(), config(60_000)).unwrap();
    count_bytes(&gw, node.id, "web-1", "web", 3, 4);
    let last = receipts.close_window().unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!((last[0].bytes_to_node, last[0].bytes_from_node), (3, 4));
    assert!(last[0].window_start_ms < last[0].window_end_ms);
    assert!(receipts.close_window().unwrap().is_empty());
    assert_eq!(count(&dir.path().join("pending")), 1);
}
