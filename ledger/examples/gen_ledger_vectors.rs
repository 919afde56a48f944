//! Writes the ledger's golden vectors (SPEC.md §15): `cargo run -p hearth-ledger --example
//! gen_ledger_vectors -- ledger/vectors`. Everything is derived from fixed seeds, so a run reproduces
//! the committed file byte for byte; `ledger/tests/vectors.rs` recomputes every value from the
//! file's inputs.

use hearth_ledger::checkpoint::{SignedCheckpoint, WitnessKey, master_vkey};
use hearth_ledger::export::{ExportHeader, ExportWriter};
use hearth_ledger::sample::SampleLog;
use hearth_ledger::{leaf_hash, proof::encode_path};
use serde_json::json;

/// (seq, size) pairs of the inclusion vectors.
const INCLUSION: [(u64, u64); 5] = [(0, 1), (0, 7), (2, 7), (4, 5), (6, 7)];
/// (from, to) pairs of the consistency vectors.
const CONSISTENCY: [(u64, u64); 5] = [(0, 7), (1, 7), (3, 7), (4, 7), (6, 7)];
const WITNESS_SEED: [u8; 32] = [0x42; 32];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: gen_ledger_vectors DIR")?;
    let mut log = SampleLog::new(2026, 2);
    let mut lines = Vec::new();
    for body in log.preamble() {
        lines.push(log.append(body));
    }
    let probe = log.probe_body(0, true);
    lines.push(log.append(probe));
    let probe = log.probe_body(1, false);
    lines.push(log.append(probe));
    let receipt = log.receipt(1);
    lines.push(log.append(receipt));
    let entries: Vec<_> = lines
        .iter()
        .map(|l| json!({ "line": String::from_utf8_lossy(l), "leaf_hash": leaf_hash(l).to_string() }))
        .collect();
    let tree = &log.tree;
    let roots: Vec<String> = (0..=tree.size())
        .map(|s| tree.root(s).map(|r| r.to_string()))
        .collect::<Result<_, _>>()?;
    let inclusion: Vec<_> = INCLUSION
        .iter()
        .map(|&(seq, size)| tree.inclusion(seq, size))
        .collect::<Result<_, _>>()?;
    let consistency: Vec<_> = CONSISTENCY
        .iter()
        .map(|&(a, b)| tree.consistency(a, b))
        .collect::<Result<_, _>>()?;
    let note = log.checkpoint();
    let mut cp = SignedCheckpoint::open(&note, &log.master())?;
    let witness = WitnessKey::from_seed("witness.example", &WITNESS_SEED)?;
    let line = witness.cosign(&cp)?;
    cp.add_cosignature(&line)?;
    let mut export = ExportWriter::new(
        Vec::new(),
        &ExportHeader::from_start(log.master()),
        vec![(tree.size(), cp.note())],
    )?;
    for (seq, l) in lines.iter().enumerate() {
        export.entry(seq as u64, l)?;
    }
    let export = String::from_utf8(export.finish()?)?;
    let frontier = tree.frontier(tree.size())?;
    let doc = json!({
        "about": "Hearth ledger vectors (SPEC.md §15). Entry lines are the leaf bytes; hashes hex; proof paths base64 of concatenated 32-byte hashes (RFC 9162 order). Regenerate: cargo run -p hearth-ledger --example gen_ledger_vectors -- ledger/vectors",
        "entries": entries,
        "tree": {
            "roots": roots,
            "frontier_at_7": frontier.hashes().iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "frontier_at_7_path": encode_path(&frontier.hashes()),
        },
        "inclusion": inclusion,
        "consistency": consistency,
        "checkpoint": {
            "master_seed": hex(&log.master_key().seed()),
            "master": log.master().to_string(),
            "vkey": master_vkey(&log.master()),
            "note": note,
        },
        "cosignature": {
            "witness_seed": hex(&WITNESS_SEED),
            "name": "witness.example",
            "skey": witness.to_text(),
            "vkey": witness.vkey(),
            "line": line,
            "note": cp.note(),
        },
        "export": export,
    });
    let path = std::path::Path::new(&dir).join("ledger-v1.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n")?;
    println!("wrote {}", path.display());
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
