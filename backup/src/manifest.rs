//! A snapshot's manifest: what was in the data directory, and which chunks hold each file.
//! Serialized as JSON, sealed like a chunk and named by its keyed hash.

use serde::{Deserialize, Serialize};

use crate::chunk::{self, ChunkId};
use crate::key::Keys;
use crate::store::{ObjectKind, ObjectStore};
use crate::{BackupError, BackupKey};

/// The manifest format this version writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Largest manifest accepted when opening, bytes of JSON.
pub const MAX_MANIFEST: usize = 256 << 20;

/// A snapshot's name (the keyed hash of its manifest).
pub type SnapshotId = ChunkId;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_VERSION`].
    pub v: u32,
    /// When the snapshot was taken, ms since the Unix epoch.
    pub created_ms: u64,
    /// The snapshot this one was taken after, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SnapshotId>,
    /// Every directory, file and symbolic link, parents before children, by path.
    pub entries: Vec<Entry>,
}

/// One thing in the data directory (its fields are checked by [`EntryKind`], which serde's
/// `flatten` hands every field but `path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path, `/`-separated, with no empty, `.` or `..` component.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EntryKind {
    /// A directory and its permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file: its permission bits, size and chunks in order.
    File {
        /// Permission bits.
        mode: u32,
        /// Length, bytes.
        size: u64,
        /// Its chunks, in order: id and plaintext length.
        chunks: Vec<(ChunkId, u32)>,
    },
    /// A symbolic link and its target.
    Symlink {
        /// Where it points, as written.
        target: String,
    },
}

impl Manifest {
    /// Every chunk the manifest names (with repeats).
    pub fn chunks(&self) -> impl Iterator<Item = &(ChunkId, u32)> {
        self.entries.iter().flat_map(|e| match &e.kind {
            EntryKind::File { chunks, .. } => chunks.as_slice(),
            _ => &[],
        })
    }

    /// Seals and stores the manifest; returns its id.
    pub(crate) fn store(
        &self,
        keys: &Keys,
        store: &dyn ObjectStore,
    ) -> Result<SnapshotId, BackupError> {
        let json = serde_json::to_vec(self).map_err(|e| BackupError::BadManifest {
            id: String::new(),
            reason: e.to_string(),
        })?;
        let id = chunk::id_of(keys, &json);
        let sealed = chunk::seal(keys, ObjectKind::Snapshot.as_str(), &id, &json)?;
        store.put(ObjectKind::Snapshot, &id, &sealed)?;
        Ok(id)
    }

    /// Opens snapshot `id` from `store` under `key`, checking it and every path in it.
    pub fn open(
        key: &BackupKey,
        store: &dyn ObjectStore,
        id: &SnapshotId,
    ) -> Result<Self, BackupError> {
        let keys = key.derive();
        let kind = ObjectKind::Snapshot;
        let sealed = store.get(kind, id)?.ok_or_else(|| BackupError::Missing {
            kind: kind.as_str(),
            id: id.to_string(),
        })?;
        let json = chunk::open(&keys, kind.as_str(), id, &sealed, MAX_MANIFEST)?;
        let bad = |reason: String| BackupError::BadManifest {
            id: id.to_string(),
            reason,
        };
        let m: Self = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
        if m.v != MANIFEST_VERSION {
            return Err(bad(format!(
                "manifest version {} (this version reads {MANIFEST_VERSION})",
                m.v
            )));
        }
        for e in &m.entries {
            if !safe_path(&e.path) {
                return Err(bad(format!("unsafe path {:?}", e.path)));
            }
        }
        Ok(m)
    }
}

/// Whether `p` is a relative path of normal components only.
pub(crate) fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}
