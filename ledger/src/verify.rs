//! The verifier (SPEC.md §15.7): reads an export and checks everything an auditor can check
//! without the master: the header, every entry's format, seq and `prev` chain, the Merkle root
//! of every checkpoint against the entries, the master's signature and the witnesses'
//! co-signatures on each checkpoint, the node and gateway signatures carried by probes and
//! receipts, and (through an [`Observer`], the books) every logged score, statement and receipt
//! against its recomputation.
//!
//! It streams: memory is the tree's frontier and one line of lookahead, whatever the export's
//! size. It stops at the first structural break (an entry changed, missing, inserted or
//! reordered, a checkpoint that does not match) and pinpoints it by entry index and file line;
//! signature and bookkeeping problems do not break the structure and are all listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, Read};

use ed25519_dalek::VerifyingKey;
use hearth_protocol::MasterId;
use hearth_protocol::messages::audit::AuditAnswer;

use crate::checkpoint::{Checkpoint, SignedCheckpoint, WitnessVkey};
use crate::entry::{Body, Entry, Hash, ProbeOutcome, leaf_hash};
use crate::export::{CheckpointLine, ExportHeader};
use crate::tree::Frontier;

/// A line longer than this (a checkpoint note with many co-signatures is a few KiB) is refused.
pub const MAX_LINE_BYTES: u64 = 1 << 20;
/// Problems kept in the report (all are counted).
pub const MAX_PROBLEMS_KEPT: usize = 1000;

/// What to check.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The master the export must be of (None: the header's, as the summary says).
    pub master: Option<MasterId>,
    /// Witness keys to check co-signatures against.
    pub witnesses: Vec<WitnessVkey>,
    /// Check every passed probe's node signature and every receipt's gateway signature.
    pub signatures: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            master: None,
            witnesses: Vec::new(),
            signatures: true,
        }
    }
}

/// Something fed every entry in order after its structural checks: the books
/// (`Books::observe`), which return an error for a logged entry their recomputation contradicts.
pub trait Observer {
    /// Observes the next entry; `Err(reason)` if it is inconsistent with those before it.
    fn observe(&mut self, entry: &Entry) -> Result<(), String>;
}

impl Observer for crate::books::Books {
    fn observe(&mut self, entry: &Entry) -> Result<(), String> {
        crate::books::Books::observe(self, entry).map_err(|i| i.reason)
    }
}

/// One pinpointed problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entry it is about, if any.
    pub seq: Option<u64>,
    /// The file line (1 = the header).
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "entry {seq} (line {}): {}", self.line, self.what),
            None => write!(f, "line {}: {}", self.line, self.what),
        }
    }
}

/// What the verifier found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The export's header, once read.
    pub header: Option<ExportHeader>,
    /// Entries read and accepted.
    pub entries: u64,
    /// The seq after the last accepted entry.
    pub end: u64,
    /// Entries per kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Checkpoints checked (the header's included).
    pub checkpoints: u64,
    /// The last checkpoint checked.
    pub last_checkpoint: Option<Checkpoint>,
    /// Valid co-signatures per witness name.
    pub cosignatures: BTreeMap<String, u64>,
    /// Co-signers not among the witness keys given.
    pub unknown_witnesses: BTreeSet<String>,
    /// Probe and receipt signatures checked.
    pub signatures_checked: u64,
    /// Bad signatures and book inconsistencies (at most [`MAX_PROBLEMS_KEPT`]).
    pub problems: Vec<Problem>,
    /// All of them, counted.
    pub problems_total: u64,
    /// The structural break that stopped the verification.
    pub failure: Option<Problem>,
    /// Whether the observer (the books) saw every entry: only an export from entry 0 can be
    /// replayed, the books need the whole history.
    pub replayed: bool,
}

impl Report {
    /// Whether nothing at all was wrong.
    pub fn ok(&self) -> bool {
        self.failure.is_none() && self.problems_total == 0
    }

    /// Entries after the last checkpoint: no signature covers them yet.
    pub fn uncovered(&self) -> u64 {
        let covered = self.last_checkpoint.as_ref().map_or(0, |c| c.size);
        self.end.saturating_sub(covered)
    }

    fn problem(&mut self, p: Problem) {
        self.problems_total += 1;
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems.push(p);
        }
    }
}

/// Verifies an export read from `input`.
pub fn verify<'a, R: BufRead>(
    input: R,
    opts: &'a VerifyOptions,
    observer: Option<&'a mut dyn Observer>,
) -> Report {
    let mut v = Verifier {
        lines: Lines {
            input,
            line: 0,
            peeked: None,
        },
        opts,
        observer,
        report: Report::default(),
        frontier: Frontier::new(),
        prev: hearth_protocol::Hex([0; 32]),
        prev_line: 0,
        master: None,
        keys: HashMap::new(),
    };
    if let Err(p) = v.run() {
        v.report.failure = Some(p);
    }
    v.report
}

struct Lines<R> {
    input: R,
    line: u64,
    peeked: Option<(u64, Result<Vec<u8>, String>)>,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> Option<(u64, Result<Vec<u8>, String>)> {
        if let Some(p) = self.peeked.take() {
            return Some(p);
        }
        let mut buf = Vec::new();
        match (&mut self.input)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                } else if buf.len() as u64 > MAX_LINE_BYTES {
                    return Some((
                        self.line,
                        Err(format!("longer than {MAX_LINE_BYTES} bytes")),
                    ));
                }
                Some((self.line, Ok(buf)))
            }
            Err(e) => {
                self.line += 1;
                Some((self.line, Err(format!("cannot read: {e}"))))
            }
        }
    }

    /// The next line as an entry, if it is one (for the diagnosis of a break).
    fn peek_entry(&mut self) -> Option<Entry> {
        if self.peeked.is_none() {
            self.peeked = self.next();
        }
        match &self.peeked {
            Some((_, Ok(bytes))) if !is_checkpoint_line(bytes) => Entry::parse(bytes).ok(),
            _ => None,
        }
    }

    fn peek_bytes(&self) -> Option<&[u8]> {
        match &self.peeked {
            Some((_, Ok(b))) => Some(b),
            _ => None,
        }
    }
}

struct Verifier<'a, R> {
    lines: Lines<R>,
    opts: &'a VerifyOptions,
    observer: Option<&'a mut dyn Observer>,
    report: Report,
    frontier: Frontier,
    prev: Hash,
    prev_line: u64,
    master: Option<MasterId>,
    keys: HashMap<[u8; 32], Option<VerifyingKey>>,
}

fn is_checkpoint_line(bytes: &[u8]) -> bool {
    bytes.starts_with(b"{\"checkpoint\"")
}

fn at(seq: Option<u64>, line: u64, what: impl Into<String>) -> Problem {
    Problem {
        seq,
        line,
        what: what.into(),
    }
}

impl<R: BufRead> Verifier<'_, R> {
    fn run(&mut self) -> Result<(), Problem> {
        let Some((line, bytes)) = self.lines.next() else {
            return Err(at(None, 1, "empty file: no export header"));
        };
        let bytes = bytes.map_err(|e| at(None, line, e))?;
        self.header(&bytes)?;
        while let Some((line, bytes)) = self.lines.next() {
            let bytes = bytes.map_err(|e| at(Some(self.frontier.size()), line, e))?;
            if is_checkpoint_line(&bytes) {
                self.checkpoint(line, &bytes)?;
            } else {
                self.entry(line, &bytes)?;
            }
        }
        Ok(())
    }

    fn header(&mut self, bytes: &[u8]) -> Result<(), Problem> {
        let header: ExportHeader = serde_json::from_slice(bytes)
            .map_err(|e| at(None, 1, format!("not a Hearth ledger export header: {e}")))?;
        let (frontier, prev) = header
            .continuation()
            .map_err(|e| at(None, 1, e.to_string()))?;
        if let Some(want) = self.opts.master
            && want != header.master
        {
            return Err(at(
                None,
                1,
                format!("the export is of master {}, not {want}", header.master),
            ));
        }
        self.master = Some(header.master);
        self.frontier = frontier;
        self.prev = prev;
        self.report.end = header.start;
        self.report.replayed = header.start == 0 && self.observer.is_some();
        if let Some(note) = &header.checkpoint {
            let cp = self.open(1, note)?;
            if cp.checkpoint.size != header.start || cp.checkpoint.root != self.frontier.root() {
                return Err(at(
                    None,
                    1,
                    format!(
                        "the header's prev and prev_path do not lead to its checkpoint (size {}, root {})",
                        cp.checkpoint.size, cp.checkpoint.root
                    ),
                ));
            }
            self.accept_checkpoint(1, cp)?;
        }
        self.report.header = Some(header);
        Ok(())
    }

    fn open(&self, line: u64, note: &str) -> Result<SignedCheckpoint, Problem> {
        let master = self
            .master
            .ok_or_else(|| at(None, line, "no master known"))?;
        SignedCheckpoint::open(note, &master)
            .map_err(|e| at(None, line, format!("checkpoint: {e}")))
    }

    fn checkpoint(&mut self, line: u64, bytes: &[u8]) -> Result<(), Problem> {
        let cl: CheckpointLine = serde_json::from_slice(bytes)
            .map_err(|e| at(None, line, format!("malformed checkpoint line: {e}")))?;
        let cp = self.open(line, &cl.checkpoint)?;
        let (size, have) = (cp.checkpoint.size, self.frontier.size());
        let last = self.report.last_checkpoint.as_ref().map_or(0, |c| c.size);
        if size < last {
            return Err(at(
                None,
                line,
                format!(
                    "the checkpoint of size {size} does not extend the previous one (size {last})"
                ),
            ));
        }
        if size > have {
            return Err(at(
                Some(have),
                line,
                format!(
                    "a checkpoint of size {size} follows entry {}: entries {have}..{} are missing before it",
                    have.wrapping_sub(1),
                    size - 1
                ),
            ));
        }
        if size < have {
            return Err(at(
                Some(size),
                line,
                format!(
                    "the checkpoint of size {size} comes after entry {}, not right after entry {}: \
                     entries were inserted before it, or it was moved",
                    have - 1,
                    size.wrapping_sub(1)
                ),
            ));
        }
        let root = self.frontier.root();
        if cp.checkpoint.root != root {
            let first = last;
            return Err(at(
                size.checked_sub(1),
                line,
                format!(
                    "the checkpoint of size {size} signs root {} but the entries give {root}: entry {} \
                     was changed (the only entry no successor's prev covers), or entries {first}..{} \
                     are not the log the master signed (a forked log)",
                    cp.checkpoint.root,
                    size.saturating_sub(1),
                    size.saturating_sub(1)
                ),
            ));
        }
        self.accept_checkpoint(line, cp)
    }

    fn accept_checkpoint(&mut self, line: u64, cp: SignedCheckpoint) -> Result<(), Problem> {
        let cos = cp.check_cosignatures(&self.opts.witnesses);
        if let Some(bad) = cos.invalid.first() {
            return Err(at(
                None,
                line,
                format!(
                    "the co-signature of witness {bad} on the checkpoint of size {} does not verify",
                    cp.checkpoint.size
                ),
            ));
        }
        for w in cos.valid {
            *self.report.cosignatures.entry(w).or_default() += 1;
        }
        self.report.unknown_witnesses.extend(cos.unknown);
        self.report.checkpoints += 1;
        self.report.last_checkpoint = Some(cp.checkpoint);
        Ok(())
    }

    fn entry(&mut self, line: u64, bytes: &[u8]) -> Result<(), Problem> {
        let next = self.frontier.size();
        let entry = Entry::parse(bytes).map_err(|e| {
            at(
                Some(next),
                line,
                format!("unreadable (changed or corrupted): {e}"),
            )
        })?;
        if entry.seq != next {
            return Err(self.seq_break(line, next, entry.seq));
        }
        if entry.prev != self.prev {
            return Err(self.prev_break(line, next, bytes, &entry));
        }
        let hash = leaf_hash(bytes);
        self.frontier.append(hash);
        self.prev = hash;
        self.prev_line = line;
        self.report.entries += 1;
        self.report.end = next + 1;
        *self.report.kinds.entry(entry.body.kind()).or_default() += 1;
        if self.opts.signatures {
            self.signatures(line, &entry);
        }
        if self.report.replayed
            && let Some(obs) = self.observer.as_deref_mut()
            && let Err(reason) = obs.observe(&entry)
        {
            self.report.problem(at(Some(next), line, reason));
        }
        Ok(())
    }

    fn seq_break(&mut self, line: u64, next: u64, seq: u64) -> Problem {
        let after = self.lines.peek_entry().map(|e| e.seq);
        let what = if seq > next {
            match after {
                Some(a) if a == next => format!(
                    "entries {next} and {seq} are swapped: entry {seq} is on this line, entry {next} on the next"
                ),
                Some(a) if a == next + 1 && seq != next + 1 => {
                    format!("changed: its seq reads {seq} where entry {next} belongs")
                }
                _ if seq == next + 1 => {
                    format!("missing: entry {next} was removed (this line is entry {seq})")
                }
                _ => format!(
                    "missing: entries {next}..{} were removed (this line is entry {seq})",
                    seq - 1
                ),
            }
        } else {
            format!(
                "entry {seq} appears again where entry {next} is due: an entry was inserted or \
                 duplicated, or entries were reordered"
            )
        };
        at(Some(next), line, what)
    }

    fn prev_break(&mut self, line: u64, next: u64, bytes: &[u8], entry: &Entry) -> Problem {
        let start = self.report.header.as_ref().map_or(0, |h| h.start);
        if next == start {
            return at(
                Some(next),
                line,
                format!(
                    "its prev {} is not the header's prev {}",
                    entry.prev, self.prev
                ),
            );
        }
        let prev_seq = next - 1;
        let here = leaf_hash(bytes);
        let chained = self.lines.peek_entry().map(|e| e.prev == here);
        match chained {
            Some(true) => at(
                Some(prev_seq),
                self.prev_line,
                format!(
                    "changed: its leaf hash {} is not the prev {} that entry {next} names",
                    self.prev, entry.prev
                ),
            ),
            Some(false) => at(
                Some(next),
                line,
                format!(
                    "changed: its prev {} is not entry {prev_seq}'s leaf hash {}, and its own leaf hash is not entry {}'s prev",
                    entry.prev,
                    self.prev,
                    next + 1
                ),
            ),
            None => at(
                Some(prev_seq),
                self.prev_line,
                format!(
                    "changed (or entry {next} after it was): its leaf hash {} is not the prev {} that entry {next} names{}",
                    self.prev,
                    entry.prev,
                    if self.lines.peek_bytes().is_some() {
                        ""
                    } else {
                        " (the export ends there)"
                    }
                ),
            ),
        }
    }

    fn signatures(&mut self, line: u64, entry: &Entry) {
        let bad = match &entry.body {
            Body::Probe(p) => match &p.outcome {
                ProbeOutcome::Passed { signature, .. } => {
                    let answer = AuditAnswer {
                        probe: p.probe,
                        nonce: p.nonce,
                        issued_at_ms: p.issued_at_ms,
                        node: p.node,
                        signature: *signature,
                    };
                    let ok = self.check(p.node.as_bytes(), &answer.signing_bytes(), &signature.0);
                    (!ok).then(|| {
                        format!("the probe's node signature by {} does not verify", p.node)
                    })
                }
                ProbeOutcome::Failed { .. } => return,
            },
            Body::Receipt(r) => {
                let rc = &r.receipt;
                let ok = self.check(rc.gateway.as_bytes(), &rc.signing_bytes(), &rc.signature.0);
                (!ok).then(|| {
                    format!(
                        "the receipt's gateway signature by {} does not verify",
                        rc.gateway
                    )
                })
            }
            _ => return,
        };
        self.report.signatures_checked += 1;
        if let Some(what) = bad {
            self.report.problem(at(Some(entry.seq), line, what));
        }
    }

    /// Strict Ed25519 verification (as `hearth_protocol`'s), with each key decompressed once.
    fn check(&mut self, key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
        let vk = self
            .keys
            .entry(*key)
            .or_insert_with(|| VerifyingKey::from_bytes(key).ok());
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        vk.as_ref()
            .is_some_and(|k| k.verify_strict(message, &sig).is_ok())
    }
}
