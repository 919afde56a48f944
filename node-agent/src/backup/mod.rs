//! Backups of instances' persistent data (SPEC §17), the node's side.
//!
//! As a replica's home, the agent snapshots each running instance whose assignment carries a
//! [`BackupPlan`] every `every_s` (and when the operator raises `now`), pushes each snapshot to
//! the plan's holders over the overlay and reports it to the master ([`push`]); before a
//! replica placed here first starts it restores the snapshot the plan names ([`restore`]). As a
//! holder it keeps other homes' sealed copies ([`holder`]). Transfers both ways spend the
//! volunteer's upload budget, shared with the artifact server.
//!
//! Per instance, `D/backups/<instance>/` holds its own store (`store/`) and `state.json`: when
//! the last snapshot was taken, the `now` last acted on, and the snapshots kept.

pub mod holder;
pub mod push;
pub mod restore;
pub mod wire;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hearth_backup::{BackupKey, DirStore};
use hearth_protocol::Message;
use hearth_protocol::messages::backup::{BackupPlan, ObjectId};
use hearth_protocol::messages::state::{DesiredState, InstanceId, Name};
use tokio::sync::mpsc;

use crate::artifacts::serve::Bucket;
use crate::overlay::Overlay;
use crate::process::Launch;
pub use wire::BackupNetError;

/// Version of `state.json`.
const STATE_VERSION: u32 = 1;
/// A failed snapshot is tried again after this long (or the interval, if shorter).
const RETRY_MS: u64 = 60_000;

/// An instance that may be due for a snapshot (the supervisor lists those running).
#[derive(Debug, Clone)]
pub struct Running {
    /// The instance.
    pub instance: InstanceId,
    /// Its deployment.
    pub deployment: Name,
    /// Its plan.
    pub plan: BackupPlan,
    /// Its data directory.
    pub data: PathBuf,
    /// The recipe's `snapshot_command`.
    pub hook: Option<Launch>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct State {
    v: u32,
    /// When the last snapshot was tried (Unix ms; 0: never).
    last_ms: u64,
    /// Whether that try succeeded.
    ok: bool,
    /// The plan's `now` last acted on.
    now_seen: u64,
    /// Snapshots kept, newest first.
    kept: Vec<ObjectId>,
}

/// The backups handle. Clone is cheap.
#[derive(Debug, Clone)]
pub struct Backups {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    overlay: Option<Overlay>,
    outbound: mpsc::UnboundedSender<Message>,
    bucket: Arc<Mutex<Bucket>>,
    copies: holder::Copies,
    stores: Mutex<HashMap<InstanceId, Arc<DirStore>>>,
    states: Mutex<HashMap<InstanceId, State>>,
    busy: Mutex<std::collections::HashSet<InstanceId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backups {
    /// Backups under `root` (the agent's directory). Without an overlay nothing can be pushed or
    /// restored (each attempt says so). With one, it starts serving the copies this home keeps.
    pub fn start(
        root: &Path,
        overlay: Option<Overlay>,
        outbound: mpsc::UnboundedSender<Message>,
        bucket: Arc<Mutex<Bucket>>,
    ) -> Self {
        let copies = holder::Copies::new(root);
        if let Some(incoming) = overlay.as_ref().and_then(Overlay::take_backups) {
            tokio::spawn(holder::serve(incoming, copies.clone(), bucket.clone()));
        }
        Self {
            inner: Arc::new(Inner {
                root: root.join("backups"),
                overlay,
                outbound,
                bucket,
                copies,
                stores: Mutex::new(HashMap::new()),
                states: Mutex::new(HashMap::new()),
                busy: Mutex::new(Default::default()),
            }),
        }
    }

    /// Takes a new desired state: the copies this home keeps.
    pub fn set_desired(&self, ds: &DesiredState) {
        self.inner.copies.set_holds(&ds.holds, crate::now_ms());
    }

    fn store(&self, instance: &InstanceId) -> Arc<DirStore> {
        lock(&self.inner.stores)
            .entry(instance.clone())
            .or_insert_with(|| {
                Arc::new(DirStore::new(
                    self.inner.root.join(instance.as_str()).join("store"),
                ))
            })
            .clone()
    }

    fn state(&self, instance: &InstanceId) -> State {
        if let Some(s) = lock(&self.inner.states).get(instance) {
            return s.clone();
        }
        let path = self.inner.root.join(instance.as_str()).join("state.json");
        let s = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .filter(|s| s.v == STATE_VERSION)
            .unwrap_or(State {
                v: STATE_VERSION,
                // The first snapshot comes one interval after the instance first runs here.
                last_ms: crate::now_ms(),
                ok: true,
                ..State::default()
            });
        lock(&self.inner.states).insert(instance.clone(), s.clone());
        s
    }

    fn save(&self, instance: &InstanceId, s: State) {
        let dir = self.inner.root.join(instance.as_str());
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join("state.json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&s).map_err(std::io::Error::other)?)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, dir.join("state.json"))
        };
        if let Err(e) = write() {
            tracing::warn!(%instance, error = %e, "cannot save the backup state");
        }
        lock(&self.inner.states).insert(instance.clone(), s);
    }

    /// Starts the snapshots that are due among `running` (one at a time per instance).
    pub fn tick(&self, running: Vec<Running>) {
        let now = crate::now_ms();
        for r in running {
            let s = self.state(&r.instance);
            let every = r.plan.every_s.saturating_mul(1000);
            let wait = if s.ok { every } else { every.min(RETRY_MS) };
            let asked = r.plan.now > s.now_seen;
            if !(asked || now.saturating_sub(s.last_ms) >= wait) {
                continue;
            }
            if !lock(&self.inner.busy).insert(r.instance.clone()) {
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let instance = r.instance.clone();
                let now_seen = r.plan.now;
                let result = this.snapshot(r, s.kept.clone()).await;
                let mut next = State {
                    v: STATE_VERSION,
                    last_ms: crate::now_ms(),
                    ok: false,
                    now_seen: now_seen.max(s.now_seen),
                    kept: s.kept,
                };
                match result {
                    Ok(t) => {
                        tracing::info!(%instance, snapshot = %t.report.snapshot,
                            bytes = t.report.bytes, sent = t.report.sent_bytes,
                            held_by = t.report.held_by.len(), "snapshot taken");
                        next.ok = !t.report.held_by.is_empty();
                        next.kept = t.kept;
                    }
                    Err(e) => tracing::warn!(%instance, error = %e, "snapshot failed"),
                }
                this.save(&instance, next);
                lock(&this.inner.busy).remove(&instance);
            });
        }
    }

    async fn snapshot(
        &self,
        r: Running,
        kept: Vec<ObjectId>,
    ) -> Result<push::Taken, BackupNetError> {
        let overlay = self.inner.overlay.as_ref().ok_or_else(|| {
            BackupNetError::Unexpected(
                "the overlay is off: snapshots cannot reach other homes".into(),
            )
        })?;
        let key = BackupKey::from_hex(&r.plan.key.0.to_string())?;
        let job = push::Job {
            store: self.store(&r.instance),
            instance: r.instance,
            deployment: r.deployment,
            key,
            data: r.data,
            kept,
            keep: r.plan.keep,
            holders: r.plan.holders,
            hook: r.hook,
        };
        push::take(job, overlay, &self.inner.bucket, &self.inner.outbound).await
    }

    /// Restores what `plan.restore` names into `data` before the instance starts.
    pub async fn restore(
        &self,
        instance: &InstanceId,
        deployment: &Name,
        plan: &BackupPlan,
        data: &Path,
    ) -> Result<restore::Outcome, BackupNetError> {
        let Some(r) = &plan.restore else {
            return Ok(restore::Outcome::Kept);
        };
        let overlay = self.inner.overlay.as_ref().ok_or_else(|| {
            BackupNetError::Unexpected("the overlay is off: no snapshot can be fetched".into())
        })?;
        let key = BackupKey::from_hex(&plan.key.0.to_string())?;
        let out = restore::restore(
            overlay,
            &self.inner.copies,
            self.store(instance),
            &key,
            deployment,
            r,
            data,
        )
        .await?;
        if let restore::Outcome::Restored { .. } = out {
            // Later snapshots build on the restored one.
            let mut s = self.state(instance);
            s.kept.retain(|k| *k != r.snapshot);
            s.kept.insert(0, r.snapshot);
            self.save(instance, s);
        }
        Ok(out)
    }
}
