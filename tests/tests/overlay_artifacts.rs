//! Artifacts over the overlay (SPEC §16.4), end to end on loopback: a master, a gateway that
//! relays the overlay, and real agents deploying `hearth-static` (a ~50 MB debug binary, so
//! dozens of 1 MiB chunks). A chunk that rots on a serving agent's disk is refused by the
//! fetching agent and fetched again elsewhere; peers serve the copies of a fan-out while the
//! master sends only a fraction; with `--overlay off` everything comes from the master.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Duration;

use hearth_protocol::Sha256;
use hearth_tests::deploy::{cli_ok, deployment, running, upload_static_site};
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::MasterProc;
use hearth_tests::node::NodeProc;
use hearth_tests::{bin, eventually};

const WAIT: Duration = Duration::from_secs(180);

/// Peers serve fast in tests (the default 20 Mbit/s would make each copy take 20 s).
const FAST_PEERS: &[&str] = &[
    "--overlay-listen",
    "127.0.0.1:0",
    "--upload-budget-mbps",
    "2000",
];
const NO_OVERLAY: &[&str] = &["--overlay", "off"];

/// Enrols a node in its own home and runs it with `flags`; returns it and its id once active.
async fn node(m: &MasterProc, dir: &Path, home: &str, flags: &[&str]) -> (NodeProc, String) {
    if let Some(parent) = dir.parent() {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711));
    }
    let out = std::process::Command::new(bin("hearth-node"))
        .args(["enrol", "--master", &m.quic.to_string(), "--token"])
        .arg(m.token(&[]))
        .arg("--data-dir")
        .arg(dir)
        .args(["--country", "BE", "--isp", "Proximus", "--home", home])
        .args(["--disk-mib", "65536"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enrol: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = NodeProc::run_with(dir, flags);
    let id = n.status()["node"].as_str().unwrap().to_owned();
    let up = eventually(WAIT, async || {
        (m.node_state(&id).await == "active").then_some(())
    })
    .await;
    assert!(up.is_some(), "node {id} never active:\n{}", n.log());
    (n, id)
}

/// `hearth_master_blob_bytes_sent_total` from the master's `/metrics`.
async fn master_blob_bytes(m: &MasterProc) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("http://{}/metrics", m.http))
        .bearer_auth(&m.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("hearth_master_blob_bytes_sent_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no hearth_master_blob_bytes_sent_total in\n{text}"))
}

/// Waits until deployment `web` runs on every node of `ids`.
async fn running_on(m: &MasterProc, ids: &[&str], nodes: &[&NodeProc]) {
    let ok = eventually(WAIT, async || {
        let r = running(&deployment(m, "web"));
        ids.iter()
            .all(|id| r.iter().any(|(_, n)| n == id))
            .then_some(())
    })
    .await;
    if ok.is_none() {
        let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
        panic!(
            "web never ran on {ids:?}: {}\n{}",
            deployment(m, "web"),
            logs.join("\n----\n")
        );
    }
}

fn artifact() -> (Sha256, u64) {
    let path = bin("hearth-static");
    let bytes = std::fs::read(&path).unwrap();
    (Sha256::digest(&bytes), bytes.len() as u64)
}

/// The agent's `overlay` status section once `check` holds.
async fn overlay_status(
    n: &NodeProc,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(Duration::from_secs(20), async || {
        let o = n.status()["overlay"].clone();
        check(&o).then_some(o)
    })
    .await
    .unwrap_or_else(|| panic!("overlay status: {}\n{}", n.status(), n.log()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_rotten_on_a_peer_is_refused_and_fetched_again_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let _gw = GatewayProc::start(tmp.path(), "gw1", &m, &["--overlay-listen", "127.0.0.1:0"]);
    let (sha, size) = artifact();
    assert!(size > 4 << 20, "the artifact must span several chunks");
    let (a, a_id) = node(&m, &tmp.path().join("a"), "home-a", FAST_PEERS).await;
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "1"],
    );
    running_on(&m, &[&a_id], &[&a]).await;

    // The disk rots under a's cached copy, in chunk 2: a serves what it has, unchecked.
    let cached = a.dir.join("cache").join(sha.to_string());
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap();
    f.write_all_at(&[0xA5; 64], (2 << 20) + 1000).unwrap();
    drop(f);

    let (b, b_id) = node(&m, &tmp.path().join("b"), "home-b", FAST_PEERS).await;
    cli_ok(&m, &["scale", "web", "2"]);
    running_on(&m, &[&a_id, &b_id], &[&a, &b]).await;

    // b refused the rotten chunk, counted it, and still holds the artifact exactly.
    let o = overlay_status(&b, |o| o["chunks_refused"].as_u64().unwrap_or(0) >= 1).await;
    assert!(
        o["bytes_down"].as_u64().unwrap_or(0) > size / 2,
        "b fetched little from peers: {o}"
    );
    assert!(b.log().contains("chunk refused"), "{}", b.log());
    let held =
        hearth_node_agent::fetcher::hash_file(&b.dir.join("cache").join(sha.to_string())).unwrap();
    assert_eq!(held, sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_serve_a_fan_out_and_the_master_sends_a_fraction() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let _gw = GatewayProc::start(tmp.path(), "gw1", &m, &["--overlay-listen", "127.0.0.1:0"]);
    let (_, size) = artifact();
    let (a, a_id) = node(&m, &tmp.path().join("a"), "home-a", FAST_PEERS).await;
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "1"],
    );
    running_on(&m, &[&a_id], &[&a]).await;

    let mut nodes = vec![a];
    let mut ids = vec![a_id];
    for home in ["home-b", "home-c", "home-d"] {
        let (n, id) = node(&m, &tmp.path().join(home), home, FAST_PEERS).await;
        nodes.push(n);
        ids.push(id);
    }
    let before = master_blob_bytes(&m).await;
    cli_ok(&m, &["scale", "web", "4"]);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let node_refs: Vec<&NodeProc> = nodes.iter().collect();
    running_on(&m, &id_refs, &node_refs).await;
    let sent = master_blob_bytes(&m).await - before;
    eprintln!("the master sent {sent} bytes for 3 copies of {size}");
    // Three more copies of `size` bytes; the master sent under a tenth of one (the peers hold
    // it, so it answers chunk requests `busy`).
    assert!(
        sent < size / 10,
        "the master sent {sent} bytes for 3 copies of {size}"
    );
    for n in &nodes[1..] {
        let o = overlay_status(n, |o| o["bytes_down"].as_u64().unwrap_or(0) > 0).await;
        assert!(o["bytes_down"].as_u64().unwrap() >= size / 4, "{o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_overlay_off_everything_comes_from_the_master() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (_, size) = artifact();
    let (a, a_id) = node(&m, &tmp.path().join("a"), "home-a", NO_OVERLAY).await;
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "1"],
    );
    running_on(&m, &[&a_id], &[&a]).await;
    let (b, b_id) = node(&m, &tmp.path().join("b"), "home-b", NO_OVERLAY).await;
    let before = master_blob_bytes(&m).await;
    cli_ok(&m, &["scale", "web", "2"]);
    running_on(&m, &[&a_id, &b_id], &[&a, &b]).await;
    let sent = master_blob_bytes(&m).await - before;
    assert!(
        sent >= size,
        "the master sent {sent} bytes for a copy of {size}"
    );
    assert!(b.status()["overlay"].is_null() || b.status()["overlay"]["bytes_down"] == 0);
}
