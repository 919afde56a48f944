//! Artifacts over the overlay (SPEC §16.4): an artifact whose signed targets carry a chunk
//! manifest is fetched chunk by chunk from the members that hold it, as the sans-IO planner
//! (`hearth_core::chunks`) decides, each chunk checked against the manifest before it is
//! written; the master serves what no peer holds. This node serves what it caches to its peers
//! within its upload budget.
//!
//! [`store`]: the chunked cache (part file, bitmap sidecar, resumable); [`fetch`]: the planner's
//! driver; [`serve`]: `have_request` and `fetch_blob` from peers, the budget and the stream cap;
//! [`holdings`]: the debounced `holdings` report to the master.

pub mod fetch;
pub mod holdings;
pub mod serve;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use crate::overlay::Overlay;

/// What the chunked fetch path needs: the cache directory, the overlay, and the holdings
/// reporter to wake when what this node can serve changes.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// `D/cache`.
    pub dir: PathBuf,
    /// The overlay.
    pub overlay: Overlay,
    /// Woken when a chunk lands or an artifact completes.
    pub changed: Arc<tokio::sync::Notify>,
}
