//! Routing through the public HTTP side: unknown host → 404 page, plain HTTP to a host
//! without `plain_http` → 308 to HTTPS, a host whose replicas have no link → 503 page with
//! `Retry-After`, a declared body over the limit → 413, and the request counters.

mod http_support;

use hearth_gateway::http::HttpConfig;
use http_body_util::Full;
use http_support::{Answer, generous, get, raw, routing, send, start};
use hyper::header::{CONTENT_LENGTH, HOST, LOCATION, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn table() -> hearth_gateway::table::Routing {
    routing(&[("app.example.org", true), ("secure.example.org", false)])
}

#[tokio::test]
async fn unknown_host_gets_the_404_page() -> anyhow::Result<()> {
    let gw = start(table(), generous(), HttpConfig::default(), None).await?;
    let a = get(gw.addr, "nobody.example.org", "/").await?;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&a.body).contains("404 Not Found"));
    assert_eq!(gw.proxy.metrics().requests("4xx", ""), 1);
    Ok(())
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_without_plain_http() -> anyhow::Result<()> {
    let gw = start(table(), generous(), HttpConfig::default(), None).await?;
    let a = get(gw.addr, "Secure.Example.org:8080", "/a/b?c=d").await?;
    assert_eq!(a.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(a.headers[LOCATION], "https://Secure.Example.org/a/b?c=d");
    assert_eq!(gw.proxy.metrics().requests("3xx", "web"), 1);
    Ok(())
}

#[tokio::test]
async fn no_available_replica_gets_the_503_page() -> anyhow::Result<()> {
    let gw = start(table(), generous(), HttpConfig::default(), None).await?;
    let Answer {
        status,
        headers,
        body,
    } = get(gw.addr, "app.example.org", "/").await?;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[RETRY_AFTER], "5");
    assert!(String::from_utf8_lossy(&body).contains("503"));
    assert_eq!(gw.proxy.metrics().requests("5xx", "web"), 1);
    assert_eq!(gw.proxy.idle_tunnels(), 0);
    Ok(())
}

#[tokio::test]
async fn keep_alive_connection_serves_several_requests() -> anyhow::Result<()> {
    let gw = start(table(), generous(), HttpConfig::default(), None).await?;
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for host in ["app.example.org", "nobody.example.org", "app.example.org"] {
        let req = Request::get("/")
            .header(HOST, host)
            .body(Full::new(bytes::Bytes::new()))?;
        let a = send(&mut sender, req).await?;
        assert!(a.status == StatusCode::SERVICE_UNAVAILABLE || a.status == StatusCode::NOT_FOUND);
    }
    assert_eq!(gw.proxy.metrics().requests("5xx", "web"), 2);
    Ok(())
}

#[tokio::test]
async fn declared_body_over_the_limit_gets_413() -> anyhow::Result<()> {
    let config = HttpConfig {
        max_body_bytes: 1000,
        ..HttpConfig::default()
    };
    let gw = start(table(), generous(), config, None).await?;
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::post("/upload")
        .header(HOST, "app.example.org")
        .header(CONTENT_LENGTH, "1001")
        .body(Full::new(bytes::Bytes::from(vec![b'x'; 1001])))?;
    let a = send(&mut sender, req).await?;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // At the limit it passes the check (and finds no replica).
    let a = raw(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: app.example.org\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await?;
    assert!(
        String::from_utf8_lossy(&a).starts_with("HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&a)
    );
    Ok(())
}

#[tokio::test]
async fn http2_with_prior_knowledge_on_plain_http() -> anyhow::Result<()> {
    let gw = start(table(), generous(), HttpConfig::default(), None).await?;
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let req = Request::get("http://app.example.org/").body(Full::new(bytes::Bytes::new()))?;
    let resp =
        tokio::time::timeout(std::time::Duration::from_secs(5), sender.send_request(req)).await??;
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let req = Request::get("http://secure.example.org/p").body(Full::new(bytes::Bytes::new()))?;
    let resp =
        tokio::time::timeout(std::time::Duration::from_secs(5), sender.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers()[LOCATION], "https://secure.example.org/p");
    Ok(())
}
