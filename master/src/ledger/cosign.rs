//! Checkpoints out, co-signatures in: the master signs a checkpoint when the log grew, serves
//! them, and stores a witness's co-signature line once it verifies under the registered key and
//! is over a checkpoint text the master signed.

use hearth_ledger::checkpoint;
use signed_note::Signature as NoteSignature;

use super::notes::{self, CheckpointLine, CosignatureLine};
use super::witnesses::Witness;
use super::{Ledger, LedgerError, lock};

/// A checkpoint, as the routes show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its tree size.
    pub size: u64,
    /// The note with the master's and every co-signature line.
    pub note: String,
}

impl Ledger {
    /// Signs and stores a checkpoint of the current size if the log grew since the last one
    /// (or none was signed). Returns the size signed, if any.
    pub fn sign_checkpoint(&self) -> Result<Option<u64>, LedgerError> {
        let (size, root) = {
            let index = self.index();
            let size = index.tree.size();
            (
                size,
                index
                    .tree
                    .root(size)
                    .map_err(|e| LedgerError::Range(e.to_string()))?,
            )
        };
        let mut notes = lock(&self.shared.notes);
        if let Some((last, _)) = notes.latest()
            && last >= size
        {
            return Ok(None);
        }
        let note = self
            .shared
            .key
            .sign(size, &root)
            .map_err(LedgerError::Write)?;
        let line = CheckpointLine {
            size,
            note: note.clone(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| LedgerError::Write(e.to_string()))?;
        bytes.push(b'\n');
        lock(&self.shared.checkpoints_file)
            .append(&bytes)
            .map_err(|e| LedgerError::Write(format!("checkpoints.log: {e}")))?;
        notes.checkpoints.insert(size, note);
        Ok(Some(size))
    }

    /// The latest checkpoint with its co-signatures.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        let notes = lock(&self.shared.notes);
        let (size, _) = notes.latest()?;
        notes
            .with_cosignatures(size)
            .map(|note| Checkpoint { size, note })
    }

    /// Every checkpoint of size ≥ `since`, oldest first, with co-signatures.
    pub fn checkpoints_since(&self, since: u64) -> Vec<Checkpoint> {
        let notes = lock(&self.shared.notes);
        notes
            .checkpoints
            .range(since..)
            .filter_map(|(size, _)| {
                notes
                    .with_cosignatures(*size)
                    .map(|note| Checkpoint { size: *size, note })
            })
            .collect()
    }

    /// Stores a witness's co-signature: `body` is a checkpoint note (text, blank line, and at
    /// least one signature line by a registered witness). `Ok(true)`: stored; `Ok(false)`: had
    /// every one of them already.
    pub fn add_cosignature(&self, body: &str) -> Result<bool, LedgerError> {
        let bad = LedgerError::BadCosignature;
        let (text, sigs) = body.split_once("\n\n").ok_or_else(|| {
            bad("not a signed note: the checkpoint text, a blank line, then signature lines".into())
        })?;
        let text = format!("{text}\n");
        let cp = checkpoint::Checkpoint::from_text(text.as_bytes())
            .map_err(|e| bad(format!("not a checkpoint: {e}")))?;
        let size = cp.size;
        let signed = {
            let notes = lock(&self.shared.notes);
            notes
                .checkpoints
                .get(&size)
                .map(|n| notes::note_text(n).to_owned())
        };
        match signed {
            None => {
                return Err(LedgerError::NoSuchCheckpoint(format!(
                    "the master signed no checkpoint of size {size}"
                )));
            }
            Some(ours) if ours != text => {
                return Err(bad(format!(
                    "this is not the checkpoint of size {size} the master signed (origin or root differs)"
                )));
            }
            Some(_) => {}
        }
        let registry: Vec<Witness> = lock(&self.shared.witnesses).list().to_vec();
        let mut found = Vec::new();
        for line in sigs.lines().filter(|l| !l.is_empty()) {
            let sig = NoteSignature::from_bytes(line.as_bytes())
                .map_err(|e| bad(format!("`{line}` is not a signature line: {e}")))?;
            let Some(w) = registry.iter().find(|w| w.name == sig.name()) else {
                continue;
            };
            let verifier = notes::witness_verifier(&w.vkey).map_err(LedgerError::Witness)?;
            if !verifier.verify(&text, &sig) {
                return Err(bad(format!(
                    "the signature of witness `{}` does not verify over checkpoint {size} under its registered key",
                    w.name
                )));
            }
            found.push(CosignatureLine {
                size,
                witness: w.name.clone(),
                line: line.to_owned(),
            });
        }
        if found.is_empty() {
            return Err(LedgerError::UnknownWitness(
                "no signature line of the note is by a registered witness (`hearth ledger witness add NAME VKEY`)".into(),
            ));
        }
        let mut notes = lock(&self.shared.notes);
        let mut stored = false;
        for c in found {
            let have = notes.cosignatures.entry(size).or_default();
            if have.iter().any(|h| h.witness == c.witness) {
                continue;
            }
            let mut bytes =
                serde_json::to_vec(&c).map_err(|e| LedgerError::Write(e.to_string()))?;
            bytes.push(b'\n');
            lock(&self.shared.cosignatures_file)
                .append(&bytes)
                .map_err(|e| LedgerError::Write(format!("cosignatures.log: {e}")))?;
            tracing::info!(size, witness = %c.witness, "ledger checkpoint co-signed");
            have.push(c);
            stored = true;
        }
        Ok(stored)
    }

    /// The registered witnesses.
    pub fn witnesses(&self) -> Vec<Witness> {
        lock(&self.shared.witnesses).list().to_vec()
    }

    /// Registers a witness; `Ok(false)`: it was registered already with this key.
    pub fn add_witness(&self, w: Witness) -> Result<bool, LedgerError> {
        Ok(lock(&self.shared.witnesses).add(w)?)
    }

    /// Removes a witness (its stored co-signatures stay: they were valid when made).
    pub fn remove_witness(&self, name: &str) -> Result<Witness, LedgerError> {
        Ok(lock(&self.shared.witnesses).remove(name)?)
    }
}
