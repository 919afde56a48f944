//! The node's bandwidth receipts: what gateways signed for the bytes its instances served,
//! kept for crediting.
//!
//! One JSON file per receipt under `D/receipts/`, named `<sequence>-<receipt id>.json` so the
//! directory lists in arrival order; each is written durably (temporary file, fsync, rename,
//! fsync of the directory) before the receipt is acknowledged. A receipt id is stored once; at
//! most `bound` receipts are kept, the oldest dropped with a warning.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hearth_protocol::Nonce;
use hearth_protocol::messages::usage::BandwidthReceipt;
use serde::{Deserialize, Serialize};

/// Receipts kept at most, by default.
pub const RECEIPTS_KEPT: usize = 10_000;
/// Version of a stored receipt file.
const RECORD_VERSION: u32 = 1;

/// Why a receipt could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A stored file is damaged.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// What [`ReceiptStore::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written to disk.
    New,
    /// Already held: nothing written.
    Duplicate,
}

/// The durable, bounded set of receipts (cheap to clone: one `Arc`).
#[derive(Debug, Clone)]
pub struct ReceiptStore(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    bound: usize,
    index: Mutex<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// Sequence → receipt id, oldest first.
    order: BTreeMap<u64, Nonce>,
    ids: HashMap<Nonce, u64>,
    next: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    receipt: BandwidthReceipt,
}

impl ReceiptStore {
    /// Opens (creating) the store in `dir`, keeping at most `bound` receipts.
    pub fn open(dir: &Path, bound: usize) -> Result<Self, ReceiptError> {
        let io = |source| ReceiptError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut index = Index::default();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some((seq, id)) = name.to_str().and_then(parse_name) else {
                continue; // temporary files and strangers
            };
            index.order.insert(seq, id);
            index.ids.insert(id, seq);
            index.next = index.next.max(seq + 1);
        }
        Ok(Self(Arc::new(Inner {
            dir: dir.to_owned(),
            bound: bound.max(1),
            index: Mutex::new(index),
        })))
    }

    /// Stores `receipt` durably unless its id is already held, then drops the oldest beyond
    /// the bound. Blocking (fsync): call it off the async runtime's threads.
    pub fn store(&self, receipt: &BandwidthReceipt) -> Result<Stored, ReceiptError> {
        let mut index = self.lock();
        if index.ids.contains_key(&receipt.receipt) {
            return Ok(Stored::Duplicate);
        }
        let seq = index.next;
        let path = self.path(seq, &receipt.receipt);
        let bytes = serde_json::to_vec_pretty(&Record {
            version: RECORD_VERSION,
            receipt: receipt.clone(),
        })
        .map_err(|e| ReceiptError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        durable_write(&self.0.dir, &path, &bytes).map_err(|source| ReceiptError::Io {
            path: path.clone(),
            source,
        })?;
        index.next = seq + 1;
        index.order.insert(seq, receipt.receipt);
        index.ids.insert(receipt.receipt, seq);
        while index.order.len() > self.0.bound {
            let Some((old, id)) = index.order.pop_first() else {
                break;
            };
            index.ids.remove(&id);
            let path = self.path(old, &id);
            tracing::warn!(receipt = %id, kept = self.0.bound, "receipt store full: dropping the oldest receipt");
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a dropped receipt");
            }
        }
        Ok(Stored::New)
    }

    /// Receipts held.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the receipt `id` is held.
    pub fn contains(&self, id: &Nonce) -> bool {
        self.lock().ids.contains_key(id)
    }

    /// Every receipt held, oldest first (read from disk).
    pub fn receipts(&self) -> Result<Vec<BandwidthReceipt>, ReceiptError> {
        let order: Vec<(u64, Nonce)> = self.lock().order.iter().map(|(s, i)| (*s, *i)).collect();
        order
            .into_iter()
            .map(|(seq, id)| self.read(seq, &id))
            .collect()
    }

    /// The ids of the receipts held, oldest first.
    pub fn ids(&self) -> Vec<Nonce> {
        self.lock().order.values().copied().collect()
    }

    /// The receipt `id`, read from disk (`None`: not held).
    pub fn get(&self, id: &Nonce) -> Result<Option<BandwidthReceipt>, ReceiptError> {
        let Some(seq) = self.lock().ids.get(id).copied() else {
            return Ok(None);
        };
        self.read(seq, id).map(Some)
    }

    fn read(&self, seq: u64, id: &Nonce) -> Result<BandwidthReceipt, ReceiptError> {
        let path = self.path(seq, id);
        let text = std::fs::read(&path).map_err(|source| ReceiptError::Io {
            path: path.clone(),
            source,
        })?;
        let record: Record = serde_json::from_slice(&text).map_err(|e| ReceiptError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if record.version != RECORD_VERSION {
            return Err(ReceiptError::Damaged {
                path,
                reason: format!("unknown version {}", record.version),
            });
        }
        Ok(record.receipt)
    }

    fn path(&self, seq: u64, id: &Nonce) -> PathBuf {
        self.0.dir.join(format!("{seq:020}-{id}.json"))
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.0
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `<sequence>-<id>.json` → its parts.
fn parse_name(name: &str) -> Option<(u64, Nonce)> {
    let (seq, rest) = name.strip_suffix(".json")?.split_once('-')?;
    Some((seq.parse().ok()?, rest.parse().ok()?))
}

/// Writes `path` durably: temporary file, fsync, rename, fsync of `dir`.
pub(crate) fn durable_write(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
