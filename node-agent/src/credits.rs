//! `hearth-node credits`: the volunteer's own check of what the ledger says about this node.
//!
//! [`check`] is sans-IO: given the answer of `GET /v1/ledger/nodes/{id}?month=` (design §4), the
//! master's id pinned at enrolment and this node's id, it opens the checkpoint (the master's
//! signature must verify, its origin must be this master's log), checks every entry's inclusion
//! proof at the checkpoint's size against the checkpoint's root with
//! `hearth_ledger::proof::verify_inclusion`, parses every entry and checks it names this node.
//! Any failure names the entry. [`Summary`] then says what the entries say: the logged
//! statement for a closed month, else the month so far from the score and receipt entries.

use hearth_ledger::checkpoint::SignedCheckpoint;
use hearth_ledger::entry::{Body, Entry, leaf_hash};
use hearth_ledger::proof::{InclusionProof, decode_path, verify_inclusion};
use hearth_ledger::{Month, Statement};
use hearth_protocol::{MasterId, NodeId};
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/ledger/nodes/{id}` (the API's `NodeLedger`).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeLedger {
    /// The latest checkpoint, a signed note.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// The node's entries of the month, each with its inclusion proof at `size`.
    pub entries: Vec<ProvenEntry>,
}

/// One entry and its audit path.
#[derive(Debug, Clone, Deserialize)]
pub struct ProvenEntry {
    /// Its index.
    pub seq: u64,
    /// The line as stored.
    pub line: String,
    /// Base64 of the audit path.
    pub path: String,
}

/// Why the ledger's answer cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum CreditsError {
    /// The checkpoint is not this master's, or its signature does not verify.
    #[error("the checkpoint is not signed by this node's master {master}: {reason}")]
    Checkpoint {
        /// The master pinned at enrolment.
        master: MasterId,
        /// Why.
        reason: String,
    },
    /// The answer's size is not the checkpoint's.
    #[error("the answer is at tree size {answer}, its checkpoint at {checkpoint}")]
    Size {
        /// The answer's.
        answer: u64,
        /// The checkpoint's.
        checkpoint: u64,
    },
    /// An entry fails a check.
    #[error("entry {seq}: {reason}")]
    Entry {
        /// The entry's index.
        seq: u64,
        /// Why.
        reason: String,
    },
}

/// What the checked entries say about the month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Entries checked.
    pub entries: usize,
    /// The tree size they were proven at.
    pub size: u64,
    /// The logged statement, once the month is closed.
    pub statement: Option<Statement>,
    /// Scoring windows closed in the month (score entries).
    pub windows: u32,
    /// Probes passed in those windows.
    pub probes_passed: u64,
    /// Probes failed in those windows.
    pub probes_failed: u64,
    /// Mean pass share of those windows, ppm (0 with none).
    pub uptime_ppm: u32,
    /// Receipts credited.
    pub receipts: u64,
    /// Their bytes, both directions.
    pub bytes_served: u64,
    /// Declared power in the latest node entry, watts.
    pub power_w: Option<u32>,
}

/// Checks `answer` (see the module docs) and sums what it says.
pub fn check(
    answer: &NodeLedger,
    master: &MasterId,
    node: &NodeId,
) -> Result<Summary, CreditsError> {
    let signed = SignedCheckpoint::open(&answer.checkpoint, master).map_err(|e| {
        CreditsError::Checkpoint {
            master: *master,
            reason: e.to_string(),
        }
    })?;
    let head = &signed.checkpoint;
    if head.size != answer.size {
        return Err(CreditsError::Size {
            answer: answer.size,
            checkpoint: head.size,
        });
    }
    let mut s = Summary {
        entries: answer.entries.len(),
        size: head.size,
        ..Summary::default()
    };
    let mut shares = 0u64;
    for e in &answer.entries {
        let bad = |reason: String| CreditsError::Entry { seq: e.seq, reason };
        let leaf = leaf_hash(e.line.as_bytes());
        let path = decode_path(&e.path).map_err(|err| bad(err.to_string()))?;
        let proof = InclusionProof {
            seq: e.seq,
            size: head.size,
            leaf_hash: leaf,
            path,
        };
        verify_inclusion(&proof, &leaf, &head.root)
            .map_err(|err| bad(format!("not in the signed tree: {err}")))?;
        let entry = Entry::parse(e.line.as_bytes()).map_err(|err| bad(err.to_string()))?;
        if entry.seq != e.seq {
            return Err(bad(format!("the line says it is entry {}", entry.seq)));
        }
        if entry.body.node() != Some(node) {
            return Err(bad(format!(
                "a {} entry that does not name this node {node}",
                entry.body.kind()
            )));
        }
        match entry.body {
            Body::Score(sc) => {
                s.windows += 1;
                s.probes_passed += u64::from(sc.passed);
                s.probes_failed += u64::from(sc.failed);
                let total = u64::from(sc.passed) + u64::from(sc.failed);
                shares += (u64::from(sc.passed) * 1_000_000)
                    .checked_div(total)
                    .unwrap_or(0);
            }
            Body::Receipt(r) => {
                s.receipts += 1;
                s.bytes_served = s.bytes_served.saturating_add(
                    r.receipt
                        .bytes_from_node
                        .saturating_add(r.receipt.bytes_to_node),
                );
            }
            Body::Node(n) => s.power_w = n.power_w,
            Body::Statement(st) => s.statement = Some(st),
            _ => {}
        }
    }
    s.uptime_ppm =
        u32::try_from(shares.checked_div(u64::from(s.windows)).unwrap_or(0)).unwrap_or(u32::MAX);
    Ok(s)
}

/// The text `hearth-node credits` prints.
pub fn render(month: Month, s: &Summary) -> String {
    let pct = |ppm: u32| format!("{}.{:02} %", ppm / 10_000, ppm % 10_000 / 100);
    let mut out = format!(
        "month:    {month}\nverified: {} entries included in the master-signed tree of size {}\n",
        s.entries, s.size
    );
    if let Some(st) = &s.statement {
        out += &format!(
            "statement (closed month):\n  uptime:        {} over {} of {} windows\n  probes:        {} passed, {} failed\n  bytes served:  {} ({} receipts)\n  credits:       {} cents (fibre {}, bandwidth {})\n  energy:        {} Wh at {} W\n",
            pct(st.uptime_ppm),
            st.node_windows,
            st.fleet_windows,
            st.probes_passed,
            st.probes_failed,
            st.bytes_served,
            st.receipts,
            st.credits_cents,
            st.fibre_credit_cents,
            st.bandwidth_credit_cents,
            st.energy_wh,
            st.power_w
        );
    } else {
        out += &format!(
            "open month, so far (credits and energy are stated when the month closes):\n  uptime:        {} over {} closed windows\n  probes:        {} passed, {} failed\n  bytes served:  {} ({} receipts)\n",
            pct(s.uptime_ppm),
            s.windows,
            s.probes_passed,
            s.probes_failed,
            s.bytes_served,
            s.receipts
        );
        if let Some(w) = s.power_w {
            out += &format!("  power:         {w} W declared\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hearth_ledger::proof::encode_path;
    use hearth_ledger::sample::SampleLog;

    use super::*;

    /// A log with receipts of nodes 0 and 1, and node 0's entries as the master would serve them.
    fn served() -> (SampleLog, NodeId, NodeLedger) {
        let mut log = SampleLog::new(7, 2);
        let node = log.node_ids()[0];
        let mut lines = Vec::new();
        for body in log.preamble() {
            lines.push(log.append(body));
        }
        for i in 0..6 {
            let body = log.receipt(i % 2);
            lines.push(log.append(body));
        }
        let size = log.tree.size();
        let entries = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| Entry::parse(l).expect("entry").body.node() == Some(&node))
            .map(|(seq, l)| {
                let seq = seq as u64;
                let proof = log.tree.inclusion(seq, size).expect("proof");
                ProvenEntry {
                    seq,
                    line: String::from_utf8(l.clone()).expect("utf-8"),
                    path: encode_path(&proof.path),
                }
            })
            .collect();
        let answer = NodeLedger {
            checkpoint: log.checkpoint(),
            size,
            entries,
        };
        (log, node, answer)
    }

    #[test]
    fn a_proven_answer_checks_and_sums_the_receipts() {
        let (log, node, answer) = served();
        let s = check(&answer, &log.master(), &node).expect("checks");
        assert_eq!(s.receipts, 3);
        assert!(s.bytes_served > 0);
        assert!(render(Month::of(log.now_ms), &s).contains("3 receipts"));
    }

    #[test]
    fn each_tampering_is_caught_and_names_the_entry() {
        let (log, node, answer) = served();
        let master = log.master();
        // Another master's checkpoint.
        let other = SampleLog::new(8, 1);
        let err = check(&answer, &other.master(), &node).expect_err("foreign master");
        assert!(matches!(err, CreditsError::Checkpoint { .. }), "{err}");
        // A changed byte in an entry.
        let mut bad = answer.clone();
        let last = bad.entries.len() - 1;
        bad.entries[last].line =
            bad.entries[last]
                .line
                .replacen("\"bytes_to_node\":", "\"bytes_to_node\":1", 1);
        let seq = bad.entries[last].seq;
        match check(&bad, &master, &node).expect_err("changed entry") {
            CreditsError::Entry { seq: s, .. } => assert_eq!(s, seq),
            other => panic!("{other}"),
        }
        // Another node's entry, properly proven.
        let other_node = log.node_ids()[1];
        let err = check(&answer, &master, &other_node).expect_err("not ours");
        assert!(err.to_string().contains("does not name this node"), "{err}");
        // A wrong path.
        let mut bad = answer.clone();
        bad.entries[0].path = bad.entries[1].path.clone();
        assert!(matches!(
            check(&bad, &master, &node),
            Err(CreditsError::Entry { .. })
        ));
    }
}
