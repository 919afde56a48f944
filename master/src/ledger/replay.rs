//! Startup: reads `entries.log` back, line by line. A last line without its `\n` is a torn
//! append (the master died before it was synced and answered) and is cut off; every other line
//! must parse and continue the chain (`seq` counts up from 0, `prev` is the leaf hash of the line
//! before), or the master refuses to start, naming the first entry that does not.

use std::io::{BufRead, BufReader, Read};

use hearth_ledger::{Entry, Hash, leaf_hash};

/// Why the log cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A line is not an entry.
    #[error("entries.log line {line} (entry {seq}) is not a ledger entry: {reason}")]
    Malformed { line: u64, seq: u64, reason: String },
    /// An entry out of order.
    #[error(
        "entries.log line {line} holds entry {found}, but entry {seq} belongs there: an entry was removed, inserted or reordered"
    )]
    Seq { line: u64, seq: u64, found: u64 },
    /// A broken hash chain.
    #[error(
        "entry {seq}: its prev {prev} is not the leaf hash {expected} of entry {before}: entry {before} was altered (or this one)",
        before = seq.saturating_sub(1)
    )]
    Chain {
        seq: u64,
        prev: Hash,
        expected: Hash,
    },
    /// The file could not be read.
    #[error("cannot read entries.log: {0}")]
    Io(String),
}

/// One entry read back.
#[derive(Debug)]
pub struct Replayed {
    /// The entry.
    pub entry: Entry,
    /// Its leaf hash.
    pub leaf: Hash,
    /// Offset of its line in the file.
    pub offset: u64,
    /// Length of its line without the `\n`.
    pub len: u32,
}

/// What the read found besides the entries.
#[derive(Debug, PartialEq, Eq)]
pub struct Tail {
    /// Bytes of whole lines: the file's length once a torn tail is cut off.
    pub valid_len: u64,
    /// Bytes of a torn last line (0: none).
    pub torn: u64,
}

/// Reads every entry of `log`, calling `each` in order; stops at the first bad one.
pub fn replay<R: Read>(
    log: R,
    mut each: impl FnMut(Replayed) -> Result<(), ReplayError>,
) -> Result<Tail, ReplayError> {
    let mut reader = BufReader::with_capacity(1 << 20, log);
    let mut line = Vec::with_capacity(1024);
    let mut offset = 0u64;
    let mut seq = 0u64;
    let mut prev = hearth_protocol::Hex([0; 32]);
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| ReplayError::Io(e.to_string()))?;
        if n == 0 {
            return Ok(Tail {
                valid_len: offset,
                torn: 0,
            });
        }
        if line.last() != Some(&b'\n') {
            return Ok(Tail {
                valid_len: offset,
                torn: n as u64,
            });
        }
        let bytes = line.strip_suffix(b"\n").unwrap_or(&line);
        let entry = Entry::parse(bytes).map_err(|e| ReplayError::Malformed {
            line: seq + 1,
            seq,
            reason: e.to_string(),
        })?;
        if entry.seq != seq {
            return Err(ReplayError::Seq {
                line: seq + 1,
                seq,
                found: entry.seq,
            });
        }
        if entry.prev != prev {
            return Err(ReplayError::Chain {
                seq,
                prev: entry.prev,
                expected: prev,
            });
        }
        let leaf = leaf_hash(bytes);
        prev = leaf;
        each(Replayed {
            entry,
            leaf,
            offset,
            len: u32::try_from(n - 1).unwrap_or(u32::MAX),
        })?;
        offset += n as u64;
        seq += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hearth_ledger::{Body, Policy};

    fn log(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = hearth_protocol::Hex([0; 32]);
        for seq in 0..n {
            let e = Entry {
                v: 1,
                seq,
                at_ms: 1000 + seq,
                prev,
                body: Body::Policy(Policy::default()),
            };
            let line = e.to_line();
            prev = leaf_hash(&line);
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
        out
    }

    fn count(bytes: &[u8]) -> Result<(u64, Tail), ReplayError> {
        let mut n = 0;
        let tail = replay(bytes, |_| {
            n += 1;
            Ok(())
        })?;
        Ok((n, tail))
    }

    #[test]
    fn a_whole_log_replays_and_a_torn_tail_is_cut() {
        let full = log(5);
        let (n, tail) = count(&full).unwrap();
        assert_eq!((n, tail.valid_len, tail.torn), (5, full.len() as u64, 0));
        let torn = &full[..full.len() - 7];
        let (n, tail) = count(torn).unwrap();
        assert_eq!(n, 4);
        assert_eq!(tail.torn + tail.valid_len, torn.len() as u64);
        assert!(tail.torn > 0);
    }

    #[test]
    fn an_altered_entry_is_named() {
        let full = String::from_utf8(log(4)).unwrap();
        let altered = full.replacen("\"at_ms\":1001", "\"at_ms\":1009", 1);
        let e = count(altered.as_bytes()).unwrap_err();
        assert!(matches!(e, ReplayError::Chain { seq: 2, .. }), "{e}");
        assert!(e.to_string().contains("entry 1 was altered"), "{e}");
        let lines: Vec<&str> = full.lines().collect();
        let dropped = format!("{}\n{}\n", lines[0], lines[2]);
        let e = count(dropped.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                ReplayError::Seq {
                    line: 2,
                    seq: 1,
                    found: 2
                }
            ),
            "{e}"
        );
        let garbage = format!("{}\nnot json\n", lines[0]);
        let e = count(garbage.as_bytes()).unwrap_err();
        assert!(matches!(e, ReplayError::Malformed { seq: 1, .. }), "{e}");
    }
}
