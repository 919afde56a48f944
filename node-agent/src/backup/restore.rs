//! Restoring a snapshot before an instance starts (SPEC §17.3, §17.7): fetch its manifest and
//! the chunks this home lacks from a holder, check every object (the manifest is opened with the
//! deployment's key, each chunk's tag and keyed id are checked as it is written), restore into a
//! staging directory, and only then swap it in for the data directory. A holder whose copy
//! fails authentication is left for the next; a snapshot that fails at every holder is refused.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hearth_backup::{BackupKey, DirStore, ObjectKind as StoreKind, ObjectStore as _};
use hearth_protocol::messages::backup::{
    BackupFetch, BackupGet, MAX_OBJECTS_PER_FRAME, ObjectId, ObjectKind, Restore,
};
use hearth_protocol::messages::state::Name;
use hearth_protocol::{Message, NodeId};

use super::wire::{self, BackupNetError, store_id, wire_id};
use crate::overlay::Overlay;

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The data directory already held data (a replica that stayed in its home): nothing done.
    Kept,
    /// Restored from this holder.
    Restored {
        /// The holder.
        from: NodeId,
        /// Files written.
        files: u64,
        /// Their bytes.
        bytes: u64,
    },
}

/// Restores `r.snapshot` into `data` (for `r.seq` 0 only if `data` is empty or missing). A
/// holder that is this very node (a replica re-placed into a home that kept a copy) is read
/// from `local`, its copies, without the overlay.
pub async fn restore(
    overlay: &Overlay,
    local: &super::holder::Copies,
    store: std::sync::Arc<DirStore>,
    key: &BackupKey,
    deployment: &Name,
    r: &Restore,
    data: &Path,
) -> Result<Outcome, BackupNetError> {
    if r.seq == 0 && std::fs::read_dir(data).is_ok_and(|mut d| d.next().is_some()) {
        return Ok(Outcome::Kept);
    }
    let mut last = BackupNetError::Unexpected("no holder named for the snapshot".into());
    for holder in &r.from {
        let fetched = if *holder == overlay.local() {
            let (copies, store, key, snapshot) = (
                local.store(deployment),
                store.clone(),
                key.clone(),
                r.snapshot,
            );
            tokio::task::spawn_blocking(move || copy_local(&copies, &store, &key, &snapshot))
                .await
                .map_err(|_| BackupNetError::Cancelled)
                .and_then(|r| r)
        } else {
            fetch(overlay, &store, key, deployment, &r.snapshot, *holder).await
        };
        match fetched {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(%holder, snapshot = %r.snapshot, error = %e, "cannot fetch the snapshot from this holder");
                last = e;
                continue;
            }
        }
        let (store2, key2, id, target) = (
            store.clone(),
            key.clone(),
            store_id(&r.snapshot),
            data.to_owned(),
        );
        let done = tokio::task::spawn_blocking(move || swap_in(&store2, &key2, &id, &target))
            .await
            .map_err(|_| BackupNetError::Cancelled)?;
        match done {
            Ok(stats) => {
                return Ok(Outcome::Restored {
                    from: *holder,
                    files: stats.files,
                    bytes: stats.bytes,
                });
            }
            Err(e) => {
                tracing::warn!(%holder, snapshot = %r.snapshot, error = %e, "snapshot from this holder refused");
                // What this holder sent may be what failed: fetch it all again from the next.
                forget_fetched(&store, key, &r.snapshot);
                last = e;
            }
        }
    }
    Err(last)
}

/// Fetches the manifest and every chunk the local store lacks from `holder`.
async fn fetch(
    overlay: &Overlay,
    store: &DirStore,
    key: &BackupKey,
    deployment: &Name,
    snapshot: &ObjectId,
    holder: NodeId,
) -> Result<(), BackupNetError> {
    let mut stream = overlay.open(holder).await?;
    stream
        .send(&Message::BackupGet(BackupGet {
            deployment: deployment.clone(),
            snapshot: *snapshot,
        }))
        .await?;
    let head = match wire::answer(&mut stream).await? {
        Message::BackupObject(h) => h,
        other => return Err(BackupNetError::Unexpected(other.type_tag().into())),
    };
    let manifest =
        wire::object_body(&mut stream, &head, ObjectKind::Snapshot, Some(snapshot)).await?;
    store.put(StoreKind::Snapshot, &store_id(snapshot), &manifest)?;
    // The manifest is authenticated here: a forged one never names a chunk to fetch.
    let opened = hearth_backup::open_snapshot(key, store, &store_id(snapshot))?;
    let mut seen = HashSet::new();
    let mut missing = Vec::new();
    for (c, _) in opened.chunks() {
        if seen.insert(*c) && !store.has(StoreKind::Chunk, c)? {
            missing.push(wire_id(c));
        }
    }
    for batch in missing.chunks(MAX_OBJECTS_PER_FRAME) {
        stream
            .send(&Message::BackupFetch(BackupFetch {
                objects: batch.to_vec(),
            }))
            .await?;
        for id in batch {
            let head = match wire::answer(&mut stream).await? {
                Message::BackupObject(h) => h,
                other => return Err(BackupNetError::Unexpected(other.type_tag().into())),
            };
            let bytes = wire::object_body(&mut stream, &head, ObjectKind::Chunk, Some(id)).await?;
            store.put(StoreKind::Chunk, &store_id(id), &bytes)?;
        }
    }
    let _ = stream.finish().await;
    store.sync()?;
    Ok(())
}

/// Copies the manifest and the chunks the instance's store lacks from this home's own copies.
fn copy_local(
    copies: &DirStore,
    store: &DirStore,
    key: &BackupKey,
    snapshot: &ObjectId,
) -> Result<(), BackupNetError> {
    let id = store_id(snapshot);
    let manifest = copies.get(StoreKind::Snapshot, &id)?.ok_or_else(|| {
        BackupNetError::Unexpected(format!("this home keeps no snapshot {snapshot}"))
    })?;
    store.put(StoreKind::Snapshot, &id, &manifest)?;
    let opened = hearth_backup::open_snapshot(key, store, &id)?;
    for (c, _) in opened.chunks() {
        if !store.has(StoreKind::Chunk, c)? {
            let bytes = copies.get(StoreKind::Chunk, c)?.ok_or_else(|| {
                BackupNetError::Unexpected(format!("this home's copy lacks chunk {c}"))
            })?;
            store.put(StoreKind::Chunk, c, &bytes)?;
        }
    }
    store.sync()?;
    Ok(())
}

/// Restores into a staging directory beside `data`, then swaps it in.
fn swap_in(
    store: &DirStore,
    key: &BackupKey,
    id: &hearth_backup::SnapshotId,
    data: &Path,
) -> Result<hearth_backup::RestoreStats, BackupNetError> {
    let staging = sibling(data, ".data.restoring");
    let old = sibling(data, ".data.replaced");
    for p in [&staging, &old] {
        if p.exists() {
            std::fs::remove_dir_all(p)
                .map_err(hearth_backup::BackupError::io(format!("removing {p:?}")))?;
        }
    }
    let stats = hearth_backup::restore(key, store, id, &staging)?;
    if data.exists() {
        std::fs::rename(data, &old).map_err(hearth_backup::BackupError::io(format!(
            "moving {data:?} aside"
        )))?;
    }
    std::fs::rename(&staging, data).map_err(hearth_backup::BackupError::io(format!(
        "moving the restored data to {data:?}"
    )))?;
    if let Some(parent) = data.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(stats)
}

fn sibling(data: &Path, name: &str) -> PathBuf {
    data.parent().unwrap_or(Path::new(".")).join(name)
}

/// Removes the manifest and the chunks it names from the local store (after a copy failed its
/// checks, so that the next holder's are fetched instead).
fn forget_fetched(store: &DirStore, key: &BackupKey, snapshot: &ObjectId) {
    if let Ok(m) = hearth_backup::open_snapshot(key, store, &store_id(snapshot)) {
        for (c, _) in m.chunks() {
            let _ = std::fs::remove_file(store.path(StoreKind::Chunk, c));
        }
    }
    let _ = std::fs::remove_file(store.path(StoreKind::Snapshot, &store_id(snapshot)));
}
