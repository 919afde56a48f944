//! Public TCP routes end to end on 127.0.0.1: a client connects to the routed port, a
//! hand-driven node stands for the instance behind the tunnel; bytes arrive exactly, the
//! PROXY v2 header parses back when the route asks for it, a refusing replica is skipped, and
//! the listener closes when the route goes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_node;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_core::ingress::TcpRoute;
use hearth_gateway::meter::{MeterKey, Totals};
use hearth_gateway::proxy_v2;
use hearth_gateway::table::Routing;
use hearth_gateway::tcp::{Admit, TcpConfig, TcpProxy};
use hearth_protocol::messages::tunnel::TunnelReady;
use hearth_protocol::{ErrorCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tunnel_node::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn route(public_port: u16, proxy_protocol: bool) -> Vec<TcpRoute> {
    vec![TcpRoute {
        port: name("db"),
        public_port,
        proxy_protocol,
    }]
}

fn start_proxy(gw: &Gateway) -> TcpProxy {
    let admit: Admit = Arc::new(|_| Some(Box::new(()) as Box<dyn Send>));
    let config = TcpConfig {
        bind: "127.0.0.1".parse().unwrap(),
        idle_timeout: Duration::from_secs(5),
        rebind_every: Duration::from_millis(100),
    };
    let proxy = TcpProxy::new(gw.links.clone(), admit, config);
    tokio::spawn(proxy.clone().run(gw.routing.subscribe()));
    proxy
}

/// The node's side of one tunnel: answers `tunnel_ready`, reads what the client sent (after a
/// PROXY header when `proxy`), answers `reply` and finishes.
async fn serve_one(
    conn: &quinn::Connection,
    proxy: bool,
    reply: Vec<u8>,
) -> (Vec<u8>, Option<(SocketAddr, SocketAddr)>) {
    let (mut send, mut recv, first) = accept(conn).await;
    assert!(
        matches!(first, Message::TunnelOpen(ref o) if o.port == name("db")),
        "{first:?}"
    );
    send_frame(&mut send, &Message::TunnelReady(TunnelReady {})).await;
    let mut got = recv.read_to_end(1 << 20).await.unwrap();
    let mut header = None;
    if proxy {
        let (s, d, used) = proxy_v2::parse(&got).unwrap();
        header = Some((s, d));
        got.drain(..used);
    }
    send.write_all(&reply).await.unwrap();
    send.finish().unwrap();
    // Dropping the last handle of the connection would discard what is not yet delivered.
    let _ = tokio::time::timeout(WAIT, send.stopped()).await;
    (got, header)
}

async fn client(port: u16, data: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let local = stream.local_addr().unwrap();
    stream.write_all(data).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    (answer, local)
}

#[tokio::test]
async fn a_tcp_route_carries_exact_bytes_both_ways_with_a_proxy_v2_header() {
    let node = Node::new();
    let port = free_port();
    let gw = start_gateway(&table(&[("db-1", node.id)], route(port, true)));
    let conn = node.connect(&gw).await.unwrap();
    until("link up", || gw.links.connected(&node.id)).await;
    let proxy = start_proxy(&gw);
    until("listening", || proxy.listening() == [port]).await;

    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let reply = vec![9u8; 70_000];
    let node_side = tokio::spawn({
        let reply = reply.clone();
        async move { serve_one(&conn, true, reply).await }
    });
    let (answer, local) = client(port, &sent).await;
    let (got, header) = node_side.await.unwrap();
    assert!(
        got == sent,
        "the node got {} bytes of {}",
        got.len(),
        sent.len()
    );
    assert!(
        answer == reply,
        "the client got {} bytes of {}",
        answer.len(),
        reply.len()
    );
    let (source, destination) = header.unwrap();
    assert_eq!(source, local, "the header names the public client");
    assert_eq!(destination.port(), port);
    let key = MeterKey {
        node: node.id,
        instance: instance("db-1"),
        deployment: name("web"),
    };
    let header_len = 28;
    assert_eq!(
        gw.links.meter().totals_of(&key),
        Totals {
            to_node: sent.len() as u64 + header_len,
            from_node: reply.len() as u64
        }
    );
}

#[tokio::test]
async fn a_refusing_replica_is_skipped_and_the_listener_follows_the_table() {
    let refusing = Node::new();
    let serving = Node::new();
    let port = free_port();
    let t = table(
        &[("db-1", refusing.id), ("db-2", serving.id)],
        route(port, false),
    );
    let gw = start_gateway(&t);
    let refusing_conn = refusing.connect(&gw).await.unwrap();
    let serving_conn = serving.connect(&gw).await.unwrap();
    until("links up", || gw.links.stats().links_up == 2).await;
    let proxy = start_proxy(&gw);
    until("listening", || proxy.listening() == [port]).await;

    tokio::spawn(async move {
        loop {
            let (mut send, _recv, _) = accept(&refusing_conn).await;
            let error = Message::error(ErrorCode::ConnectFailed, "nothing on the port", false);
            send_frame(&mut send, &error).await;
            send.finish().unwrap();
        }
    });
    let node_side =
        tokio::spawn(async move { serve_one(&serving_conn, false, b"pong".to_vec()).await });
    let (answer, _) = client(port, b"ping").await;
    assert_eq!(answer, b"pong");
    assert_eq!(node_side.await.unwrap().0, b"ping");

    // The route goes: so does its listener.
    gw.routing.send_replace(Arc::new(Routing::from_table(&table(
        &[("db-2", serving.id)],
        vec![],
    ))));
    until("listener closed", || proxy.listening().is_empty()).await;
    until("port refused", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
}

#[tokio::test]
async fn a_busy_port_is_retried_until_free_and_a_connection_without_replica_is_closed() {
    let absent = Node::new();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let gw = start_gateway(&table(&[("db-1", absent.id)], route(port, false)));
    let proxy = start_proxy(&gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.listening().is_empty(), "bound a busy port");
    drop(blocker);
    until("listening once the port is free", || {
        proxy.listening() == [port]
    })
    .await;

    // No node link: the connection is closed without a byte.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the connection was left open");
    assert!(answer.is_empty());
    // A close with unread bytes may arrive as a reset: either way, closed without a byte.
    assert!(
        read.as_ref().map_or_else(
            |e| e.kind() == std::io::ErrorKind::ConnectionReset,
            |n| *n == 0
        ),
        "{read:?}"
    );
}
