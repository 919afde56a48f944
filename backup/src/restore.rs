//! Restoring a snapshot into a new directory. Everything is written into a hidden staging
//! directory beside the target, every chunk checked before its bytes are written; only a
//! restore that checked out whole is renamed into place. A failed one removes its staging.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::chunk;
use crate::manifest::{EntryKind, Manifest, SnapshotId};
use crate::store::{ObjectKind, ObjectStore};
use crate::{BackupError, BackupKey};

/// Largest chunk accepted when opening (the chunker's largest is 16 MiB).
const MAX_CHUNK: usize = 16 << 20;

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Chunks opened and checked.
    pub chunks: u64,
    /// Sealed bytes read from the store.
    pub sealed_bytes: u64,
}

/// Opens snapshot `id` (see [`Manifest::open`]).
pub fn open_snapshot(
    key: &BackupKey,
    store: &dyn ObjectStore,
    id: &SnapshotId,
) -> Result<Manifest, BackupError> {
    Manifest::open(key, store, id)
}

/// Restores snapshot `id` into `target`, which must not exist or be empty.
pub fn restore(
    key: &BackupKey,
    store: &dyn ObjectStore,
    id: &SnapshotId,
    target: &Path,
) -> Result<RestoreStats, BackupError> {
    if std::fs::read_dir(target).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::TargetNotEmpty(target.to_owned()));
    }
    let manifest = Manifest::open(key, store, id)?;
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(BackupError::io(format!("creating {parent:?}")))?;
    let staging = tempfile::Builder::new()
        .prefix(".restore.")
        .tempdir_in(parent)
        .map_err(BackupError::io(format!(
            "creating a staging directory in {parent:?}"
        )))?;
    let stats = write_all(key, store, &manifest, staging.path())?;
    // Only now does the target appear (an empty one is replaced).
    if target.exists() {
        std::fs::remove_dir(target).map_err(BackupError::io(format!("replacing {target:?}")))?;
    }
    let staged: PathBuf = staging.keep();
    std::fs::rename(&staged, target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        BackupError::io(format!("moving the restore into {target:?}"))(e)
    })?;
    Ok(stats)
}

fn write_all(
    key: &BackupKey,
    store: &dyn ObjectStore,
    manifest: &Manifest,
    root: &Path,
) -> Result<RestoreStats, BackupError> {
    let keys = key.derive();
    let mut stats = RestoreStats::default();
    let mut modes = Vec::new();
    for e in &manifest.entries {
        let path = root.join(&e.path);
        match &e.kind {
            EntryKind::Dir { mode } => {
                std::fs::create_dir_all(&path)
                    .map_err(BackupError::io(format!("creating {path:?}")))?;
                modes.push((path, *mode));
            }
            EntryKind::Symlink { target } => {
                #[cfg(unix)]
                std::os::unix::fs::symlink(target, &path)
                    .map_err(BackupError::io(format!("creating {path:?}")))?;
            }
            EntryKind::File { mode, chunks, .. } => {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .map_err(BackupError::io(format!("creating {path:?}")))?,
                );
                for (id, len) in chunks {
                    let kind = ObjectKind::Chunk;
                    let sealed = store.get(kind, id)?.ok_or_else(|| BackupError::Missing {
                        kind: kind.as_str(),
                        id: id.to_string(),
                    })?;
                    let max = usize::try_from(*len).unwrap_or(MAX_CHUNK).min(MAX_CHUNK);
                    let plain = chunk::open(&keys, kind.as_str(), id, &sealed, max)?;
                    f.write_all(&plain)
                        .map_err(BackupError::io(format!("writing {path:?}")))?;
                    stats.chunks += 1;
                    stats.sealed_bytes += sealed.len() as u64;
                    stats.bytes += plain.len() as u64;
                }
                let f = f
                    .into_inner()
                    .map_err(|e| BackupError::io(format!("writing {path:?}"))(e.into_error()))?;
                f.sync_all()
                    .map_err(BackupError::io(format!("writing {path:?}")))?;
                set_mode(&path, *mode)?;
                stats.files += 1;
            }
        }
    }
    // Directory modes last, deepest first, so a read-only directory does not stop its children.
    for (path, mode) in modes.into_iter().rev() {
        set_mode(&path, mode)?;
    }
    Ok(stats)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(BackupError::io(format!("setting the mode of {path:?}")))
}
