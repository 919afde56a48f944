//! `hearth-bench-ledger`: builds an export of 1,000,000 realistic entries (probes answered with
//! real node signatures by 300 node keys, receipts signed by a gateway, one in eight entries),
//! a master-signed checkpoint co-signed by a witness every 10,000 entries, writes it to a
//! temporary file, then times `verify` (with the books replayed, as `hearth ledger verify` does) on one thread with and without the signature checks and
//! prints the proof sizes at 1,000,000. Run with `cargo run --release -p hearth-ledger --bin
//! hearth-bench-ledger [-- --entries N]`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use hearth_ledger::books::Books;
use hearth_ledger::checkpoint::{SignedCheckpoint, WitnessKey, WitnessVkey};
use hearth_ledger::export::{ExportHeader, ExportWriter};
use hearth_ledger::sample::SampleLog;
use hearth_ledger::{VerifyOptions, verify};

const EVERY: u64 = 10_000;
const NODES: usize = 300;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut entries: u64 = 1_000_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--entries" => {
                entries = args.next().ok_or("--entries needs a number")?.parse()?;
            }
            other => return Err(format!("unknown argument `{other}` (use --entries N)").into()),
        }
    }
    let path =
        std::env::temp_dir().join(format!("hearth-bench-ledger-{}.ndjson", std::process::id()));
    let result = run(entries, &path);
    let _ = std::fs::remove_file(&path);
    result
}

fn run(entries: u64, path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let witness = WitnessKey::from_seed("witness.example", &[9; 32])?;
    let mut log = SampleLog::new(1, NODES);
    let t0 = Instant::now();
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut out = ExportWriter::new(file, &ExportHeader::from_start(log.master()), Vec::new())?;
    let mut bodies = log.preamble().into_iter();
    while log.tree.size() < entries {
        let body = match bodies.next() {
            Some(b) => b,
            None => log.next_body(),
        };
        let seq = log.tree.size();
        let line = log.append(body);
        out.entry(seq, &line)?;
        if log.tree.size().is_multiple_of(EVERY) {
            let mut cp = SignedCheckpoint::open(&log.checkpoint(), &log.master())?;
            cp.add_cosignature(&witness.cosign(&cp)?)?;
            out.checkpoint(log.tree.size(), cp.note())?;
        }
    }
    out.finish()?;
    let bytes = std::fs::metadata(path)?.len();
    println!(
        "built an export of {entries} entries ({} checkpoints, {:.1} MB) in {:.1} s",
        entries / EVERY,
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    for signatures in [false, true] {
        let opts = VerifyOptions {
            master: Some(log.master()),
            witnesses: vec![WitnessVkey::parse(witness.vkey())?],
            signatures,
        };
        let t = Instant::now();
        let mut books = Books::new();
        let input = BufReader::with_capacity(1 << 20, File::open(path)?);
        let report = verify(input, &opts, Some(&mut books));
        let secs = t.elapsed().as_secs_f64();
        if !report.ok() {
            return Err(format!(
                "verify failed: {:?} {:?}",
                report.failure,
                report.problems.first()
            )
            .into());
        }
        println!(
            "verify (books replayed), one thread, signatures {}: {secs:.2} s ({:.2} µs/entry; {} entries, {} checkpoints, {} signatures checked)",
            if signatures { "on " } else { "off" },
            secs * 1e6 / entries as f64,
            report.entries,
            report.checkpoints,
            report.signatures_checked
        );
        if !signatures {
            let kinds: Vec<String> = report
                .kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            println!("  entries: {}", kinds.join(", "));
        }
    }

    let size = log.tree.size();
    let inc = log.tree.inclusion(size / 3, size)?;
    println!(
        "inclusion proof at size {size}: {} hashes, {} bytes binary, {} bytes JSON",
        inc.path.len(),
        inc.path_bytes(),
        serde_json::to_string(&inc)?.len()
    );
    let con = log.tree.consistency(size / 2 + 1, size)?;
    println!(
        "consistency proof {} -> {size}: {} hashes, {} bytes binary, {} bytes JSON",
        con.from,
        con.path.len(),
        con.path_bytes(),
        serde_json::to_string(&con)?.len()
    );
    Ok(())
}
