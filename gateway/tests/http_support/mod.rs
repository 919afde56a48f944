//! Shared by the `http_*` tests: a routing table, a gateway's public side on 127.0.0.1 port 0,
//! and small HTTP clients (raw bytes, hyper HTTP/1.1).
#![allow(dead_code, unreachable_pub)]

pub mod replica;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hearth_api::{DeploymentRoutes, RouteReplica, RouteTable};
use hearth_core::ingress::{HostName, HostRoute};
use hearth_gateway::backend::Backend;
use hearth_gateway::http::{HttpConfig, HttpMetrics, serve};
use hearth_gateway::limits::{ClientLimits, LimitsConfig};
use hearth_gateway::proxy::Proxy;
use hearth_gateway::table::Routing;
use hearth_gateway::tls::CertStore;
use hearth_gateway::tunnel::Links;
use hearth_protocol::{NodeId, SecretKey};
use http_body_util::{BodyExt, Empty};
use hyper::header::HOST;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bound on every wait of these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// One deployment `web` with `hosts` as `(name, plain_http)` and a serving replica `web-1`
/// (whose node has no link).
pub fn routing(hosts: &[(&str, bool)]) -> Routing {
    #[allow(clippy::expect_used)]
    table(hosts, &["web-1"]).expect("valid test table")
}

/// One deployment `web` with `hosts` and serving `replicas` (instance ids), each on its own node.
pub fn table(hosts: &[(&str, bool)], replicas: &[&str]) -> anyhow::Result<Routing> {
    let mut replica_routes = Vec::new();
    let mut nodes = Vec::new();
    for (i, instance) in replicas.iter().enumerate() {
        let seed = u8::try_from(i)?.wrapping_add(7);
        let node = NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public());
        nodes.push(node);
        replica_routes.push(RouteReplica {
            instance: instance.parse()?,
            node,
            generation: 1,
            serving: true,
        });
    }
    let mut host_routes = Vec::new();
    for (h, plain_http) in hosts {
        host_routes.push(HostRoute {
            host: HostName::parse(h)?,
            port: "http".parse()?,
            plain_http: *plain_http,
        });
    }
    let table = RouteTable {
        version: "v1".into(),
        deployments: vec![DeploymentRoutes {
            deployment: "web".parse()?,
            hosts: host_routes,
            tcp: vec![],
            replicas: replica_routes,
        }],
        nodes,
    };
    Ok(Routing::from_table(&table))
}

/// A public listener served by a proxy; the serve task ends when this is dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    pub routing: watch::Sender<Arc<Routing>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway whose replicas have no link (the `Links` of no node).
pub async fn start(
    routing: Routing,
    limits: LimitsConfig,
    config: HttpConfig,
    tls: Option<Arc<CertStore>>,
) -> anyhow::Result<Gateway> {
    start_backend(routing, None, limits, config, tls).await
}

/// A gateway over `backend` (or `Links` when `None`).
pub async fn start_backend(
    routing: Routing,
    backend: Option<Arc<dyn Backend>>,
    limits: LimitsConfig,
    config: HttpConfig,
    tls: Option<Arc<CertStore>>,
) -> anyhow::Result<Gateway> {
    let (tx, rx) = watch::channel(Arc::new(routing));
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    let limits = ClientLimits::new(limits);
    let proxy = match backend {
        None => Proxy::new(rx, Links::default(), limits, config, metrics),
        Some(backend) => Proxy::with_backend(rx, backend, limits, config, metrics),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(Arc::clone(&proxy), listener, tls));
    Ok(Gateway {
        addr,
        proxy,
        routing: tx,
        task,
    })
}

/// Limits that never get in the way.
pub fn generous() -> LimitsConfig {
    LimitsConfig {
        per_ip_connections: 1000,
        per_ip_rate: 1e6,
        per_ip_burst: 1e6,
        max_connections: 10_000,
    }
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `GET path` with `Host: host` over a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> anyhow::Result<Answer> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(HOST, host)
        .body(Empty::<Bytes>::new())?;
    send(&mut sender, req).await
}

/// Sends on an HTTP/1.1 client connection and reads the whole answer.
pub async fn send<B>(
    sender: &mut hyper::client::conn::http1::SendRequest<B>,
    req: Request<B>,
) -> anyhow::Result<Answer>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .context("no answer in time")??;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .context("body not finished in time")??
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Writes `request` on a new connection and reads until the server closes it (bounded).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .context("server did not close")??;
    Ok(out)
}

/// True when the server closes `stream` (EOF or reset) within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
