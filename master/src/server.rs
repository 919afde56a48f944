//! Wiring of a running master: endpoint, HTTP listener, liveness ticker, store flusher.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{DEFAULT_MAX_FRAME, MasterId, Sha256};
use hearth_transport::{Identity, NodeGate, TransportTuning, close, server_endpoint};

use crate::clock::now_ms;
use crate::context::Context;
use crate::data_dir::{DataDir, DataDirError};
use crate::fleet::Fleet;
use crate::liveness::LivenessConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreUrl};

/// Why the master could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Data directory problem.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// TLS material problem.
    #[error("TLS identity: {0}")]
    Cert(#[from] hearth_transport::CertError),
    /// QUIC endpoint problem.
    #[error(transparent)]
    Endpoint(#[from] hearth_transport::EndpointError),
    /// The QUIC runtime could not start.
    #[error("cannot start the QUIC runtime: {0}")]
    Runtime(std::io::Error),
    /// The ledger could not be opened, or is not what this master wrote.
    #[error("ledger: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The ledger's start-up entries could not be appended.
    #[error("ledger: {0}")]
    LedgerStart(String),
    /// The store could not be opened (unreachable server, newer schema, damaged file).
    #[error("cannot open the store {url}: {source}")]
    Store {
        url: String,
        source: crate::store::StoreError,
    },
    /// HTTP listener problem.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// QUIC address (port 0 picks one).
    pub quic: SocketAddr,
    /// HTTP address (port 0 picks one).
    pub http: SocketAddr,
    /// Liveness timeouts.
    pub liveness: LivenessConfig,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// QUIC transport settings.
    pub tuning: TransportTuning,
    /// Threads of the runtime that runs the QUIC endpoint and the node sessions (at least 1).
    /// Heartbeat ingest is cheapest on one thread: a second one mostly adds wakeups between
    /// threads (10k sessions at a 5 s interval fit well within one core). More threads help
    /// only with bursts of TLS handshakes, as after a master restart.
    pub quic_threads: usize,
    /// Limits of the HTTP listener (timeouts, connection cap).
    pub http_limits: crate::http::HttpLimits,
    /// Random-time uptime probing.
    pub uptime: crate::uptime::UptimeConfig,
    /// The credits policy (`--credit-policy FILE`; the default otherwise).
    pub credit_policy: hearth_ledger::Policy,
    /// How often a ledger checkpoint is signed when the log grew.
    pub checkpoint_interval: Duration,
    /// Where the state lives (`--store`); `None`: `master.db` in the data dir.
    pub store: Option<StoreUrl>,
    /// This master's unique name among those sharing the store; `None`: its advertised address.
    pub name: Option<String>,
    /// The QUIC address nodes are told to reach this master at; `None`: the bound address.
    pub advertise: Option<SocketAddr>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            quic: SocketAddr::from(([127, 0, 0, 1], 7443)),
            http: SocketAddr::from(([127, 0, 0, 1], 7080)),
            liveness: LivenessConfig::default(),
            max_frame: DEFAULT_MAX_FRAME,
            tuning: TransportTuning::default(),
            quic_threads: 1,
            http_limits: crate::http::HttpLimits::default(),
            uptime: crate::uptime::UptimeConfig::default(),
            credit_policy: hearth_ledger::Policy::default(),
            checkpoint_interval: Duration::from_secs(10),
            store: None,
            name: None,
            advertise: None,
        }
    }
}

/// Runs the master until `shutdown` resolves.
pub async fn serve(
    dir: &DataDir,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let key = dir.load_key()?;
    let id = MasterId::from_key(key.public());
    let admin_token_hash = Sha256::digest(dir.load_admin_token()?.as_bytes());
    let url = opts
        .store
        .clone()
        .unwrap_or_else(|| StoreUrl::Sqlite(dir.db_path()));
    let store: Arc<dyn Store> = crate::store::open(&url).map_err(|source| ServeError::Store {
        url: url.to_string(),
        source,
    })?;
    let records = store.nodes().map_err(DataDirError::from)?;
    let fleet = Arc::new(Fleet::load(opts.liveness, &records, now_ms()));
    let ledger = Arc::new(crate::ledger::Ledger::open(
        &dir.path().join("ledger"),
        &key,
    )?);
    let appended = crate::ledger::tasks::reconcile(&ledger, &opts.credit_policy, &store)
        .await
        .map_err(ServeError::LedgerStart)?;
    if appended > 0 {
        tracing::info!(
            entries = appended,
            "ledger: policy, node and gateway entries appended at start"
        );
    }
    let identity = Identity::new(&key, "hearth-master")?;
    let net = NetRuntime::new(opts.quic_threads)?;
    let endpoint = {
        // The endpoint's driver, and every connection's, run on the runtime entered here.
        let _net = net.handle().enter();
        server_endpoint(
            opts.quic,
            &identity,
            NodeGate::new(fleet.clone()),
            &opts.tuning,
        )?
    };
    let quic_addr = endpoint.local_addr().map_err(|source| ServeError::Http {
        addr: opts.quic,
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(opts.http)
        .await
        .map_err(|source| ServeError::Http {
            addr: opts.http,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| ServeError::Http {
        addr: opts.http,
        source,
    })?;
    let ctx = Arc::new(Context {
        id,
        store: store.clone(),
        fleet: fleet.clone(),
        metrics: Metrics::default(),
        max_frame: opts.max_frame,
        blobs: crate::blobs::BlobStore::open(&dir.path().join("blobs")).map_err(|e| {
            DataDirError::Damaged {
                path: dir.path().join("blobs"),
                reason: e.to_string(),
            }
        })?,
        repository: crate::repository::Repository::open(&dir.path().join("repository")).map_err(
            |e| DataDirError::Damaged {
                path: dir.path().join("repository"),
                reason: e.to_string(),
            },
        )?,
        scheduler: crate::scheduler::SchedulerState::default(),
        probes: crate::audit::Probes::new(),
        uptime: crate::uptime::Uptime::new(opts.uptime),
        gateways: crate::gateway_api::GatewayState::default(),
        admin_token_hash,
        cluster: crate::cluster::Cluster::new(
            opts.name
                .clone()
                .unwrap_or_else(|| opts.advertise.unwrap_or(quic_addr).to_string()),
            opts.advertise.unwrap_or(quic_addr),
            Some(http_addr),
        ),
        enrol_log: std::sync::Mutex::new(crate::ratelimit::LogLimiter::new(10, 60)),
        ui: crate::ui::session::Sessions::new(&key),
        ledger: ledger.clone(),
        settlement: crate::settlement::Settler::default(),
        overlay: crate::overlay::OverlayState::load(&*store, &fleet).map_err(DataDirError::from)?,
    });

    dir.publish_addr(&dir.quic_addr_path(), quic_addr)?;
    dir.publish_addr(&dir.http_addr_path(), http_addr)?;
    tracing::info!(master = %id, %quic_addr, %http_addr, nodes = records.len(), "master running");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let quic = net
        .handle()
        .spawn(crate::session::serve(endpoint.clone(), ctx.clone()));
    let ticker = tokio::spawn(liveness_loop(ctx.clone(), stop_rx.clone()));
    let scheduler = tokio::spawn(crate::scheduler::run(ctx.clone(), stop_rx.clone()));
    let cluster = tokio::spawn(crate::cluster::run(ctx.clone(), stop_rx.clone()));
    let prober = tokio::spawn(crate::uptime::run(ctx.clone(), stop_rx.clone()));
    let checkpoints = tokio::spawn(crate::ledger::tasks::checkpoint_loop(
        ledger.clone(),
        opts.checkpoint_interval,
        stop_rx.clone(),
    ));
    let months = tokio::spawn(crate::ledger::tasks::month_loop(
        ledger.clone(),
        stop_rx.clone(),
    ));
    let mut http_stop = stop_rx.clone();
    let app = crate::api::router(ctx.clone());
    let limits = opts.http_limits;
    let http = tokio::spawn(async move {
        let stopped = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        crate::http::serve(listener, app, limits, stopped).await;
    });

    let mut stop = stop_rx;
    let _ = stop.wait_for(|s| *s).await;
    tracing::info!("shutting down");
    fleet.close_all(close::SHUTDOWN, b"master shutting down");
    endpoint.close(close::SHUTDOWN, b"master shutting down");
    let _ = ticker.await;
    let _ = scheduler.await;
    let _ = cluster.await;
    let _ = prober.await;
    let _ = http.await;
    let _ = quic.await;
    let _ = checkpoints.await;
    let _ = months.await;
    flush(&ctx).await;
    let closing = ledger.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    endpoint.wait_idle().await;
    Ok(())
}

/// The runtime of the QUIC side: the endpoint, connections and node sessions, apart from the
/// HTTP API and the scheduler so that neither delays heartbeats nor wakes their threads.
struct NetRuntime {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl NetRuntime {
    fn new(threads: usize) -> Result<Self, ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("hearth-quic")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for NetRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the caller's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Advances liveness twice a second and persists changes every second.
async fn liveness_loop(ctx: Arc<Context>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for (node, t) in ctx.fleet.tick(now_ms()) {
            tracing::info!(%node, from = t.from, to = t.to, "node liveness");
        }
        n += 1;
        if n.is_multiple_of(2) {
            flush(&ctx).await;
        }
    }
}

async fn flush(ctx: &Arc<Context>) {
    let seen = ctx.gateways.take_seen();
    if !seen.is_empty() {
        let store = ctx.store.clone();
        let result = tokio::task::spawn_blocking(move || store.record_gateway_seen(&seen)).await;
        if let Ok(Err(e)) = result {
            tracing::error!(error = %e, "could not persist gateways' last reads");
        }
    }
    let updates = ctx.fleet.take_dirty();
    if updates.is_empty() {
        return;
    }
    let store = ctx.store.clone();
    let result = tokio::task::spawn_blocking(move || store.record_liveness(&updates)).await;
    if let Ok(Err(e)) = result {
        tracing::error!(error = %e, "could not persist liveness");
    }
}
