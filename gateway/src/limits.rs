//! Per-client limits at the public listeners: concurrent connections per client IP and in
//! total (over either → the connection is closed at once), and a token bucket per client IP
//! for requests (empty → 429); an IPv6 client counts by its /64 ([`client_key`]). The bucket
//! is a plain value updated with the caller's `now`, so it is tested without clocks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The limits (flags of `hearth-gateway run`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Concurrent connections one client IP may hold (default 256).
    pub per_ip_connections: usize,
    /// Requests per second one client IP may make, sustained (default 200).
    pub per_ip_rate: f64,
    /// Requests one client IP may make in a burst (default 400).
    pub per_ip_burst: f64,
    /// Concurrent public connections in total (default 20,000).
    pub max_connections: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_ip_connections: 256,
            per_ip_rate: 200.0,
            per_ip_burst: 400.0,
            max_connections: 20_000,
        }
    }
}

/// The live counts, shared by every listener.
#[derive(Debug)]
pub struct ClientLimits {
    inner: Arc<Inner>,
}

/// One admitted connection; dropping it releases its place.
#[derive(Debug)]
pub struct ConnectionGuard {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl ClientLimits {
    /// Limits with no connection yet.
    pub fn new(cfg: LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(State::default()),
            }),
        })
    }

    /// Admits a connection from `ip`, or `None` when `ip` holds its share already or the
    /// gateway is at its total cap.
    pub fn connection(&self, ip: IpAddr) -> Option<ConnectionGuard> {
        let ip = client_key(ip);
        let cfg = &self.inner.cfg;
        let mut state = self.inner.lock();
        if state.total >= cfg.max_connections {
            return None;
        }
        if state.clients.len() > cfg.max_connections.saturating_add(PRUNE_SLACK) {
            state.prune(Instant::now(), cfg);
        }
        let burst = cfg.per_ip_burst;
        let client = state.clients.entry(ip).or_insert_with(|| Client {
            connections: 0,
            bucket: Bucket::full(burst, Instant::now()),
        });
        if client.connections >= cfg.per_ip_connections {
            return None;
        }
        client.connections += 1;
        state.total += 1;
        Some(ConnectionGuard {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Takes one request token of `ip` at `now`; false when its bucket is empty (answer 429).
    pub fn request(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = client_key(ip);
        let cfg = &self.inner.cfg;
        let mut state = self.inner.lock();
        let client = state.clients.entry(ip).or_insert_with(|| Client {
            connections: 0,
            bucket: Bucket::full(cfg.per_ip_burst, now),
        });
        client.bucket.take(now, cfg.per_ip_rate, cfg.per_ip_burst)
    }

    /// Connections admitted and not yet released.
    pub fn connections(&self) -> usize {
        self.inner.lock().total
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(client) = state.clients.get_mut(&self.ip) {
            client.connections = client.connections.saturating_sub(1);
        }
    }
}

/// A token bucket: `tokens` refill at `rate` per second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket is full again at `now` (forgetting it changes nothing).
    pub fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let mut b = *self;
        b.refill(now, rate, burst);
        b.tokens >= burst
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = self.last.max(now);
    }
}

/// The client an address counts for: IPv4 as is (also when IPv4-mapped), IPv6 by its /64
/// (one home or host usually holds a whole /64, so per-address limits would be no limit).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Clients without a connection kept beyond the cap before they are forgotten.
const PRUNE_SLACK: usize = 4096;

#[derive(Debug)]
struct Inner {
    cfg: LimitsConfig,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counts behind: keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    clients: HashMap<IpAddr, Client>,
}

impl State {
    /// Forgets clients without connections: first those whose bucket refilled, then all.
    fn prune(&mut self, now: Instant, cfg: &LimitsConfig) {
        self.clients.retain(|_, c| {
            c.connections > 0 || !c.bucket.is_full(now, cfg.per_ip_rate, cfg.per_ip_burst)
        });
        if self.clients.len() > cfg.max_connections {
            self.clients.retain(|_, c| c.connections > 0);
        }
    }
}

#[derive(Debug)]
struct Client {
    connections: usize,
    bucket: Bucket,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3.0, t0);
        assert!(b.take(t0, 10.0, 3.0));
        assert!(b.take(t0, 10.0, 3.0));
        assert!(b.take(t0, 10.0, 3.0));
        assert!(!b.take(t0, 10.0, 3.0));
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1, 10.0, 3.0));
        assert!(!b.take(t1, 10.0, 3.0));
        assert!(b.is_full(t1 + Duration::from_secs(1), 10.0, 3.0));
    }

    #[test]
    fn connections_per_ip_and_in_total() {
        let limits = ClientLimits::new(LimitsConfig {
            per_ip_connections: 2,
            max_connections: 3,
            ..LimitsConfig::default()
        });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let c: IpAddr = [127, 0, 0, 3].into();
        let a1 = limits.connection(a);
        let a2 = limits.connection(a);
        assert!(a1.is_some() && a2.is_some());
        assert!(limits.connection(a).is_none(), "over the per-IP cap");
        let b1 = limits.connection(b);
        assert!(b1.is_some());
        assert!(limits.connection(c).is_none(), "over the total cap");
        drop(a1);
        assert_eq!(limits.connections(), 2);
        assert!(limits.connection(c).is_some());
        drop((a2, b1));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([192, 0, 2, 1]));
    }
}
