//! Limits of the public HTTP side through real sockets: per-IP connection cap (closed at once),
//! the per-IP request rate (429), the header size (431), a slow header (slowloris) closed within
//! the header timeout while another client is still served, and a silent connection closed too.

mod http_support;

use std::time::{Duration, Instant};

use hearth_gateway::http::HttpConfig;
use hearth_gateway::limits::LimitsConfig;
use http_body_util::Empty;
use http_support::{closed_within, generous, get, raw, routing, send, start};
use hyper::header::{HOST, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn table() -> hearth_gateway::table::Routing {
    routing(&[("app.example.org", true)])
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_at_once() -> anyhow::Result<()> {
    let limits = LimitsConfig {
        per_ip_connections: 2,
        ..generous()
    };
    let gw = start(table(), limits, HttpConfig::default(), None).await?;
    let first = TcpStream::connect(gw.addr).await?;
    let second = TcpStream::connect(gw.addr).await?;
    // Both are admitted: they are served (and kept open).
    let mut senders = Vec::new();
    for stream in [first, second] {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::get("/")
            .header(HOST, "app.example.org")
            .body(Empty::<bytes::Bytes>::new())?;
        let a = send(&mut sender, req).await?;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        senders.push(sender);
    }
    let mut third = TcpStream::connect(gw.addr).await?;
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "third connection kept open"
    );
    assert_eq!(gw.proxy.limits().connections(), 2);
    drop(senders);
    Ok(())
}

#[tokio::test]
async fn requests_over_the_rate_get_429() -> anyhow::Result<()> {
    let limits = LimitsConfig {
        per_ip_rate: 0.001,
        per_ip_burst: 3.0,
        ..generous()
    };
    let gw = start(table(), limits, HttpConfig::default(), None).await?;
    for _ in 0..3 {
        assert_eq!(
            get(gw.addr, "app.example.org", "/").await?.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let a = get(gw.addr, "app.example.org", "/").await?;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.contains_key(RETRY_AFTER));
    assert_eq!(gw.proxy.metrics().requests("4xx", ""), 1);
    Ok(())
}

#[tokio::test]
async fn header_over_the_limit_gets_431() -> anyhow::Result<()> {
    let config = HttpConfig {
        max_header_bytes: 16 * 1024,
        ..HttpConfig::default()
    };
    let gw = start(table(), generous(), config, None).await?;
    let mut req = b"GET / HTTP/1.1\r\nHost: app.example.org\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 20 * 1024));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let answer = raw(gw.addr, &req).await?;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // A head under the limit is served.
    let mut req = b"GET / HTTP/1.1\r\nHost: app.example.org\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 8 * 1024));
    req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let answer = raw(gw.addr, &req).await?;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));
    Ok(())
}

#[tokio::test]
async fn slow_header_is_closed_within_the_timeout_while_others_are_served() -> anyhow::Result<()> {
    let timeout = Duration::from_millis(800);
    let config = HttpConfig {
        header_timeout: timeout,
        ..HttpConfig::default()
    };
    let gw = start(table(), generous(), config, None).await?;
    let started = Instant::now();
    let mut slow = TcpStream::connect(gw.addr).await?;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: app.exa").await?;
    let mut silent = TcpStream::connect(gw.addr).await?;
    // Meanwhile another client is served.
    assert_eq!(
        get(gw.addr, "app.example.org", "/").await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Trickle a byte now and then: hyper's timer covers the whole head, not the gaps.
    let trickle = async {
        for b in b"mple.org\r\n" {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slow head kept open"
    );
    assert!(
        started.elapsed() < timeout + Duration::from_secs(2),
        "closed late: {:?}",
        started.elapsed()
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "silent connection kept open"
    );
    assert_eq!(
        get(gw.addr, "app.example.org", "/").await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    Ok(())
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let config = HttpConfig {
        header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(600),
        ..HttpConfig::default()
    };
    let gw = start(table(), generous(), config, None).await?;
    let mut stream = TcpStream::connect(gw.addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.example.org\r\n\r\n")
        .await?;
    assert!(
        closed_within(&mut stream, Duration::from_secs(4)).await,
        "idle connection kept open"
    );
    let released = async {
        while gw.proxy.limits().connections() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(2), released).await?;
    Ok(())
}

#[tokio::test]
async fn idle_keep_alive_outlives_the_header_timeout_but_a_slow_second_head_does_not()
-> anyhow::Result<()> {
    let config = HttpConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(5),
        ..HttpConfig::default()
    };
    let gw = start(table(), generous(), config, None).await?;
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for _ in 0..2 {
        let req = Request::get("/")
            .header(HOST, "app.example.org")
            .body(Empty::<bytes::Bytes>::new())?;
        assert_eq!(
            send(&mut sender, req).await?.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Idle for more than the header timeout: still open.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // On another connection, a complete first request then a second head that never ends.
    let mut slow = TcpStream::connect(gw.addr).await?;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: app.example.org\r\n\r\n")
        .await?;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut slow, &mut buf),
    )
    .await??;
    assert!(buf[..n].starts_with(b"HTTP/1.1 503"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHo").await?;
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "slow second head kept open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout"
    );
    Ok(())
}
