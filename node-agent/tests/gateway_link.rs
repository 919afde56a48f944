//! The node's gateway links against a real in-process gateway endpoint (mutual TLS, QUIC) and
//! a real local TCP service standing for an instance: tunnels, refusals, receipts, drain,
//! and a gateway the node does not pin.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_node_agent::gateway::{
    GatewayConfig, Gateways, GatewaysStatus, Published, ReceiptStore, RunState, Stored,
};
use hearth_protocol::frame::{self, HEADER_LEN};
use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::messages::tunnel::{GatewayRef, TunnelOpen};
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{DEFAULT_MAX_FRAME, ErrorCode, Hex, Message, NodeId, SecretKey, SignerId};
use hearth_transport::{Admission, Identity, MessageStream, gateway_endpoint, tunnel_tuning};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Admits one node key.
struct One(NodeId);

impl Admission for One {
    fn admits(&self, node: &NodeId) -> bool {
        *node == self.0
    }
}

/// A gateway: its key and endpoint.
struct Gateway {
    key: SecretKey,
    id: SignerId,
    endpoint: quinn::Endpoint,
}

impl Gateway {
    fn new(node: NodeId) -> Gateway {
        let key = SecretKey::generate();
        let identity = Identity::new(&key, "hearth-gateway").expect("identity");
        let endpoint = gateway_endpoint(
            "127.0.0.1:0".parse().expect("addr"),
            &identity,
            Arc::new(One(node)),
            &tunnel_tuning(),
        )
        .expect("gateway endpoint");
        Gateway {
            id: SignerId::from_key(key.public()),
            key,
            endpoint,
        }
    }

    fn reference(&self) -> GatewayRef {
        GatewayRef {
            gateway: self.id,
            addr: self.endpoint.local_addr().expect("local addr").into(),
        }
    }

    /// The node's connection and its drain stream.
    async fn accept(&self) -> (quinn::Connection, MessageStream) {
        let incoming = within(10, self.endpoint.accept()).await.expect("incoming");
        let conn = within(10, std::future::IntoFuture::into_future(incoming))
            .await
            .expect("handshake");
        let (send, recv) = within(10, conn.accept_bi()).await.expect("drain stream");
        (conn, MessageStream::new(send, recv, DEFAULT_MAX_FRAME))
    }

    fn receipt(&self, node: NodeId, id: u8) -> BandwidthReceipt {
        sign(&self.key, node, id)
    }
}

fn sign(key: &SecretKey, node: NodeId, id: u8) -> BandwidthReceipt {
    let mut r = BandwidthReceipt {
        receipt: Hex([id; 32]),
        gateway: SignerId::from_key(key.public()),
        node,
        instance: "web-1".parse().expect("instance"),
        window_start_ms: 1_000,
        window_end_ms: 3_000,
        bytes_from_node: 1234,
        bytes_to_node: 56,
        signature: key.sign(b"placeholder"),
    };
    r.signature = key.sign(&r.signing_bytes());
    r
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// Reads exactly one frame (the test gateway must not swallow the raw bytes after it).
async fn read_frame(recv: &mut quinn::RecvStream) -> Message {
    let mut header = [0u8; HEADER_LEN];
    within(10, recv.read_exact(&mut header))
        .await
        .expect("header");
    let len = frame::payload_len(header, DEFAULT_MAX_FRAME).expect("length");
    let mut payload = vec![0u8; len];
    within(10, recv.read_exact(&mut payload))
        .await
        .expect("payload");
    frame::decode_payload(&payload).expect("frame")
}

/// Opens a tunnel stream; `early` bytes go right after `tunnel_open`.
async fn open_tunnel(
    conn: &quinn::Connection,
    instance: &str,
    port: &str,
    early: &[u8],
) -> (quinn::SendStream, quinn::RecvStream, Message) {
    let (mut send, mut recv) = conn.open_bi().await.expect("open tunnel");
    let open = Message::TunnelOpen(TunnelOpen {
        instance: instance.parse().expect("instance"),
        port: port.parse().expect("port"),
        client: "192.0.2.7:50000"
            .parse::<SocketAddr>()
            .expect("addr")
            .into(),
    });
    let mut bytes = frame::encode(&open, DEFAULT_MAX_FRAME).expect("encode");
    bytes.extend_from_slice(early);
    send.write_all(&bytes).await.expect("write");
    let first = read_frame(&mut recv).await;
    (send, recv, first)
}

fn code(m: &Message) -> ErrorCode {
    match m {
        Message::Error(e) => {
            assert!(!e.fatal, "refusals are not fatal");
            e.code
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A TCP service answering, once its client has finished sending, `echo:` and all it read.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let _ = s.write_all(b"echo:").await;
                    let _ = s.write_all(&got).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    port
}

fn name(s: &str) -> Name {
    s.parse().expect("name")
}

fn web(port: u16, closed_port: u16) -> Vec<Published> {
    vec![
        Published {
            instance: "web-1".parse().expect("id"),
            generation: 1,
            state: RunState::Running,
            ports: BTreeMap::from([(name("http"), port), (name("admin"), port)]),
            exposed: BTreeSet::from([name("http"), name("ghost")]),
        },
        Published {
            instance: "dead-1".parse().expect("id"),
            generation: 1,
            state: RunState::Running,
            ports: BTreeMap::from([(name("http"), closed_port)]),
            exposed: BTreeSet::from([name("http")]),
        },
        Published {
            instance: "prep-1".parse().expect("id"),
            generation: 2,
            state: RunState::Down,
            ports: BTreeMap::from([(name("http"), port)]),
            exposed: BTreeSet::from([name("http")]),
        },
    ]
}

async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

struct Node {
    id: NodeId,
    gateways: Gateways,
    dir: tempfile::TempDir,
}

fn node(kept: usize) -> Node {
    let key = SecretKey::generate();
    let id = NodeId::from_key(key.public());
    let dir = tempfile::tempdir().expect("tempdir");
    let gateways = Gateways::new(GatewayConfig {
        key: &key,
        node: id,
        bind: "127.0.0.1:0".parse().expect("addr"),
        dir: dir.path(),
        receipts_kept: kept,
    })
    .expect("gateways");
    Node { id, gateways, dir }
}

#[tokio::test]
async fn tunnels_reach_only_published_ports_of_running_instances() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    let port = echo_server().await;
    node.gateways
        .registry()
        .update(web(port, closed_port().await));
    node.gateways.set(&[gw.reference()]);
    let (conn, mut drain) = gw.accept().await;
    let first = within(10, drain.recv()).await.expect("drain frame");
    assert_eq!(
        first,
        Some(Message::Drain(Default::default())),
        "announced on connect"
    );

    // Bytes flow both ways; the early bytes after tunnel_open reach the instance untouched,
    // and each side's finish reaches the other (the service answers only after EOF).
    let (mut send, mut recv, first) = open_tunnel(&conn, "web-1", "http", b"GET / ").await;
    assert_eq!(first, Message::TunnelReady(Default::default()));
    assert_eq!(
        node.gateways
            .registry()
            .open_tunnels(&"web-1".parse().expect("id")),
        1
    );
    send.write_all(b"HTTP/1.1\r\n").await.expect("write");
    send.finish().expect("finish");
    let answer = within(10, recv.read_to_end(1 << 20)).await.expect("answer");
    assert_eq!(answer, b"echo:GET / HTTP/1.1\r\n");

    let refusals = [
        ("nope-1", "http", ErrorCode::UnknownInstance),
        ("prep-1", "http", ErrorCode::UnknownInstance),
        ("web-1", "admin", ErrorCode::PortNotPublished),
        ("web-1", "ghost", ErrorCode::PortNotPublished),
        ("dead-1", "http", ErrorCode::ConnectFailed),
    ];
    for (instance, port, expected) in refusals {
        let (_send, mut recv, first) = open_tunnel(&conn, instance, port, b"").await;
        assert_eq!(code(&first), expected, "{instance} {port}");
        let rest = within(10, recv.read_to_end(1024)).await.expect("finished");
        assert!(rest.is_empty(), "the stream ends after the refusal");
    }

    // The link survived the refusals.
    let (mut send, mut recv, first) = open_tunnel(&conn, "web-1", "http", b"again").await;
    assert_eq!(first, Message::TunnelReady(Default::default()));
    send.finish().expect("finish");
    assert_eq!(
        within(10, recv.read_to_end(1024)).await.expect("answer"),
        b"echo:again"
    );

    let status = GatewaysStatus::read(node.dir.path());
    let link = status.links.first().expect("one link");
    assert_eq!((link.gateway, link.state.as_str()), (gw.id, "connected"));
    assert!(link.connected_since_ms.is_some());
}

#[tokio::test]
async fn drain_refuses_new_tunnels_and_waits_for_open_ones() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    let port = echo_server().await;
    let registry = node.gateways.registry().clone();
    registry.update(web(port, closed_port().await));
    node.gateways.set(&[gw.reference()]);
    let (conn, mut drain) = gw.accept().await;
    assert_eq!(
        within(10, drain.recv()).await.expect("drain"),
        Some(Message::Drain(Default::default()))
    );
    let web1: InstanceId = "web-1".parse().expect("id");
    let (mut send, mut recv, first) = open_tunnel(&conn, "web-1", "http", b"held").await;
    assert_eq!(first, Message::TunnelReady(Default::default()));

    assert!(registry.begin_drain(&web1), "exposed, link up: drains");
    let announced = within(10, drain.recv()).await.expect("drain");
    assert_eq!(
        announced,
        Some(Message::Drain(hearth_protocol::messages::tunnel::Drain {
            instances: vec![web1.clone()]
        }))
    );
    let (_s, _r, refused) = open_tunnel(&conn, "web-1", "http", b"").await;
    assert_eq!(code(&refused), ErrorCode::Draining);

    // Bounded: an open tunnel holds the drain for at most the time given.
    let started = std::time::Instant::now();
    assert!(!registry.wait_idle(&web1, Duration::from_millis(300)).await);
    assert!(started.elapsed() < Duration::from_secs(3));

    // The wait ends as soon as the open tunnel closes.
    let waiter = tokio::spawn({
        let (registry, web1) = (registry.clone(), web1.clone());
        async move { registry.wait_idle(&web1, Duration::from_secs(5)).await }
    });
    send.finish().expect("finish");
    assert_eq!(
        within(10, recv.read_to_end(1024)).await.expect("answer"),
        b"echo:held"
    );
    assert!(within(10, waiter).await.expect("waiter"), "idle before 5 s");

    // Once the instance runs again (next generation), it takes tunnels again.
    registry.update(web(port, closed_port().await));
    assert_eq!(
        within(10, drain.recv()).await.expect("drain"),
        Some(Message::Drain(Default::default()))
    );
}

#[tokio::test]
async fn receipts_are_verified_stored_once_and_acknowledged() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    node.gateways.set(&[gw.reference()]);
    let (conn, _drain) = gw.accept().await;

    let good = gw.receipt(node.id, 1);
    let mut forged = gw.receipt(node.id, 2);
    forged.bytes_from_node += 1_000_000;
    let other_node = gw.receipt(NodeId::from_key(SecretKey::generate().public()), 3);
    let other_gateway = sign(&SecretKey::generate(), node.id, 4);
    let cases = [
        (forged, Some(ErrorCode::BadSignature)),
        (other_node, Some(ErrorCode::NotYours)),
        (other_gateway, Some(ErrorCode::NotYours)),
        (good.clone(), None),
        (good.clone(), None),
    ];
    for (receipt, refused) in cases {
        let (send, recv) = conn.open_bi().await.expect("open");
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let id = receipt.receipt;
        stream.send(&Message::Receipt(receipt)).await.expect("send");
        let answer = within(10, stream.recv())
            .await
            .expect("answer")
            .expect("one");
        match refused {
            Some(expected) => {
                assert_eq!(code(&answer), expected);
                assert!(!node.gateways.receipts().contains(&id), "not stored");
            }
            None => {
                let Message::ReceiptAck(ack) = answer else {
                    panic!("expected an ack, got {answer:?}")
                };
                assert_eq!(ack.receipt, id);
            }
        }
    }
    assert_eq!(
        node.gateways.receipts().len(),
        1,
        "the duplicate is stored once"
    );

    // Several receipts on one stream, each acknowledged in turn.
    let (send, recv) = conn.open_bi().await.expect("open");
    let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    for id in [5, 6] {
        stream
            .send(&Message::Receipt(gw.receipt(node.id, id)))
            .await
            .expect("send");
        let answer = within(10, stream.recv()).await.expect("answer");
        assert!(matches!(answer, Some(Message::ReceiptAck(a)) if a.receipt == Hex([id; 32])));
    }
    assert_eq!(node.gateways.receipts().len(), 3);
    assert_eq!(GatewaysStatus::read(node.dir.path()).receipts, 3);

    // Durable: a store opened again on the directory holds them, in arrival order.
    let reopened = ReceiptStore::open(&node.dir.path().join("receipts"), 100).expect("open");
    let held = reopened.receipts().expect("read");
    assert_eq!(
        held.iter().map(|r| r.receipt).collect::<Vec<_>>(),
        vec![Hex([1; 32]), Hex([5; 32]), Hex([6; 32])]
    );
    assert_eq!(held.first(), Some(&good));
    assert_eq!(reopened.store(&good).expect("store"), Stored::Duplicate);
}

#[test]
fn the_receipt_store_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = SecretKey::generate();
    let node = NodeId::from_key(SecretKey::generate().public());
    let store = ReceiptStore::open(dir.path(), 3).expect("open");
    for id in 1..=5 {
        assert_eq!(
            store.store(&sign(&key, node, id)).expect("store"),
            Stored::New
        );
    }
    assert_eq!(store.len(), 3);
    assert!(!store.contains(&Hex([1; 32])) && !store.contains(&Hex([2; 32])));
    let files = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(files, 3, "the oldest files are removed");
    let reopened = ReceiptStore::open(dir.path(), 3).expect("open");
    assert_eq!(
        reopened
            .receipts()
            .expect("read")
            .iter()
            .map(|r| r.receipt)
            .collect::<Vec<_>>(),
        vec![Hex([3; 32]), Hex([4; 32]), Hex([5; 32])]
    );
    assert_eq!(
        reopened.store(&sign(&key, node, 6)).expect("store"),
        Stored::New
    );
    assert!(!reopened.contains(&Hex([3; 32])));
}

#[tokio::test]
async fn a_gateway_the_node_does_not_pin_is_refused_at_the_handshake() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    let impostor = GatewayRef {
        gateway: SignerId::from_key(SecretKey::generate().public()),
        addr: gw.reference().addr,
    };
    node.gateways.set(&[impostor]);
    let server = tokio::spawn(async move {
        let incoming = gw.endpoint.accept().await.expect("incoming");
        incoming.await.map(|_| ())
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let error = loop {
        let status = node.gateways.status();
        if let Some(e) = status.links.first().and_then(|l| l.last_error.clone()) {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no handshake failure within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        error.contains("certificate") || error.contains("key"),
        "{error}"
    );
    assert_eq!(node.gateways.registry().links_up(), 0);
    assert!(
        within(10, server).await.expect("server").is_err(),
        "no connection"
    );

    // Removing the gateway from the desired state closes its link and its status entry.
    node.gateways.set(&[]);
    assert!(node.gateways.status().links.is_empty());
}

#[tokio::test]
async fn a_large_transfer_arrives_intact_both_ways() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    let port = echo_server().await;
    node.gateways
        .registry()
        .update(web(port, closed_port().await));
    node.gateways.set(&[gw.reference()]);
    let (conn, _drain) = gw.accept().await;
    let body: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let started = std::time::Instant::now();
    let (mut send, mut recv, first) = open_tunnel(&conn, "web-1", "http", b"").await;
    assert_eq!(first, Message::TunnelReady(Default::default()));
    let writer = {
        let body = body.clone();
        tokio::spawn(async move {
            send.write_all(&body).await.expect("write");
            send.finish().expect("finish");
        })
    };
    let answer = within(60, recv.read_to_end(32 << 20))
        .await
        .expect("answer");
    within(10, writer).await.expect("writer");
    let elapsed = started.elapsed();
    assert_eq!(answer.get(..5), Some(&b"echo:"[..]));
    assert!(
        answer.get(5..) == Some(&body[..]),
        "the bytes arrive intact"
    );
    eprintln!(
        "8 MiB each way through the tunnel in {elapsed:?} ({:.0} MiB/s each way)",
        8.0 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn the_link_comes_back_after_a_loss_and_closes_when_removed() {
    let node = node(100);
    let gw = Gateway::new(node.id);
    node.gateways.set(&[gw.reference()]);
    let (conn, _drain) = gw.accept().await;

    // A stream that starts with garbage, or with a message of the wrong kind, is refused
    // alone; the link stays up.
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&[0, 0, 0, 3, b'{', b'x', b'}'])
        .await
        .expect("write");
    assert_eq!(code(&read_frame(&mut recv).await), ErrorCode::InvalidJson);
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    let ack = Message::ReceiptAck(hearth_protocol::messages::tunnel::ReceiptAck {
        receipt: Hex([0; 32]),
    });
    send.write_all(&frame::encode(&ack, DEFAULT_MAX_FRAME).expect("encode"))
        .await
        .expect("write");
    assert_eq!(
        code(&read_frame(&mut recv).await),
        ErrorCode::UnexpectedMessage
    );
    // A frame over the limit: the stream is reset, nothing is buffered for it.
    let (mut send, mut recv) = conn.open_bi().await.expect("open");
    send.write_all(&u32::MAX.to_be_bytes())
        .await
        .expect("write");
    assert!(within(10, recv.read_to_end(1024)).await.is_err(), "reset");
    assert_eq!(node.gateways.registry().links_up(), 1);

    // The gateway drops the connection: the node dials again (first retry within 0.5 s).
    conn.close(0u32.into(), b"gateway restarting");
    let (again, _drain) = gw.accept().await;
    let status = node.gateways.status();
    let link = status.links.first().expect("link");
    assert_eq!(link.sessions, 2);

    // Removed from the desired state: the node closes the link.
    node.gateways.set(&[]);
    let closed = within(10, again.closed()).await;
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
    assert!(node.gateways.status().links.is_empty());
    assert!(
        GatewaysStatus::read(node.dir.path()).links.is_empty(),
        "status file follows"
    );
}
