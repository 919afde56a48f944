//! The chunk manifest of an artifact (SPEC §16.4): the TUF `custom` field
//! `hearth_chunks = {"v": 1, "chunk_size": N, "sha256": ["<hex>", …]}` that `hearth recipe sign`
//! writes on every `artifacts/` target, so that a node can check each chunk a peer sends before
//! it writes it. Parsed here, at the boundary, into a [`ChunkManifest`] that is valid by
//! construction: version 1, a power-of-two chunk size between [`MIN_CHUNK`] and [`MAX_CHUNK`],
//! exactly `ceil(length / chunk_size)` hashes, each 64 hex digits.

use std::io::Read as _;
use std::path::Path;

use hearth_protocol::Sha256;
use sha2::Digest as _;

/// Name of the TUF `custom` field.
pub const FIELD: &str = "hearth_chunks";

/// The chunk size `hearth recipe sign` uses (1 MiB).
pub const DEFAULT_CHUNK: u64 = 1 << 20;

/// Smallest chunk size accepted (64 KiB).
pub const MIN_CHUNK: u64 = 64 << 10;

/// Largest chunk size accepted (16 MiB).
pub const MAX_CHUNK: u64 = 16 << 20;

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not an object with `v`, `chunk_size` and `sha256`, or a field of the wrong type.
    #[error("chunk manifest is malformed: {0}")]
    Malformed(String),
    /// A version other than 1.
    #[error("chunk manifest version {0} is not supported (only 1)")]
    Version(u64),
    /// A chunk size that is not a power of two in range.
    #[error("chunk size {0} is not a power of two between 64 KiB and 16 MiB")]
    ChunkSize(u64),
    /// The number of hashes does not match the target's length.
    #[error("chunk manifest lists {got} chunks, a target of {length} bytes has {expected}")]
    Count {
        /// Target length.
        length: u64,
        /// Chunks it must have.
        expected: u64,
        /// Hashes listed.
        got: usize,
    },
    /// A hash that is not 64 hex digits.
    #[error("chunk {index} has no valid SHA-256: {got:?}")]
    Hash {
        /// Which chunk.
        index: usize,
        /// What was there (shortened).
        got: String,
    },
}

/// A verified artifact's chunks: their size and each one's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkManifest {
    length: u64,
    chunk_size: u64,
    hashes: Vec<Sha256>,
}

impl ChunkManifest {
    /// The manifest of `length` bytes in chunks of `chunk_size` with these hashes, checked.
    pub fn new(length: u64, chunk_size: u64, hashes: Vec<Sha256>) -> Result<Self, ManifestError> {
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(ManifestError::ChunkSize(chunk_size));
        }
        let expected = length.div_ceil(chunk_size);
        if hashes.len() as u64 != expected {
            return Err(ManifestError::Count {
                length,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self {
            length,
            chunk_size,
            hashes,
        })
    }

    /// Parses the `custom.hearth_chunks` value of a target of `length` bytes.
    pub fn parse(value: &serde_json::Value, length: u64) -> Result<Self, ManifestError> {
        let malformed = |what: &str| ManifestError::Malformed(what.to_owned());
        let obj = value
            .as_object()
            .ok_or_else(|| malformed("not an object"))?;
        let v = obj
            .get("v")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| malformed("`v` is missing or not a number"))?;
        if v != 1 {
            return Err(ManifestError::Version(v));
        }
        let chunk_size = obj
            .get("chunk_size")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| malformed("`chunk_size` is missing or not a number"))?;
        let list = obj
            .get("sha256")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| malformed("`sha256` is missing or not a list"))?;
        let mut hashes = Vec::with_capacity(list.len().min(1 << 16));
        for (index, h) in list.iter().enumerate() {
            let text = h.as_str().unwrap_or_default();
            let sha = text.parse::<Sha256>().map_err(|_| ManifestError::Hash {
                index,
                got: h.to_string().chars().take(80).collect(),
            })?;
            hashes.push(sha);
        }
        Self::new(length, chunk_size, hashes)
    }

    /// The `custom.hearth_chunks` value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "v": 1,
            "chunk_size": self.chunk_size,
            "sha256": self.hashes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }

    /// Hashes the file at `path` in chunks of `chunk_size`.
    pub fn of_file(path: &Path, chunk_size: u64) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut hashes = Vec::new();
        let mut length = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let mut hasher = sha2::Sha256::new();
            let mut in_chunk = 0u64;
            while in_chunk < chunk_size {
                let want = (chunk_size - in_chunk).min(buf.len() as u64) as usize;
                let n = file.read(buf.get_mut(..want).unwrap_or_default())?;
                if n == 0 {
                    break;
                }
                hasher.update(buf.get(..n).unwrap_or_default());
                in_chunk += n as u64;
            }
            if in_chunk == 0 {
                break;
            }
            length += in_chunk;
            hashes.push(hearth_protocol::Hex(hasher.finalize().into()));
            if in_chunk < chunk_size {
                break;
            }
        }
        Self::new(length, chunk_size, hashes).map_err(std::io::Error::other)
    }

    /// The artifact's length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Bytes per chunk (the last one may be shorter).
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// How many chunks.
    pub fn count(&self) -> usize {
        self.hashes.len()
    }

    /// Where chunk `index` starts and how long it is; `None` past the end.
    pub fn range(&self, index: usize) -> Option<(u64, u64)> {
        if index >= self.hashes.len() {
            return None;
        }
        let start = index as u64 * self.chunk_size;
        Some((start, (self.length - start).min(self.chunk_size)))
    }

    /// The chunk an offset is the start of; `None` unless it is a chunk boundary inside the file.
    pub fn index_of(&self, offset: u64) -> Option<usize> {
        (offset.is_multiple_of(self.chunk_size) && offset < self.length)
            .then(|| (offset / self.chunk_size) as usize)
    }

    /// Whether `bytes` are exactly chunk `index`.
    pub fn check(&self, index: usize, bytes: &[u8]) -> bool {
        match (self.hashes.get(index), self.range(index)) {
            (Some(h), Some((_, len))) => len == bytes.len() as u64 && Sha256::digest(bytes) == *h,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(n: usize) -> Vec<Sha256> {
        (0..n).map(|i| Sha256::digest(&[i as u8])).collect()
    }

    #[test]
    fn chunk_size_and_count_are_checked() {
        assert!(ChunkManifest::new(3 * MIN_CHUNK + 1, MIN_CHUNK, hashes(4)).is_ok());
        assert!(ChunkManifest::new(0, MIN_CHUNK, hashes(0)).is_ok());
        for bad in [MIN_CHUNK / 2, MAX_CHUNK * 2, MIN_CHUNK + 1, 0] {
            assert_eq!(
                ChunkManifest::new(10, bad, hashes(1)),
                Err(ManifestError::ChunkSize(bad))
            );
        }
        assert!(matches!(
            ChunkManifest::new(3 * MIN_CHUNK + 1, MIN_CHUNK, hashes(3)),
            Err(ManifestError::Count { expected: 4, .. })
        ));
    }

    #[test]
    fn parse_refuses_every_bad_field() {
        let good = ChunkManifest::new(MIN_CHUNK + 5, MIN_CHUNK, hashes(2)).unwrap();
        let json = good.to_json();
        assert_eq!(ChunkManifest::parse(&json, MIN_CHUNK + 5), Ok(good));
        let mut v2 = json.clone();
        v2["v"] = 2.into();
        assert_eq!(
            ChunkManifest::parse(&v2, MIN_CHUNK + 5),
            Err(ManifestError::Version(2))
        );
        let mut bad_hash = json.clone();
        bad_hash["sha256"][1] = "zz".into();
        assert!(matches!(
            ChunkManifest::parse(&bad_hash, MIN_CHUNK + 5),
            Err(ManifestError::Hash { index: 1, .. })
        ));
        assert!(matches!(
            ChunkManifest::parse(&serde_json::json!([]), 1),
            Err(ManifestError::Malformed(_))
        ));
        assert!(matches!(
            ChunkManifest::parse(&json, 3 * MIN_CHUNK),
            Err(ManifestError::Count { .. })
        ));
    }

    #[test]
    fn a_file_is_hashed_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let data: Vec<u8> = (0..(2 * MIN_CHUNK + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let m = ChunkManifest::of_file(&path, MIN_CHUNK).unwrap();
        assert_eq!((m.count(), m.length()), (3, data.len() as u64));
        let (start, len) = m.range(2).unwrap();
        assert_eq!((start, len), (2 * MIN_CHUNK, 100));
        assert!(m.check(2, &data[start as usize..]));
        assert!(!m.check(1, &data[start as usize..]));
        assert!(m.check(0, &data[..MIN_CHUNK as usize]));
        assert_eq!(m.index_of(MIN_CHUNK), Some(1));
        assert_eq!(m.index_of(MIN_CHUNK + 1), None);
        assert_eq!(m.index_of(3 * MIN_CHUNK), None);
        assert!(m.range(3).is_none());
    }
}
