//! The export file (SPEC.md §15.6): a ledger, or its tail, as one ndjson file an auditor can
//! verify alone.
//!
//! Line 1 is the header `{"hearth_ledger_export":1,"origin":..,"master":"hm-..","start":S}`.
//! Then every entry line from `S` on, exactly as stored, and after the entry that completes a
//! checkpoint's size, that checkpoint as `{"checkpoint":"<note with co-signatures>"}` (a
//! checkpoint of size 0 or `S` comes right after the header). An export with `start` > 0
//! begins at a checkpoint: its header also carries that checkpoint's note (`checkpoint`), the
//! leaf hash of entry `S - 1` (`prev`, which entry `S` must name) and that entry's inclusion
//! path at size `S` (`prev_path`). The path both proves `prev` under the signed root and
//! gives the tree's frontier at `S` (see [`Frontier::from_last_leaf`]), so the verifier
//! continues the tree and the chain without the earlier entries.

use std::io::Write;

use hearth_protocol::MasterId;
use serde::{Deserialize, Serialize};

use crate::entry::Hash;
use crate::proof::{decode_path, encode_path};
use crate::tree::Frontier;

/// The export format's version (the header's `hearth_ledger_export`).
pub const EXPORT_VERSION: u32 = 1;

/// The header line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// [`EXPORT_VERSION`].
    pub hearth_ledger_export: u32,
    /// `hearth-ledger/<master id>`.
    pub origin: String,
    /// The master whose key signs the checkpoints.
    pub master: MasterId,
    /// The first entry's seq.
    pub start: u64,
    /// With `start` > 0: the leaf hash of entry `start - 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Hash>,
    /// With `start` > 0: entry `start - 1`'s inclusion path at size `start` (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_path: Option<String>,
    /// With `start` > 0: the checkpoint note of size `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// A checkpoint line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// The note, with its master signature and co-signatures.
    pub checkpoint: String,
}

/// Why an export could not be written or its header read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// An entry out of order for the export being written.
    #[error("entry line {got} given where entry {expected} was due")]
    OutOfOrder {
        /// The seq due.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// A header that does not hold together.
    #[error("bad export header: {0}")]
    Header(String),
}

impl ExportHeader {
    /// The header of an export from entry 0.
    pub fn from_start(master: MasterId) -> Self {
        Self {
            hearth_ledger_export: EXPORT_VERSION,
            origin: crate::checkpoint::origin_for(&master),
            master,
            start: 0,
            prev: None,
            prev_path: None,
            checkpoint: None,
        }
    }

    /// The header of an export from `start` > 0: the checkpoint note of that size, and entry
    /// `start - 1`'s leaf hash and inclusion path at `start`.
    pub fn from_checkpoint(
        master: MasterId,
        start: u64,
        note: String,
        prev: Hash,
        prev_path: &[Hash],
    ) -> Self {
        Self {
            start,
            prev: Some(prev),
            prev_path: Some(encode_path(prev_path)),
            checkpoint: Some(note),
            ..Self::from_start(master)
        }
    }

    /// The tree frontier and `prev` to continue from (empty and zeros from entry 0). Says
    /// why if the fields for `start` > 0 are missing or do not fit; whether they match the
    /// signed checkpoint is the verifier's check.
    pub fn continuation(&self) -> Result<(Frontier, Hash), ExportError> {
        if self.hearth_ledger_export != EXPORT_VERSION {
            return Err(ExportError::Header(format!(
                "export format version {} is not supported (this verifier reads {EXPORT_VERSION})",
                self.hearth_ledger_export
            )));
        }
        if self.origin != crate::checkpoint::origin_for(&self.master) {
            return Err(ExportError::Header(format!(
                "origin `{}` is not the master's `hearth-ledger/{}`",
                self.origin, self.master
            )));
        }
        if self.start == 0 {
            return Ok((Frontier::new(), hearth_protocol::Hex([0; 32])));
        }
        let (Some(prev), Some(path), Some(_)) = (self.prev, &self.prev_path, &self.checkpoint)
        else {
            return Err(ExportError::Header(format!(
                "start {} > 0 needs `prev`, `prev_path` and `checkpoint`",
                self.start
            )));
        };
        let path = decode_path(path).map_err(|e| ExportError::Header(e.to_string()))?;
        let frontier = Frontier::from_last_leaf(self.start, prev, &path)
            .map_err(|e| ExportError::Header(format!("prev_path: {e}")))?;
        Ok((frontier, prev))
    }
}

/// Writes an export: the header, then entry lines in order, each followed by the checkpoints
/// it completes.
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    next: u64,
    /// Checkpoints not written yet, (size, note), sorted by size.
    checkpoints: std::collections::VecDeque<(u64, String)>,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export: writes the header, then any checkpoint of size `header.start` other
    /// than the header's own. `checkpoints` are (size, note); those below `start` are dropped.
    pub fn new(
        mut out: W,
        header: &ExportHeader,
        mut checkpoints: Vec<(u64, String)>,
    ) -> Result<Self, ExportError> {
        let line = serde_json::to_string(header).map_err(|e| ExportError::Header(e.to_string()))?;
        writeln!(out, "{line}")?;
        checkpoints.retain(|(size, _)| *size >= header.start);
        checkpoints.sort_by_key(|(size, _)| *size);
        if header.start > 0 {
            // the header's checkpoint is already there
            checkpoints.retain(|(size, _)| *size > header.start);
        }
        let mut w = Self {
            out,
            next: header.start,
            checkpoints: checkpoints.into(),
        };
        w.flush_checkpoints()?;
        Ok(w)
    }

    /// Writes entry `seq`'s line (no newline in `line`).
    pub fn entry(&mut self, seq: u64, line: &[u8]) -> Result<(), ExportError> {
        if seq != self.next {
            return Err(ExportError::OutOfOrder {
                expected: self.next,
                got: seq,
            });
        }
        self.out.write_all(line)?;
        self.out.write_all(b"\n")?;
        self.next += 1;
        self.flush_checkpoints()
    }

    /// Adds a checkpoint learnt after the writer started (size ≥ the next entry's seq).
    pub fn checkpoint(&mut self, size: u64, note: String) -> Result<(), ExportError> {
        if size >= self.next {
            let at = self.checkpoints.partition_point(|(s, _)| *s <= size);
            self.checkpoints.insert(at, (size, note));
        }
        self.flush_checkpoints()
    }

    /// The next entry due.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Flushes and returns the output. Checkpoints beyond the last entry are left out.
    pub fn finish(mut self) -> Result<W, ExportError> {
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_checkpoints(&mut self) -> Result<(), ExportError> {
        while let Some((size, note)) = self.checkpoints.front() {
            if *size > self.next {
                break;
            }
            let line = serde_json::to_string(&CheckpointLine {
                checkpoint: note.clone(),
            })
            .map_err(|e| ExportError::Header(e.to_string()))?;
            writeln!(self.out, "{line}")?;
            self.checkpoints.pop_front();
        }
        Ok(())
    }
}
