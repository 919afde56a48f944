//! `hearth recipe sign`: signs every staged target of a work directory into new targets,
//! snapshot and timestamp metadata, each one version above what the directory held. Every
//! artifact target gets its chunk manifest (`custom.hearth_chunks`, [`super::chunks`]).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tough::editor::RepositoryEditor;
use tough::schema::{Hashes, Target};

use super::chunks::{ChunkManifest, DEFAULT_CHUNK, FIELD};
use super::keys::sources;
use super::{RepoError, build::hash, whole_seconds};

/// When each signed role expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Targets (the list of recipes and artifacts).
    pub targets: DateTime<Utc>,
    /// Snapshot.
    pub snapshot: DateTime<Utc>,
    /// Timestamp (short: it bounds how long a node can be kept on stale metadata).
    pub timestamp: DateTime<Utc>,
}

/// Versions of what [`sign`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Root version the metadata is signed under.
    pub root: u64,
    /// Targets version.
    pub targets: u64,
    /// Snapshot version.
    pub snapshot: u64,
    /// Timestamp version.
    pub timestamp: u64,
    /// Targets listed.
    pub listed: usize,
}

/// Signs `work/targets/**` with the role keys in `keys` into `work/metadata/`, and copies every
/// root version there so that nodes can follow rotations.
pub async fn sign(work: &Path, keys: &Path, expiry: Expiry) -> Result<Signed, RepoError> {
    let metadata = work.join("metadata");
    std::fs::create_dir_all(&metadata).map_err(RepoError::io(&metadata))?;
    let mut editor = RepositoryEditor::new(keys.join("root.json"))
        .await
        .map_err(RepoError::tuf)?;
    let root_dir = work.join("targets");
    let mut files = Vec::new();
    walk(&root_dir, &mut files)?;
    files.sort();
    for file in &files {
        let name = file
            .strip_prefix(&root_dir)
            .map_err(|e| RepoError::Invalid(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let (sha, length) = hash(file)?;
        let mut custom = HashMap::new();
        if name.starts_with("artifacts/") {
            let manifest =
                ChunkManifest::of_file(file, DEFAULT_CHUNK).map_err(RepoError::io(file))?;
            custom.insert(FIELD.to_owned(), manifest.to_json());
        }
        let target = Target {
            length,
            hashes: Hashes {
                sha256: sha.as_bytes().to_vec().into(),
                _extra: HashMap::new(),
            },
            custom,
            _extra: HashMap::new(),
        };
        editor.add_target(name, target).map_err(RepoError::tuf)?;
    }
    let version = |role: &str| -> Result<NonZeroU64, RepoError> {
        let next = previous_version(&metadata.join(format!("{role}.json")))? + 1;
        NonZeroU64::new(next).ok_or_else(|| RepoError::Invalid("version overflow".into()))
    };
    let (targets, snapshot, timestamp) = (
        version("targets")?,
        version("snapshot")?,
        version("timestamp")?,
    );
    editor
        .targets_version(targets)
        .map_err(RepoError::tuf)?
        .targets_expires(whole_seconds(expiry.targets))
        .map_err(RepoError::tuf)?
        .snapshot_version(snapshot)
        .snapshot_expires(whole_seconds(expiry.snapshot))
        .timestamp_version(timestamp)
        .timestamp_expires(whole_seconds(expiry.timestamp));
    let role_keys: Vec<PathBuf> = ["targets", "snapshot", "timestamp"]
        .iter()
        .map(|r| keys.join(format!("{r}.pk8")))
        .collect();
    let signed = editor
        .sign(&sources(&role_keys))
        .await
        .map_err(RepoError::tuf)?;
    signed.write(&metadata).await.map_err(RepoError::tuf)?;
    let mut root = 0;
    for entry in std::fs::read_dir(keys).map_err(RepoError::io(keys))? {
        let path = entry.map_err(RepoError::io(keys))?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file.ends_with(".root.json") && super::is_metadata_file(file) {
            let to = metadata.join(file);
            std::fs::copy(&path, &to).map_err(RepoError::io(&to))?;
            root = root.max(previous_version(&path)?);
        }
    }
    Ok(Signed {
        root,
        targets: targets.get(),
        snapshot: snapshot.get(),
        timestamp: timestamp.get(),
        listed: files.len(),
    })
}

/// The `signed.version` of a metadata file, 0 if there is none.
pub fn previous_version(path: &Path) -> Result<u64, RepoError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(RepoError::io(path)(e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| RepoError::Invalid(format!("{}: {e}", path.display())))?;
    v.pointer("/signed/version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| RepoError::Invalid(format!("{}: no signed.version", path.display())))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RepoError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RepoError::io(dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(RepoError::io(dir))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
