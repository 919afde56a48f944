//! The ledger's one writer thread: group commit over `entries.log`. It takes every append
//! queued since its last sync, gives each entry its `seq`, `at_ms` and `prev`, writes all their
//! lines with one `write` and one `fdatasync`, extends the in-memory tree (and the books), and
//! only then answers each caller. An answered append is on disk; N concurrent appenders cost
//! one sync. A failed write or sync (full disk, I/O error) cuts the file back to where the
//! batch began and answers every caller of the batch with the error: nothing half-written stays
//! and the chain goes on from the last entry on disk.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use hearth_ledger::entry::{ENTRY_VERSION, MAX_ENTRY_BYTES};
use hearth_ledger::{Body, Entry, Hash, leaf_hash};

use super::file::AppendFile;
use super::{LedgerError, Shared};

/// Most entries written in one batch (bounds a batch's buffer and its first caller's wait).
pub const MAX_BATCH_ENTRIES: usize = 8192;

/// A queued append: its bodies and where to send the seqs.
pub(super) struct Job {
    /// The entries' bodies, in order.
    pub(super) bodies: Vec<Body>,
    /// The caller's answer.
    pub(super) tell: tokio::sync::oneshot::Sender<Result<Vec<u64>, LedgerError>>,
}

/// The writer's view of the chain: the next entry's seq and prev, the last `at_ms`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chain {
    /// Seq of the next entry.
    pub(super) next_seq: u64,
    /// Leaf hash of the last entry (zeros for an empty log).
    pub(super) last_hash: Hash,
    /// `at_ms` of the last entry (entries' times never go backwards).
    pub(super) last_at_ms: u64,
}

/// Runs the writer until the queue closes.
pub(super) fn run(
    shared: Arc<Shared>,
    mut file: AppendFile,
    mut chain: Chain,
    jobs: Receiver<Job>,
) {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Ok(first) = jobs.recv() {
        let mut count = first.bodies.len();
        let mut batch = vec![first];
        while count < MAX_BATCH_ENTRIES {
            match jobs.try_recv() {
                Ok(job) => {
                    count += job.bodies.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        commit(&shared, &mut file, &mut chain, batch, &mut buf);
    }
}

/// One accepted job's entries, laid out in the batch buffer.
struct Laid {
    tell: tokio::sync::oneshot::Sender<Result<Vec<u64>, LedgerError>>,
    entries: Vec<(Entry, Hash, u64, u32)>,
}

fn commit(
    shared: &Shared,
    file: &mut AppendFile,
    chain: &mut Chain,
    batch: Vec<Job>,
    buf: &mut Vec<u8>,
) {
    buf.clear();
    let start = *chain;
    let base = file.len();
    let now = crate::clock::now_ms().max(chain.last_at_ms);
    let mut laid = Vec::with_capacity(batch.len());
    for job in batch {
        let before = (*chain, buf.len());
        let mut entries = Vec::with_capacity(job.bodies.len());
        let mut refused = None;
        for body in job.bodies {
            let entry = Entry {
                v: ENTRY_VERSION,
                seq: chain.next_seq,
                at_ms: now,
                prev: chain.last_hash,
                body,
            };
            let line = entry.to_line();
            if line.len() > MAX_ENTRY_BYTES {
                refused = Some(LedgerError::TooLong {
                    kind: entry.body.kind(),
                    len: line.len(),
                });
                break;
            }
            let leaf = leaf_hash(&line);
            let offset = base + buf.len() as u64;
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            entries.push((entry, leaf, offset, line.len() as u32));
            chain.next_seq += 1;
            chain.last_hash = leaf;
            chain.last_at_ms = now;
        }
        match refused {
            Some(e) => {
                // Only this job is refused: the chain and buffer go back to before it.
                *chain = before.0;
                buf.truncate(before.1);
                let _ = job.tell.send(Err(e));
            }
            None => laid.push(Laid {
                tell: job.tell,
                entries,
            }),
        }
    }
    if laid.is_empty() {
        return;
    }
    if let Err(e) = file.append(buf) {
        *chain = start;
        let entries: usize = laid.iter().map(|l| l.entries.len()).sum();
        tracing::error!(path = %file.path().display(), error = %e, entries,
            "ledger append failed (disk full or I/O error?): nothing of this batch was kept; \
             its callers get the error");
        shared.metrics_failed();
        for l in laid {
            let _ = l.tell.send(Err(LedgerError::Write(e.to_string())));
        }
        return;
    }
    shared.extend(
        &laid
            .iter()
            .flat_map(|l| l.entries.iter())
            .collect::<Vec<_>>(),
        file.len(),
    );
    for l in laid {
        let seqs = l.entries.iter().map(|(e, ..)| e.seq).collect();
        let _ = l.tell.send(Ok(seqs));
    }
}
