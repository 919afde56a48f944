//! The agent's link to the signed recipe repository: a `tough` transport that fetches metadata
//! over the session's QUIC connection, and the root anchor (pinned at enrolment with
//! `--trust-root`, or trusted on first use from the master and then never replaced).

use hearth_recipes::repo::MAX_METADATA;
use hearth_recipes::repo::trust::{
    TrustError, TrustStore, metadata_file, stream_of, transport_error,
};
use tough::{Transport, TransportError, TransportStream};
use url::Url;

use crate::fetcher::{FetchError, Fetcher};

/// Fetches `hearth:/metadata/<file>` with `fetch_metadata` on a new stream.
#[derive(Debug, Clone)]
pub struct QuicTransport(pub Fetcher);

#[tough::async_trait]
impl Transport for QuicTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let Some(file) = metadata_file(&url) else {
            return Err(transport_error(&url, true, "not a metadata file".into()));
        };
        match self.0.metadata(file, MAX_METADATA).await {
            Ok(Some(bytes)) => Ok(stream_of(bytes)),
            Ok(None) => Err(transport_error(
                &url,
                true,
                format!("the master has no {file}"),
            )),
            Err(e) => Err(transport_error(&url, false, e.to_string())),
        }
    }
}

/// Why no root anchor could be set.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The master's root could not be fetched.
    #[error("cannot fetch the master's root: {0}")]
    Fetch(#[from] FetchError),
    /// The master has no repository yet.
    #[error("the master publishes no signed recipe repository yet")]
    NotPublished,
    /// The master's root is not a valid root, or cannot be stored.
    #[error("the master's root cannot be trusted: {0}")]
    Pin(#[from] TrustError),
}

impl RootError {
    /// Whether trying again later may succeed: a fetch that may pass, a repository not yet
    /// published, a root that could not be written (a full disk). A root that is no valid
    /// root stays so until the co-op publishes another, which is also worth waiting for, so
    /// only the fetch's own verdict is final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fetch(e) => e.is_retryable(),
            Self::NotPublished | Self::Pin(_) => true,
        }
    }
}

/// Makes sure the store has a root anchor: when none was pinned at enrolment, the master's
/// `1.root.json` is trusted on first use (and logged), then kept for good.
pub async fn ensure_root(store: &TrustStore, fetcher: &Fetcher) -> Result<(), RootError> {
    if store.has_root() {
        return Ok(());
    }
    let root = fetcher
        .metadata("1.root.json", MAX_METADATA)
        .await?
        .ok_or(RootError::NotPublished)?;
    let version = store.pin_root(&root)?;
    tracing::warn!(
        version,
        "no root was pinned at enrolment: trusting the master's root on first use"
    );
    Ok(())
}
