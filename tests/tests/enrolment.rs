//! Enrolment in one command, end to end with the real binaries on loopback: an `ht2` token
//! pins the cooperative's root, `hearth-node enrol --token` fetches it over the pinned
//! connection and keeps it only if its SHA-256 matches; `ht1` tokens (issued while no root is
//! published) still enrol, trusting the master's root on first use, with warnings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use hearth_protocol::messages::fetch::FetchMetadata;
use hearth_protocol::{DEFAULT_MAX_FRAME, EnrolToken, ErrorCode, Message, Sha256};
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, connect_enrol, expect_fatal};
use hearth_tests::recipes::{sign_and_publish, static_site};
use hearth_tests::{bin, eventually};
use hearth_transport::{MessageStream, close};
use serde_json::{Value, json};

/// Generous: the machine running the tests may be loaded (debug builds, fetches of a large binary).
const WAIT: Duration = Duration::from_secs(90);

/// `hearth-node enrol` with `token` (and `extra` arguments) into `dir`.
fn enrol(m: &MasterProc, dir: &Path, token: &str, extra: &[&str]) -> Output {
    std::process::Command::new(bin("hearth-node"))
        .args(["enrol", "--master", &m.quic.to_string(), "--token", token])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run hearth-node enrol")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Signs and publishes hearth-static's recipe; returns its reference for `POST /v1/instances`.
fn publish(m: &MasterProc) -> Value {
    let binary = bin("hearth-static");
    let artifact = Sha256::digest(&std::fs::read(&binary).unwrap());
    let size = std::fs::metadata(&binary).unwrap().len();
    let reference = sign_and_publish(m, &static_site(&artifact, size), &[("server", &binary)]);
    let sha = reference.rsplit_once(':').unwrap().1.to_owned();
    json!({ "name": "static-site", "version": "1.0.0", "sha256": sha })
}

/// The root `hearth recipe keys init` wrote for this master's cooperative.
fn root_file(m: &MasterProc) -> std::path::PathBuf {
    m.dir
        .with_extension("recipes")
        .join("keys")
        .join("1.root.json")
}

/// Places a static site on `node` and waits until the node verified and runs it.
async fn runs_a_verified_recipe(m: &MasterProc, node: &NodeProc, recipe: &Value, id: &str) {
    let node_id = node.status()["node"].as_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let body = json!({ "instance": id, "node": node_id, "deployment": id, "recipe": recipe,
                       "ports": { "http": port } });
    let (status, v) = m
        .call(
            reqwest::Method::POST,
            "/v1/instances",
            Some(&body.to_string()),
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let running = eventually(WAIT, async || {
        m.instance(id).await.filter(|v| v["state"] == "running")
    })
    .await;
    assert!(
        running.is_some(),
        "{id} never ran: {:?}\nagent log:\n{}",
        m.instance(id).await,
        node.log()
    );
}

#[tokio::test]
async fn an_ht2_token_alone_enrols_and_pins_the_cooperative_root() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let recipe = publish(&m);
    let root = std::fs::read(root_file(&m)).unwrap();
    let token = m.token(&[]);
    let parsed: EnrolToken = token.parse().unwrap();
    let pin = parsed.root.expect("a root is published: the token is ht2");
    assert!(token.starts_with("ht2:"), "{token}");
    assert_eq!((pin.version, pin.sha256), (1, Sha256::digest(&root)));

    // (b) A token whose root hash differs is refused naming both hashes; nothing is written.
    let dir = tmp.path().join("n1");
    let wrong = Sha256::digest(b"another root");
    let forged = format!(
        "{}{wrong}",
        token.strip_suffix(&pin.sha256.to_string()).unwrap()
    );
    let out = enrol(&m, &dir, &forged, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a forged pin was accepted: {err}");
    assert!(
        err.contains(&wrong.to_string()) && err.contains(&pin.sha256.to_string()),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    for file in ["node.key", "enrolment.json", "tuf/anchor.json"] {
        assert!(!dir.join(file).exists(), "{file} written after a refusal");
    }

    // (a) Re-run with the right token: enrolled, the root pinned byte for byte, and the node
    // verifies and runs a recipe signed under it.
    let out = enrol(&m, &dir, &token, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("pinned the cooperative's root 1.root.json"));
    assert_eq!(std::fs::read(dir.join("tuf/anchor.json")).unwrap(), root);
    let node = NodeProc::run(&dir);
    runs_a_verified_recipe(&m, &node, &recipe, "web-a").await;
    assert!(
        !node
            .log()
            .contains("trusting the master's root on first use")
    );

    // --trust-root wins over the token's pin, with a note when they differ.
    let other = tmp.path().join("other-root.json");
    let rotated_keys = tmp.path().join("other-keys");
    let keys = m.cli(&[
        "recipe",
        "keys",
        "init",
        "--keys",
        rotated_keys.to_str().unwrap(),
    ]);
    assert!(keys.status.success(), "{}", stderr(&keys));
    std::fs::copy(rotated_keys.join("1.root.json"), &other).unwrap();
    let dir2 = tmp.path().join("n2");
    let out = enrol(
        &m,
        &dir2,
        &m.token(&[]),
        &["--trust-root", other.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--trust-root differs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(dir2.join("tuf/anchor.json")).unwrap(),
        std::fs::read(&other).unwrap()
    );
}

#[tokio::test]
async fn an_ht1_token_still_enrols_trusting_the_root_on_first_use_with_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    // No root published yet: the master issues ht1, and the CLI says what that means.
    let created = m.cli(&["token", "create"]);
    assert!(created.status.success());
    let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(token.starts_with("ht1:"), "{token}");
    assert!(
        stderr(&created).contains("pins none"),
        "{}",
        stderr(&created)
    );

    let dir = tmp.path().join("n1");
    let out = enrol(&m, &dir, &token, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("trusted on first use"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("tuf/anchor.json").exists());

    // The agent then trusts the first root it is served, and verifies recipes from it.
    let node = NodeProc::run(&dir);
    let recipe = publish(&m);
    runs_a_verified_recipe(&m, &node, &recipe, "web-b").await;
    assert_eq!(
        std::fs::read(dir.join("tuf/anchor.json")).unwrap(),
        std::fs::read(root_file(&m)).unwrap()
    );

    // An ht1 token with --trust-root pins that file at enrolment, without the warning.
    let dir2 = tmp.path().join("n2");
    let ht1 = EnrolToken {
        root: None,
        ..m.token(&[]).parse().unwrap()
    };
    let root = root_file(&m);
    let out = enrol(
        &m,
        &dir2,
        &ht1.to_string(),
        &["--trust-root", root.to_str().unwrap()],
    );
    let err = stderr(&out);
    // The master now issues ht2 tokens; an ht1 rendering of one carries the same secret.
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("first use"), "{err}");
    assert_eq!(
        std::fs::read(dir2.join("tuf/anchor.json")).unwrap(),
        std::fs::read(&root).unwrap()
    );
}

/// `--disk-mib` says how much disk the home gives (what placement may reserve on it), with a
/// warning when that is more than is free; without it the free space is measured. A bad value
/// is refused before anything is written.
#[tokio::test]
async fn enrol_declares_the_disk_the_home_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let disk = async |out: &Output| {
        assert!(out.status.success(), "{}", stderr(out));
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (status, v) = m.get(&format!("/v1/nodes/{id}")).await;
        assert_eq!(status, 200, "{v}");
        v["facts"]["capacity"]["disk_mib"].as_u64().unwrap()
    };

    let bad = tmp.path().join("bad");
    let out = enrol(&m, &bad, &m.token(&[]), &["--disk-mib", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--disk-mib"), "{}", stderr(&out));
    assert!(!bad.join("node.key").exists());

    // 4 TiB: more than this machine has free, so the agent warns, and the master keeps it.
    let out = enrol(
        &m,
        &tmp.path().join("big"),
        &m.token(&[]),
        &["--disk-mib", "4194304"],
    );
    assert!(stderr(&out).contains("more than the"), "{}", stderr(&out));
    assert_eq!(disk(&out).await, 4_194_304);

    let out = enrol(&m, &tmp.path().join("measured"), &m.token(&[]), &[]);
    assert!(!stderr(&out).contains("--disk-mib"), "{}", stderr(&out));
    let measured = disk(&out).await;
    assert!(measured > 0 && measured < 4_194_304, "{measured}");
}

/// SPEC §7.2: before its `enrol_request` an enrolment connection may fetch root metadata only,
/// on at most 4 streams; a fifth fetch is a protocol error (close code 1).
#[tokio::test]
async fn an_enrolment_connection_serves_roots_only_and_at_most_four() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (_endpoint, conn) = connect_enrol(m.quic, m.id).await;
    let fetch = async |file: &str| {
        let (send, recv) = conn.open_bi().await.unwrap();
        let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        let request = Message::FetchMetadata(FetchMetadata { file: file.into() });
        stream.send(&request).await.unwrap();
        stream.finish().unwrap();
        stream
    };
    for file in [
        "1.root.json",
        "targets.json",
        "timestamp.json",
        "2.root.json",
    ] {
        let mut stream = fetch(file).await;
        match stream.recv().await.unwrap() {
            Some(Message::Error(e)) => {
                assert_eq!((e.code, e.fatal), (ErrorCode::NotFound, false), "{file}");
            }
            other => panic!("{file}: expected not_found, got {other:?}"),
        }
    }
    let mut fifth = fetch("1.root.json").await;
    expect_fatal(
        &mut fifth,
        &conn,
        ErrorCode::UnexpectedMessage,
        close::PROTOCOL_ERROR,
    )
    .await;
}
