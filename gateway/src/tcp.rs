//! Public TCP routes: one listener per routed public port on the `--tcp-bind` address, opened
//! when the port appears in the routing table and closed when it goes; each connection is
//! carried to a replica over a tunnel, optionally after a PROXY protocol v2 header.
//!
//! A bind failure (port in use, no permission) is logged and retried every
//! [`TcpConfig::rebind_every`], never fatal. A connection picks among the serving replicas
//! whose node has a link up and does not drain them, the one with the fewest connections from
//! here first; a replica that refuses the tunnel (or whose node is gone) is skipped for the
//! next. Bytes are then copied both ways with half-close until both sides are done, or until
//! neither side moved a byte for [`TcpConfig::idle_timeout`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hearth_protocol::messages::state::InstanceId;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::proxy_v2;
use crate::table::{Routing, TcpRoute};
use crate::tunnel::{Links, Tunnel, TunnelRequest};

/// Admits a client connection: a guard held for as long as the connection lasts (the
/// per-client-IP connection limit), or `None` to close it at once.
pub type Admit = Arc<dyn Fn(IpAddr) -> Option<Box<dyn Send>> + Send + Sync>;

/// How public TCP routes are served.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// The address the listeners bind (`--tcp-bind`).
    pub bind: IpAddr,
    /// A connection in which no byte moved either way for this long is closed.
    pub idle_timeout: Duration,
    /// Pause between attempts to bind a port that failed.
    pub rebind_every: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            idle_timeout: Duration::from_secs(300),
            rebind_every: Duration::from_secs(5),
        }
    }
}

/// The TCP side of the gateway. Cheap to clone.
#[derive(Clone)]
pub struct TcpProxy {
    inner: Arc<Inner>,
}

struct Inner {
    links: Links,
    admit: Admit,
    config: TcpConfig,
    /// Ports with a listener bound now.
    listening: Mutex<BTreeSet<u16>>,
    /// Connections open from here, per instance.
    active: Mutex<HashMap<InstanceId, u64>>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("config", &self.inner.config)
            .field("listening", &self.listening())
            .finish_non_exhaustive()
    }
}

impl TcpProxy {
    /// A proxy carrying connections over `links`, each admitted by `admit`.
    pub fn new(links: Links, admit: Admit, config: TcpConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                links,
                admit,
                config,
                listening: Mutex::default(),
                active: Mutex::default(),
            }),
        }
    }

    /// The public ports with a listener bound now, ascending.
    pub fn listening(&self) -> Vec<u16> {
        lock(&self.inner.listening).iter().copied().collect()
    }

    /// Keeps one listener per routed port as `routing` changes; runs until its sender is gone.
    pub async fn run(self, mut routing: watch::Receiver<Arc<Routing>>) {
        let mut listeners: BTreeMap<u16, JoinHandle<()>> = BTreeMap::new();
        loop {
            let ports: BTreeSet<u16> = routing.borrow_and_update().tcp_ports().collect();
            listeners.retain(|port, task| {
                let keep = ports.contains(port);
                if !keep {
                    tracing::info!(port, "TCP route gone: closing its listener");
                    task.abort();
                    lock(&self.inner.listening).remove(port);
                }
                keep
            });
            for port in ports {
                listeners
                    .entry(port)
                    .or_insert_with(|| tokio::spawn(self.clone().listen(port, routing.clone())));
            }
            if routing.changed().await.is_err() {
                break;
            }
        }
        for (port, task) in listeners {
            task.abort();
            lock(&self.inner.listening).remove(&port);
        }
    }

    async fn listen(self, port: u16, routing: watch::Receiver<Arc<Routing>>) {
        let addr = SocketAddr::new(self.inner.config.bind, port);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    tracing::warn!(%addr, retry_in = ?self.inner.config.rebind_every, "cannot listen for a TCP route: {e}");
                    tokio::time::sleep(self.inner.config.rebind_every).await;
                }
            }
        };
        tracing::info!(%addr, "listening for a TCP route");
        lock(&self.inner.listening).insert(port);
        loop {
            let (stream, client) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%addr, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let route = routing.borrow().tcp(port).cloned();
            let (Some(route), Some(guard)) = (route, (self.inner.admit)(client.ip())) else {
                continue;
            };
            tokio::spawn(self.clone().connection(stream, client, route, guard));
        }
    }

    async fn connection(
        self,
        mut client_stream: TcpStream,
        client: SocketAddr,
        route: TcpRoute,
        _guard: Box<dyn Send>,
    ) {
        let Some((mut tunnel, instance)) = self.tunnel(&route, client).await else {
            tracing::debug!(%client, deployment = %route.target.deployment, "no replica took the TCP connection");
            return;
        };
        *lock(&self.inner.active)
            .entry(instance.clone())
            .or_insert(0) += 1;
        let result = async {
            if route.proxy_protocol {
                let local = client_stream.local_addr()?;
                tunnel.write_all(&proxy_v2::header(client, local)).await?;
            }
            let mut client_side = Idle::new(&mut client_stream);
            let activity = Arc::clone(&client_side.last);
            let started = client_side.started;
            let idle = self.inner.config.idle_timeout;
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client_side, &mut tunnel) => copied.map(|_| ()),
                () = idle_watch(started, activity, idle) => {
                    tracing::debug!(%client, "TCP connection idle: closed");
                    Ok(())
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(%client, "TCP connection ended: {e}");
        }
        let mut active = lock(&self.inner.active);
        if let Some(n) = active.get_mut(&instance) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&instance);
            }
        }
    }

    /// A tunnel to the first replica that takes it, least busy first.
    async fn tunnel(&self, route: &TcpRoute, client: SocketAddr) -> Option<(Tunnel, InstanceId)> {
        let target = &route.target;
        let mut candidates: Vec<_> = {
            let active = lock(&self.inner.active);
            target
                .replicas
                .iter()
                .filter(|r| r.serving && self.inner.links.available(&r.node, &r.instance))
                .map(|r| (active.get(&r.instance).copied().unwrap_or(0), r))
                .collect()
        };
        candidates.sort_by_key(|(n, _)| *n);
        for (_, replica) in candidates {
            let request = TunnelRequest {
                replica,
                port: &target.port,
                client,
                deployment: &target.deployment,
            };
            match self.inner.links.open(request).await {
                Ok(tunnel) => return Some((tunnel, replica.instance.clone())),
                Err(e) => tracing::debug!(instance = %replica.instance, "replica skipped: {e}"),
            }
        }
        None
    }
}

/// Resolves once no byte moved for `idle` (activity is in ms since `started`).
async fn idle_watch(started: Instant, last: Arc<AtomicU64>, idle: Duration) {
    loop {
        let last_ms = last.load(Ordering::Relaxed);
        let deadline = started + Duration::from_millis(last_ms) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream that notes when a byte last moved through it.
struct Idle<'a> {
    inner: &'a mut TcpStream,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<'a> Idle<'a> {
    fn new(inner: &'a mut TcpStream) -> Self {
        Self {
            inner,
            started: Instant::now(),
            last: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Idle<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if poll.is_ready() {
            this.touch();
        }
        poll
    }
}

impl AsyncWrite for Idle<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if poll.is_ready() {
            this.touch();
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update leaves the value consistent: a poisoned lock holds a usable value.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
