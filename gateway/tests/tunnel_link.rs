//! The gateway link end to end over real QUIC on 127.0.0.1: admission at the handshake,
//! tunnels opened to a hand-driven node with bytes counted both ways, refusals, link loss and
//! the node's draining set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_node;

use hearth_gateway::meter::{MeterKey, Totals};
use hearth_gateway::tunnel::{TunnelError, TunnelRequest};
use hearth_protocol::messages::tunnel::{Drain, TunnelReady};
use hearth_protocol::{ErrorCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_node::*;

#[tokio::test]
async fn a_node_the_routing_table_does_not_name_is_refused_at_the_handshake() {
    let admitted = Node::new();
    let stranger = Node::new();
    let gw = start_gateway(&table(&[("web-1", admitted.id)], vec![]));
    // TLS 1.3: the client may finish its side before the server has checked its
    // certificate; the refusal then arrives as the connection's close.
    if let Ok(conn) = stranger.connect(&gw).await {
        let reason = tokio::time::timeout(WAIT, conn.closed()).await.unwrap();
        assert!(reason.to_string().contains("certificate"), "{reason}");
    }
    let _conn = admitted.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&admitted.id)).await;
    assert!(!gw.links.connected(&stranger.id));
}

#[tokio::test]
async fn a_tunnel_reaches_the_node_and_counts_the_bytes_both_ways() {
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id)], vec![]));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || {
        gw.links.available(&node.id, &instance("web-1"))
    })
    .await;
    let client: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();

    let node_side = tokio::spawn(async move {
        let (mut send, mut recv, first) = accept(&conn).await;
        let Message::TunnelOpen(open) = first else {
            panic!("first frame {first:?}")
        };
        send_frame(&mut send, &Message::TunnelReady(TunnelReady {})).await;
        // Everything after tunnel_open is the client's, to its end (the gateway's half-close).
        let got = recv.read_to_end(1 << 20).await.unwrap();
        send.write_all(&vec![7u8; 5000]).await.unwrap();
        send.finish().unwrap();
        (open, got, conn)
    });

    let replica = replica("web-1", node.id);
    let mut tunnel = gw
        .links
        .open(TunnelRequest {
            replica: &replica,
            port: &name("http"),
            client,
            deployment: &name("web"),
        })
        .await
        .unwrap();
    assert_eq!(gw.links.stats().tunnels_open, 1);
    tunnel.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    tunnel.write_all(&[1u8; 3000]).await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tunnel.read_to_end(&mut answer).await.unwrap();
    let (open, got, _conn) = node_side.await.unwrap();

    assert_eq!(open.instance, instance("web-1"));
    assert_eq!(open.port, name("http"));
    assert_eq!(open.client.get(), client);
    assert_eq!(got.len(), 18 + 3000);
    assert!(got.starts_with(b"GET / HTTP/1.1"));
    assert_eq!(answer, vec![7u8; 5000]);
    let key = MeterKey {
        node: node.id,
        instance: instance("web-1"),
        deployment: name("web"),
    };
    assert_eq!(
        gw.links.meter().totals_of(&key),
        Totals {
            to_node: 3018,
            from_node: 5000
        }
    );
    drop(tunnel);
    assert_eq!(gw.links.stats().tunnels_open, 0);
    assert_eq!(gw.links.stats().tunnels_total, 1);
}

#[tokio::test]
async fn a_refusal_is_refused_with_the_nodes_code_and_a_missing_link_is_not_connected() {
    let node = Node::new();
    let absent = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id), ("web-2", absent.id)], vec![]));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    tokio::spawn(async move {
        let (mut send, _recv, _) = accept(&conn).await;
        let error = Message::error(
            ErrorCode::PortNotPublished,
            "port http is not exposed",
            false,
        );
        send_frame(&mut send, &error).await;
        send.finish().unwrap();
        conn.closed().await;
    });
    let r = replica("web-1", node.id);
    let request = TunnelRequest {
        replica: &r,
        port: &name("http"),
        client: "127.0.0.1:9".parse().unwrap(),
        deployment: &name("web"),
    };
    match gw.links.open(request.clone()).await {
        Err(TunnelError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::PortNotPublished);
            assert!(message.contains("not exposed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let gone = replica("web-2", absent.id);
    let request = TunnelRequest {
        replica: &gone,
        ..request
    };
    assert!(matches!(
        gw.links.open(request).await,
        Err(TunnelError::NotConnected(n)) if n == absent.id
    ));
}

#[tokio::test]
async fn a_dropped_link_is_unavailable_at_once_and_a_newer_link_replaces_the_older() {
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id)], vec![]));
    let mut changes = gw.links.changes();
    let first = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    let second = node.connect(&gw).await.unwrap();
    tokio::time::timeout(WAIT, first.closed()).await.unwrap();
    assert!(gw.links.connected(&node.id), "the newer link is up");
    assert_eq!(gw.links.stats().links_up, 1);

    second.close(0u32.into(), b"bye");
    until("link down", || {
        !gw.links.available(&node.id, &instance("web-1"))
    })
    .await;
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gw.links.stats().links_up, 0);
}

#[tokio::test]
async fn a_draining_instance_is_unavailable_and_refused_until_the_node_says_otherwise() {
    let node = Node::new();
    let gw = start_gateway(&table(&[("web-1", node.id), ("web-2", node.id)], vec![]));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    let (mut drain, _recv) = conn.open_bi().await.unwrap();
    let draining = |names: &[&str]| {
        Message::Drain(Drain {
            instances: names.iter().map(|n| instance(n)).collect(),
        })
    };
    send_frame(&mut drain, &draining(&["web-1"])).await;
    until("draining", || {
        !gw.links.available(&node.id, &instance("web-1"))
    })
    .await;
    assert!(gw.links.available(&node.id, &instance("web-2")));
    let r = replica("web-1", node.id);
    let refused = gw
        .links
        .open(TunnelRequest {
            replica: &r,
            port: &name("http"),
            client: "127.0.0.1:9".parse().unwrap(),
            deployment: &name("web"),
        })
        .await;
    assert!(matches!(
        refused,
        Err(TunnelError::Refused {
            code: ErrorCode::Draining,
            ..
        })
    ));
    send_frame(&mut drain, &draining(&[])).await;
    until("drained set cleared", || {
        gw.links.available(&node.id, &instance("web-1"))
    })
    .await;
}
