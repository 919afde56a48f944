//! The agent's link to the signed recipe repository: a `tough` transport that fetches metadata
//! over the session's QUIC connection, and the root anchor (pinned at enrolment with
//! `--trust-root`, or trusted on first use from the master and then never replaced).

use hearth_recipes::repo::MAX_METADATA;
use hearth_recipes::repo::trust::{TrustStore, metadata_file, stream_of, transport_error};
use tough::{Transport, TransportError, TransportStream};
use url::Url;

use crate::fetcher::Fetcher;

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
            Err(e) => Err(transport_error(&url, false, e)),
        }
    }
}

/// Makes sure the store has a root anchor: when none was pinned at enrolment, the master's
/// `1.root.json` is trusted on first use (and logged), then kept for good.
pub async fn ensure_root(store: &TrustStore, fetcher: &Fetcher) -> Result<(), String> {
    if store.has_root() {
        return Ok(());
    }
    let root = fetcher
        .metadata("1.root.json", MAX_METADATA)
        .await?
        .ok_or("the master publishes no signed recipe repository yet")?;
    let version = store.pin_root(&root).map_err(|e| e.to_string())?;
    tracing::warn!(
        version,
        "no root was pinned at enrolment: trusting the master's root on first use"
    );
    Ok(())
}
