//! Where sealed objects are kept. [`DirStore`] keeps them as files (`chunks/<id>`,
//! `snapshots/<id>`), each written to a unique temporary name, synced and renamed into place,
//! so a crash leaves either the whole object or none; the directories are synced by
//! [`ObjectStore::sync`], once per snapshot before its manifest is stored (a manifest never
//! names a chunk that a crash could lose).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::{BackupError, ChunkId};

/// The two kinds of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Whether the object is stored.
    fn has(&self, kind: ObjectKind, id: &ChunkId) -> Result<bool, BackupError>;
    /// Stores an object (replacing one of the same id, which holds the same plaintext).
    fn put(&self, kind: ObjectKind, id: &ChunkId, sealed: &[u8]) -> Result<(), BackupError>;
    /// The sealed bytes, or `None`.
    fn get(&self, kind: ObjectKind, id: &ChunkId) -> Result<Option<Vec<u8>>, BackupError>;
    /// Makes every object stored so far durable.
    fn sync(&self) -> Result<(), BackupError>;
}

/// Objects as files under a directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store under `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, kind: ObjectKind) -> PathBuf {
        self.root.join(match kind {
            ObjectKind::Chunk => "chunks",
            ObjectKind::Snapshot => "snapshots",
        })
    }

    /// The file of an object.
    pub fn path(&self, kind: ObjectKind, id: &ChunkId) -> PathBuf {
        self.dir(kind).join(id.to_string())
    }
}

impl ObjectStore for DirStore {
    fn has(&self, kind: ObjectKind, id: &ChunkId) -> Result<bool, BackupError> {
        Ok(self.path(kind, id).is_file())
    }

    fn put(&self, kind: ObjectKind, id: &ChunkId, sealed: &[u8]) -> Result<(), BackupError> {
        let dir = self.dir(kind);
        std::fs::create_dir_all(&dir).map_err(BackupError::io(format!("creating {dir:?}")))?;
        durable_write(&dir, &id.to_string(), sealed)
    }

    fn sync(&self) -> Result<(), BackupError> {
        for kind in [ObjectKind::Chunk, ObjectKind::Snapshot] {
            let dir = self.dir(kind);
            match std::fs::File::open(&dir) {
                Ok(d) => d
                    .sync_all()
                    .map_err(BackupError::io(format!("syncing {dir:?}")))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackupError::io(format!("syncing {dir:?}"))(e)),
            }
        }
        Ok(())
    }

    fn get(&self, kind: ObjectKind, id: &ChunkId) -> Result<Option<Vec<u8>>, BackupError> {
        let path = self.path(kind, id);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BackupError::io(format!("reading {path:?}"))(e)),
        }
    }
}

/// Writes `name` in `dir` whole or not at all (the directory is synced by `sync`).
fn durable_write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(BackupError::io(format!(
            "creating a temporary file in {dir:?}"
        )))?;
    let what = format!("writing {name} in {dir:?}");
    let mut f = tmp.as_file();
    f.write_all(bytes).map_err(BackupError::io(what.clone()))?;
    f.sync_all().map_err(BackupError::io(what.clone()))?;
    tmp.persist(dir.join(name))
        .map_err(|e| BackupError::io(what)(e.error))?;
    Ok(())
}
