//! The HTTP listener of the operator API, hardened against slow and greedy clients.
//!
//! - A client must send its request head within the header timeout (hyper's
//!   `header_read_timeout`), and its body must keep coming (a body timeout between frames).
//! - Connections are capped, the cap kept below the process's file-descriptor limit so that blob
//!   files served to nodes, the database and logs always find descriptors.
//! - At the cap, the connection idle longest (no request under way: waiting for a head that
//!   trickles in, or kept alive after its last answer) is closed to make room, so a flood of
//!   half-open connections cannot keep `/healthz` or an operator out. Only when every
//!   connection is busy answering does a new one wait.
//! - A failed `accept` (out of descriptors) is logged at a bounded rate and retried shortly,
//!   never a busy loop.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::clock::now_ms;
use crate::ratelimit::LogLimiter;

/// Limits of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once (further capped by [`fd_cap`]).
    pub max_connections: usize,
    /// Time a client gets to send a request head.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The connection cap under a soft descriptor limit of `nofile`: a quarter of the descriptors
/// (at least 64) stay for everything else.
pub fn fd_cap(max_connections: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile.and_then(|n| usize::try_from(n).ok()) else {
        return max_connections.max(1);
    };
    let reserve = (limit / 4).max(64);
    max_connections.min(limit.saturating_sub(reserve)).max(1)
}

/// The process's soft limit on open files, from `/proc/self/limits`.
pub fn nofile_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One open connection, as the acceptor sees it.
#[derive(Debug)]
struct Slot {
    /// No request under way.
    idle: Arc<AtomicBool>,
    /// Asks the connection to close.
    close: Arc<tokio::sync::Notify>,
}

/// Open connections, oldest first.
#[derive(Debug, Default)]
struct Slots {
    open: Mutex<BTreeMap<u64, Slot>>,
    freed: tokio::sync::Notify,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for one more connection under `cap`: closes the idle one that has been open
    /// longest, or waits until one closes.
    async fn room(&self, cap: usize) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a close in between is not missed.
            freed.as_mut().enable();
            {
                let open = self.lock();
                if open.len() < cap {
                    return;
                }
                if let Some((_, slot)) = open.iter().find(|(_, s)| s.idle.load(Ordering::Acquire)) {
                    slot.idle.store(false, Ordering::Release);
                    slot.close.notify_one();
                }
            }
            freed.await;
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    let cap = fd_cap(limits.max_connections, nofile_limit());
    tracing::info!(cap, "HTTP connection cap");
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let slots = Arc::new(Slots::default());
    let next = AtomicU64::new(0);
    let mut accept_log = LogLimiter::new(5, 12);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = slots.room(cap) => {}
        }
        let (stream, remote) = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Some(suppressed) = accept_log.allow(now_ms()) {
                        tracing::warn!(error = %e, suppressed, "HTTP accept failed; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let id = next.fetch_add(1, Ordering::Relaxed);
        let idle = Arc::new(AtomicBool::new(true));
        let close = Arc::new(tokio::sync::Notify::new());
        slots.lock().insert(
            id,
            Slot {
                idle: idle.clone(),
                close: close.clone(),
            },
        );
        let (app, slots, header_timeout) = (app.clone(), slots.clone(), limits.header_timeout);
        tokio::spawn(async move {
            let busy = idle.clone();
            let service = tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (app, busy) = (app.clone(), busy.clone());
                async move {
                    busy.store(false, Ordering::Release);
                    let mut req = req.map(axum::body::Body::new);
                    // The peer's address, for the dashboard's sign-in rate limit.
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(remote));
                    let answer = app.oneshot(req).await;
                    busy.store(true, Ordering::Release);
                    Ok::<_, Infallible>(match answer {
                        Ok(a) => a,
                        Err(never) => match never {},
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let result = tokio::select! {
                r = conn => r,
                // Idle: no request is under way, so dropping the connection loses nothing.
                () = close.notified() => {
                    tracing::debug!(%remote, "closed an idle HTTP connection to make room");
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::debug!(%remote, error = %e, "HTTP connection ended");
            }
            slots.lock().remove(&id);
            slots.freed.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(fd_cap(1024, Some(1024)), 768);
        assert_eq!(fd_cap(1024, Some(20_000)), 1024);
        assert_eq!(fd_cap(1024, Some(100)), 36);
        assert_eq!(fd_cap(1024, None), 1024);
        assert_eq!(fd_cap(1024, Some(10)), 1);
    }
}
