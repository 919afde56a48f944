//! The credits ledger end to end, on real masters (and a real agent where probes are needed):
//! an acknowledged entry survives `kill -9` and a torn tail is cut; a tampered log stops the
//! master, naming the entry; a closed month's statements from `hearth credits --json` equal
//! what `hearth ledger verify --statements --json` recomputes from an export, byte for byte;
//! and a master that rewrites its history is caught by a witness that co-signed before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use hearth_ledger::{Body, Entry, Month, leaf_hash};
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, enrol_node};
use hearth_tests::{bin, eventually};

const WAIT: Duration = Duration::from_secs(30);

use hearth_tests::output_text as text;

/// Every entry the master serves, parsed.
async fn entries(m: &MasterProc) -> Vec<Entry> {
    let body = reqwest::get(format!("http://{}/v1/ledger/entries", m.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .map(|l| Entry::parse(l.as_bytes()).unwrap())
        .collect()
}

/// The latest checkpoint note.
async fn checkpoint(m: &MasterProc) -> String {
    reqwest::get(format!("http://{}/v1/ledger/checkpoint", m.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the latest checkpoint covers `size` entries.
async fn checkpointed(m: &MasterProc, size: usize) {
    let ok = eventually(WAIT, async || {
        let note = checkpoint(m).await;
        let s: usize = note.lines().nth(1)?.parse().ok()?;
        (s >= size).then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "no checkpoint of size {size}; log:\n{}",
        m.log()
    );
}

/// Sets a node's admin state through the API (each change is a node entry, appended before
/// the answer).
async fn set_admin(m: &MasterProc, node: &str, action: &str) {
    let (status, v) = m
        .call(
            reqwest::Method::POST,
            &format!("/v1/nodes/{node}/{action}"),
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 200, "{action}: {v}");
}

fn node_entries(all: &[Entry], node: &str) -> usize {
    all.iter()
        .filter(|e| matches!(&e.body, Body::Node(n) if n.node.to_string() == node))
        .count()
}

#[tokio::test]
async fn acknowledged_entries_survive_kill9_and_a_torn_tail_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let (node, _) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let node = node.to_string();
    for i in 0..20 {
        set_admin(&m, &node, if i % 2 == 0 { "reserve" } else { "activate" }).await;
    }
    let before = entries(&m).await;
    assert_eq!(node_entries(&before, &node), 21, "enrolment + 20 changes");

    // kill -9 right after the last answer; then an append that never finished.
    let mut m = m;
    m.kill9();
    let log = m.dir.join("ledger/entries.log");
    let whole = std::fs::read(&log).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"v":1,"seq":99,"at_ms":1,"prev":"00"#);
    std::fs::write(&log, &torn).unwrap();

    let m = m.kill9_and_restart();
    let after = entries(&m).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "every acknowledged entry is there, unchanged"
    );
    assert!(
        m.log().contains("cutting a torn last line"),
        "log:\n{}",
        m.log()
    );
    let now = std::fs::read(&log).unwrap();
    assert!(now.starts_with(&whole) && now.ends_with(b"\n"));
    // The chain goes on from the last whole entry.
    set_admin(&m, &node, "reserve").await;
    let last = entries(&m).await;
    let e = last.last().unwrap();
    assert_eq!(e.seq as usize, last.len() - 1);
    assert_eq!(
        e.prev,
        leaf_hash(&last[last.len() - 2].to_line()),
        "chained to the entry before it"
    );
}

#[tokio::test]
async fn a_tampered_log_stops_the_master_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut m = MasterProc::start(tmp.path(), FAST);
    let (node, _) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    set_admin(&m, &node.to_string(), "reserve").await;
    set_admin(&m, &node.to_string(), "activate").await;
    m.kill9();

    // Entry 1 (the node's enrolment) altered in place: its class.
    let log = m.dir.join("ledger/entries.log");
    let stored = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = stored.lines().collect();
    assert!(lines[1].contains(r#""class":"serving""#), "{}", lines[1]);
    let altered = stored.replacen(
        lines[1],
        &lines[1].replace(r#""class":"serving""#, r#""class":"test""#),
        1,
    );
    std::fs::write(&log, altered).unwrap();

    let out = Command::new(bin("hearth-master"))
        .args(["run", "--data-dir"])
        .arg(&m.dir)
        .args(["--http", "127.0.0.1:0", "--quic", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a tampered ledger must not start");
    let err = text(&out);
    assert!(
        err.contains("entry 1 was altered") && err.contains("refuses to start"),
        "{err}"
    );
}

/// The month before the one holding `now_ms`.
fn previous_month(now_ms: u64) -> Month {
    let this = Month::of(now_ms);
    let mut m = Month::of(this.start_ms() - 1);
    if m == this {
        m = Month::of(this.start_ms().saturating_sub(86_400_000));
    }
    m
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn a_closed_months_credits_equal_the_verifiers_recomputation_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    // The master lives in the last minutes of last month: probes land there.
    let month = previous_month(now_ms());
    let offset = (month.end_ms() as i64 - 600_000) - now_ms() as i64;
    let offset = offset.to_string();
    let mut args = FAST.to_vec();
    args.extend(["--probe-mean", "100ms"]);
    let m = MasterProc::start_env(
        tmp.path(),
        &args,
        &[("HEARTH_TEST_CLOCK_OFFSET_MS", offset.as_str())],
    );
    let agent = NodeProc::enrol_and_run(&tmp.path().join("agent"), m.quic, &m.token(&[]));
    let node = agent.status()["node"].as_str().unwrap().to_owned();
    let probed = eventually(WAIT, async || {
        let n = entries(&m)
            .await
            .iter()
            .filter(|e| matches!(&e.body, Body::Probe(p) if p.node.to_string() == node))
            .count();
        (n >= 5).then_some(n)
    })
    .await;
    assert!(probed.is_some(), "no probes logged; log:\n{}", m.log());

    // Back to the real date: the month closed; the master states it at start.
    let m = m.kill9_and_restart_env(&[]);
    let stated = eventually(WAIT, async || {
        let (s, v) = m.get(&format!("/v1/credits?month={month}")).await;
        (s == 200 && v["provisional"] == false).then_some(v)
    })
    .await;
    let v = stated.unwrap_or_else(|| panic!("{month} never stated; log:\n{}", m.log()));
    assert!(
        v["statements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["node"] == node.as_str() && s["probes_passed"].as_u64() > Some(0)),
        "{v}"
    );

    let credits = m.cli(&["credits", "--month", &month.to_string(), "--json"]);
    assert!(credits.status.success(), "{}", text(&credits));
    let export = tmp.path().join("ledger.export");
    let out = m.cli(&["ledger", "export", "--out", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let verify = Command::new(bin("hearth"))
        .args(["ledger", "verify"])
        .arg(&export)
        .args(["--statements", &month.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        String::from_utf8_lossy(&credits.stdout).contains(&node),
        "{}",
        text(&credits)
    );
    assert_eq!(
        String::from_utf8_lossy(&credits.stdout),
        String::from_utf8_lossy(&verify.stdout),
        "hearth credits --json and the verifier's recomputation differ"
    );
    drop(agent);
}

/// `hearth ledger witness run --dir DIR --once`.
fn witness_once(m: &MasterProc, dir: &Path) -> Output {
    m.cli(&[
        "ledger",
        "witness",
        "run",
        "--dir",
        dir.to_str().unwrap(),
        "--once",
    ])
}

/// Rewrites entry 1 and every later line consistently (seq kept, prev re-chained).
fn fork(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut prev = hearth_protocol::Hex([0u8; 32]);
    let mut out = String::new();
    for line in text.lines() {
        let mut e = Entry::parse(line.as_bytes()).unwrap();
        if e.seq == 1 {
            match &mut e.body {
                Body::Node(n) => n.class = hearth_ledger::NodeClass::Test,
                other => panic!("entry 1 is {other:?}"),
            }
        }
        e.prev = prev;
        let l = e.to_line();
        prev = leaf_hash(&l);
        out.push_str(std::str::from_utf8(&l).unwrap());
        out.push('\n');
    }
    std::fs::write(log, out).unwrap();
}

#[tokio::test]
async fn a_master_that_rewrites_history_is_caught_by_its_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend(["--checkpoint-interval", "100ms"]);
    let m = MasterProc::start(tmp.path(), &args);
    let (node, _) = enrol_node(&tmp.path().join("n"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let node = node.to_string();

    let wdir = tmp.path().join("witness");
    let init = m.cli(&[
        "ledger",
        "witness",
        "init",
        "--dir",
        wdir.to_str().unwrap(),
        "--name",
        "w1",
    ]);
    assert!(init.status.success(), "{}", text(&init));
    let vkey = std::fs::read_to_string(wdir.join("witness.vkey")).unwrap();
    let add = m.cli(&["ledger", "witness", "add", "w1", vkey.trim()]);
    assert!(add.status.success(), "{}", text(&add));

    // The witness co-signs, and again once the log grew (a consistency proof between).
    checkpointed(&m, entries(&m).await.len()).await;
    let out = witness_once(&m, &wdir);
    assert!(out.status.success(), "{}", text(&out));
    set_admin(&m, &node, "reserve").await;
    set_admin(&m, &node, "activate").await;
    let size = entries(&m).await.len();
    checkpointed(&m, size).await;
    let out = witness_once(&m, &wdir);
    assert!(out.status.success(), "{}", text(&out));
    let note = checkpoint(&m).await;
    assert!(note.contains("\n— w1 "), "co-signature served: {note}");

    // A malicious master: history rewritten consistently, its checkpoints thrown away.
    let mut m = m;
    m.kill9();
    let ledger = m.dir.join("ledger");
    fork(&ledger.join("entries.log"));
    std::fs::remove_file(ledger.join("checkpoints.log")).unwrap();
    std::fs::remove_file(ledger.join("cosignatures.log")).unwrap();
    let m = m.kill9_and_restart();
    checkpointed(&m, size).await;

    let out = witness_once(&m, &wdir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FORK"), "{}", text(&out));
    let note = checkpoint(&m).await;
    assert!(
        !note.contains("— w1 "),
        "the forked checkpoint carries no co-signature: {note}"
    );
    assert!(
        wdir.join("evidence").read_dir().unwrap().next().is_some(),
        "the witness kept the evidence"
    );
}
