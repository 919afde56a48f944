//! `hearth ledger` against a real master: export the ledger and verify the file alone, prove
//! an entry's inclusion, and a witness that registers, co-signs and is then seen by the
//! verifier; an export from a checkpoint (`--since`) verifies too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::enrol_node;

const WAIT: Duration = Duration::from_secs(20);

use hearth_tests::output_text as text;

/// The size of the master's latest checkpoint, once it is at least `min`.
async fn checkpoint_at_least(m: &MasterProc, min: u64) -> Option<u64> {
    eventually(WAIT, async || {
        let (status, v) = m
            .call(reqwest::Method::GET, "/v1/ledger/checkpoint", None, None)
            .await;
        let note = v.as_str()?.to_owned();
        let size: u64 = note.lines().nth(1)?.parse().ok()?;
        (status == 200 && size >= min).then_some(size)
    })
    .await
}

#[tokio::test]
async fn export_verify_prove_and_a_witness_against_a_real_master() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend_from_slice(&["--checkpoint-interval", "200ms"]);
    let m = MasterProc::start(tmp.path(), &args);
    let master = m.id.to_string();
    enrol_node(&tmp.path().join("n1"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let first = checkpoint_at_least(&m, 2).await;
    assert!(first.is_some(), "no checkpoint; log:\n{}", m.log());

    // export, verify alone
    let file = tmp.path().join("ledger.ndjson");
    let out = m.cli(&["ledger", "export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = m.cli(&[
        "ledger",
        "verify",
        file.to_str().unwrap(),
        "--master",
        &master,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("books: every entry replayed"),
        "{}",
        text(&out)
    );

    // prove entry 0
    let out = m.cli(&["ledger", "prove", "0", "--master", &master]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("verified: entry 0 is in"),
        "{}",
        text(&out)
    );
    let out = m.cli(&["ledger", "prove", "100000"]);
    assert!(
        !out.status.success() && text(&out).contains("not covered"),
        "{}",
        text(&out)
    );

    // a witness: init, register, co-sign once
    let wdir = tmp.path().join("witness");
    let out = m.cli(&[
        "ledger",
        "witness",
        "init",
        "--dir",
        wdir.to_str().unwrap(),
        "--name",
        "w1.example",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let vkey = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let once = m.cli(&[
        "ledger",
        "witness",
        "run",
        "--dir",
        wdir.to_str().unwrap(),
        "--once",
    ]);
    assert!(
        !once.status.success(),
        "an unregistered witness is refused: {}",
        text(&once)
    );
    let body = serde_json::json!({ "name": "w1.example", "vkey": vkey }).to_string();
    let (status, v) = m
        .call(
            reqwest::Method::POST,
            "/v1/ledger/witnesses",
            Some(&body),
            Some(&m.token),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {v}");
    let once = m.cli(&[
        "ledger",
        "witness",
        "run",
        "--dir",
        wdir.to_str().unwrap(),
        "--once",
    ]);
    assert!(once.status.success(), "{}", text(&once));
    assert!(text(&once).contains("co-signed"), "{}", text(&once));

    // more entries and a later checkpoint: the witness follows with a consistency proof
    enrol_node(&tmp.path().join("n2"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let second = checkpoint_at_least(&m, first.unwrap() + 1).await;
    assert!(second.is_some(), "no later checkpoint; log:\n{}", m.log());
    let once = m.cli(&[
        "ledger",
        "witness",
        "run",
        "--dir",
        wdir.to_str().unwrap(),
        "--once",
    ]);
    assert!(once.status.success(), "{}", text(&once));

    // the verifier sees the co-signatures under the witness's key
    let out = m.cli(&["ledger", "export", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = m.cli(&[
        "ledger",
        "verify",
        file.to_str().unwrap(),
        "--witness",
        &vkey,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("co-signatures: 2 by w1.example"),
        "{}",
        text(&out)
    );

    // an export from a checkpoint carries its continuation and verifies (books not replayed)
    let tail = tmp.path().join("tail.ndjson");
    let since = second.unwrap().to_string();
    let out = m.cli(&[
        "ledger",
        "export",
        "--since",
        &since,
        "--out",
        tail.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = m.cli(&[
        "ledger",
        "verify",
        tail.to_str().unwrap(),
        "--master",
        &master,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("books: not replayed"), "{}", text(&out));
}
