//! The holder's side (SPEC §17.6, §17.7): this home keeps sealed copies of other homes'
//! snapshots in `D/backup-copies/<deployment>/` (a [`DirStore`] plus `index/<snapshot>`, the
//! plaintext list of the object ids each snapshot names, for retention). It cannot read them:
//! it never holds the deployment's key. Only the nodes the master names in
//! `DesiredState.holds` for that deployment may push or read; a copy no longer held is deleted
//! a day after the master stopped naming it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_backup::{DirStore, ObjectKind as StoreKind, ObjectStore as _};
use hearth_protocol::messages::backup::{
    BackupCommit, BackupGet, BackupOffer, BackupStored, BackupWant, Holding, MAX_OBJECTS_PER_FRAME,
    ObjectId, ObjectKind,
};
use hearth_protocol::messages::state::Name;
use hearth_protocol::{ErrorCode, Message, NodeId};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument as _;

use super::wire::{self, BackupNetError, store_id};
use crate::artifacts::serve::Bucket;
use crate::overlay::{Incoming, PeerStream};

/// Backup streams served at once; more are answered `busy`.
const MAX_STREAMS: usize = 8;
/// How long a copy the master no longer names is kept.
const RELEASE_GRACE_MS: u64 = 24 * 3_600_000;
/// Version of the `index/<snapshot>` files.
const INDEX_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    v: u32,
    received_ms: u64,
    /// The replica node that pushed it: its `keep` lists decide only over its own snapshots.
    from: NodeId,
    objects: Vec<ObjectId>,
}

/// The copies this home keeps, shared by the stream handlers and the desired-state updates.
#[derive(Debug, Clone)]
pub struct Copies {
    inner: Arc<CopiesInner>,
}

#[derive(Debug)]
struct CopiesInner {
    dir: PathBuf,
    holds: Mutex<HashMap<Name, HashSet<NodeId>>>,
    stores: Mutex<HashMap<Name, Arc<DirStore>>>,
}

impl Copies {
    /// The copies under `D/backup-copies`.
    pub fn new(root: &Path) -> Self {
        Self {
            inner: Arc::new(CopiesInner {
                dir: root.join("backup-copies"),
                holds: Mutex::new(HashMap::new()),
                stores: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes the master's current `holds`; marks copies no longer named as released and
    /// deletes those released more than a day ago.
    pub fn set_holds(&self, holds: &[Holding], now_ms: u64) {
        let named: HashMap<Name, HashSet<NodeId>> = holds
            .iter()
            .map(|h| (h.deployment.clone(), h.replicas.iter().copied().collect()))
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.inner.dir) else {
            *lock(&self.inner.holds) = named;
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let marker = e.path().join("released_ms");
            if named.keys().any(|d| d.as_str() == name) {
                let _ = std::fs::remove_file(&marker);
                continue;
            }
            let since = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            match since {
                None => {
                    let _ = std::fs::write(&marker, now_ms.to_string());
                }
                Some(t) if now_ms.saturating_sub(t) >= RELEASE_GRACE_MS => {
                    tracing::info!(deployment = %name, "backup copy no longer held: deleted");
                    lock(&self.inner.stores).retain(|d, _| d.as_str() != name);
                    let _ = std::fs::remove_dir_all(e.path());
                }
                Some(_) => {}
            }
        }
        *lock(&self.inner.holds) = named;
    }

    fn allowed(&self, deployment: &Name, from: &NodeId) -> bool {
        lock(&self.inner.holds)
            .get(deployment)
            .is_some_and(|r| r.contains(from))
    }

    /// The copies of `deployment` kept here.
    pub(crate) fn store(&self, deployment: &Name) -> Arc<DirStore> {
        lock(&self.inner.stores)
            .entry(deployment.clone())
            .or_insert_with(|| Arc::new(DirStore::new(self.inner.dir.join(deployment.as_str()))))
            .clone()
    }

    fn index_dir(&self, deployment: &Name) -> PathBuf {
        self.inner.dir.join(deployment.as_str()).join("index")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves the backup streams of `incoming` (pushes and reads), reads paced by `bucket`.
pub async fn serve(
    mut incoming: mpsc::Receiver<Incoming>,
    copies: Copies,
    bucket: Arc<Mutex<Bucket>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_STREAMS));
    while let Some(Incoming {
        from,
        first,
        mut stream,
    }) = incoming.recv().await
    {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream
                    .send_error(ErrorCode::Busy, "serving too many backup streams")
                    .await;
                let _ = stream.finish().await;
            });
            continue;
        };
        let (copies, bucket) = (copies.clone(), bucket.clone());
        tokio::spawn(
            async move {
                let result = match first {
                    Message::BackupOffer(o) => take_push(&mut stream, &copies, from, o).await,
                    Message::BackupGet(g) => {
                        serve_read(&mut stream, &copies, &bucket, from, g).await
                    }
                    other => Err(refuse(
                        ErrorCode::UnexpectedMessage,
                        format!("`{}` opens no backup stream", other.type_tag()),
                    )),
                };
                if let Err(e) = result {
                    tracing::info!(error = %e, "backup stream ended");
                    if let BackupNetError::Refused { peer_code, message } = &e {
                        let _ = stream.send_error(*peer_code, message.clone()).await;
                    }
                }
                let _ = stream.finish().await;
                drop(slot);
            }
            .instrument(tracing::info_span!("backup_in", peer = %from)),
        );
    }
}

/// A refusal to send to the peer (carried as [`BackupNetError::Refused`]).
fn refuse(code: ErrorCode, message: impl Into<String>) -> BackupNetError {
    BackupNetError::Refused {
        peer_code: code,
        message: message.into(),
    }
}

fn check_allowed(copies: &Copies, deployment: &Name, from: &NodeId) -> Result<(), BackupNetError> {
    if copies.allowed(deployment, from) {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::NotYours,
            format!("this home keeps no copies of {deployment} for {from}"),
        ))
    }
}

/// One push: offers answered with what is missing, the objects, the manifest, the commit.
/// What arrived before a cut is made durable, so the next push sends only the rest.
async fn take_push(
    stream: &mut PeerStream,
    copies: &Copies,
    from: NodeId,
    first: BackupOffer,
) -> Result<(), BackupNetError> {
    check_allowed(copies, &first.deployment, &from)?;
    let (deployment, snapshot) = (first.deployment.clone(), first.snapshot);
    let store = copies.store(&deployment);
    let mut offered: Vec<ObjectId> = Vec::new();
    let mut wanted: HashSet<ObjectId> = HashSet::new();
    let mut next = Some(Message::BackupOffer(first));
    let result = loop {
        let m = match next.take() {
            Some(m) => m,
            None => match wire::answer(stream).await {
                Ok(m) => m,
                Err(e) => break Err(e),
            },
        };
        match m {
            Message::BackupOffer(o) => {
                if o.deployment != deployment || o.snapshot != snapshot {
                    break Err(refuse(ErrorCode::InvalidMessage, "one snapshot per stream"));
                }
                if o.objects.len() > MAX_OBJECTS_PER_FRAME {
                    break Err(refuse(
                        ErrorCode::InvalidMessage,
                        format!("{} ids in one offer (at most 4096)", o.objects.len()),
                    ));
                }
                let mut want = Vec::new();
                for id in &o.objects {
                    if !store.has(StoreKind::Chunk, &store_id(id))? && wanted.insert(*id) {
                        want.push(*id);
                    }
                }
                offered.extend(o.objects);
                stream
                    .send(&Message::BackupWant(BackupWant { objects: want }))
                    .await?;
            }
            Message::BackupObject(head) => {
                let ok = match head.kind {
                    ObjectKind::Chunk => wanted.contains(&head.id),
                    ObjectKind::Snapshot => head.id == snapshot,
                };
                if !ok {
                    break Err(refuse(
                        ErrorCode::InvalidMessage,
                        format!("{} was neither wanted nor this snapshot", head.id),
                    ));
                }
                let bytes = match wire::object_body(stream, &head, head.kind, None).await {
                    Ok(b) => b,
                    Err(BackupNetError::Unexpected(why)) => {
                        break Err(refuse(ErrorCode::InvalidMessage, why));
                    }
                    Err(e) => break Err(e),
                };
                store.put(wire::store_kind(head.kind), &store_id(&head.id), &bytes)?;
            }
            Message::BackupCommit(c) => {
                break commit(stream, copies, &store, (&deployment, from), &offered, c).await;
            }
            other => {
                break Err(refuse(
                    ErrorCode::UnexpectedMessage,
                    format!("`{}` in a backup push", other.type_tag()),
                ));
            }
        }
    };
    if result.is_err() {
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.sync()).await;
    }
    result
}

async fn commit(
    stream: &mut PeerStream,
    copies: &Copies,
    store: &Arc<DirStore>,
    (deployment, from): (&Name, NodeId),
    offered: &[ObjectId],
    c: BackupCommit,
) -> Result<(), BackupNetError> {
    if c.keep.len() > hearth_protocol::messages::backup::MAX_KEEP as usize
        || !c.keep.contains(&c.snapshot)
    {
        return Err(refuse(
            ErrorCode::InvalidMessage,
            "keep must name the snapshot, and at most 366",
        ));
    }
    let index_dir = copies.index_dir(deployment);
    let (store, offered, keep, snapshot) = (store.clone(), offered.to_vec(), c.keep, c.snapshot);
    let held = tokio::task::spawn_blocking(move || -> Result<u64, BackupNetError> {
        store.sync()?;
        let missing = std::iter::once((StoreKind::Snapshot, snapshot))
            .chain(offered.iter().map(|id| (StoreKind::Chunk, *id)))
            .find(|(k, id)| !store.has(*k, &store_id(id)).unwrap_or(false));
        if let Some((k, id)) = missing {
            return Err(refuse(
                ErrorCode::InvalidMessage,
                format!("commit of {snapshot}: {} {id} was never sent", k.as_str()),
            ));
        }
        write_index(&index_dir, &snapshot, from, offered)?;
        retain(&store, &index_dir, from, &keep)
    })
    .await
    .map_err(|_| BackupNetError::Cancelled)??;
    stream
        .send(&Message::BackupStored(BackupStored {
            snapshot,
            held_bytes: held,
        }))
        .await?;
    tracing::info!(%snapshot, held_bytes = held, "backup copy stored");
    Ok(())
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BackupNetError {
    move |e| BackupNetError::Store(hearth_backup::BackupError::io(what)(e))
}

fn write_index(
    dir: &Path,
    snapshot: &ObjectId,
    from: NodeId,
    objects: Vec<ObjectId>,
) -> Result<(), BackupNetError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {dir:?}")))?;
    let index = Index {
        v: INDEX_VERSION,
        received_ms: crate::now_ms(),
        from,
        objects,
    };
    let bytes = serde_json::to_vec(&index).map_err(|e| io_err("index".into())(e.into()))?;
    let tmp = dir.join(format!(".{snapshot}.tmp"));
    std::fs::write(&tmp, &bytes).map_err(io_err(format!("writing {tmp:?}")))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("syncing {tmp:?}")))?;
    std::fs::rename(&tmp, dir.join(snapshot.to_string()))
        .map_err(io_err(format!("naming {tmp:?}")))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {dir:?}")))
}

/// Deletes the snapshots `from` pushed that are not in `keep` (another replica's stay) and
/// every chunk no remaining snapshot names; returns the sealed bytes kept.
fn retain(
    store: &DirStore,
    index_dir: &Path,
    from: NodeId,
    keep: &[ObjectId],
) -> Result<u64, BackupNetError> {
    let mut named: HashSet<String> = HashSet::new();
    let entries = std::fs::read_dir(index_dir).map_err(io_err(format!("listing {index_dir:?}")))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read(e.path()).map_err(io_err(format!("reading {name}")))?;
        let index = serde_json::from_slice::<Index>(&text).ok();
        let kept = keep.iter().any(|k| k.to_string() == name)
            || index.as_ref().is_some_and(|i| i.from != from);
        if kept {
            if let Some(i) = index {
                named.extend(i.objects.iter().map(ToString::to_string));
            }
        } else {
            let _ = std::fs::remove_file(e.path());
            if let Ok(id) = name.parse::<ObjectId>() {
                let _ = std::fs::remove_file(store.path(StoreKind::Snapshot, &store_id(&id)));
            }
        }
    }
    let mut held = 0u64;
    for kind in [StoreKind::Chunk, StoreKind::Snapshot] {
        let Some(dir) = store
            .path(kind, &hearth_backup::ChunkId([0; 32]))
            .parent()
            .map(Path::to_owned)
        else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if kind == StoreKind::Chunk && !named.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            } else {
                held += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Ok(held)
}

/// One read: the manifest, then the chunks asked for, each paced by the upload budget.
async fn serve_read(
    stream: &mut PeerStream,
    copies: &Copies,
    bucket: &Mutex<Bucket>,
    from: NodeId,
    get: BackupGet,
) -> Result<(), BackupNetError> {
    check_allowed(copies, &get.deployment, &from)?;
    let store = copies.store(&get.deployment);
    let Some(manifest) = store.get(StoreKind::Snapshot, &store_id(&get.snapshot))? else {
        return Err(refuse(
            ErrorCode::NotFound,
            format!("no snapshot {} of {} here", get.snapshot, get.deployment),
        ));
    };
    wire::send_object(
        stream,
        ObjectKind::Snapshot,
        get.snapshot,
        &manifest,
        bucket,
    )
    .await?;
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(60), stream.recv()).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(Some(m))) => m,
        };
        let Message::BackupFetch(f) = m else {
            return Err(refuse(
                ErrorCode::UnexpectedMessage,
                format!("`{}` in a backup read", m.type_tag()),
            ));
        };
        if f.objects.len() > MAX_OBJECTS_PER_FRAME {
            return Err(refuse(
                ErrorCode::InvalidMessage,
                "at most 4096 ids a fetch",
            ));
        }
        for id in f.objects {
            let Some(bytes) = store.get(StoreKind::Chunk, &store_id(&id))? else {
                return Err(refuse(ErrorCode::NotFound, format!("no chunk {id} here")));
            };
            wire::send_object(stream, ObjectKind::Chunk, id, &bytes, bucket).await?;
        }
    }
}
