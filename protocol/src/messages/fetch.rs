//! Fetching signed repository metadata and content-addressed blobs (recipes, artifacts).
//!
//! Each fetch is one request on its own bidirectional stream; the answer is one or more frames,
//! then the master finishes the stream.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::codec::{Blob, Sha256};

/// `fetch_metadata` (node → master): a repository metadata file by role file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FetchMetadata {
    /// `timestamp.json`, `snapshot.json`, `targets.json`, or `N.root.json`.
    pub file: String,
}

/// `metadata` (master → node): the metadata file's bytes, verified by the node, not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Metadata {
    /// The requested file name.
    pub file: String,
    /// Its contents.
    pub data: Blob,
}

/// `fetch_blob` (node → master): a byte range of a content-addressed blob. Resumable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct FetchBlob {
    /// SHA-256 of the whole blob.
    pub sha256: Sha256,
    /// First byte wanted.
    pub offset: u64,
    /// Most bytes wanted in total on this stream.
    pub max_len: u64,
}

/// `blob_chunk` (master → node): consecutive chunks answer one `fetch_blob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct BlobChunk {
    /// SHA-256 of the whole blob.
    pub sha256: Sha256,
    /// Offset of `data` in the blob.
    pub offset: u64,
    /// Size of the whole blob.
    pub total_len: u64,
    /// At most [`crate::frame::MAX_CHUNK`] bytes.
    pub data: Blob,
}
