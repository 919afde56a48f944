//! The master's ledger service (SPEC.md §15, design of issue 16 §3): the append-only log of
//! credits entries under `DATA/ledger/`, its in-memory Merkle tree, the signed checkpoints, the
//! witnesses' co-signatures and the witness registry.
//!
//! ```text
//! DATA/ledger/entries.log        one entry line each (`\n`-terminated): the leaves
//! DATA/ledger/checkpoints.log    {"size":N,"note":"<signed note>"} per checkpoint
//! DATA/ledger/cosignatures.log   {"size":N,"witness":"name","line":"— name base64"}
//! DATA/ledger/witnesses.json     the registry
//! ```
//!
//! Appends go through one writer thread doing group commit ([`writer`]); an `Ok` from
//! [`Ledger::append`] means the entries are on disk. At open the log is replayed ([`replay`]),
//! its chain checked and compared with every checkpoint; a log that does not match what the
//! master signed makes it refuse to start, naming the entry or checkpoint.

pub mod config;
mod cosign;
mod facts;
mod file;
pub mod notes;
mod open;
pub mod replay;
pub mod tasks;
#[cfg(test)]
mod tests;
pub mod witnesses;
mod writer;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use hearth_ledger::proof::{ConsistencyProof, InclusionProof};
use hearth_ledger::{Body, Entry, Hash, Tree};

pub use cosign::Checkpoint;
pub use notes::{CheckpointLine, CosignatureLine};
pub use witnesses::{Witness, WitnessError};
pub use writer::MAX_BATCH_ENTRIES;

use file::AppendFile;
use notes::{NoteKey, Notes};

/// Why the ledger refused an operation, or could not open.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Writing or syncing entries.log failed; nothing of the append was kept.
    #[error("the ledger could not write its log ({0}); nothing was appended")]
    Write(String),
    /// An entry longer than the format allows.
    #[error("a {kind} entry of {len} bytes is longer than the 16 KiB an entry may have")]
    TooLong { kind: &'static str, len: usize },
    /// The writer thread has stopped (shutting down).
    #[error("the ledger's writer has stopped")]
    Closed,
    /// The log on disk is not what the master wrote and signed: the master does not start.
    #[error("{path}: {reason}; the master refuses to start on a ledger it did not write")]
    Damaged { path: PathBuf, reason: String },
    /// A file could not be opened or read.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// A size or index beyond the log.
    #[error("{0}")]
    Beyond(String),
    /// Sizes or indexes that cannot be (out of order, an index not below the size).
    #[error("{0}")]
    Range(String),
    /// A co-signature from a witness not in the registry.
    #[error("{0}")]
    UnknownWitness(String),
    /// A co-signature that is malformed or does not verify.
    #[error("{0}")]
    BadCosignature(String),
    /// A co-signature for a checkpoint the master never signed.
    #[error("{0}")]
    NoSuchCheckpoint(String),
    /// A registry change refused.
    #[error("{0}")]
    Witness(String),
    /// A witness name taken by another key.
    #[error("{0}")]
    WitnessExists(String),
    /// No such witness.
    #[error("{0}")]
    UnknownWitnessName(String),
}

impl From<WitnessError> for LedgerError {
    fn from(e: WitnessError) -> Self {
        match e {
            WitnessError::Exists(_) => Self::WitnessExists(e.to_string()),
            WitnessError::Unknown(_) => Self::UnknownWitnessName(e.to_string()),
            WitnessError::Invalid(_) => Self::Witness(e.to_string()),
            WitnessError::Io { .. } => Self::Write(e.to_string()),
        }
    }
}

/// Where each entry's line lies in entries.log, and the tree over them.
#[derive(Debug, Default)]
struct Index {
    tree: Tree,
    /// Offset of each entry's line.
    offsets: Vec<u64>,
    /// Length of the file's whole lines.
    end: u64,
}

/// State shared by the writer thread and the readers.
#[derive(Debug)]
pub struct Shared {
    dir: PathBuf,
    index: RwLock<Index>,
    /// A read handle on entries.log (positioned reads only).
    reader: File,
    books: Mutex<hearth_ledger::books::Books>,
    facts: Mutex<facts::Facts>,
    notes: Mutex<Notes>,
    checkpoints_file: Mutex<AppendFile>,
    cosignatures_file: Mutex<AppendFile>,
    witnesses: Mutex<witnesses::Registry>,
    key: NoteKey,
    failed_batches: AtomicU64,
}

fn tree_error(e: hearth_ledger::TreeError) -> LedgerError {
    match e {
        hearth_ledger::TreeError::BeyondSize { .. } => LedgerError::Beyond(e.to_string()),
        other => LedgerError::Range(other.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn metrics_failed(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Makes a synced batch visible: tree, line index, books.
    fn extend(&self, entries: &[&(Entry, Hash, u64, u32)], end: u64) {
        {
            let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
            for (_, leaf, offset, _) in entries {
                index.tree.append(*leaf);
                index.offsets.push(*offset);
            }
            index.end = end;
        }
        let mut facts = lock(&self.facts);
        for (entry, ..) in entries {
            facts.observe(entry);
        }
        drop(facts);
        let mut books = lock(&self.books);
        for (entry, ..) in entries {
            if let Err(e) = books.observe(entry) {
                // The master's own entries disagree with its own books: a bug, loudly.
                tracing::error!(seq = entry.seq, error = %e, "ledger entry inconsistent with the books");
            }
        }
    }
}

/// The ledger service. Dropping it stops the writer after the queued appends.
#[derive(Debug)]
pub struct Ledger {
    shared: Arc<Shared>,
    queue: Mutex<Option<std::sync::mpsc::Sender<writer::Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Ledger {
    /// Appends entries with these bodies, in order, durably: `Ok` (their seqs) once on disk.
    pub async fn append(&self, bodies: Vec<Body>) -> Result<Vec<u64>, LedgerError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let (tell, answer) = tokio::sync::oneshot::channel();
        {
            let queue = lock(&self.queue);
            let queue = queue.as_ref().ok_or(LedgerError::Closed)?;
            queue
                .send(writer::Job { bodies, tell })
                .map_err(|_| LedgerError::Closed)?;
        }
        answer.await.map_err(|_| LedgerError::Closed)?
    }

    /// The books: state derived from every entry appended. Never hold across an `.await`.
    pub fn books(&self) -> MutexGuard<'_, hearth_ledger::books::Books> {
        lock(&self.shared.books)
    }

    /// Facts of the log the master's reconciliation needs.
    pub(crate) fn facts(&self) -> MutexGuard<'_, facts::Facts> {
        lock(&self.shared.facts)
    }

    /// Entries in the log.
    pub fn size(&self) -> u64 {
        self.index().tree.size()
    }

    /// Appends that failed to reach the disk since start (batches).
    pub fn failed_batches(&self) -> u64 {
        self.shared.failed_batches.load(Ordering::Relaxed)
    }

    /// The directory holding the ledger's files.
    pub fn dir(&self) -> &std::path::Path {
        &self.shared.dir
    }

    /// The checkpoints' C2SP verifier key.
    pub fn vkey(&self) -> &str {
        self.shared.key.vkey()
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.shared.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Lines `start .. start + limit` (clipped to the log), each with its `\n`, as stored.
    pub fn entries(&self, start: u64, limit: u64) -> Result<Vec<u8>, LedgerError> {
        let (from, to) = {
            let index = self.index();
            let size = index.tree.size();
            if start > size {
                return Err(LedgerError::Beyond(format!(
                    "start {start} is beyond the log's {size} entries"
                )));
            }
            let stop = start.saturating_add(limit).min(size);
            let at = |i: u64| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| index.offsets.get(i).copied())
                    .unwrap_or(index.end)
            };
            (at(start), at(stop))
        };
        self.read(from, to)
    }

    /// The line of entry `seq` (no `\n`).
    pub fn line(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        let mut bytes = self.entries(seq, 1)?;
        if bytes.pop() != Some(b'\n') {
            return Err(LedgerError::Beyond(format!("no entry {seq} in the log")));
        }
        Ok(bytes)
    }

    fn read(&self, from: u64, to: u64) -> Result<Vec<u8>, LedgerError> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
        self.shared
            .reader
            .read_exact_at(&mut buf, from)
            .map_err(|e| LedgerError::Io {
                path: self.shared.dir.join("entries.log"),
                reason: e.to_string(),
            })?;
        Ok(buf)
    }

    /// The root of the tree of `size` entries.
    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.index().tree.root(size).map_err(tree_error)
    }

    /// The inclusion proof of entry `seq` in the tree of `size` entries.
    pub fn inclusion(&self, seq: u64, size: u64) -> Result<InclusionProof, LedgerError> {
        self.index().tree.inclusion(seq, size).map_err(tree_error)
    }

    /// The consistency proof from size `from` to size `to`.
    pub fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, LedgerError> {
        self.index().tree.consistency(from, to).map_err(tree_error)
    }

    /// Stops the writer after what is queued, then signs a last checkpoint.
    pub fn close(&self) {
        drop(lock(&self.queue).take());
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
        if let Err(e) = self.sign_checkpoint() {
            tracing::error!(error = %e, "could not sign the ledger's checkpoint at shutdown");
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        drop(lock(&self.queue).take());
        if let Some(w) = lock(&self.writer).take() {
            let _ = w.join();
        }
    }
}
