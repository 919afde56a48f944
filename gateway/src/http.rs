//! The public HTTP side: the accept loop of the `--http` and `--https` listeners, TLS with a
//! handshake timeout, HTTP/1.1 and HTTP/2 (hyper-util `auto`) with the header size and header
//! read limits, the keep-alive idle timeout, and the counters. What a request does is
//! [`crate::proxy`]'s.
//!
//! - [`body`]: the request and answer bodies (size limit, return of tunnel connections).
//! - [`headers`]: hop-by-hop removal and the `X-Forwarded-*` headers.
//! - `io`: the connection's stream with the request head timer.

pub mod body;
pub mod headers;
mod io;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::body::Active;
use crate::http::headers::client_value;
use crate::http::io::Watched;
use crate::limits::ConnectionGuard;
use crate::proxy::Proxy;
use crate::tls::CertStore;

/// Timeouts and sizes of the public HTTP side (flags of `hearth-gateway run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time for a client to complete its TLS handshake, its first request, and each request
    /// head from its first byte (default 10 s; slow clients are closed).
    pub header_timeout: Duration,
    /// A connection with no request in flight and no traffic for this long is closed
    /// (default 60 s).
    pub idle_timeout: Duration,
    /// Largest request head (default 32 KiB; larger → 431 on HTTP/1.1, stream reset on HTTP/2).
    pub max_header_bytes: usize,
    /// Largest request body (default 64 MiB; larger → 413).
    pub max_body_bytes: u64,
    /// Time to open a tunnel to a replica (default 5 s).
    pub tunnel_timeout: Duration,
    /// Time for a replica to begin its answer once the request is sent (default 60 s; then
    /// 504, never retried: the service may be working on it).
    pub response_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
            tunnel_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
        }
    }
}

/// The public HTTP side's counters.
#[derive(Debug, Clone, Default)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    /// The family's counters by deployment, one per status class: counting a request looks a
    /// `&str` up instead of building an owned label set.
    by_deployment: Arc<RwLock<HashMap<String, [Counter; 5]>>>,
    connections: Gauge,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Labels of `hearth_gateway_http_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// `2xx`, `3xx`, `4xx`, `5xx` (or `1xx`).
    status: &'static str,
    /// The deployment (empty when the host has no route).
    deployment: String,
}

impl HttpMetrics {
    /// Registers `hearth_gateway_http_requests_total{status,deployment}` and
    /// `hearth_gateway_http_connections`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "hearth_gateway_http_requests",
            "Public HTTP requests answered, by status class and deployment",
            metrics.requests.clone(),
        );
        registry.register(
            "hearth_gateway_http_connections",
            "Public HTTP connections open",
            metrics.connections.clone(),
        );
        metrics
    }

    /// Counts one answer.
    pub(crate) fn request(&self, status: hyper::StatusCode, deployment: &str) {
        let class = usize::from((status.as_u16() / 100).clamp(1, 5) - 1);
        let cached = self
            .read_cache()
            .get(deployment)
            .and_then(|c| c.get(class).cloned());
        let counter = match cached {
            Some(counter) => counter,
            None => {
                let counters = CLASSES.map(|status| {
                    self.requests
                        .get_or_create(&RequestLabels {
                            status,
                            deployment: deployment.to_owned(),
                        })
                        .clone()
                });
                let counter = counters.get(class).cloned().unwrap_or_default();
                self.by_deployment
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(deployment.to_owned(), counters);
                counter
            }
        };
        counter.inc();
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, [Counter; 5]>> {
        self.by_deployment.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests counted with `status` class (`"2xx"` …) for `deployment`.
    pub fn requests(&self, status: &'static str, deployment: &str) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                status,
                deployment: deployment.to_owned(),
            })
            .get()
    }
}

/// Serves public clients on `listener` until the task is dropped: plain HTTP, or HTTPS when
/// `tls` is given. Connections over the limits are closed at once.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Option<Arc<CertStore>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(|store| TlsAcceptor::from(store.server_config()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let config = proxy.config().clone();
    builder
        .http1()
        .timer(TokioTimer::new())
        // Our own head timer (`io.rs`): hyper's would also cut idle keep-alive connections.
        .header_read_timeout(None)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(None);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let Some(guard) = proxy.limits().connection(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnState::new(peer, acceptor.is_some(), guard, proxy.metrics().clone());
        let proxy = Arc::clone(&proxy);
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_conn(&builder, proxy, conn, stream).await,
                Some(acceptor) => {
                    let timeout = proxy.config().header_timeout;
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_conn(&builder, proxy, conn, tls).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// What a public connection shares with its requests: who the client is, whether it came
/// over TLS, and the counts the idle timeout looks at. Holds the connection's place in the
/// limits until the last request (or upgraded stream) is gone.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) peer: SocketAddr,
    /// `peer`'s address as an `X-Forwarded-For` element.
    pub(crate) forwarded_for: HeaderValue,
    pub(crate) tls: bool,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    metrics: HttpMetrics,
    _guard: ConnectionGuard,
}

impl ConnState {
    fn new(peer: SocketAddr, tls: bool, guard: ConnectionGuard, metrics: HttpMetrics) -> Arc<Self> {
        metrics.connections.inc();
        Arc::new(Self {
            peer,
            forwarded_for: client_value(peer.ip().to_canonical()),
            tls,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            metrics,
            _guard: guard,
        })
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for ConnState {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

/// Serves one connection. No request within `header_timeout` of the connection's start (also
/// covering the protocol detection, which hyper does not time) → closed; later, no request in
/// flight and no new request for `idle_timeout` → shut down gracefully.
async fn serve_conn<I>(
    builder: &auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    conn: Arc<ConnState>,
    io: I,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = proxy.config().clone();
    let state = Arc::clone(&conn);
    let service = service_fn(move |req| {
        let proxy = Arc::clone(&proxy);
        let conn = Arc::clone(&conn);
        async move {
            conn.requests.fetch_add(1, Ordering::Relaxed);
            // In flight from here until the answer's body ends (its own `Active` takes over).
            let _active = Active::new(&conn);
            Ok::<_, Infallible>(proxy.handle(req, &conn).await)
        }
    });
    let io = Watched::new(io, Arc::clone(&state), config.header_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut deadline = tokio::time::Instant::now() + config.header_timeout;
    let mut seen = 0;
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(peer = %state.peer, error = %e, "connection ended");
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                let requests = state.requests.load(Ordering::Relaxed);
                if shutting_down || requests == 0 {
                    return;
                }
                if requests != seen || state.in_flight.load(Ordering::Relaxed) > 0 {
                    seen = requests;
                    deadline = tokio::time::Instant::now() + config.idle_timeout;
                    continue;
                }
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
                deadline = tokio::time::Instant::now() + config.header_timeout;
            }
        }
    }
}

async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted => {}
        _ => {
            // Out of file descriptors or memory: wait instead of spinning.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
