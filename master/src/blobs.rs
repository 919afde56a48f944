//! Content-addressed blobs (recipes, artifacts) in `D/blobs/<sha256>`, served to nodes over QUIC.
//!
//! A blob is hashed, then written durably (`durable::write`: a temporary name of its own,
//! synced, renamed into place, directory synced), so concurrent uploads of one blob never share
//! a temporary and a blob file that exists is whole. An upload of a blob already stored checks it
//! (size, then hash) and repairs a damaged one instead of calling it "already stored". Nodes
//! verify what they receive; the master is not trusted for it.

use std::io::Read as _;
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
        if self.intact(expected, data.len() as u64)? {
            return Ok(false);
        }
        crate::durable::write(&self.path(expected), data, None)?;
        Ok(true)
    }

    /// Whether the stored blob is whole: `len` bytes that hash to its name. A blob of another
    /// size (a leftover of an older, non-durable write, or damage) is not, and gets rewritten.
    fn intact(&self, sha256: &Sha256, len: u64) -> Result<bool, BlobError> {
        let path = self.path(sha256);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if file.metadata()?.len() != len {
            tracing::warn!(blob = %sha256, "stored blob has the wrong size; rewriting it");
            return Ok(false);
        }
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, buf.get(..n).unwrap_or_default());
        }
        let got: [u8; 32] = sha2::Digest::finalize(hasher).into();
        if hearth_protocol::Hex(got) != *sha256 {
            tracing::warn!(blob = %sha256, "stored blob does not hash to its name; rewriting it");
            return Ok(false);
        }
        Ok(true)
    }

    /// Size of a stored blob, `None` if absent.
    pub fn size(&self, sha256: &Sha256) -> Option<u64> {
        std::fs::metadata(self.path(sha256)).ok().map(|m| m.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parallel_uploads_of_one_blob_all_succeed_and_a_damaged_blob_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let data = vec![7u8; 8 << 20];
        let sha = Sha256::digest(&data);
        let results: Vec<Result<bool, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| store.put(&sha, &data).map_err(|e| e.to_string())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(std::fs::read(store.path(&sha)).unwrap(), data);
        // A 0-byte leftover (as an interrupted non-durable write left) is not "already stored".
        std::fs::write(store.path(&sha), b"").unwrap();
        assert!(
            store.put(&sha, &data).unwrap(),
            "repaired, not already stored"
        );
        assert_eq!(std::fs::read(store.path(&sha)).unwrap(), data);
        // Same size, other bytes: the hash tells.
        std::fs::write(store.path(&sha), vec![8u8; 8 << 20]).unwrap();
        assert!(store.put(&sha, &data).unwrap());
        assert!(
            !store.put(&sha, &data).unwrap(),
            "whole now: already stored"
        );
    }
}
