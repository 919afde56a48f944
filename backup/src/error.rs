//! The crate's error type.

use crate::chunk::ChunkId;

/// Why a snapshot or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the data or writing the store or the target failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A key that is not 64 hexadecimal digits.
    #[error("a backup key is 64 hexadecimal digits (32 bytes)")]
    BadKey,
    /// An object the snapshot needs is not in the store.
    #[error("the store has no {kind} {id}")]
    Missing {
        /// `chunk` or `snapshot`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// An object failed authentication (wrong key, or changed in the store): refused.
    #[error(
        "{kind} {id} failed authentication: it was changed in the store, or the key is not this deployment's"
    )]
    Tampered {
        /// `chunk` or `snapshot`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A sealed object of a format this version does not know.
    #[error("{kind} {id} is sealed in format {format}; this version reads format 1")]
    Format {
        /// `chunk` or `snapshot`.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The format byte found.
        format: u8,
    },
    /// A manifest that cannot be used (authentic, but not one this version can restore).
    #[error("snapshot {id}: {reason}")]
    BadManifest {
        /// The snapshot.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A path in the data directory that cannot be recorded (not UTF-8).
    #[error("{0:?} is not a UTF-8 path and cannot be recorded")]
    BadPath(std::path::PathBuf),
    /// The restore target exists and is not empty.
    #[error("{0:?} exists and is not empty: a restore writes only into a new directory")]
    TargetNotEmpty(std::path::PathBuf),
    /// Chunking failed.
    #[error("chunking {path}: {reason}")]
    Chunking {
        /// The file.
        path: String,
        /// The chunker's message.
        reason: String,
    },
    /// Sealing failed (compression).
    #[error("sealing chunk {0}: compression failed")]
    Seal(ChunkId),
}

impl BackupError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
