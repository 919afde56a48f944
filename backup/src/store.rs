//! Where sealed objects are kept. [`DirStore`] keeps them as files (`chunks/<id>`,
//! `snapshots/<id>`). A new object is written into `incoming/` without a sync of its own;
//! [`ObjectStore::sync`] flushes the whole filesystem once (`syncfs`), and only then moves the
//! objects to their names and syncs those directories. So an object is visible under its name
//! only once its bytes are on disk, a crash loses at most objects no manifest names yet, and a
//! snapshot of thousands of chunks costs two flushes instead of one per chunk.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{BackupError, ChunkId};

/// The two kinds of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A chunk of a file.
    Chunk,
    /// A snapshot's manifest.
    Snapshot,
}

impl ObjectKind {
    /// Its name in messages and paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chunk => "chunk",
            Self::Snapshot => "snapshot",
        }
    }
}

/// A store of sealed objects.
pub trait ObjectStore {
    /// Whether the object is stored (or written and awaiting [`ObjectStore::sync`]).
    fn has(&self, kind: ObjectKind, id: &ChunkId) -> Result<bool, BackupError>;
    /// Stores an object (replacing one of the same id, which holds the same plaintext).
    fn put(&self, kind: ObjectKind, id: &ChunkId, sealed: &[u8]) -> Result<(), BackupError>;
    /// The sealed bytes, or `None`.
    fn get(&self, kind: ObjectKind, id: &ChunkId) -> Result<Option<Vec<u8>>, BackupError>;
    /// Makes every object stored so far durable and visible.
    fn sync(&self) -> Result<(), BackupError>;
}

/// Objects as files under a directory.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    /// Written into `incoming/`, not yet synced and moved.
    pending: Mutex<HashSet<(ObjectKind, ChunkId)>>,
}

impl DirStore {
    /// A store under `root` (created when needed). What an earlier process left in `incoming/`
    /// (never synced, named by no manifest) is removed.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let _ = std::fs::remove_dir_all(root.join("incoming"));
        Self {
            root,
            pending: Mutex::new(HashSet::new()),
        }
    }

    fn dir(&self, kind: ObjectKind) -> PathBuf {
        self.root.join(match kind {
            ObjectKind::Chunk => "chunks",
            ObjectKind::Snapshot => "snapshots",
        })
    }

    fn incoming(&self, kind: ObjectKind, id: &ChunkId) -> PathBuf {
        self.root
            .join("incoming")
            .join(format!("{}-{id}", kind.as_str()))
    }

    /// The file of a stored object.
    pub fn path(&self, kind: ObjectKind, id: &ChunkId) -> PathBuf {
        self.dir(kind).join(id.to_string())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashSet<(ObjectKind, ChunkId)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ObjectStore for DirStore {
    fn has(&self, kind: ObjectKind, id: &ChunkId) -> Result<bool, BackupError> {
        Ok(self.pending().contains(&(kind, *id)) || self.path(kind, id).is_file())
    }

    fn put(&self, kind: ObjectKind, id: &ChunkId, sealed: &[u8]) -> Result<(), BackupError> {
        let dir = self.root.join("incoming");
        std::fs::create_dir_all(&dir).map_err(BackupError::io(format!("creating {dir:?}")))?;
        let path = self.incoming(kind, id);
        let what = || format!("writing {path:?}");
        let mut f = std::fs::File::create(&path).map_err(BackupError::io(what()))?;
        f.write_all(sealed).map_err(BackupError::io(what()))?;
        self.pending().insert((kind, *id));
        Ok(())
    }

    fn get(&self, kind: ObjectKind, id: &ChunkId) -> Result<Option<Vec<u8>>, BackupError> {
        let path = if self.pending().contains(&(kind, *id)) {
            self.incoming(kind, id)
        } else {
            self.path(kind, id)
        };
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackupError::io(format!("reading {path:?}"))(e)),
        }
    }

    fn sync(&self) -> Result<(), BackupError> {
        let mut pending = self.pending();
        if pending.is_empty() {
            return Ok(());
        }
        flush(&self.root)?;
        let mut kinds = HashSet::new();
        for (kind, id) in pending.iter() {
            let dir = self.dir(*kind);
            if kinds.insert(*kind) {
                std::fs::create_dir_all(&dir)
                    .map_err(BackupError::io(format!("creating {dir:?}")))?;
            }
            let from = self.incoming(*kind, id);
            std::fs::rename(&from, dir.join(id.to_string()))
                .map_err(BackupError::io(format!("moving {from:?} into {dir:?}")))?;
        }
        for kind in kinds {
            sync_dir(&self.dir(kind))?;
        }
        pending.clear();
        Ok(())
    }
}

/// Flushes the filesystem that holds `root` (every object written there so far).
fn flush(root: &Path) -> Result<(), BackupError> {
    let what = || format!("flushing the filesystem of {root:?}");
    let d = std::fs::File::open(root).map_err(BackupError::io(what()))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        nix::unistd::syncfs(d.as_raw_fd())
            .map_err(|e| BackupError::io(what())(std::io::Error::from(e)))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = d;
        Err(BackupError::io(what())(std::io::Error::other(
            "syncfs is only available on Linux",
        )))
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io(format!("syncing {dir:?}")))
}
