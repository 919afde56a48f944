//! The chunked side of the cache (SPEC §16.4): an artifact fetched by chunks is written in
//! place into `D/cache/<sha>.part` (its full length, chunks at their offsets) and the chunks held
//! are recorded in the sidecar `D/cache/<sha>.chunks`; when every chunk is held the part file
//! becomes `D/cache/<sha>` and the sidecar stays, all ones, so the node keeps serving it. A fetch
//! resumes from the sidecar after a restart, re-hashing the chunks it claims (a chunk that no
//! longer matches is fetched again). Peers are served from these files as they are: the server
//! does not re-hash, the fetching node checks every chunk against the signed manifest.
//!
//! Sidecar: `chunk_size` (8 bytes, big-endian) ‖ `length` (8 bytes) ‖ bitmap (as in `have`),
//! replaced by rename.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use hearth_core::chunks::Bitmap;
use hearth_protocol::Sha256;
use hearth_recipes::repo::chunks::{ChunkManifest, MAX_CHUNK, MIN_CHUNK};

/// Why the chunked cache failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A chunk index past the end, or bytes of the wrong length.
    #[error("chunk {index} of {sha256} does not fit the manifest")]
    Misfit {
        /// The artifact.
        sha256: Sha256,
        /// The chunk.
        index: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a sidecar records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// The artifact's length.
    pub length: u64,
    /// Chunks held.
    pub have: Bitmap,
}

impl Sidecar {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.have.as_bytes().len());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(self.have.as_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let chunk_size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let length = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return None;
        }
        let n = usize::try_from(length.div_ceil(chunk_size)).ok()?;
        let have = Bitmap::from_bytes(n, bytes.get(16..)?).ok()?;
        Some(Self {
            chunk_size,
            length,
            have,
        })
    }

    /// Where chunk `index` starts and its length.
    pub fn range(&self, index: usize) -> Option<(u64, u64)> {
        if index >= self.have.len() {
            return None;
        }
        let start = index as u64 * self.chunk_size;
        Some((start, (self.length - start).min(self.chunk_size)))
    }
}

/// Paths of an artifact in the cache directory.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The whole, verified file.
    pub whole: PathBuf,
    /// The file being filled.
    pub part: PathBuf,
    /// The sidecar.
    pub chunks: PathBuf,
}

impl Paths {
    /// The paths of `sha256` under `dir`.
    pub fn of(dir: &Path, sha256: &Sha256) -> Self {
        Self {
            whole: dir.join(sha256.to_string()),
            part: dir.join(format!("{sha256}.part")),
            chunks: dir.join(format!("{sha256}.chunks")),
        }
    }
}

/// Reads an artifact's sidecar; `None` when there is none or it does not parse.
pub fn read_sidecar(dir: &Path, sha256: &Sha256) -> Option<Sidecar> {
    std::fs::read(Paths::of(dir, sha256).chunks)
        .ok()
        .and_then(|b| Sidecar::decode(&b))
}

fn write_sidecar(paths: &Paths, sidecar: &Sidecar) -> Result<(), StoreError> {
    let tmp = paths.chunks.with_extension("chunks.tmp");
    std::fs::write(&tmp, sidecar.encode()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &paths.chunks).map_err(io(&paths.chunks))
}

/// Reads `max_len` bytes at `offset` (a chunk boundary) of a held chunk, from the whole file or
/// the part file; `None` when that chunk is not held here.
pub fn read_chunk(
    dir: &Path,
    sha256: &Sha256,
    offset: u64,
    max_len: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(sidecar) = read_sidecar(dir, sha256) else {
        return Ok(None);
    };
    if !offset.is_multiple_of(sidecar.chunk_size) {
        return Ok(None);
    }
    let index = usize::try_from(offset / sidecar.chunk_size).unwrap_or(usize::MAX);
    let Some((start, len)) = sidecar.range(index).filter(|_| sidecar.have.get(index)) else {
        return Ok(None);
    };
    let len = len.min(max_len);
    let paths = Paths::of(dir, sha256);
    // The part file becomes the whole file when the last chunk lands: look in both.
    let file = std::fs::File::open(&paths.whole)
        .or_else(|_| std::fs::File::open(&paths.part))
        .or_else(|_| std::fs::File::open(&paths.whole));
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&paths.whole)(e)),
    };
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    file.read_exact_at(&mut buf, start)
        .map_err(io(&paths.part))?;
    Ok(Some(buf))
}

/// An artifact being filled chunk by chunk.
#[derive(Debug)]
pub struct Partial {
    sha256: Sha256,
    paths: Paths,
    file: std::fs::File,
    sidecar: Sidecar,
}

impl Partial {
    /// Opens (or starts) the part file of `sha256` for `manifest`, keeping the chunks a previous
    /// run recorded that still match their hashes. Blocking.
    pub fn open(dir: &Path, sha256: &Sha256, manifest: &ChunkManifest) -> Result<Self, StoreError> {
        let paths = Paths::of(dir, sha256);
        let fresh = Sidecar {
            chunk_size: manifest.chunk_size(),
            length: manifest.length(),
            have: Bitmap::new(manifest.count()),
        };
        let previous = read_sidecar(dir, sha256)
            .filter(|s| s.chunk_size == fresh.chunk_size && s.length == fresh.length)
            .filter(|_| paths.part.exists());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&paths.part)
            .map_err(io(&paths.part))?;
        let mut sidecar = fresh;
        if let Some(previous) = previous {
            let mut buf = Vec::new();
            for i in 0..manifest.count() {
                let Some((start, len)) = manifest.range(i).filter(|_| previous.have.get(i)) else {
                    continue;
                };
                buf.resize(usize::try_from(len).unwrap_or(0), 0);
                if file.read_exact_at(&mut buf, start).is_ok() && manifest.check(i, &buf) {
                    sidecar.have.set(i);
                }
            }
        }
        file.set_len(manifest.length()).map_err(io(&paths.part))?;
        write_sidecar(&paths, &sidecar)?;
        Ok(Self {
            sha256: *sha256,
            paths,
            file,
            sidecar,
        })
    }

    /// Chunks held.
    pub fn held(&self) -> &Bitmap {
        &self.sidecar.have
    }

    /// Writes a chunk already checked against the manifest, and records it. Blocking.
    pub fn write(&mut self, index: usize, bytes: &[u8]) -> Result<(), StoreError> {
        let misfit = || StoreError::Misfit {
            sha256: self.sha256,
            index,
        };
        let (start, len) = self.sidecar.range(index).ok_or_else(misfit)?;
        if len != bytes.len() as u64 {
            return Err(misfit());
        }
        self.file
            .write_all_at(bytes, start)
            .map_err(io(&self.paths.part))?;
        self.sidecar.have.set(index);
        write_sidecar(&self.paths, &self.sidecar)
    }

    /// The part file's path (to hash it whole).
    pub fn part_path(&self) -> &Path {
        &self.paths.part
    }

    /// Makes the part file the whole file (after its SHA-256 matched). Blocking.
    pub fn finish(self) -> Result<PathBuf, StoreError> {
        self.file.sync_all().map_err(io(&self.paths.part))?;
        std::fs::rename(&self.paths.part, &self.paths.whole).map_err(io(&self.paths.whole))?;
        Ok(self.paths.whole)
    }

    /// Forgets everything (the whole file did not hash to what the recipe says). Blocking.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.paths.part);
        let _ = std::fs::remove_file(&self.paths.chunks);
    }
}

/// What this node can serve to peers: artifacts held whole, and those of which some chunks are
/// held, from the sidecars in `dir`.
pub fn holdings(dir: &Path) -> (Vec<Sha256>, Vec<Sha256>) {
    let (mut complete, mut partial) = (Vec::new(), Vec::new());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (complete, partial);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(sha) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".chunks"))
            .and_then(|n| n.parse::<Sha256>().ok())
        else {
            continue;
        };
        let Some(sidecar) = read_sidecar(dir, &sha) else {
            continue;
        };
        let paths = Paths::of(dir, &sha);
        if sidecar.have.is_full() && paths.whole.exists() {
            complete.push(sha);
        } else if sidecar.have.count() > 0 && paths.part.exists() {
            partial.push(sha);
        }
    }
    complete.sort();
    partial.sort();
    (complete, partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_resumes_and_serves_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(2 * MIN_CHUNK + 10)).map(|i| (i % 253) as u8).collect();
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let m = ChunkManifest::of_file(&src, MIN_CHUNK).unwrap();
        let sha = Sha256::digest(&data);
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let mut p = Partial::open(&cache, &sha, &m).unwrap();
        let (s, l) = m.range(1).unwrap();
        p.write(1, &data[s as usize..(s + l) as usize]).unwrap();
        assert!(p.write(1, &data[..3]).is_err());
        drop(p);
        assert_eq!(holdings(&cache), (vec![], vec![sha]));
        assert_eq!(
            read_chunk(&cache, &sha, MIN_CHUNK, MIN_CHUNK)
                .unwrap()
                .as_deref(),
            Some(&data[s as usize..(s + l) as usize])
        );
        assert!(read_chunk(&cache, &sha, 0, MIN_CHUNK).unwrap().is_none());
        assert!(read_chunk(&cache, &sha, 5, MIN_CHUNK).unwrap().is_none());
        // Resumed: chunk 1 is kept; corrupting it on disk makes the next open drop it.
        let mut p = Partial::open(&cache, &sha, &m).unwrap();
        assert_eq!(p.held().count(), 1);
        for i in [0, 2] {
            let (s, l) = m.range(i).unwrap();
            p.write(i, &data[s as usize..(s + l) as usize]).unwrap();
        }
        assert!(p.held().is_full());
        let whole = p.finish().unwrap();
        assert_eq!(std::fs::read(&whole).unwrap(), data);
        assert_eq!(holdings(&cache), (vec![sha], vec![]));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&whole)
            .unwrap();
        f.write_all_at(b"XX", 0).unwrap();
        std::fs::rename(&whole, Paths::of(&cache, &sha).part).unwrap();
        let p = Partial::open(&cache, &sha, &m).unwrap();
        assert_eq!(
            p.held().count(),
            2,
            "the corrupted chunk is dropped on resume"
        );
    }
}
