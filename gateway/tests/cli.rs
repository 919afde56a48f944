//! The `hearth-gateway` binary: `init` (once only), clear errors for bad flags, and `run` end
//! to end on 127.0.0.1 against a master stand-in: addresses written, a hand-driven node's link
//! admitted, a TCP route carried, `/metrics` showing the bytes, a receipt delivered.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tunnel_node;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hearth_api::RouteTable;
use hearth_core::ingress::TcpRoute;
use hearth_protocol::messages::tunnel::{ReceiptAck, TunnelReady};
use hearth_protocol::{Message, SignerId};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_node::*;

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-gateway"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_makes_a_private_key_prints_its_id_and_refuses_to_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gw");
    let d = data.to_str().unwrap();
    let first = gateway(&["init", "--data", d]);
    assert!(first.status.success(), "{}", stderr(&first));
    let id = String::from_utf8(first.stdout).unwrap();
    id.trim().parse::<SignerId>().unwrap();
    assert!(id.starts_with("hk-"));
    let mode = std::fs::metadata(data.join("gateway.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read(data.join("gateway.key")).unwrap();

    let second = gateway(&["init", "--data", d]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("refusing to overwrite"),
        "{}",
        stderr(&second)
    );
    assert_eq!(std::fs::read(data.join("gateway.key")).unwrap(), key);
}

#[test]
fn bad_flags_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--data", d], "--master"),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--receipt-window",
                "soon",
            ],
            "not a duration",
        ),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--receipt-window",
                "0s",
            ],
            "longer than zero",
        ),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--tcp-bind",
                "localhost:1",
            ],
            "--tcp-bind",
        ),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--per-ip-rate",
                "0",
            ],
            "--per-ip-rate",
        ),
        (
            &["run", "--data", d, "--master", "127.0.0.1:7080"],
            "http:// or https://",
        ),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--per-ip-rate",
                "50",
                "--per-ip-burst",
                "10",
            ],
            "--per-ip-burst",
        ),
        (
            &[
                "run",
                "--data",
                d,
                "--master",
                "http://127.0.0.1:1",
                "--tunnel",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
            ],
            "hearth-gateway init",
        ),
    ];
    for (args, expected) in cases {
        let out = gateway(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// Serves `table` on `GET /v1/gateway/routes`, holding a request whose `If-None-Match` is
/// current for a second, then 304.
async fn master(table: Arc<Mutex<RouteTable>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let table = table.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let table = table.clone();
                async move {
                    let held = req.headers().get("if-none-match").cloned();
                    let current = format!("\"{}\"", table.lock().unwrap().version);
                    if held.is_some_and(|h| h == current.as_str()) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        let mut r = Response::new(Full::<Bytes>::default());
                        *r.status_mut() = StatusCode::NOT_MODIFIED;
                        return Ok::<_, Infallible>(r);
                    }
                    let body = serde_json::to_vec(&*table.lock().unwrap()).unwrap();
                    Ok(Response::new(Full::from(body)))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    format!("http://{addr}")
}

async fn read_addr(path: &Path) -> SocketAddr {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.trim().parse().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn run_serves_a_tcp_route_over_a_nodes_link_counts_it_and_sends_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gw");
    let d = data.to_str().unwrap();
    let init = gateway(&["init", "--data", d]);
    let id: SignerId = String::from_utf8(init.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let node = Node::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let routes = vec![TcpRoute {
        port: name("db"),
        public_port: port,
        proxy_protocol: false,
    }];
    let url = master(Arc::new(Mutex::new(table(&[("db-1", node.id)], routes)))).await;
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_hearth-gateway"))
            .args([
                "run",
                "--data",
                d,
                "--master",
                &url,
                "--tunnel",
                "127.0.0.1:0",
            ])
            .args([
                "--http",
                "127.0.0.1:0",
                "--https",
                "127.0.0.1:0",
                "--tcp-bind",
                "127.0.0.1",
            ])
            .args(["--metrics", "127.0.0.1:0", "--receipt-window", "1s"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics_addr = read_addr(&data.join("metrics.addr")).await;
    let tunnel_addr = read_addr(&data.join("tunnel.addr")).await;
    read_addr(&data.join("http.addr")).await;
    read_addr(&data.join("https.addr")).await;

    // The node is admitted once the gateway has read the table.
    let deadline = tokio::time::Instant::now() + WAIT;
    let conn = loop {
        if let Ok(conn) = node.connect_to(tunnel_addr, &id).await
            && tokio::time::timeout(Duration::from_millis(300), conn.closed())
                .await
                .is_err()
        {
            break conn;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never admitted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let node_side = tokio::spawn(async move {
        let (mut send, mut recv, first) = accept(&conn).await;
        assert!(matches!(first, Message::TunnelOpen(_)), "{first:?}");
        send_frame(&mut send, &Message::TunnelReady(TunnelReady {})).await;
        let got = recv.read_to_end(1 << 20).await.unwrap();
        send.write_all(b"0123456789").await.unwrap();
        send.finish().unwrap();
        let (mut send, _recv, receipt) = accept(&conn).await;
        let Message::Receipt(receipt) = receipt else {
            panic!("{receipt:?}")
        };
        let ack = Message::ReceiptAck(ReceiptAck {
            receipt: receipt.receipt,
        });
        send_frame(&mut send, &ack).await;
        send.finish().unwrap();
        let _ = tokio::time::timeout(WAIT, send.stopped()).await;
        (got, receipt, conn)
    });

    let deadline = tokio::time::Instant::now() + WAIT;
    let mut client = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("TCP route never listened: {e}"),
        }
    };
    client.write_all(b"hello").await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"0123456789");
    let (got, receipt, _conn) = tokio::time::timeout(WAIT, node_side)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"hello");
    receipt.verify().unwrap();
    assert_eq!(receipt.gateway, id);
    assert_eq!((receipt.bytes_to_node, receipt.bytes_from_node), (5, 10));

    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let bytes = format!(
        "hearth_gateway_bytes_total{{direction=\"to_node\",node=\"{}\",instance=\"db-1\",deployment=\"web\"}} 5",
        node.id
    );
    assert!(text.contains(&bytes), "{text}");
    assert!(text.contains("hearth_gateway_links_up 1"), "{text}");
    assert!(text.contains("hearth_gateway_tunnels_total 1"), "{text}");
    assert!(
        text.contains("hearth_gateway_receipts_issued_total 1"),
        "{text}"
    );
}
