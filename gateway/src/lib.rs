//! `hearth-gateway`: what the public talks to. It runs on a machine of the cooperative's with a
//! public address and carries each request to a healthy replica through the gateway link that
//! the replica's node opened, outbound, from behind its home router (SPEC §14).
//!
//! - [`table`]: the routing table read from the master (`GET /v1/gateway/routes`), indexed by
//!   host name and public TCP port; [`routes`] long-polls it.
//! - [`tunnel`]: the QUIC endpoint nodes dial; one [`tunnel::Links`] entry per connected node;
//!   opening a tunnel stream to an instance's port.
//! - [`meter`]: byte counters per node, instance and deployment, counted here (never taken
//!   from a node); [`receipts`] signs them per window for the nodes.
//! - [`http`]: the public HTTP(S) side — [`limits`] per client, [`tls`] certificates by SNI,
//!   [`proxy`] forwarding with [`balance`] (least outstanding) over [`pool`]ed tunnels,
//!   [`backend`] (what the proxy needs of [`tunnel::Links`]), [`pages`] (404/502/503).
//! - [`tcp`]: public TCP routes ([`proxy_v2`]: the PROXY protocol header).
//! - [`overlay`]: the overlay relay (circuit relay v2 for members only, `--overlay-listen`).
//! - [`metrics`]: `/metrics`; [`data_dir`], [`config`]: the directory and the flags; [`run`]
//!   wires everything.

pub mod backend;
pub mod balance;
pub mod config;
pub mod data_dir;
pub mod http;
pub mod limits;
pub mod meter;
pub mod metrics;
pub mod overlay;
pub mod pages;
pub mod pool;
pub mod proxy;
pub mod proxy_v2;
pub mod receipts;
pub mod routes;
pub mod table;
pub mod tcp;
pub mod tls;
pub mod tunnel;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::messages::state::InstanceId;
use hearth_protocol::{NodeId, SecretKey, SignerId};
use hearth_transport::{EndpointError, Identity, close, gateway_endpoint, tunnel_tuning};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::data_dir::{DataDir, DataDirError};
use crate::receipts::{Receipts, ReceiptsConfig, ReceiptsError};
use crate::routes::{Poller, RoutesError};
use crate::table::Routing;
use crate::tcp::{Admit, TcpConfig, TcpProxy};
use crate::tunnel::{Links, RoutingAdmission};

/// How often the certificate directory is checked for changes.
const CERT_RELOAD: Duration = Duration::from_secs(10);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The gateway's certificate could not be made.
    #[error("gateway certificate: {0}")]
    Cert(#[from] hearth_transport::CertError),
    /// The tunnel endpoint could not be opened.
    #[error("tunnel endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    /// The master URL.
    #[error(transparent)]
    Routes(#[from] RoutesError),
    /// The receipts directory.
    #[error(transparent)]
    Receipts(#[from] ReceiptsError),
    /// A TCP listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// What it was for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The overlay relay.
    #[error(transparent)]
    Overlay(#[from] overlay::OverlayError),
    /// The certificate directory.
    #[error("certificates in {dir}: {reason}")]
    Certs {
        /// The directory.
        dir: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Runs the gateway until `shutdown` completes: binds every address, writes the `*.addr`
/// files, polls the master's routing table, accepts nodes' links and serves the public.
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let data = DataDir::new(&config.data);
    let key = data.load_key()?;
    let key_seed = key.seed();
    let id = SignerId::from_key(key.public());
    tracing::info!(gateway = %id, "starting");
    let (routing_tx, routing) = watch::channel(Arc::new(Routing::default()));

    let identity = Identity::new(&key, "hearth-gateway")?;
    let admission = Arc::new(RoutingAdmission(routing.clone()));
    let endpoint = gateway_endpoint(config.tunnel, &identity, admission, &tunnel_tuning())?;
    let tunnel_addr = endpoint.local_addr().map_err(|source| RunError::Bind {
        what: "tunnel",
        addr: config.tunnel,
        source,
    })?;
    let links = Links::new(meter::Meter::new());
    tokio::spawn(links.clone().serve(endpoint.clone()));
    tokio::spawn(follow_routing(links.clone(), routing.clone()));

    let poller = Poller::new(&config.master, SecretKey::from_seed(&key.seed()))?;
    tokio::spawn(poller.run(routing_tx));

    let receipts_config = ReceiptsConfig {
        window: config.receipt_window,
        ..ReceiptsConfig::default()
    };
    let receipts = Receipts::open(&data.receipts(), key, links.clone(), receipts_config)?;
    tokio::spawn(Arc::clone(&receipts).run());

    let mut registry = metrics::GatewayMetrics::new(links.clone(), Some(Arc::clone(&receipts)));
    let http_listener = bind("http", config.http).await?;
    let https_listener = bind("https", config.https).await?;
    let metrics_listener = bind("metrics", config.metrics).await?;
    let addrs = [
        ("tunnel", tunnel_addr),
        ("http", local(&http_listener, config.http)),
        ("https", local(&https_listener, config.https)),
    ];
    public_side(
        &config,
        &links,
        &routing,
        &mut registry,
        http_listener,
        https_listener,
    )?;

    if let Some(listen) = config.overlay {
        let poller = Poller::new(&config.master, SecretKey::from_seed(&key_seed))?;
        let bound = overlay::start(listen, &SecretKey::from_seed(&key_seed), poller).await?;
        data.publish_addr("overlay", bound)?;
    }
    let metrics_addr = local(&metrics_listener, config.metrics);
    tokio::spawn(metrics::serve(Arc::new(registry), metrics_listener));
    for (name, addr) in addrs {
        data.publish_addr(name, addr)?;
    }
    // Last: a reader that sees metrics.addr sees every other address written.
    data.publish_addr("metrics", metrics_addr)?;
    tracing::info!(%tunnel_addr, %metrics_addr, "gateway up");

    shutdown.await;
    tracing::info!("shutting down");
    endpoint.close(close::SHUTDOWN, b"gateway shutting down");
    // The bytes of the unfinished window: receipted and kept, sent when the nodes reconnect.
    match receipts.close_window() {
        Ok(last) => tracing::info!(receipts = last.len(), "last receipt window closed"),
        Err(e) => tracing::error!("cannot issue the last receipts: {e}"),
    }
    Ok(())
}

/// The public side: client limits, TCP routes, HTTP and HTTPS.
fn public_side(
    config: &GatewayConfig,
    links: &Links,
    routing: &watch::Receiver<Arc<Routing>>,
    registry: &mut metrics::GatewayMetrics,
    http_listener: TcpListener,
    https_listener: TcpListener,
) -> Result<(), RunError> {
    let l = config.limits;
    let limits = limits::ClientLimits::new(limits::LimitsConfig {
        per_ip_connections: l.per_ip_connections as usize,
        per_ip_rate: f64::from(l.per_ip_rate),
        per_ip_burst: f64::from(l.per_ip_burst),
        max_connections: l.max_connections as usize,
    });
    let admit: Admit = {
        let limits = Arc::clone(&limits);
        Arc::new(move |ip| {
            limits
                .connection(ip)
                .map(|guard| Box::new(guard) as Box<dyn Send>)
        })
    };
    let tcp_config = TcpConfig {
        bind: config.tcp_bind,
        idle_timeout: config.tcp_idle_timeout,
        ..TcpConfig::default()
    };
    tokio::spawn(TcpProxy::new(links.clone(), admit, tcp_config).run(routing.clone()));

    if let Err(source) = std::fs::create_dir_all(&config.certs) {
        return Err(RunError::Certs {
            dir: config.certs.clone(),
            reason: source.to_string(),
        });
    }
    let certs = tls::CertStore::load(&config.certs).map_err(|e| RunError::Certs {
        dir: config.certs.clone(),
        reason: e.to_string(),
    })?;
    tls::CertStore::spawn_reload(&certs, CERT_RELOAD);
    let http_metrics = http::HttpMetrics::register(registry.registry_mut());
    let proxy = proxy::Proxy::new(
        routing.clone(),
        links.clone(),
        limits,
        config.http_limits.clone(),
        http_metrics,
    );
    tokio::spawn(serve_logged(
        http::serve(Arc::clone(&proxy), http_listener, None),
        "http",
    ));
    tokio::spawn(serve_logged(
        http::serve(proxy, https_listener, Some(certs)),
        "https",
    ));
    Ok(())
}

async fn serve_logged(serve: impl Future<Output = std::io::Result<()>>, what: &'static str) {
    if let Err(e) = serve.await {
        tracing::error!("{what} listener stopped: {e}");
    }
}

/// At each new routing table: closes the links of nodes it no longer names, and forgets the
/// idle counters of replicas it no longer routes to.
async fn follow_routing(links: Links, mut routing: watch::Receiver<Arc<Routing>>) {
    while routing.changed().await.is_ok() {
        let table = Arc::clone(&routing.borrow_and_update());
        links.close_unadmitted(&table);
        let routed: HashSet<(NodeId, InstanceId)> = table
            .host_names()
            .filter_map(|h| table.http(h.as_str()).map(|r| &r.target))
            .chain(
                table
                    .tcp_ports()
                    .filter_map(|p| table.tcp(p).map(|r| &r.target)),
            )
            .flat_map(|t| t.replicas.iter().map(|r| (r.node, r.instance.clone())))
            .collect();
        links
            .meter()
            .prune(|key| routed.contains(&(key.node, key.instance.clone())));
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { what, addr, source })
}

fn local(listener: &TcpListener, asked: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(asked)
}
