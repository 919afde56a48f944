//! HTTPS on the public side: the certificate is chosen by SNI from a directory of
//! `<host>.crt`/`<host>.key` pairs, a changed directory is picked up without a restart, and
//! HTTP/2 negotiated by ALPN reaches the proxy (here: its 503 page, over TLS no redirect).

mod http_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hearth_gateway::http::HttpConfig;
use hearth_gateway::tls::CertStore;
use http_body_util::{BodyExt, Empty};
use http_support::{generous, routing, start};
use hyper::header::RETRY_AFTER;
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Writes a fresh self-signed pair for `host` into `dir`; returns its certificate.
fn write_cert(dir: &Path, host: &str) -> anyhow::Result<CertificateDer<'static>> {
    let pair = rcgen::generate_simple_self_signed(vec![host.to_owned()])?;
    let key = pem("PRIVATE KEY", &pair.signing_key.serialize_der());
    std::fs::write(dir.join(format!("{host}.key")), key)?;
    std::fs::write(
        dir.join(format!("{host}.crt")),
        pem("CERTIFICATE", pair.cert.der()),
    )?;
    Ok(pair.cert.der().clone())
}

/// PEM text of `der`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A TLS client trusting `roots`, offering `alpn`.
fn connector(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn handshake(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    sni: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned())?;
    Ok(tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await??)
}

fn peer_cert(tls: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    tls.get_ref()
        .1
        .peer_certificates()?
        .first()
        .map(|c| c.clone().into_owned())
}

fn table() -> hearth_gateway::table::Routing {
    routing(&[("a.example.org", false), ("b.example.org", false)])
}

#[tokio::test]
async fn certificate_is_chosen_by_sni() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let a = write_cert(dir.path(), "a.example.org")?;
    let b = write_cert(dir.path(), "b.example.org")?;
    std::fs::write(dir.path().join("README"), "not a certificate")?;
    let store = CertStore::load(dir.path())?;
    assert_eq!(store.hosts(), ["a.example.org", "b.example.org"]);
    let gw = start(table(), generous(), HttpConfig::default(), Some(store)).await?;
    let client = connector(&[a.clone(), b.clone()], &[b"http/1.1"])?;
    let tls = handshake(&client, gw.addr, "a.example.org").await?;
    assert_eq!(peer_cert(&tls), Some(a));
    let tls = handshake(&client, gw.addr, "B.example.org").await?;
    assert_eq!(peer_cert(&tls), Some(b));
    assert!(
        handshake(&client, gw.addr, "c.example.org").await.is_err(),
        "no certificate for c"
    );
    Ok(())
}

#[tokio::test]
async fn changed_certificates_are_reloaded_without_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let old = write_cert(dir.path(), "a.example.org")?;
    let store = CertStore::load(dir.path())?;
    store.spawn_reload(Duration::from_millis(100));
    let gw = start(
        table(),
        generous(),
        HttpConfig::default(),
        Some(Arc::clone(&store)),
    )
    .await?;
    let new = write_cert(dir.path(), "a.example.org")?;
    let b = write_cert(dir.path(), "b.example.org")?;
    assert_ne!(old, new);
    let client = connector(&[old, new.clone(), b.clone()], &[b"http/1.1"])?;
    let reloaded = async {
        loop {
            let tls = handshake(&client, gw.addr, "a.example.org").await?;
            if peer_cert(&tls) == Some(new.clone()) {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reloaded)
        .await
        .context("new certificate not served in time")??;
    let tls = handshake(&client, gw.addr, "b.example.org").await?;
    assert_eq!(peer_cert(&tls), Some(b));
    // A broken pair keeps the previous certificates.
    std::fs::write(dir.path().join("c.example.org.crt"), "garbage")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tls = handshake(&client, gw.addr, "a.example.org").await?;
    assert_eq!(peer_cert(&tls), Some(new));
    Ok(())
}

#[tokio::test]
async fn http2_over_tls_reaches_the_proxy() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let a = write_cert(dir.path(), "a.example.org")?;
    let store = CertStore::load(dir.path())?;
    let gw = start(table(), generous(), HttpConfig::default(), Some(store)).await?;
    let client = connector(&[a], &[b"h2", b"http/1.1"])?;
    let tls = handshake(&client, gw.addr, "a.example.org").await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("https://a.example.org/x").body(Empty::<Bytes>::new())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await??;
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(
            resp.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "over TLS: no redirect"
        );
        assert!(resp.headers().contains_key(RETRY_AFTER));
        let body = resp.into_body().collect().await?.to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("503"));
    }
    assert_eq!(gw.proxy.metrics().requests("5xx", "web"), 3);
    Ok(())
}

#[tokio::test]
async fn http2_over_tls_is_forwarded_as_http1_with_https_headers() -> anyhow::Result<()> {
    use http_support::replica::{Behaviour, TcpBackend, replica};
    let dir = tempfile::tempdir()?;
    let a = write_cert(dir.path(), "a.example.org")?;
    let store = CertStore::load(dir.path())?;
    let echo = replica("a", Behaviour::Echo).await?;
    let backend = TcpBackend::new(&[("web-1", Some(echo))]);
    let routing = http_support::table(&[("a.example.org", false)], &["web-1"])?;
    let gw = http_support::start_backend(
        routing,
        Some(backend as Arc<dyn hearth_gateway::backend::Backend>),
        generous(),
        HttpConfig::default(),
        Some(store),
    )
    .await?;
    let client = connector(&[a], &[b"h2"])?;
    let tls = handshake(&client, gw.addr, "a.example.org").await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let req = Request::post("https://a.example.org/form?x=1")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(b"12345")))?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    for line in [
        "method=POST",
        "path=/form?x=1",
        "host=a.example.org",
        "xfp=https",
        "xfh=a.example.org",
        "xff=127.0.0.1",
        "len=5",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    Ok(())
}
