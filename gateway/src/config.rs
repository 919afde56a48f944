//! The gateway's run configuration: the flags of `hearth-gateway run`, with their defaults and
//! checks, turned into a [`GatewayConfig`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `hearth-gateway run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Data directory made by `hearth-gateway init`.
    #[arg(long)]
    pub data: PathBuf,
    /// The master's HTTP API, e.g. `http://127.0.0.1:7080`.
    #[arg(long)]
    pub master: String,
    /// UDP address of the tunnel endpoint nodes dial (port 0 picks one; written to
    /// tunnel.addr).
    #[arg(long, default_value = "0.0.0.0:7445")]
    pub tunnel: SocketAddr,
    /// Public plain HTTP address (written to http.addr).
    #[arg(long, default_value = "0.0.0.0:80")]
    pub http: SocketAddr,
    /// Public HTTPS address (written to https.addr).
    #[arg(long, default_value = "0.0.0.0:443")]
    pub https: SocketAddr,
    /// Directory of `<host>.crt` + `<host>.key` PEM pairs, reloaded when it changes
    /// (default: D/certs).
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// Address the public TCP routes listen on, each on its own port.
    #[arg(long, default_value = "0.0.0.0")]
    pub tcp_bind: IpAddr,
    /// UDP address of the overlay relay (SPEC §16.3) nodes reserve circuits on (written to
    /// overlay.addr; register it with `hearth gateway add … --overlay-addr`). Without it the
    /// gateway is no relay.
    #[arg(long)]
    pub overlay_listen: Option<SocketAddr>,
    /// Address of `GET /metrics` (written to metrics.addr).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics: SocketAddr,
    /// Length of a bandwidth receipt window, e.g. `5m`, `30s`.
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    pub receipt_window: Duration,
    /// Most connections at once from one client IP.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_ip_connections: u32,
    /// Requests per second allowed from one client IP (token bucket refill; beyond: 429).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_ip_rate: u32,
    /// Burst of requests allowed from one client IP (token bucket size).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub per_ip_burst: u32,
    /// Most public connections at once, all clients together.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// A TCP route connection idle this long either way is closed, e.g. `5m`.
    #[arg(long, default_value = "5m", value_parser = positive_duration)]
    pub tcp_idle_timeout: Duration,
    /// Time for a client's TLS handshake, first request and each request head (slowloris).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// An HTTP connection with nothing in flight for this long is closed.
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// Largest request head in bytes (larger: 431).
    #[arg(long, default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub max_header_bytes: u32,
    /// Time for a replica to begin its answer (then 504).
    #[arg(long, default_value = "60s", value_parser = positive_duration)]
    pub response_timeout: Duration,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
}

/// Why the flags do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--master` is not an HTTP(S) URL.
    #[error("--master `{0}` must be an http:// or https:// URL, e.g. http://127.0.0.1:7080")]
    Master(String),
    /// `--per-ip-burst` below `--per-ip-rate`.
    #[error("--per-ip-burst ({burst}) must be at least --per-ip-rate ({rate})")]
    Burst {
        /// The burst.
        burst: u32,
        /// The rate.
        rate: u32,
    },
}

/// Public-side limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once per client IP.
    pub per_ip_connections: u32,
    /// Requests per second per client IP.
    pub per_ip_rate: u32,
    /// Request burst per client IP.
    pub per_ip_burst: u32,
    /// Connections at once in all.
    pub max_connections: u32,
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The data directory.
    pub data: PathBuf,
    /// The master's HTTP API base URL.
    pub master: String,
    /// Tunnel endpoint (UDP).
    pub tunnel: SocketAddr,
    /// Public HTTP.
    pub http: SocketAddr,
    /// Public HTTPS.
    pub https: SocketAddr,
    /// Certificate directory.
    pub certs: PathBuf,
    /// TCP routes' listening address.
    pub tcp_bind: IpAddr,
    /// `/metrics`.
    pub metrics: SocketAddr,
    /// The overlay relay (UDP), if any.
    pub overlay: Option<SocketAddr>,
    /// Receipt window.
    pub receipt_window: Duration,
    /// Public-side limits.
    pub limits: Limits,
    /// TCP routes' idle timeout.
    pub tcp_idle_timeout: Duration,
    /// The public HTTP side's timeouts and size limits.
    pub http_limits: crate::http::HttpConfig,
}

impl TryFrom<RunArgs> for GatewayConfig {
    type Error = ConfigError;

    fn try_from(a: RunArgs) -> Result<Self, ConfigError> {
        if !(a.master.starts_with("http://") || a.master.starts_with("https://")) {
            return Err(ConfigError::Master(a.master));
        }
        if a.per_ip_burst < a.per_ip_rate {
            return Err(ConfigError::Burst {
                burst: a.per_ip_burst,
                rate: a.per_ip_rate,
            });
        }
        Ok(Self {
            certs: a.certs.unwrap_or_else(|| a.data.join("certs")),
            data: a.data,
            master: a.master,
            tunnel: a.tunnel,
            http: a.http,
            https: a.https,
            tcp_bind: a.tcp_bind,
            metrics: a.metrics,
            overlay: a.overlay_listen,
            receipt_window: a.receipt_window,
            limits: Limits {
                per_ip_connections: a.per_ip_connections,
                per_ip_rate: a.per_ip_rate,
                per_ip_burst: a.per_ip_burst,
                max_connections: a.max_connections,
            },
            tcp_idle_timeout: a.tcp_idle_timeout,
            http_limits: crate::http::HttpConfig {
                header_timeout: a.header_timeout,
                idle_timeout: a.idle_timeout,
                max_header_bytes: a.max_header_bytes as usize,
                max_body_bytes: a.max_body_bytes,
                response_timeout: a.response_timeout,
                ..crate::http::HttpConfig::default()
            },
        })
    }
}

/// A humantime duration above zero (`300ms`, `2s`, `5m`).
fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 2s, 5m or 1h: {e}"))?;
    if d.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(d)
}
