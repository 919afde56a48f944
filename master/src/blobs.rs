//! Content-addressed blobs (recipes, artifacts) in `D/blobs/<sha256>`, served to nodes over QUIC.
//!
//! A blob is written to a temporary file, hashed, synced and renamed into place, so a blob file
//! that exists is complete. Nodes verify what they receive; the master is not trusted for it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use hearth_protocol::Sha256;

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The content does not hash to the name it was uploaded under.
    #[error("content hashes to {got}, not {expected}")]
    HashMismatch { expected: Sha256, got: Sha256 },
    /// Filesystem failure (disk full…).
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

/// The blob directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Blobs under `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Path of a blob (it may not exist).
    pub fn path(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join(sha256.to_string())
    }

    /// Stores `data` under `expected`, refusing content that does not match.
    /// Returns false if the blob was already there.
    pub fn put(&self, expected: &Sha256, data: &[u8]) -> Result<bool, BlobError> {
        let got = Sha256::digest(data);
        if got != *expected {
            return Err(BlobError::HashMismatch {
                expected: *expected,
                got,
            });
        }
        let path = self.path(expected);
        if path.exists() {
            return Ok(false);
        }
        let tmp = self
            .dir
            .join(format!(".{expected}.{}.tmp", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        Ok(true)
    }

    /// Size of a stored blob, `None` if absent.
    pub fn size(&self, sha256: &Sha256) -> Option<u64> {
        std::fs::metadata(self.path(sha256)).ok().map(|m| m.len())
    }
}
