//! `hearth ledger verify` and `hearth ledger witness init` as a user runs them: the real binary
//! on real export files (real signatures), clean and tampered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::process::Command;

use hearth_ledger::books::Books;
use hearth_ledger::export::{ExportHeader, ExportWriter};
use hearth_ledger::render::{Format, render};
use hearth_ledger::sample::SampleLog;

/// An export spanning November 2026's close (so it has score and statement entries).
fn export() -> (String, Books) {
    let mut log = SampleLog::new(21, 4);
    let mut lines = Vec::new();
    for body in log.preamble() {
        lines.push(log.append(body));
    }
    for step in 0..300 {
        if step == 100 {
            log.now_ms += 31 * 86_400_000;
        }
        let b = log.next_body();
        lines.push(log.append(b));
    }
    let cps = vec![(log.tree.size(), log.checkpoint())];
    let mut w =
        ExportWriter::new(Vec::new(), &ExportHeader::from_start(log.master()), cps).unwrap();
    for (i, l) in lines.iter().enumerate() {
        w.entry(i as u64, l).unwrap();
    }
    let books = log.books;
    (String::from_utf8(w.finish().unwrap()).unwrap(), books)
}

fn hearth(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env_remove("HEARTH_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_passes_a_clean_export_and_recomputes_its_statements() {
    let dir = tempfile::tempdir().unwrap();
    let (text, books) = export();
    let file = dir.path().join("ledger.ndjson");
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();
    let (ok, _, err) = hearth(&["ledger", "verify", f]);
    assert!(ok, "{err}");
    assert!(err.contains("entries: 306 verified"), "{err}");
    assert!(err.contains("books: every entry replayed"), "{err}");
    let (ok, out, err) = hearth(&["ledger", "verify", f, "--statements", "2026-11", "--json"]);
    assert!(ok, "{err}");
    let month = "2026-11".parse().unwrap();
    assert_eq!(out, render(&books.statements(month), Format::Json));
    assert!(out.contains("\"credits_cents\""), "{out}");
    let (ok, _, err) = hearth(&["ledger", "verify", f, "--statements", "2026-13"]);
    assert!(!ok && err.contains("--statements 2026-13"), "{err}");
    let (ok, _, err) = hearth(&["ledger", "verify", f, "--witness", "nonsense"]);
    assert!(!ok && err.contains("--witness"), "{err}");
}

#[test]
fn verify_fails_on_a_removed_entry_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = export();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"seq\":40,"))
        .collect();
    let file = dir.path().join("cut.ndjson");
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    let (ok, _, err) = hearth(&["ledger", "verify", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("entry 40 (line 42): missing"), "{err}");
    let (ok, _, err) = hearth(&[
        "ledger",
        "verify",
        dir.path().join("absent").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("cannot open"), "{err}");
}

#[test]
fn witness_init_writes_a_key_and_prints_its_vkey_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let (ok, out, err) = hearth(&[
        "ledger",
        "witness",
        "init",
        "--dir",
        w.to_str().unwrap(),
        "--name",
        "witness.example",
    ]);
    assert!(ok, "{err}");
    let vkey = out.trim();
    assert!(vkey.starts_with("witness.example+"), "{vkey}");
    hearth_ledger::WitnessVkey::parse(vkey).unwrap();
    let key = std::fs::read_to_string(w.join("witness.key")).unwrap();
    assert_eq!(hearth_ledger::WitnessKey::parse(&key).unwrap().vkey(), vkey);
    let (ok, _, err) = hearth(&[
        "ledger",
        "witness",
        "init",
        "--dir",
        w.to_str().unwrap(),
        "--name",
        "witness.example",
    ]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = hearth(&[
        "ledger",
        "witness",
        "init",
        "--dir",
        dir.path().join("x").to_str().unwrap(),
        "--name",
        "bad name",
    ]);
    assert!(!ok && err.contains("witness name"), "{err}");
}
