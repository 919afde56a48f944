//! Opening the ledger: replay entries.log (cutting a torn tail), rebuild the tree, the line
//! index and the books, then check every checkpoint the master signed against the rebuilt tree
//! (a mismatch refuses the start, naming where the log was changed), load the co-signatures and
//! the witness registry, and start the writer thread.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use hearth_protocol::SecretKey;

use super::file::AppendFile;
use super::notes::{CheckpointLine, CosignatureLine, NoteKey, Notes};
use super::writer::{self, Chain};
use super::{Index, Ledger, LedgerError, Shared, witnesses};

fn io(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |e| LedgerError::Io {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

fn damaged(path: &Path, reason: impl Into<String>) -> LedgerError {
    LedgerError::Damaged {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl Ledger {
    /// Opens (creating) the ledger in `dir`, checked against the checkpoints `key` signed.
    pub fn open(dir: &Path, key: &SecretKey) -> Result<Self, LedgerError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = NoteKey::new(key);
        let entries_path = dir.join("entries.log");
        let mut index = Index::default();
        let mut facts = super::facts::Facts::default();
        let mut books = hearth_ledger::books::Books::new();
        let mut chain = Chain {
            next_seq: 0,
            last_hash: hearth_protocol::Hex([0; 32]),
            last_at_ms: 0,
        };
        let tail = match std::fs::File::open(&entries_path) {
            Ok(f) => super::replay::replay(f, |r| {
                if let Err(e) = books.observe(&r.entry) {
                    return Err(super::replay::ReplayError::Malformed {
                        line: r.entry.seq + 1,
                        seq: r.entry.seq,
                        reason: format!(
                            "it does not match the books recomputed from the entries before it: {e}"
                        ),
                    });
                }
                facts.observe(&r.entry);
                index.tree.append(r.leaf);
                index.offsets.push(r.offset);
                chain.next_seq = r.entry.seq + 1;
                chain.last_hash = r.leaf;
                chain.last_at_ms = r.entry.at_ms;
                Ok(())
            })
            .map_err(|e| damaged(&entries_path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => super::replay::Tail {
                valid_len: 0,
                torn: 0,
            },
            Err(e) => return Err(io(&entries_path)(e)),
        };
        if tail.torn > 0 {
            tracing::warn!(path = %entries_path.display(), bytes = tail.torn, entries = chain.next_seq,
                "cutting a torn last line off the ledger (an append that never finished; it was never acknowledged)");
        }
        index.end = tail.valid_len;
        let file = AppendFile::open(&entries_path, tail.valid_len).map_err(io(&entries_path))?;
        let reader = file.reader().map_err(io(&entries_path))?;

        let (checkpoints_file, checkpoints) =
            read_lines::<CheckpointLine>(&dir.join("checkpoints.log"))?;
        let mut notes = Notes::default();
        check_checkpoints(
            &dir.join("checkpoints.log"),
            &key,
            &index,
            &checkpoints,
            &mut notes,
        )?;
        let (cosignatures_file, cosignatures) =
            read_lines::<CosignatureLine>(&dir.join("cosignatures.log"))?;
        for c in cosignatures {
            if notes.checkpoints.contains_key(&c.size) {
                notes.cosignatures.entry(c.size).or_default().push(c);
            }
        }
        let registry = witnesses::Registry::open(&dir.join("witnesses.json"))?;
        tracing::info!(
            entries = index.tree.size(),
            checkpoints = notes.checkpoints.len(),
            witnesses = registry.list().len(),
            vkey = key.vkey(),
            "ledger opened"
        );

        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            index: RwLock::new(index),
            reader,
            books: Mutex::new(books),
            facts: Mutex::new(facts),
            notes: Mutex::new(notes),
            checkpoints_file: Mutex::new(checkpoints_file),
            cosignatures_file: Mutex::new(cosignatures_file),
            witnesses: Mutex::new(registry),
            key,
            failed_batches: AtomicU64::new(0),
        });
        let (queue, jobs) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer::run(thread_shared, file, chain, jobs))
            .map_err(io(dir))?;
        Ok(Self {
            shared,
            queue: Mutex::new(Some(queue)),
            writer: Mutex::new(Some(writer)),
        })
    }
}

/// Reads a JSON-lines file (a torn last line is cut off) and opens it for appends.
fn read_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(AppendFile, Vec<T>), LedgerError> {
    let mut items = Vec::new();
    let mut valid = 0u64;
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut reader = BufReader::new(f);
            let mut line = Vec::new();
            let mut n = 0u64;
            loop {
                line.clear();
                let got = reader.read_until(b'\n', &mut line).map_err(io(path))?;
                if got == 0 || line.last() != Some(&b'\n') {
                    if got > 0 {
                        tracing::warn!(path = %path.display(), bytes = got, "cutting a torn last line");
                    }
                    break;
                }
                n += 1;
                let item = serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(&line))
                    .map_err(|e| damaged(path, format!("line {n}: {e}")))?;
                items.push(item);
                valid += got as u64;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    Ok((AppendFile::open(path, valid).map_err(io(path))?, items))
}

/// Checks every checkpoint is the master's and matches the replayed tree.
fn check_checkpoints(
    path: &Path,
    key: &NoteKey,
    index: &Index,
    lines: &[CheckpointLine],
    notes: &mut Notes,
) -> Result<(), LedgerError> {
    let size = index.tree.size();
    let mut good = 0u64;
    for (i, c) in lines.iter().enumerate() {
        let n = i + 1;
        let signed = key.open(&c.note).map_err(|e| {
            damaged(
                path,
                format!("line {n}: not a checkpoint signed by this master: {e}"),
            )
        })?;
        let (csize, root) = (signed.checkpoint.size, signed.checkpoint.root);
        if csize != c.size {
            return Err(damaged(
                path,
                format!("line {n}: its size does not match its note"),
            ));
        }
        if csize > size {
            return Err(damaged(
                path,
                format!(
                    "the checkpoint of size {csize} (line {n}) signed more entries than entries.log holds ({size}): entries {size}..{csize} are missing"
                ),
            ));
        }
        let ours = index
            .tree
            .root(csize)
            .map_err(|e| damaged(path, e.to_string()))?;
        if ours != root {
            return Err(damaged(
                path,
                format!(
                    "entries.log does not match the checkpoint of size {csize} (line {n}): the first {csize} entries hash to {ours}, the master signed {root}; an entry below {csize} was changed (the first {good} entries match the checkpoint before it)"
                ),
            ));
        }
        good = good.max(csize);
        notes.checkpoints.insert(csize, c.note.clone());
    }
    Ok(())
}
