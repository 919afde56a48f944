//! `hearth-backup`: encrypted, incremental, deduplicated snapshots of an instance's data
//! directory (issue 18), as a library with no network and no async.
//!
//! A snapshot cuts every file into content-defined chunks ([`fastcdc`] v2020), names each chunk
//! by a keyed hash of its plaintext ([`ChunkId`], HMAC-SHA-256 under a key derived from the
//! deployment's [`BackupKey`]), compresses it (zstd) and seals it (XChaCha20-Poly1305, the chunk
//! id as associated data). A chunk already in the store is not written again, so a snapshot
//! after a small change stores only the chunks that changed. The [`Manifest`] (files, modes,
//! chunk lists, parent snapshot) is sealed the same way and named by its own keyed hash
//! ([`SnapshotId`]). A home that stores the objects holds bytes it cannot read: without the key
//! it can neither decrypt a chunk nor confirm a guess of its content by hashing.
//!
//! Restoring opens the manifest, then each chunk, and checks every one (authentication tag,
//! then the keyed hash of the plaintext against its id) before a byte is written; a snapshot
//! that fails anywhere is refused and nothing of it is left in place.

mod chunk;
mod error;
mod key;
mod manifest;
mod restore;
mod snapshot;
mod store;

pub use chunk::{ChunkId, object_id, open_object, seal_object};
pub use error::BackupError;
pub use key::BackupKey;
pub use manifest::{Entry, EntryKind, MANIFEST_VERSION, MAX_MANIFEST, Manifest, SnapshotId};
pub use restore::{RestoreStats, open_snapshot, restore};
pub use snapshot::{Chunking, SnapshotStats, snapshot};
pub use store::{DirStore, ObjectKind, ObjectStore};
