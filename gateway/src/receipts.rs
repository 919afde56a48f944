//! Bandwidth receipts: every window, one [`BandwidthReceipt`] per (node, instance) that moved
//! bytes, signed with the gateway's key, kept durably until its node acknowledges it.
//!
//! A receipt is written to `receipts/pending/<id>.json` (durably) and appended to
//! `receipts/issued.jsonl` before it is sent; it is sent on a stream the gateway opens on the
//! node's link (`receipt`, answered by `receipt_ack` with its id) and removed from `pending/`
//! on that ack. An `error` answer is retried when the node next connects, up to
//! [`ReceiptsConfig::max_tries`] times, then the receipt moves to `receipts/refused/`. Every
//! pending receipt of a node is sent again when its link comes up, including after a restart
//! of the gateway. `pending/` is bounded: beyond [`ReceiptsConfig::max_pending`] files the
//! oldest are dropped, with an error logged.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{DEFAULT_MAX_FRAME, Message, NodeId, Nonce, SecretKey, SignerId, frame};
use tokio::sync::broadcast;

use crate::data_dir::{sync_dir, write_durable};
use crate::tunnel::{Links, read_frame};

/// How long a node gets to acknowledge a receipt.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why receipts could not be issued or kept.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptsError {
    /// Filesystem error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A receipt could not be encoded.
    #[error("cannot encode a receipt: {0}")]
    Encode(String),
}

/// How receipts are issued and kept.
#[derive(Debug, Clone)]
pub struct ReceiptsConfig {
    /// Length of a window (one receipt per node and instance per window).
    pub window: Duration,
    /// Most receipts kept in `pending/`.
    pub max_pending: usize,
    /// Refusals by the node after which a receipt moves to `refused/`.
    pub max_tries: u32,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            max_pending: 100_000,
            max_tries: 5,
        }
    }
}

/// Receipt figures for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiptStats {
    /// Issued since start.
    pub issued: u64,
    /// Acknowledged since start.
    pub acked: u64,
    /// Pending now.
    pub pending: u64,
}

/// The gateway's receipts.
#[derive(Debug)]
pub struct Receipts {
    dir: PathBuf,
    key: SecretKey,
    gateway: SignerId,
    links: Links,
    config: ReceiptsConfig,
    issued: AtomicU64,
    acked: AtomicU64,
    pending: AtomicU64,
    /// Start of the current window, Unix ms.
    window_start: AtomicU64,
    tries: Mutex<HashMap<Nonce, u32>>,
    in_flight: Mutex<HashSet<Nonce>>,
}

impl Receipts {
    /// Opens (creating) `dir` (`D/receipts`); receipts are signed with `key` and sent on
    /// `links`, with the bytes of `links`' meter.
    pub fn open(
        dir: &Path,
        key: SecretKey,
        links: Links,
        config: ReceiptsConfig,
    ) -> Result<Arc<Self>, ReceiptsError> {
        for sub in ["pending", "refused"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io(&path))?;
        }
        let receipts = Self {
            dir: dir.to_owned(),
            gateway: SignerId::from_key(key.public()),
            key,
            links,
            config,
            issued: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            window_start: AtomicU64::new(unix_ms()),
            tries: Mutex::default(),
            in_flight: Mutex::default(),
        };
        let pending = receipts.pending_files()?.len() as u64;
        receipts.pending.store(pending, Ordering::Relaxed);
        Ok(Arc::new(receipts))
    }

    /// Receipt figures.
    pub fn stats(&self) -> ReceiptStats {
        ReceiptStats {
            issued: self.issued.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
        }
    }

    /// Issues the receipts of the window `[start_ms, end_ms)` from the meter's window
    /// counters, and keeps them pending. Returns them (not yet sent).
    pub fn issue(
        &self,
        start_ms: u64,
        end_ms: u64,
    ) -> Result<Vec<BandwidthReceipt>, ReceiptsError> {
        let mut issued = Vec::new();
        for bytes in self.links.meter().take_window() {
            let mut receipt = BandwidthReceipt {
                receipt: hearth_protocol::Hex(rand::random()),
                gateway: self.gateway,
                node: bytes.node,
                instance: bytes.instance,
                window_start_ms: start_ms,
                window_end_ms: end_ms,
                bytes_from_node: bytes.from_node,
                bytes_to_node: bytes.to_node,
                signature: hearth_protocol::Hex([0; 64]),
            };
            receipt.signature = self.key.sign(&receipt.signing_bytes());
            issued.push(receipt);
        }
        if issued.is_empty() {
            return Ok(issued);
        }
        self.make_room(issued.len())?;
        let log = self.dir.join("issued.jsonl");
        let mut lines = Vec::new();
        for receipt in &issued {
            let json =
                serde_json::to_vec(receipt).map_err(|e| ReceiptsError::Encode(e.to_string()))?;
            let path = self.pending_path(&receipt.receipt);
            write_durable(&path, &json, None).map_err(io(&path))?;
            self.pending.fetch_add(1, Ordering::Relaxed);
            self.issued.fetch_add(1, Ordering::Relaxed);
            lines.extend_from_slice(&json);
            lines.push(b'\n');
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io(&log))?;
        f.write_all(&lines).map_err(io(&log))?;
        f.sync_data().map_err(io(&log))?;
        Ok(issued)
    }

    /// Closes the current window now (at each tick, and when the gateway stops, so that no
    /// counted byte goes unreceipted): issues its receipts and starts the next window.
    pub fn close_window(&self) -> Result<Vec<BandwidthReceipt>, ReceiptsError> {
        let end = unix_ms();
        let start = self.window_start.swap(end, Ordering::Relaxed);
        self.issue(start, end.max(start + 1))
    }

    /// Sends every pending receipt of `node` (when its link is up), each once at a time.
    pub async fn resend(self: &Arc<Self>, node: NodeId) {
        let files = match self.pending_files() {
            Ok(files) => files,
            Err(e) => {
                tracing::error!("cannot list pending receipts: {e}");
                return;
            }
        };
        for path in files {
            match fs::read(&path).map(|b| serde_json::from_slice::<BandwidthReceipt>(&b)) {
                Ok(Ok(receipt)) if receipt.node == node => self.deliver(receipt).await,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::error!(path = %path.display(), "damaged pending receipt: {e}")
                }
                Err(e) => tracing::debug!(path = %path.display(), "pending receipt gone: {e}"),
            }
        }
    }

    /// Sends one receipt on its node's link and waits for the ack; on ack it leaves `pending/`.
    pub async fn deliver(self: &Arc<Self>, receipt: BandwidthReceipt) {
        let id = receipt.receipt;
        if !self.lock_in_flight().insert(id) {
            return;
        }
        let outcome = self.exchange(&receipt).await;
        self.lock_in_flight().remove(&id);
        let node = receipt.node;
        match outcome {
            Ok(Message::ReceiptAck(ack)) if ack.receipt == id => {
                self.forget(&id, None);
                self.acked.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%node, receipt = %id, "receipt acknowledged");
            }
            Ok(Message::Error(e)) => {
                let tries = {
                    let mut tries = self.tries.lock().unwrap_or_else(PoisonError::into_inner);
                    let n = tries.entry(id).or_insert(0);
                    *n += 1;
                    *n
                };
                tracing::warn!(%node, receipt = %id, tries, "node refused a receipt: {}: {}", e.code, e.message);
                if tries >= self.config.max_tries {
                    tracing::error!(%node, receipt = %id, "receipt refused {tries} times: moved to refused/");
                    self.forget(&id, Some(&self.dir.join("refused")));
                }
            }
            Ok(other) => {
                tracing::warn!(%node, "node answered a receipt with `{}`", other.type_tag())
            }
            Err(e) => tracing::debug!(%node, receipt = %id, "receipt not delivered (kept): {e}"),
        }
    }

    /// Issues a receipt window every [`ReceiptsConfig::window`] and sends the receipts;
    /// re-sends a node's pending receipts when its link comes up. Runs for ever.
    pub async fn run(self: Arc<Self>) {
        let mut connects = self.links.connects();
        for node in self.links.nodes() {
            tokio::spawn(Arc::clone(&self).resend_owned(node));
        }
        let mut tick = tokio::time::interval(self.config.window);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match self.close_window() {
                        Ok(receipts) => {
                            for receipt in receipts {
                                let this = Arc::clone(&self);
                                tokio::spawn(async move { this.deliver(receipt).await });
                            }
                        }
                        Err(e) => tracing::error!("cannot issue receipts: {e}"),
                    }
                }
                node = connects.recv() => match node {
                    Ok(node) => { tokio::spawn(Arc::clone(&self).resend_owned(node)); }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for node in self.links.nodes() {
                            tokio::spawn(Arc::clone(&self).resend_owned(node));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    async fn resend_owned(self: Arc<Self>, node: NodeId) {
        self.resend(node).await;
    }

    async fn exchange(&self, receipt: &BandwidthReceipt) -> Result<Message, String> {
        let conn = self
            .links
            .connection(&receipt.node)
            .ok_or_else(|| "no link".to_owned())?;
        let bytes = frame::encode(&Message::Receipt(receipt.clone()), DEFAULT_MAX_FRAME)
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(&bytes).await.map_err(|e| e.to_string())?;
            let answer = read_frame(&mut recv).await.map_err(|e| e.to_string());
            let _ = send.finish();
            answer
        };
        tokio::time::timeout(ACK_TIMEOUT, exchange)
            .await
            .map_err(|_| "no answer in time".to_owned())?
    }

    /// Removes a receipt from `pending/`, moving it to `to` when given.
    fn forget(&self, id: &Nonce, to: Option<&Path>) {
        let path = self.pending_path(id);
        let result = match to {
            Some(dir) => fs::rename(&path, dir.join(format!("{id}.json"))),
            None => fs::remove_file(&path),
        };
        match result.and_then(|()| sync_dir(&path)) {
            Ok(()) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot remove a pending receipt: {e}")
            }
        }
        self.tries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    /// Drops the oldest pending receipts so that `incoming` more fit under the bound.
    fn make_room(&self, incoming: usize) -> Result<(), ReceiptsError> {
        let pending = self.pending.load(Ordering::Relaxed) as usize;
        let Some(excess) = (pending + incoming).checked_sub(self.config.max_pending) else {
            return Ok(());
        };
        let mut files: Vec<(SystemTime, PathBuf)> = self
            .pending_files()?
            .into_iter()
            .map(|p| {
                (
                    fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(UNIX_EPOCH),
                    p,
                )
            })
            .collect();
        files.sort();
        tracing::error!(
            dropped = excess,
            "more than {} receipts pending: dropping the oldest",
            self.config.max_pending
        );
        for (_, path) in files.into_iter().take(excess) {
            if fs::remove_file(&path).is_ok() {
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn pending_files(&self) -> Result<Vec<PathBuf>, ReceiptsError> {
        let dir = self.dir.join("pending");
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
        Ok(files)
    }

    fn pending_path(&self, id: &Nonce) -> PathBuf {
        self.dir.join("pending").join(format!("{id}.json"))
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Nonce>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Now, Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReceiptsError + '_ {
    move |source| ReceiptsError::Io {
        path: path.to_owned(),
        source,
    }
}
