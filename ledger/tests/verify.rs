//! The verifier against real exports (real signatures, real tree) and tampered copies of them:
//! each tamper must be pinpointed at the entry it touched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_ledger::checkpoint::WitnessKey;
use hearth_ledger::export::{ExportHeader, ExportWriter};
use hearth_ledger::sample::SampleLog;
use hearth_ledger::{Body, Report, VerifyOptions, WitnessVkey, verify};

const N: u64 = 200;
const EVERY: u64 = 50;

fn witness() -> WitnessKey {
    WitnessKey::from_seed("witness.example", &[9; 32]).unwrap()
}

/// A log of N entries, a checkpoint every EVERY entries co-signed by the witness; returns the
/// export's lines.
fn export_lines(seed: u64) -> (SampleLog, Vec<String>) {
    let mut log = SampleLog::new(seed, 12);
    let mut lines = Vec::new();
    let mut checkpoints = Vec::new();
    let w = witness();
    for body in log.preamble() {
        lines.push(log.append(body));
    }
    while log.tree.size() < N {
        let body = log.next_body();
        lines.push(log.append(body));
        if log.tree.size().is_multiple_of(EVERY) {
            let note = log.checkpoint();
            let mut cp = hearth_ledger::SignedCheckpoint::open(&note, &log.master()).unwrap();
            cp.add_cosignature(&w.cosign(&cp).unwrap()).unwrap();
            checkpoints.push((log.tree.size(), cp.note()));
        }
    }
    let mut out = ExportWriter::new(
        Vec::new(),
        &ExportHeader::from_start(log.master()),
        checkpoints,
    )
    .unwrap();
    for (seq, line) in lines.iter().enumerate() {
        out.entry(seq as u64, line).unwrap();
    }
    let text = String::from_utf8(out.finish().unwrap()).unwrap();
    (log, text.lines().map(str::to_owned).collect())
}

fn run(lines: &[String]) -> Report {
    let opts = VerifyOptions {
        witnesses: vec![WitnessVkey::parse(witness().vkey()).unwrap()],
        ..Default::default()
    };
    let text = lines.join("\n") + "\n";
    let mut books = hearth_ledger::books::Books::new();
    verify(text.as_bytes(), &opts, Some(&mut books))
}

/// The file index (0-based) of entry `seq`'s line.
fn line_of(lines: &[String], seq: u64) -> usize {
    let tag = format!("\"seq\":{seq},");
    lines.iter().position(|l| l.contains(&tag)).unwrap()
}

fn failure(r: &Report) -> (Option<u64>, u64, String) {
    let f = r
        .failure
        .clone()
        .unwrap_or_else(|| panic!("no failure; report {r:?}"));
    (f.seq, f.line, f.to_string())
}

#[test]
fn a_clean_export_verifies() {
    let (_, lines) = export_lines(1);
    let r = run(&lines);
    assert!(r.ok(), "{:?} {:?}", r.failure, r.problems);
    assert_eq!(
        (r.entries, r.end, r.checkpoints, r.uncovered()),
        (N, N, N / EVERY, 0)
    );
    assert_eq!(r.cosignatures.get("witness.example"), Some(&(N / EVERY)));
    assert!(r.signatures_checked > 100, "{}", r.signatures_checked);
    assert_eq!(r.kinds.get("node"), Some(&12));
}

#[test]
fn one_changed_byte_is_pinpointed() {
    let (_, mut lines) = export_lines(2);
    for k in [77u64, 120] {
        let mut copy = lines.clone();
        let i = line_of(&copy, k);
        copy[i] = copy[i].replacen("\"at_ms\":1", "\"at_ms\":2", 1);
        let (seq, line, text) = failure(&run(&copy));
        assert_eq!((seq, line), (Some(k), i as u64 + 1), "{text}");
        assert!(text.contains("changed"), "{text}");
    }
    // the last entry before a checkpoint: only the root shows it
    let i = line_of(&lines, EVERY - 1);
    lines[i] = lines[i].replacen("\"at_ms\":1", "\"at_ms\":2", 1);
    let (seq, _, text) = failure(&run(&lines));
    assert_eq!(seq, Some(EVERY - 1), "{text}");
    assert!(text.contains("checkpoint of size 50"), "{text}");
}

#[test]
fn a_removed_entry_is_pinpointed() {
    let (_, mut lines) = export_lines(3);
    let i = line_of(&lines, 33);
    lines.remove(i);
    let (seq, line, text) = failure(&run(&lines));
    assert_eq!((seq, line), (Some(33), i as u64 + 1), "{text}");
    assert!(text.contains("removed"), "{text}");
}

#[test]
fn swapped_entries_are_pinpointed() {
    let (_, mut lines) = export_lines(4);
    let i = line_of(&lines, 140);
    lines.swap(i, i + 1);
    let (seq, _, text) = failure(&run(&lines));
    assert_eq!(seq, Some(140), "{text}");
    assert!(text.contains("swapped"), "{text}");
}

#[test]
fn an_inserted_entry_is_pinpointed() {
    let (_, mut lines) = export_lines(5);
    let i = line_of(&lines, 60);
    let dup = lines[i].clone();
    lines.insert(i + 1, dup);
    let (seq, line, text) = failure(&run(&lines));
    assert_eq!((seq, line), (Some(61), i as u64 + 2), "{text}");
    assert!(text.contains("inserted"), "{text}");
}

#[test]
fn a_checkpoint_from_a_forked_log_is_pinpointed() {
    let (_, mut lines) = export_lines(6);
    // the same master key, other entries: sign a checkpoint of size 100 over them
    let mut forked = SampleLog::new(6, 12);
    for body in forked.preamble() {
        forked.append(body);
    }
    while forked.tree.size() < 100 {
        let b = forked.probe_body(1, false);
        forked.append(b);
    }
    let note = forked.checkpoint();
    let line = serde_json::json!({ "checkpoint": note }).to_string();
    let i = lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\"") && l.contains("\\n100\\n"))
        .unwrap();
    lines[i] = line;
    let (seq, at, text) = failure(&run(&lines));
    assert_eq!((seq, at), (Some(99), i as u64 + 1), "{text}");
    assert!(text.contains("forked"), "{text}");
}

#[test]
fn a_bad_probe_signature_is_listed_not_fatal() {
    let mut log = SampleLog::new(7, 3);
    let mut lines = Vec::new();
    for body in log.preamble() {
        lines.push(log.append(body));
    }
    let mut b = log.probe_body(0, true);
    if let Body::Probe(p) = &mut b
        && let hearth_ledger::entry::ProbeOutcome::Passed { signature, .. } = &mut p.outcome
    {
        signature.0[0] ^= 1;
    }
    lines.push(log.append(b));
    let cps = vec![(log.tree.size(), log.checkpoint())];
    let mut out =
        ExportWriter::new(Vec::new(), &ExportHeader::from_start(log.master()), cps).unwrap();
    for (seq, l) in lines.iter().enumerate() {
        out.entry(seq as u64, l).unwrap();
    }
    let text = out.finish().unwrap();
    let r = verify(&text[..], &VerifyOptions::default(), None);
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.problems_total, 1);
    assert_eq!(r.problems[0].seq, Some(5));
    assert!(r.problems[0].to_string().contains("does not verify"));
    let r = verify(
        &text[..],
        &VerifyOptions {
            signatures: false,
            ..Default::default()
        },
        None,
    );
    assert!(r.ok());
}

#[test]
fn an_export_from_a_checkpoint_continues_the_tree_and_chain() {
    let (log, lines) = export_lines(8);
    let start = 100u64;
    let proof = log.tree.inclusion(start - 1, start).unwrap();
    // the checkpoint of size 100 as the export has it
    let cp_line = lines
        .iter()
        .find(|l| l.starts_with("{\"checkpoint\"") && l.contains("\\n100\\n"))
        .unwrap();
    let note: serde_json::Value = serde_json::from_str(cp_line).unwrap();
    let note = note["checkpoint"].as_str().unwrap().to_owned();
    let header =
        ExportHeader::from_checkpoint(log.master(), start, note, proof.leaf_hash, &proof.path);
    let mut tail = vec![serde_json::to_string(&header).unwrap()];
    let first = line_of(&lines, start);
    tail.extend(lines[first..].iter().cloned());
    let r = run(&tail);
    assert!(r.ok(), "{:?}", r.failure);
    assert_eq!((r.entries, r.end, r.checkpoints), (N - start, N, 3));
    // a wrong prev in the header
    let mut bad = header.clone();
    bad.prev = Some(hearth_ledger::leaf_hash(b"other"));
    tail[0] = serde_json::to_string(&bad).unwrap();
    let (seq, line, text) = failure(&run(&tail));
    assert_eq!((seq, line), (None, 1), "{text}");
}

#[test]
fn a_wrong_master_or_header_is_refused() {
    let (_, lines) = export_lines(9);
    let other = SampleLog::new(99, 1).master();
    let text = lines.join("\n");
    let r = verify(
        text.as_bytes(),
        &VerifyOptions {
            master: Some(other),
            ..Default::default()
        },
        None,
    );
    assert!(failure(&r).2.contains("not"), "{:?}", r.failure);
    let r = verify(&b"{\"nope\":1}\n"[..], &VerifyOptions::default(), None);
    assert_eq!(failure(&r).1, 1);
    let r = verify(&b""[..], &VerifyOptions::default(), None);
    assert!(r.failure.is_some());
}

#[test]
fn a_forged_cosignature_is_refused() {
    let (_, mut lines) = export_lines(10);
    let i = lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\""))
        .unwrap();
    // the witness's line from checkpoint 100 pasted onto checkpoint 50
    let j = lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\"") && l.contains("\\n100\\n"))
        .unwrap();
    let cos = |l: &str| {
        l.split("\\n")
            .find(|p| p.contains("witness.example"))
            .unwrap()
            .to_owned()
    };
    let (good, other) = (cos(&lines[i]), cos(&lines[j]));
    lines[i] = lines[i].replace(&good, &other);
    let (_, line, text) = failure(&run(&lines));
    assert_eq!(line, i as u64 + 1, "{text}");
    assert!(text.contains("co-signature"), "{text}");
}

/// A log spanning a window close and a month close, so it carries score and statement entries
/// from the books; `alter` may change one body before it is appended.
fn closed_month_export(alter: impl Fn(&mut Body) -> bool) -> (Vec<u8>, Option<u64>) {
    let mut log = SampleLog::new(11, 5);
    let mut lines = Vec::new();
    let mut altered = None;
    for body in log.preamble() {
        lines.push(log.append(body));
    }
    for step in 0..400 {
        if step == 150 {
            // a month later: November's windows and the month itself are closed
            log.now_ms += 31 * 86_400_000;
        }
        let mut body = log.next_body();
        if altered.is_none() && alter(&mut body) {
            altered = Some(log.tree.size());
        }
        lines.push(log.append(body));
    }
    let cps = vec![(log.tree.size(), log.checkpoint())];
    let mut out =
        ExportWriter::new(Vec::new(), &ExportHeader::from_start(log.master()), cps).unwrap();
    for (seq, l) in lines.iter().enumerate() {
        out.entry(seq as u64, l).unwrap();
    }
    (out.finish().unwrap(), altered)
}

#[test]
fn the_books_replay_an_export_and_recompute_its_statements() {
    let (text, _) = closed_month_export(|_| false);
    let mut books = hearth_ledger::books::Books::new();
    let r = verify(&text[..], &VerifyOptions::default(), Some(&mut books));
    assert!(r.ok() && r.replayed, "{:?} {:?}", r.failure, r.problems);
    assert_eq!(r.kinds.get("statement"), Some(&5), "{:?}", r.kinds);
    assert!(
        r.kinds.get("score").is_some_and(|n| *n >= 5),
        "{:?}",
        r.kinds
    );
    let month: hearth_ledger::Month = "2026-11".parse().unwrap();
    let statements = books.statements(month);
    assert_eq!(statements.len(), 5);
    assert!(
        statements
            .iter()
            .all(|s| s.probes_passed + s.probes_failed > 0)
    );
}

#[test]
fn a_wrong_statement_is_pinpointed_by_the_books() {
    let (text, altered) = closed_month_export(|b| match b {
        Body::Statement(s) => {
            s.credits_cents += 1;
            true
        }
        _ => false,
    });
    let seq = altered.expect("a statement entry");
    let mut books = hearth_ledger::books::Books::new();
    let r = verify(&text[..], &VerifyOptions::default(), Some(&mut books));
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.problems_total, 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].seq, Some(seq), "{}", r.problems[0]);
}
