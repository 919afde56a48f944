//! The forwarding path with real replicas: local HTTP servers reached over plain TCP "tunnels"
//! (a test [`Backend`]): forwarding headers, pooled tunnels, retry rules, 503/502, body limit
//! while streaming, large bodies both ways, WebSocket upgrade, and pool retirement.

mod http_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hearth_gateway::backend::Backend;
use hearth_gateway::http::HttpConfig;
use http_body_util::Full;
use http_support::replica::{Behaviour, TcpBackend, replica};
use http_support::{Answer, generous, get, raw, send, start_backend, table};
use hyper::header::{CONNECTION, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST_NAME: &str = "app.example.org";

async fn gateway(
    replicas: &[(&str, Option<SocketAddr>)],
    config: HttpConfig,
) -> anyhow::Result<(http_support::Gateway, Arc<TcpBackend>)> {
    let ids: Vec<&str> = replicas.iter().map(|(id, _)| *id).collect();
    let routing = table(&[(HOST_NAME, true)], &ids)?;
    let backend = TcpBackend::new(replicas);
    let gw = start_backend(
        routing,
        Some(Arc::clone(&backend) as Arc<dyn Backend>),
        generous(),
        config,
        None,
    )
    .await?;
    Ok((gw, backend))
}

fn text(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

async fn client(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

#[tokio::test]
async fn forwards_with_forwarding_headers_and_without_hop_by_hop() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, _) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    let mut sender = client(gw.addr).await?;
    let req = Request::get("/p?q=1")
        .header(HOST, HOST_NAME)
        .header(CONNECTION, "x-secret")
        .header("x-secret", "s")
        .header("x-forwarded-for", "192.0.2.1")
        .body(Full::new(Bytes::new()))?;
    let ans = send(&mut sender, req).await?;
    assert_eq!(ans.status, StatusCode::OK);
    let t = text(&ans);
    for line in [
        "method=GET",
        "path=/p?q=1",
        "host=app.example.org",
        "xff=192.0.2.1, 127.0.0.1",
        "xfp=http",
        "xfh=app.example.org",
        "secret=\n",
    ] {
        assert!(t.contains(line), "{line:?} not in\n{t}");
    }
    assert!(
        !ans.headers.contains_key("keep-alive"),
        "hop-by-hop answer header kept"
    );
    assert_eq!(ans.headers["x-replica"], "yes");
    assert_eq!(gw.proxy.metrics().requests("2xx", "web"), 1);
    Ok(())
}

#[tokio::test]
async fn tunnels_are_pooled_and_reused() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, backend) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    for _ in 0..10 {
        assert_eq!(get(gw.addr, HOST_NAME, "/").await?.status, StatusCode::OK);
    }
    let mut sender = client(gw.addr).await?;
    for _ in 0..10 {
        let req = Request::post("/")
            .header(HOST, HOST_NAME)
            .body(Full::new(Bytes::from_static(b"abc")))?;
        let ans = send(&mut sender, req).await?;
        assert!(text(&ans).contains("len=3"), "{}", text(&ans));
    }
    assert_eq!(backend.opens(), 1, "one tunnel for sequential requests");
    assert_eq!(gw.proxy.idle_tunnels(), 1);
    Ok(())
}

#[tokio::test]
async fn refused_tunnel_is_retried_on_another_replica_for_any_method() -> anyhow::Result<()> {
    let b = replica("b", Behaviour::Echo).await?;
    let (gw, _) = gateway(
        &[("web-1", None), ("web-2", Some(b))],
        HttpConfig::default(),
    )
    .await?;
    for _ in 0..10 {
        let mut sender = client(gw.addr).await?;
        let req = Request::post("/")
            .header(HOST, HOST_NAME)
            .body(Full::new(Bytes::from_static(b"hello")))?;
        let ans = send(&mut sender, req).await?;
        assert_eq!(ans.status, StatusCode::OK);
        assert!(text(&ans).contains("replica=b") && text(&ans).contains("len=5"));
    }
    Ok(())
}

#[tokio::test]
async fn bodiless_idempotent_request_is_retried_after_a_failed_send() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Hangs).await?;
    let b = replica("b", Behaviour::Echo).await?;
    let (gw, _) = gateway(
        &[("web-1", Some(a)), ("web-2", Some(b))],
        HttpConfig::default(),
    )
    .await?;
    let mut posts = HashMap::new();
    for _ in 0..12 {
        let ans = get(gw.addr, HOST_NAME, "/").await?;
        assert_eq!(ans.status, StatusCode::OK, "{}", text(&ans));
        let mut sender = client(gw.addr).await?;
        let req = Request::post("/")
            .header(HOST, HOST_NAME)
            .body(Full::new(Bytes::from_static(b"x")))?;
        *posts
            .entry(send(&mut sender, req).await?.status)
            .or_insert(0) += 1;
    }
    // A POST that reached a replica is never sent again: it fails when it went to `a`.
    assert!(
        posts
            .keys()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_GATEWAY),
        "{posts:?}"
    );
    Ok(())
}

#[tokio::test]
async fn no_replica_is_503_and_every_try_failed_is_502() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Hangs).await?;
    let (gw, backend) = gateway(
        &[("web-1", None), ("web-2", Some(a))],
        HttpConfig::default(),
    )
    .await?;
    let ans = get(gw.addr, HOST_NAME, "/").await?;
    assert_eq!(ans.status, StatusCode::BAD_GATEWAY);
    assert!(text(&ans).contains("502"));
    backend.set_available("web-1", false);
    backend.set_available("web-2", false);
    assert_eq!(
        get(gw.addr, HOST_NAME, "/").await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    Ok(())
}

#[tokio::test]
async fn streamed_body_over_the_limit_gets_413() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let config = HttpConfig {
        max_body_bytes: 1000,
        ..HttpConfig::default()
    };
    let (gw, _) = gateway(&[("web-1", Some(a))], config).await?;
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {HOST_NAME}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..3 {
        req.extend_from_slice(b"258\r\n");
        req.extend(std::iter::repeat_n(b'x', 600));
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let ans = raw(gw.addr, &req).await?;
    let t = String::from_utf8_lossy(&ans);
    assert!(t.starts_with("HTTP/1.1 413"), "{t}");
    Ok(())
}

#[tokio::test]
async fn large_bodies_stream_both_ways() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, _) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    let mut sender = client(gw.addr).await?;
    let req = Request::get("/big")
        .header(HOST, HOST_NAME)
        .body(Full::new(Bytes::new()))?;
    let ans = send(&mut sender, req).await?;
    assert_eq!(ans.body.len(), 1 << 20);
    let req = Request::put("/up")
        .header(HOST, HOST_NAME)
        .body(Full::new(Bytes::from(vec![b'u'; 3 << 20])))?;
    let ans = send(&mut sender, req).await?;
    assert!(
        text(&ans).contains(&format!("len={}", 3 << 20)),
        "{}",
        text(&ans)
    );
    Ok(())
}

#[tokio::test]
async fn websocket_upgrade_is_spliced() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, backend) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    let mut stream = TcpStream::connect(gw.addr).await?;
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST_NAME}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed before the 101");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second message"] {
        stream.write_all(msg).await?;
        let mut echoed = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await??;
        assert_eq!(echoed, msg);
    }
    assert_eq!(backend.opens(), 1);
    assert_eq!(
        gw.proxy.idle_tunnels(),
        0,
        "an upgraded tunnel is never pooled"
    );
    Ok(())
}

#[tokio::test]
async fn idle_tunnels_of_an_unavailable_replica_are_dropped() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, backend) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    assert_eq!(get(gw.addr, HOST_NAME, "/").await?.status, StatusCode::OK);
    assert_eq!(gw.proxy.idle_tunnels(), 1);
    backend.set_available("web-1", false);
    let dropped = async {
        while gw.proxy.idle_tunnels() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), dropped).await?;
    assert_eq!(
        get(gw.addr, HOST_NAME, "/").await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    backend.set_available("web-1", true);
    assert_eq!(get(gw.addr, HOST_NAME, "/").await?.status, StatusCode::OK);
    assert_eq!(backend.opens(), 2, "the retired tunnel was not reused");
    Ok(())
}

#[tokio::test]
async fn an_answer_later_than_the_response_timeout_is_504() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let config = HttpConfig {
        response_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let (gw, backend) = gateway(&[("web-1", Some(a))], config).await?;
    let started = std::time::Instant::now();
    let ans = get(gw.addr, HOST_NAME, "/slow").await?;
    assert_eq!(ans.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(backend.opens(), 1, "a timed-out request is not retried");
    assert_eq!(get(gw.addr, HOST_NAME, "/").await?.status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_slow_answer_is_not_cut_by_the_idle_timeout() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let config = HttpConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let (gw, _) = gateway(&[("web-1", Some(a))], config).await?;
    let ans = get(gw.addr, HOST_NAME, "/slow").await?;
    assert_eq!(ans.status, StatusCode::OK);
    assert!(text(&ans).contains("path=/slow"));
    Ok(())
}

#[tokio::test]
async fn requests_go_to_the_least_loaded_replica() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let b = replica("b", Behaviour::Echo).await?;
    let (gw, _) = gateway(
        &[("web-1", Some(a)), ("web-2", Some(b))],
        HttpConfig::default(),
    )
    .await?;
    let addr = gw.addr;
    let slow = tokio::spawn(async move { get(addr, HOST_NAME, "/slow").await });
    // Wait until the slow request is outstanding (its replica's tunnel is in use).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut quick = Vec::new();
    for _ in 0..6 {
        let t = text(&get(gw.addr, HOST_NAME, "/").await?);
        quick.push(t.lines().next().unwrap_or_default().to_owned());
    }
    let slow = text(&slow.await??);
    let slow_replica = slow.lines().next().unwrap_or_default().to_owned();
    assert!(
        quick.iter().all(|q| *q != slow_replica),
        "busy {slow_replica} got a quick request: {quick:?}"
    );
    Ok(())
}

/// `wrk` (64 connections, 2 threads, 5 s) on `url`; requests per second.
fn wrk(url: &str, host: &str) -> anyhow::Result<f64> {
    let out = std::process::Command::new("wrk")
        .args(["-c64", "-t2", "-d5s", "-H", &format!("Host: {host}"), url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk output"))
}

/// Throughput through the proxy (plain TCP as the tunnel) against the replica directly, for
/// a 1 KiB page and a 1 MiB file. Needs `wrk`; run with
/// `cargo test --release -p hearth-gateway --test http_forward -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: needs wrk and a release build"]
async fn bench_against_direct() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::Echo).await?;
    let (gw, backend) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    for path in ["/1k", "/big"] {
        let direct = tokio::task::block_in_place(|| wrk(&format!("http://{a}{path}"), HOST_NAME))?;
        let proxied =
            tokio::task::block_in_place(|| wrk(&format!("http://{}{path}", gw.addr), HOST_NAME))?;
        eprintln!(
            "{path}: direct {direct:.0} req/s, through the gateway {proxied:.0} req/s = {:.0}% of direct",
            100.0 * proxied / direct
        );
    }
    eprintln!("tunnels opened: {}", backend.opens());
    Ok(())
}

#[tokio::test]
async fn a_kept_tunnel_the_service_closed_is_not_a_failure() -> anyhow::Result<()> {
    let a = replica("a", Behaviour::OneShot).await?;
    let (gw, backend) = gateway(&[("web-1", Some(a))], HttpConfig::default()).await?;
    for i in 0..10 {
        let ans = get(gw.addr, HOST_NAME, "/").await?;
        assert_eq!(ans.status, StatusCode::OK, "request {i}: {}", text(&ans));
        assert_eq!(&ans.body[..], b"ok");
    }
    assert!(backend.opens() >= 10, "a closed tunnel is never reused");
    Ok(())
}
