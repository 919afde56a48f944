//! Taking a snapshot of a directory: walk it (sorted, so equal trees give equal manifests),
//! cut files into content-defined chunks, store the chunks the store lacks, then the manifest.

use std::path::Path;

use fastcdc::v2020::StreamCDC;

use crate::chunk;
use crate::key::Keys;
use crate::manifest::{Entry, EntryKind, MANIFEST_VERSION, Manifest, SnapshotId};
use crate::store::{ObjectKind, ObjectStore};
use crate::{BackupError, BackupKey};

/// Chunk sizes (bytes) for the content-defined chunker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Smallest chunk.
    pub min: u32,
    /// Average chunk.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for Chunking {
    /// 16 KiB / 64 KiB / 256 KiB: a change costs about one 64 KiB chunk, a 1 GiB directory
    /// makes about 16,000 chunks.
    fn default() -> Self {
        Self {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

/// What a snapshot cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Regular files read.
    pub files: u64,
    /// Their bytes.
    pub bytes_read: u64,
    /// Chunks in the snapshot (with repeats).
    pub chunks: u64,
    /// Chunks the store lacked, now stored.
    pub new_chunks: u64,
    /// Sealed bytes stored for them and the manifest.
    pub new_bytes: u64,
}

/// Snapshots `root` into `store` under `key`; `parent` is the previous snapshot (recorded, not
/// read: deduplication asks the store). Returns the new snapshot's id, its manifest and what it
/// cost. Files that change while they are read are recorded as read; the caller makes the data
/// consistent first (the recipe's snapshot hook, or a pause).
pub fn snapshot(
    root: &Path,
    key: &BackupKey,
    store: &dyn ObjectStore,
    parent: Option<SnapshotId>,
    now_ms: u64,
    chunking: Chunking,
) -> Result<(SnapshotId, Manifest, SnapshotStats), BackupError> {
    let keys = key.derive();
    let mut walk = Walk {
        keys: &keys,
        store,
        chunking,
        entries: Vec::new(),
        stats: SnapshotStats::default(),
    };
    walk.dir(root, "")?;
    let manifest = Manifest {
        v: MANIFEST_VERSION,
        created_ms: now_ms,
        parent,
        entries: walk.entries,
    };
    let mut stats = walk.stats;
    store.sync()?; // the chunks are durable before a manifest names them
    let id = manifest.store(&keys, store)?;
    store.sync()?;
    if let Ok(Some(sealed)) = store.get(ObjectKind::Snapshot, &id) {
        stats.new_bytes += sealed.len() as u64;
    }
    Ok((id, manifest, stats))
}

struct Walk<'a> {
    keys: &'a Keys,
    store: &'a dyn ObjectStore,
    chunking: Chunking,
    entries: Vec<Entry>,
    stats: SnapshotStats,
}

#[cfg(unix)]
fn mode_of(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    m.permissions().mode() & 0o7777
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, rel: &str) -> Result<(), BackupError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(BackupError::io(format!("listing {dir:?}")))?
            .collect::<Result<_, _>>()
            .map_err(BackupError::io(format!("listing {dir:?}")))?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let path = e.path();
            let name = e
                .file_name()
                .into_string()
                .map_err(|_| BackupError::BadPath(path.clone()))?;
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(&path)
                .map_err(BackupError::io(format!("reading {path:?}")))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = std::fs::read_link(&path)
                    .map_err(BackupError::io(format!("reading {path:?}")))?;
                let target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| BackupError::BadPath(path.clone()))?;
                self.entries.push(Entry {
                    path: rel,
                    kind: EntryKind::Symlink { target },
                });
            } else if ft.is_dir() {
                self.entries.push(Entry {
                    path: rel.clone(),
                    kind: EntryKind::Dir {
                        mode: mode_of(&meta),
                    },
                });
                self.dir(&path, &rel)?;
            } else if ft.is_file() {
                let chunks = self.file(&path, &rel)?;
                self.entries.push(Entry {
                    path: rel,
                    kind: EntryKind::File {
                        mode: mode_of(&meta),
                        size: chunks.iter().map(|(_, l)| u64::from(*l)).sum(),
                        chunks,
                    },
                });
            }
            // Sockets, FIFOs and devices are not data: skipped.
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: &str) -> Result<Vec<(chunk::ChunkId, u32)>, BackupError> {
        let f = std::fs::File::open(path).map_err(BackupError::io(format!("reading {path:?}")))?;
        let c = self.chunking;
        let mut out = Vec::new();
        self.stats.files += 1;
        for piece in StreamCDC::new(f, c.min, c.avg, c.max) {
            let piece = piece.map_err(|e| BackupError::Chunking {
                path: rel.to_owned(),
                reason: e.to_string(),
            })?;
            let id = chunk::id_of(self.keys, &piece.data);
            let len = u32::try_from(piece.data.len()).unwrap_or(u32::MAX);
            self.stats.bytes_read += piece.data.len() as u64;
            self.stats.chunks += 1;
            if !self.store.has(ObjectKind::Chunk, &id)? {
                let sealed = chunk::seal(self.keys, ObjectKind::Chunk.as_str(), &id, &piece.data)?;
                self.store.put(ObjectKind::Chunk, &id, &sealed)?;
                self.stats.new_chunks += 1;
                self.stats.new_bytes += sealed.len() as u64;
            }
            out.push((id, len));
        }
        Ok(out)
    }
}
