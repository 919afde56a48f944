//! Blobs and signed repository metadata across masters sharing a store. Each master serves them
//! from its own data dir (`D/blobs`, `D/repository`); with a shared store the data dir is a
//! copy: an upload through any master is stored in the database in the same request (and only
//! then acknowledged), the others copy it when its event arrives, a master catches up with
//! everything at start and after a lost event stream, and a blob a node asks for before its
//! copy arrived is read from the database on the spot.
//!
//! Blobs are checked against their SHA-256 on every copy; metadata is checked by the nodes (the
//! master never vouches for it).

use hearth_protocol::Sha256;

use crate::context::Context;
use crate::store::{FileKind, StoreError};

/// Stores an uploaded file for the other masters (nothing to do on a store of one master).
/// Blocking.
pub fn publish(ctx: &Context, kind: FileKind, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    if !ctx.store.shared() {
        return Ok(());
    }
    ctx.store.put_file(kind, name, bytes)
}

/// Copies one shared file into the data dir; false if the store has no such file. Blocking.
pub fn take(ctx: &Context, kind: FileKind, name: &str) -> Result<bool, StoreError> {
    let Some(bytes) = ctx.store.file(kind, name)? else {
        return Ok(false);
    };
    let local =
        |e: String| StoreError::Corrupt(format!("copying shared {} {name}: {e}", kind.as_str()));
    match kind {
        FileKind::Blob => {
            let sha: Sha256 = name.parse().map_err(|e| local(format!("{e}")))?;
            ctx.blobs
                .put(&sha, &bytes)
                .map_err(|e| local(e.to_string()))?;
        }
        FileKind::Metadata => ctx
            .repository
            .put(name, &bytes)
            .map_err(|e| local(e.to_string()))?,
    }
    tracing::debug!(kind = kind.as_str(), %name, size = bytes.len(), "shared file copied");
    Ok(true)
}

/// Copies every shared file this data dir lacks, or holds in another version. Blocking.
pub fn catch_up(ctx: &Context) -> Result<usize, StoreError> {
    if !ctx.store.shared() {
        return Ok(0);
    }
    let mut copied = 0;
    for (name, sha) in ctx.store.files(FileKind::Metadata)? {
        let same = ctx
            .repository
            .get(&name)
            .ok()
            .flatten()
            .is_some_and(|b| Sha256::digest(&b) == sha);
        if !same && take(ctx, FileKind::Metadata, &name)? {
            copied += 1;
        }
    }
    for (name, _) in ctx.store.files(FileKind::Blob)? {
        let have = name.parse().ok().and_then(|s| ctx.blobs.size(&s)).is_some();
        if !have && take(ctx, FileKind::Blob, &name)? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Makes sure blob `sha` is in the data dir, copying it from the shared store if another master
/// took it; false if nobody has it. Blocking.
pub fn ensure_blob(ctx: &Context, sha: &Sha256) -> bool {
    if ctx.blobs.size(sha).is_some() {
        return true;
    }
    if !ctx.store.shared() {
        return false;
    }
    match take(ctx, FileKind::Blob, &sha.to_string()) {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(%sha, error = %e, "could not copy a shared blob");
            false
        }
    }
}
