//! `overlay.json` in the data directory (SPEC §16.3, health): written every 2 s by the agent,
//! read by `hearth-node status`.

use std::path::Path;
use std::time::Duration;

use hearth_protocol::NodeId;
use serde::{Deserialize, Serialize};

use super::{LinkKind, Overlay, OverlayStats};

/// The file name.
pub const STATUS_FILE: &str = "overlay.json";
/// How often it is written.
pub const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The overlay's health, as in `overlay.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayHealth {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// Addresses listened on (QUIC, circuits).
    pub listen: Vec<String>,
    /// Relays and whether this node holds a reservation on each.
    pub relays: Vec<RelayHealth>,
    /// Connected members.
    pub peers: Vec<PeerHealth>,
    /// Overlay payload bytes sent (artifacts and replica links).
    pub bytes_up: u64,
    /// Overlay payload bytes received.
    pub bytes_down: u64,
    /// Upload budget for artifact chunks, Mbit/s.
    pub budget_mbps: u64,
    /// Artifact bytes served against the budget.
    pub budget_used_bytes: u64,
    /// Chunks from peers refused for failing their hash.
    pub chunks_refused: u64,
}

/// One relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayHealth {
    /// The relay's peer id.
    pub relay: String,
    /// Whether a circuit reservation is held.
    pub reserved: bool,
}

/// One connected member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHealth {
    /// The member.
    pub node: NodeId,
    /// `direct` or `relayed`.
    pub link: LinkKind,
    /// Since when the link has been this way, Unix ms.
    pub since_ms: u64,
}

impl OverlayHealth {
    /// A snapshot of the overlay.
    pub fn of(overlay: &Overlay) -> Self {
        let shared = overlay.shared();
        let s = overlay.stats();
        let mut peers: Vec<PeerHealth> = shared
            .links
            .iter()
            .map(|(node, (link, since_ms))| PeerHealth {
                node: *node,
                link: *link,
                since_ms: *since_ms,
            })
            .collect();
        peers.sort_by_key(|p| p.node);
        let mut relays: Vec<RelayHealth> = shared
            .relays
            .into_iter()
            .map(|(relay, reserved)| RelayHealth { relay, reserved })
            .collect();
        relays.sort_by(|a, b| a.relay.cmp(&b.relay));
        let get = OverlayStats::get;
        Self {
            peer_id: overlay.peer_id().to_string(),
            listen: shared.listen,
            relays,
            peers,
            bytes_up: get(&s.artifact_up).saturating_add(get(&s.replica_up)),
            bytes_down: get(&s.artifact_down).saturating_add(get(&s.replica_down)),
            budget_mbps: get(&s.budget_mbps),
            budget_used_bytes: get(&s.budget_used),
            chunks_refused: get(&s.chunks_refused),
        }
    }

    /// Reads `overlay.json` from a data directory (`None`: absent, the overlay is off or the
    /// agent never ran with it).
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join(STATUS_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes `overlay.json` atomically (temporary file, rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(STATUS_FILE))
    }
}

/// Writes `overlay.json` every [`STATUS_EVERY`] until shutdown.
pub async fn write_loop(
    overlay: Overlay,
    dir: std::path::PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = OverlayHealth::of(&overlay).write(&dir) {
                    tracing::warn!(error = %e, "cannot write overlay.json");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
