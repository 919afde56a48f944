//! The gateway links' state, written to `D/gateways.json` for `hearth-node status` (as the
//! master link writes `link.json`): each link's gateway, address, state, since when it is
//! connected or its last error, and how many receipts the node holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hearth_protocol::SignerId;
use hearth_protocol::messages::tunnel::Addr;
use serde::{Deserialize, Serialize};

use super::receipts::ReceiptStore;
use crate::now_ms;

/// Version of `gateways.json`.
pub const STATUS_VERSION: u32 = 1;
/// The file's name in the data directory.
pub const STATUS_FILE: &str = "gateways.json";

/// `gateways.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaysStatus {
    /// Format version.
    pub version: u32,
    /// One entry per gateway of the desired state.
    pub links: Vec<GatewayLinkStatus>,
    /// Receipts stored.
    pub receipts: usize,
}

/// One gateway link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayLinkStatus {
    /// The gateway's key.
    pub gateway: SignerId,
    /// Its tunnel address.
    pub addr: Addr,
    /// `connecting`, `connected` or `backoff`.
    pub state: String,
    /// Since when connected, Unix ms.
    pub connected_since_ms: Option<u64>,
    /// Connections established since the agent started.
    pub sessions: u64,
    /// The last reason the link was lost.
    pub last_error: Option<String>,
}

impl GatewaysStatus {
    /// Reads `D/gateways.json`; none (or unreadable) is an empty status.
    pub fn read(dir: &Path) -> Self {
        std::fs::read_to_string(dir.join(STATUS_FILE))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }
}

/// The links' shared state; every change rewrites the file.
#[derive(Debug, Clone)]
pub(crate) struct StatusBoard(Arc<Board>);

#[derive(Debug)]
struct Board {
    path: Option<PathBuf>,
    receipts: ReceiptStore,
    links: Mutex<BTreeMap<SignerId, GatewayLinkStatus>>,
}

impl StatusBoard {
    pub(crate) fn new(dir: Option<&Path>, receipts: ReceiptStore) -> Self {
        Self(Arc::new(Board {
            path: dir.map(|d| d.join(STATUS_FILE)),
            receipts,
            links: Mutex::new(BTreeMap::new()),
        }))
    }

    /// The whole status now.
    pub(crate) fn snapshot(&self) -> GatewaysStatus {
        GatewaysStatus {
            version: STATUS_VERSION,
            links: self.lock().values().cloned().collect(),
            receipts: self.0.receipts.len(),
        }
    }

    pub(crate) fn added(&self, gateway: SignerId, addr: Addr) {
        self.change(|links| {
            links.insert(
                gateway,
                GatewayLinkStatus {
                    gateway,
                    addr,
                    state: "connecting".into(),
                    connected_since_ms: None,
                    sessions: 0,
                    last_error: None,
                },
            );
        });
    }

    pub(crate) fn removed(&self, gateway: &SignerId) {
        self.change(|links| {
            links.remove(gateway);
        });
    }

    pub(crate) fn connecting(&self, gateway: &SignerId) {
        self.edit(gateway, |l| {
            l.state = "connecting".into();
            l.connected_since_ms = None;
        });
    }

    pub(crate) fn connected(&self, gateway: &SignerId) {
        self.edit(gateway, |l| {
            l.state = "connected".into();
            l.connected_since_ms = Some(now_ms());
            l.sessions += 1;
            l.last_error = None;
        });
    }

    pub(crate) fn lost(&self, gateway: &SignerId, reason: String) {
        self.edit(gateway, |l| {
            l.state = "backoff".into();
            l.connected_since_ms = None;
            l.last_error = Some(reason);
        });
    }

    /// Rewrites the file (after a receipt was stored, say).
    pub(crate) fn touch(&self) {
        self.change(|_| {});
    }

    fn edit(&self, gateway: &SignerId, f: impl FnOnce(&mut GatewayLinkStatus)) {
        self.change(|links| {
            if let Some(l) = links.get_mut(gateway) {
                f(l);
            }
        });
    }

    fn change(&self, f: impl FnOnce(&mut BTreeMap<SignerId, GatewayLinkStatus>)) {
        // The lock is held while writing, so two changes never share the temporary file.
        let mut links = self.lock();
        f(&mut links);
        let snapshot = GatewaysStatus {
            version: STATUS_VERSION,
            links: links.values().cloned().collect(),
            receipts: self.0.receipts.len(),
        };
        let Some(path) = &self.0.path else {
            return;
        };
        let Ok(text) = serde_json::to_vec_pretty(&snapshot) else {
            return;
        };
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::warn!(path = %path.display(), "cannot write the gateway links' status");
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SignerId, GatewayLinkStatus>> {
        self.0
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
