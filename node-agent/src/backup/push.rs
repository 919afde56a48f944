//! The replica's side of a snapshot (SPEC §17.5, §17.6): run the recipe's hook, snapshot the
//! data directory into this home's own store (`D/backups/<instance>/store`, sealed like the
//! copies), push it to every holder, report it to the master, and keep the newest `keep`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_backup::{
    BackupKey, Chunking, DirStore, ObjectKind as StoreKind, ObjectStore as _, SnapshotId,
};
use hearth_protocol::messages::backup::{
    BackupCommit, BackupOffer, MAX_OBJECTS_PER_FRAME, ObjectId, ObjectKind, SnapshotReport,
};
use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::{Message, NodeId};

use super::wire::{self, BackupNetError, store_id, wire_id};
use crate::artifacts::serve::Bucket;
use crate::overlay::Overlay;
use crate::process::Launch;

/// How long the recipe's `snapshot_command` may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// One snapshot to take.
#[derive(Debug, Clone)]
pub struct Job {
    /// The instance.
    pub instance: InstanceId,
    /// Its deployment.
    pub deployment: Name,
    /// The deployment's key.
    pub key: BackupKey,
    /// The data directory.
    pub data: PathBuf,
    /// This instance's own store.
    pub store: Arc<DirStore>,
    /// The newest snapshots kept so far, newest first.
    pub kept: Vec<ObjectId>,
    /// How many to keep.
    pub keep: u32,
    /// Where the copies go.
    pub holders: Vec<NodeId>,
    /// The recipe's hook.
    pub hook: Option<Launch>,
}

/// What a snapshot came to.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The report sent to the master (`held_by` empty: no holder confirmed; it was not sent).
    pub report: SnapshotReport,
    /// The snapshots kept now, newest first.
    pub kept: Vec<ObjectId>,
}

/// Takes the snapshot and pushes it; the report goes to `outbound` once a holder holds it.
pub async fn take(
    job: Job,
    overlay: &Overlay,
    bucket: &Arc<Mutex<Bucket>>,
    outbound: &tokio::sync::mpsc::UnboundedSender<Message>,
) -> Result<Taken, BackupNetError> {
    if let Some(hook) = &job.hook {
        run_hook(hook).await?;
    }
    let taken_ms = crate::now_ms();
    let (data, key, store, parent) = (
        job.data.clone(),
        job.key.clone(),
        job.store.clone(),
        job.kept.first().map(store_id),
    );
    let (id, manifest, stats) = tokio::task::spawn_blocking(move || {
        hearth_backup::snapshot(&data, &key, &*store, parent, taken_ms, Chunking::default())
    })
    .await
    .map_err(|_| BackupNetError::Cancelled)??;
    let snapshot = wire_id(&id);
    let mut seen = HashSet::new();
    let chunks: Vec<ObjectId> = manifest
        .chunks()
        .filter(|(c, _)| seen.insert(*c))
        .map(|(c, _)| wire_id(c))
        .collect();
    let mut kept = vec![snapshot];
    kept.extend(job.kept.iter().filter(|k| **k != snapshot).copied());
    kept.truncate(job.keep.max(1) as usize);
    let pushes = job.holders.iter().map(|holder| {
        let (chunks, kept) = (&chunks, &kept);
        let store = job.store.clone();
        let deployment = job.deployment.clone();
        async move {
            let r = push(
                overlay,
                *holder,
                &deployment,
                snapshot,
                chunks,
                &store,
                kept,
                bucket,
            )
            .await;
            (*holder, r)
        }
    });
    let mut held_by = Vec::new();
    let mut sent_bytes = 0;
    for (holder, r) in futures::future::join_all(pushes).await {
        match r {
            Ok(sent) => {
                held_by.push(holder);
                sent_bytes += sent;
            }
            Err(e) => {
                tracing::warn!(instance = %job.instance, %holder, error = %e, "backup copy not stored")
            }
        }
    }
    let stored_bytes = stored_size(&job.store, &chunks, &id);
    let report = SnapshotReport {
        instance: job.instance.clone(),
        deployment: job.deployment.clone(),
        snapshot,
        taken_ms,
        bytes: stats.bytes_read,
        stored_bytes,
        sent_bytes,
        held_by,
    };
    if !report.held_by.is_empty() {
        let _ = outbound.send(Message::SnapshotReport(report.clone()));
    }
    let (store, key, keep_ids) = (job.store.clone(), job.key.clone(), kept.clone());
    let _ = tokio::task::spawn_blocking(move || prune(&store, &key, &keep_ids)).await;
    Ok(Taken { report, kept })
}

async fn run_hook(hook: &Launch) -> Result<(), BackupNetError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&hook.log)
        .map_err(|e| BackupNetError::Hook(format!("{}: {e}", hook.log.display())))?;
    let err = log
        .try_clone()
        .map_err(|e| BackupNetError::Hook(e.to_string()))?;
    let mut command = tokio::process::Command::new(&hook.program);
    if let Some(r) = hook.run_as {
        command.uid(r.uid).gid(r.gid);
    }
    command
        .args(&hook.args)
        .env_clear()
        .envs(&hook.env)
        .current_dir(&hook.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true);
    let status = tokio::time::timeout(HOOK_TIMEOUT, command.status())
        .await
        .map_err(|_| {
            BackupNetError::Hook(format!("still running after {}s", HOOK_TIMEOUT.as_secs()))
        })?
        .map_err(|e| BackupNetError::Hook(format!("{}: {e}", hook.program.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(BackupNetError::Hook(format!(
            "{}: {status}",
            hook.program.display()
        )))
    }
}

/// Pushes one snapshot to one holder; returns the sealed bytes sent.
#[allow(clippy::too_many_arguments)] // one push: every argument is a different part of it
async fn push(
    overlay: &Overlay,
    holder: NodeId,
    deployment: &Name,
    snapshot: ObjectId,
    chunks: &[ObjectId],
    store: &DirStore,
    keep: &[ObjectId],
    bucket: &Mutex<Bucket>,
) -> Result<u64, BackupNetError> {
    let mut stream = overlay.open(holder).await?;
    let mut sent = 0u64;
    let batches: Vec<&[ObjectId]> = if chunks.is_empty() {
        vec![&[]]
    } else {
        chunks.chunks(MAX_OBJECTS_PER_FRAME).collect()
    };
    for batch in batches {
        stream
            .send(&Message::BackupOffer(BackupOffer {
                deployment: deployment.clone(),
                snapshot,
                objects: batch.to_vec(),
            }))
            .await?;
        let want = match wire::answer(&mut stream).await? {
            Message::BackupWant(w) => w.objects,
            other => return Err(BackupNetError::Unexpected(other.type_tag().into())),
        };
        for id in want {
            if !batch.contains(&id) {
                return Err(BackupNetError::Unexpected(format!("{id} was not offered")));
            }
            let bytes = store
                .get(StoreKind::Chunk, &store_id(&id))?
                .ok_or_else(|| {
                    BackupNetError::Unexpected(format!("chunk {id} not in the local store"))
                })?;
            wire::send_object(&mut stream, ObjectKind::Chunk, id, &bytes, bucket).await?;
            sent += bytes.len() as u64;
        }
    }
    let manifest = store
        .get(StoreKind::Snapshot, &store_id(&snapshot))?
        .ok_or_else(|| BackupNetError::Unexpected("manifest not in the local store".into()))?;
    wire::send_object(
        &mut stream,
        ObjectKind::Snapshot,
        snapshot,
        &manifest,
        bucket,
    )
    .await?;
    sent += manifest.len() as u64;
    stream
        .send(&Message::BackupCommit(BackupCommit {
            snapshot,
            keep: keep.to_vec(),
        }))
        .await?;
    match wire::answer(&mut stream).await? {
        Message::BackupStored(s) if s.snapshot == snapshot => {}
        other => return Err(BackupNetError::Unexpected(other.type_tag().into())),
    }
    let _ = stream.finish().await;
    Ok(sent)
}

fn stored_size(store: &DirStore, chunks: &[ObjectId], id: &SnapshotId) -> u64 {
    let size = |kind, id: &hearth_backup::ChunkId| {
        std::fs::metadata(store.path(kind, id)).map_or(0, |m| m.len())
    };
    chunks
        .iter()
        .map(|c| size(StoreKind::Chunk, &store_id(c)))
        .sum::<u64>()
        + size(StoreKind::Snapshot, id)
}

/// Deletes from the local store the snapshots not kept and the chunks none of them names.
fn prune(store: &DirStore, key: &BackupKey, keep: &[ObjectId]) -> Result<(), BackupNetError> {
    let mut named = HashSet::new();
    for id in keep {
        let m = hearth_backup::open_snapshot(key, store, &store_id(id))?;
        named.extend(m.chunks().map(|(c, _)| c.to_string()));
    }
    let keep: HashSet<String> = keep.iter().map(ToString::to_string).collect();
    for (kind, names) in [(StoreKind::Snapshot, &keep), (StoreKind::Chunk, &named)] {
        let probe = store.path(kind, &hearth_backup::ChunkId([0; 32]));
        let Some(dir) = probe.parent() else { continue };
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !names.contains(&*e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}
