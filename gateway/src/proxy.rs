//! What one public request does: rate limit, route by host, redirect plain HTTP to HTTPS,
//! refuse oversized bodies, pick a replica, forward the request as HTTP/1.1 over a pooled (or
//! new) tunnel, and stream the answer back; retry once on another replica when that is safe;
//! carry WebSocket upgrades over a dedicated tunnel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_protocol::messages::state::InstanceId;
use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper::http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::http::body::{Active, RequestBody, ResponseBody, is_too_large};
use crate::http::headers::{
    Head, content_length, https_redirect, is_idempotent, is_upgrade, prepare_request,
    prepare_response, request_host,
};
use crate::http::{ConnState, HttpConfig, HttpMetrics};
use crate::limits::ClientLimits;
use crate::pages::Page;
use crate::pool::{LoadGuard, Pool, Sender, Slot, spawn_pruner};
use crate::table::{HttpRoute, Replica, Routing, Target};
use crate::tunnel::{Links, TunnelError, TunnelRequest};

/// Tries of one request (the first and one retry on another replica); an idle pooled
/// connection found closed when used does not count as a try.
const TRIES: usize = 2;

/// How long a kept tunnel connection may take to become ready for the next request.
const READY_WAIT: Duration = Duration::from_millis(100);

/// The public HTTP side's shared state: routing table, links, limits, pool, counters.
#[derive(Debug)]
pub struct Proxy {
    routing: watch::Receiver<Arc<Routing>>,
    links: Arc<dyn Backend>,
    limits: Arc<ClientLimits>,
    config: HttpConfig,
    metrics: HttpMetrics,
    pool: Arc<Pool>,
}

/// Why a tunnel connection could not be made.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    /// The link refused or failed.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// `tunnel_timeout` passed.
    #[error("opening the tunnel timed out")]
    Timeout,
    /// The HTTP/1.1 client could not start on the tunnel.
    #[error("HTTP handshake on the tunnel: {0}")]
    Handshake(#[from] hyper::Error),
}

impl Proxy {
    /// The proxy; starts the task that retires pooled connections as `routing` and `links`
    /// change (call within a tokio runtime).
    pub fn new(
        routing: watch::Receiver<Arc<Routing>>,
        links: Links,
        limits: Arc<ClientLimits>,
        config: HttpConfig,
        metrics: HttpMetrics,
    ) -> Arc<Self> {
        Self::with_backend(routing, Arc::new(links), limits, config, metrics)
    }

    /// The proxy over any [`Backend`] (tests use plain TCP connections).
    pub fn with_backend(
        routing: watch::Receiver<Arc<Routing>>,
        links: Arc<dyn Backend>,
        limits: Arc<ClientLimits>,
        config: HttpConfig,
        metrics: HttpMetrics,
    ) -> Arc<Self> {
        let pool = Arc::new(Pool::default());
        spawn_pruner(Arc::downgrade(&pool), routing.clone(), Arc::clone(&links));
        Arc::new(Self {
            routing,
            links,
            limits,
            config,
            metrics,
            pool,
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Its client limits.
    pub fn limits(&self) -> &Arc<ClientLimits> {
        &self.limits
    }

    /// Its counters.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// Tunnel connections kept idle for reuse.
    pub fn idle_tunnels(&self) -> usize {
        self.pool.idle_count()
    }

    /// Answers one request of a public connection.
    pub(crate) async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &Arc<ConnState>,
    ) -> Response<ResponseBody> {
        if !self.limits.request(conn.peer.ip(), Instant::now()) {
            return self.page(Page::TooManyRequests, "");
        }
        let (parts, body) = req.into_parts();
        let Some(host) = request_host(&parts) else {
            return self.page(Page::BadRequest, "");
        };
        let routing = Arc::clone(&self.routing.borrow());
        let Some(route) = host.to_str().ok().and_then(|h| routing.http(h)) else {
            return self.page(Page::UnknownHost, "");
        };
        let resp = self.routed(parts, body, host, route, conn).await;
        self.metrics
            .request(resp.status(), route.target.deployment.as_str());
        resp
    }

    async fn routed(
        &self,
        mut parts: Parts,
        body: Incoming,
        host: HeaderValue,
        route: &HttpRoute,
        conn: &Arc<ConnState>,
    ) -> Response<ResponseBody> {
        if !conn.tls && !route.plain_http {
            return https_redirect(&host, &parts.uri);
        }
        if content_length(&parts.headers).is_some_and(|n| n > self.config.max_body_bytes) {
            return Page::TooLarge.response();
        }
        let upgrade = is_upgrade(&parts);
        prepare_request(&mut parts, host, &conn.forwarded_for, conn.tls, upgrade);
        if upgrade {
            self.upgrade(parts, body, &route.target, conn).await
        } else {
            self.forward(parts, body, &route.target, conn).await
        }
    }

    /// Forwards a plain request (see the module doc for the retry rule).
    async fn forward(
        &self,
        parts: Parts,
        body: Incoming,
        target: &Target,
        conn: &Arc<ConnState>,
    ) -> Response<ResponseBody> {
        let retryable = is_idempotent(&parts.method) && body.is_end_stream();
        let backup = retryable.then(|| Head::of(&parts));
        let mut request = Some(Request::from_parts(
            parts,
            RequestBody::limited(body, self.config.max_body_bytes),
        ));
        let mut excluded: Option<InstanceId> = None;
        let mut failures = 0;
        // Bounded: each turn either counts a failure or uses up one idle pooled connection.
        for _ in 0..TRIES + crate::pool::MAX_IDLE_PER_REPLICA {
            let Some((replica, slot, load)) = self.pick(target, excluded.as_ref()) else {
                break;
            };
            let (mut sender, pooled) = match self.sender(&slot, replica, target, conn).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(instance = %replica.instance, error = %e, "tunnel failed");
                    self.failed(replica, &e);
                    excluded = Some(replica.instance.clone());
                    failures += 1;
                    if failures >= TRIES {
                        break;
                    }
                    continue;
                }
            };
            let Some(req) = request
                .take()
                .or_else(|| backup.as_ref().map(Head::request))
            else {
                break;
            };
            let sent =
                tokio::time::timeout(self.config.response_timeout, sender.try_send_request(req))
                    .await;
            let Ok(sent) = sent else {
                tracing::debug!(instance = %replica.instance, "no answer within the response timeout");
                return Page::GatewayTimeout.response();
            };
            match sent {
                Ok(resp) => return self.answer(resp, Some((sender, slot)), load, conn),
                Err(mut e) => {
                    let returned = e.take_message();
                    let error = e.into_error();
                    if is_too_large(&error) {
                        return Page::TooLarge.response();
                    }
                    tracing::debug!(instance = %replica.instance, error = %error, "request to replica failed");
                    let nothing_sent = returned.is_some();
                    match returned {
                        Some(req) => request = Some(req),
                        None if backup.is_some() => {}
                        None => return Page::BadGateway.response(),
                    }
                    if pooled && nothing_sent {
                        continue;
                    }
                    // A kept connection may have been closed by the service just now: the
                    // retry may go to the same replica (over a new tunnel or another kept one).
                    if !pooled {
                        excluded = Some(replica.instance.clone());
                    }
                    failures += 1;
                    if failures >= TRIES {
                        break;
                    }
                }
            }
        }
        if failures == 0 {
            Page::Unavailable
        } else {
            Page::BadGateway
        }
        .response()
    }

    /// Carries an upgrade (WebSocket) over a dedicated tunnel: the request with its upgrade
    /// headers, then, on 101, bytes both ways until either side ends.
    async fn upgrade(
        &self,
        mut parts: Parts,
        body: Incoming,
        target: &Target,
        conn: &Arc<ConnState>,
    ) -> Response<ResponseBody> {
        let Some(client_side) = parts.extensions.remove::<OnUpgrade>() else {
            return Page::BadRequest.response();
        };
        let mut request = Some(Request::from_parts(
            parts,
            RequestBody::limited(body, self.config.max_body_bytes),
        ));
        let mut excluded: Option<InstanceId> = None;
        for attempt in 0..TRIES {
            let Some((replica, _slot, load)) = self.pick(target, excluded.as_ref()) else {
                return if attempt == 0 {
                    Page::Unavailable
                } else {
                    Page::BadGateway
                }
                .response();
            };
            let mut sender = match self.open(replica, target, conn, true).await {
                Ok(s) => s,
                Err(e) => {
                    self.failed(replica, &e);
                    excluded = Some(replica.instance.clone());
                    continue;
                }
            };
            let Some(req) = request.take() else { break };
            let sent =
                tokio::time::timeout(self.config.response_timeout, sender.try_send_request(req))
                    .await;
            let Ok(sent) = sent else {
                return Page::GatewayTimeout.response();
            };
            match sent {
                Ok(mut resp) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    let replica_side = hyper::upgrade::on(&mut resp);
                    let (mut head, _) = resp.into_parts();
                    prepare_response(&mut head.headers, true);
                    tokio::spawn(splice(client_side, replica_side, load, Active::new(conn)));
                    return Response::from_parts(head, ResponseBody::empty());
                }
                Ok(resp) => return self.answer(resp, None, load, conn),
                Err(mut e) => match e.take_message() {
                    Some(req) => {
                        request = Some(req);
                        excluded = Some(replica.instance.clone());
                    }
                    None => return Page::BadGateway.response(),
                },
            }
        }
        Page::BadGateway.response()
    }

    /// A serving replica with a link, not `excluded`, least loaded.
    fn pick<'t>(
        &self,
        target: &'t Target,
        excluded: Option<&InstanceId>,
    ) -> Option<(&'t Replica, Arc<Slot>, LoadGuard)> {
        self.pool.pick(&target.replicas, |r| {
            r.serving && excluded != Some(&r.instance) && self.links.available(&r.node, &r.instance)
        })
    }

    /// An idle pooled connection to the replica that is still usable, or a new one. A kept
    /// connection not ready at once gets [`READY_WAIT`] (its last exchange may still be
    /// finishing, e.g. a request body the service answered before reading it all), then is
    /// dropped.
    async fn sender(
        &self,
        slot: &Slot,
        replica: &Replica,
        target: &Target,
        conn: &ConnState,
    ) -> Result<(Sender, bool), OpenError> {
        while let Some(mut sender) = slot.take_idle() {
            if sender.is_ready() {
                return Ok((sender, true));
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await {
                return Ok((sender, true));
            }
        }
        Ok((self.open(replica, target, conn, false).await?, false))
    }

    /// Opens a tunnel to the replica and starts an HTTP/1.1 client on it.
    async fn open(
        &self,
        replica: &Replica,
        target: &Target,
        conn: &ConnState,
        upgrades: bool,
    ) -> Result<Sender, OpenError> {
        let request = TunnelRequest {
            replica,
            port: &target.port,
            client: conn.peer,
            deployment: &target.deployment,
        };
        let tunnel = tokio::time::timeout(self.config.tunnel_timeout, self.links.open(request))
            .await
            .map_err(|_| OpenError::Timeout)??;
        let io = TokioIo::new(tunnel);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await?;
        if upgrades {
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!(error = %e, "tunnel connection ended");
                }
            });
        } else {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "tunnel connection ended");
                }
            });
        }
        Ok(sender)
    }

    /// A replica whose node refused or has no link leaves the pool at once.
    fn failed(&self, replica: &Replica, error: &OpenError) {
        if matches!(
            error,
            OpenError::Tunnel(TunnelError::Refused { .. } | TunnelError::NotConnected(_))
        ) {
            self.pool.retire(&replica.instance);
        }
    }

    fn answer(
        &self,
        resp: Response<Incoming>,
        reuse: Option<(Sender, Arc<Slot>)>,
        load: LoadGuard,
        conn: &Arc<ConnState>,
    ) -> Response<ResponseBody> {
        let (mut head, body) = resp.into_parts();
        prepare_response(&mut head.headers, false);
        Response::from_parts(
            head,
            ResponseBody::upstream(body, reuse, load, Active::new(conn)),
        )
    }

    fn page(&self, page: Page, deployment: &str) -> Response<ResponseBody> {
        let resp = page.response();
        self.metrics.request(resp.status(), deployment);
        resp
    }
}

/// Copies bytes between an upgraded client connection and the replica until either ends; the
/// replica keeps the load and the public connection counts as busy meanwhile.
async fn splice(client: OnUpgrade, replica: OnUpgrade, load: LoadGuard, active: Active) {
    let (client, replica) = tokio::join!(client, replica);
    let (Ok(client), Ok(replica)) = (client, replica) else {
        return;
    };
    let mut client = TokioIo::new(client);
    let mut replica = TokioIo::new(replica);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut replica).await {
        tracing::debug!(peer = %active.conn().peer, error = %e, "upgraded connection ended");
    }
    drop((load, active));
}
