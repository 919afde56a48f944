//! The routing poller: long-polls the master's `GET /v1/gateway/routes` (SPEC §14.6) and
//! publishes each new table on a `watch` channel.
//!
//! Every request is signed with the gateway's key (`Authorization: Hearth-Gateway <hk-id>
//! <unix_ms> <signature>`) and carries `If-None-Match` with the version held, so the master
//! answers at once when the table changed and otherwise holds the request up to `wait_s`
//! seconds and answers 304: changes arrive at once without a polling loop. On any failure
//! (master down, not registered yet, a bad answer) the last table stays in force and the
//! poller retries with [`Backoff::RECONNECT`].

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_api::RouteTable;
use hearth_core::backoff::Backoff;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::{SecretKey, SignerId};
use tokio::sync::watch;

use crate::table::Routing;

/// How long the master may hold a request, seconds.
pub const WAIT_S: u64 = 25;
/// Largest routing table read, bytes.
const MAX_TABLE: usize = 32 << 20;

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The master's URL is not usable.
    #[error("master URL `{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// The request did not complete (master down, connection lost, timeout).
    #[error("cannot reach the master: {}", chain(.0))]
    Http(#[from] reqwest::Error),
    /// 401: the master does not know this gateway's key (or the clocks differ by > 5 min).
    #[error(
        "not registered with the master yet: run `hearth gateway add NAME --key {0} \
         --tunnel-addr HOST:PORT` (or check this machine's clock)"
    )]
    Unauthorized(SignerId),
    /// Another status.
    #[error("the master answered {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A 200 whose body is not a routing table.
    #[error("the master's routing table is invalid: {0}")]
    Body(String),
}

/// One gateway's poller of one master.
#[derive(Debug)]
pub struct Poller {
    client: reqwest::Client,
    master: String,
    key: SecretKey,
    id: SignerId,
    wait_s: u64,
}

impl Poller {
    /// A poller of the master at `master` (`http://host:port`), signing with `key`.
    pub fn new(master: &str, key: SecretKey) -> Result<Self, RoutesError> {
        let master = master.trim_end_matches('/').to_owned();
        if !(master.starts_with("http://") || master.starts_with("https://")) {
            return Err(RoutesError::BadUrl(master));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            client,
            master,
            id: SignerId::from_key(key.public()),
            key,
            wait_s: WAIT_S,
        })
    }

    /// Asks the master to hold a request at most `wait_s` seconds (default [`WAIT_S`]).
    pub fn with_wait(mut self, wait_s: u64) -> Self {
        self.wait_s = wait_s;
        self
    }

    /// The `Authorization` value of a request to `path` (path and query) signed at `unix_ms`.
    pub fn authorization(&self, method: &str, path: &str, unix_ms: u64) -> String {
        let request = GatewayRequest {
            gateway: &self.id,
            unix_ms,
            method,
            path,
        };
        let signature = self.key.sign(&request.signing_bytes());
        format!(
            "{} {} {unix_ms} {signature}",
            GatewayRequest::SCHEME,
            self.id
        )
    }

    /// One request: the new table, or `None` when the master answered 304 (no change from
    /// `version`).
    pub async fn fetch(&self, version: &str) -> Result<Option<RouteTable>, RoutesError> {
        let tag = (!version.is_empty()).then(|| format!("\"{version}\""));
        match self
            .get_signed("/v1/gateway/routes", tag.as_deref(), MAX_TABLE)
            .await?
        {
            None => Ok(None),
            Some((body, _)) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| RoutesError::Body(e.to_string())),
        }
    }

    /// One signed long poll of `base` (a path without query; `?wait_s=` is added), with
    /// `If-None-Match: if_none_match` when given: the body (at most `max` bytes) and the
    /// answer's `ETag`, or `None` on 304. The members poll (`/v1/gateway/members`) uses it too.
    pub async fn get_signed(
        &self,
        base: &str,
        if_none_match: Option<&str>,
        max: usize,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, RoutesError> {
        let path = format!("{base}?wait_s={}", self.wait_s);
        let mut request = self
            .client
            .get(format!("{}{path}", self.master))
            .timeout(Duration::from_secs(self.wait_s + 10))
            .header("authorization", self.authorization("GET", &path, unix_ms()));
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let mut response = request.send().await?;
        match response.status().as_u16() {
            304 => return Ok(None),
            200 => {}
            401 => return Err(RoutesError::Unauthorized(self.id)),
            status => {
                let body = response.text().await.unwrap_or_default();
                let body = body.chars().take(200).collect();
                return Err(RoutesError::Status { status, body });
            }
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(RoutesError::Body(format!("larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, etag)))
    }

    /// Polls for ever, publishing each new table on `routing`; stops when every receiver is
    /// gone.
    pub async fn run(self, routing: watch::Sender<Arc<Routing>>) {
        let mut failures: u32 = 0;
        loop {
            if routing.is_closed() {
                return;
            }
            let version = routing.borrow().version.clone();
            match self.fetch(&version).await {
                Ok(Some(table)) if table.version == version => failures = 0,
                Ok(Some(table)) => {
                    failures = 0;
                    tracing::info!(
                        version = %table.version,
                        deployments = table.deployments.len(),
                        nodes = table.nodes.len(),
                        "routing table updated"
                    );
                    routing.send_replace(Arc::new(Routing::from_table(&table)));
                }
                Ok(None) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = Backoff::RECONNECT.jittered(failures, rand::random::<f64>());
                    tracing::warn!(
                        failures,
                        retry_in = ?delay,
                        "routing table poll failed (keeping the last table): {e}"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// An error and its causes, `: `-separated (reqwest's own text leaves the cause out).
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
