//! Replica links end to end on loopback: a `[peers]` recipe whose replicas (`hearth-test-peer`,
//! a real program) listen on their `cluster` port and reach each other only through the
//! addresses their agents give them (`HEARTH_PEERS_FILE`), over the overlay (a gateway relay
//! for discovery, QUIC between the agents). When a replica moves (its node is drained), the
//! other's `peers.json` names the new one and it reaches it again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::PathBuf;
use std::time::Duration;

use hearth_tests::deploy::{THREE_HOMES, cli_ok, deployment, homes, running};
use hearth_tests::eventually;
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn instance_dir(nodes: &[NodeProc], ids: &[String], node: &str, instance: &str) -> PathBuf {
    let i = ids.iter().position(|n| n == node).unwrap();
    nodes[i].dir.join("instances").join(instance)
}

fn read_json(path: &std::path::Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Waits until the replica `me` (in `dir`) got `peer`'s answer through its peer address.
async fn reaches(dir: &std::path::Path, me: &str, peer: &str) -> Value {
    let want = format!("{peer} got hello from {me}");
    let file = dir.join("data").join("reached.json");
    let got = eventually(WAIT, async || {
        let v = read_json(&file)?;
        (v["peers"][peer] == want.as_str()).then_some(v)
    })
    .await;
    assert!(
        got.is_some(),
        "{me} never reached {peer}: {:?}; peers.json: {:?}",
        read_json(&file),
        read_json(&dir.join("peers.json"))
    );
    got.unwrap()
}

#[tokio::test]
async fn replicas_reach_each_other_through_the_overlay_and_follow_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let _relay = GatewayProc::start(
        tmp.path(),
        "gw-relay",
        &m,
        &["--overlay-listen", "127.0.0.1:0"],
    );
    let (nodes, ids) = homes(&m, tmp.path(), &THREE_HOMES, WAIT).await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_hearth-test-peer"));
    let size = std::fs::metadata(&binary).unwrap().len();
    let placeholder = hearth_protocol::Sha256::digest(b"filled in by hearth recipe build");
    let reference = hearth_tests::recipes::sign_and_publish(
        &m,
        &hearth_tests::recipes::peer_echo(&placeholder, size),
        &[("server", &binary)],
    );
    cli_ok(
        &m,
        &["deploy", "echo", "--recipe", &reference, "--replicas", "2"],
    );
    let two = eventually(WAIT, async || {
        let r = running(&deployment(&m, "echo"));
        (r.len() == 2).then_some(r)
    })
    .await
    .expect("two replicas never ran");
    let [(a, node_a), (b, node_b)] = [two[0].clone(), two[1].clone()];
    assert_ne!(node_a, node_b);
    let (dir_a, dir_b) = (
        instance_dir(&nodes, &ids, &node_a, &a),
        instance_dir(&nodes, &ids, &node_b, &b),
    );

    // Each reaches the other through the address its agent gave it.
    let seen = reaches(&dir_a, &a, &b).await;
    reaches(&dir_b, &b, &a).await;
    assert!(seen["env"].is_string(), "HEARTH_PEERS unset: {seen}");
    let peers_a = read_json(&dir_a.join("peers.json")).unwrap();
    let entry = &peers_a.as_array().unwrap()[0];
    assert_eq!(entry["instance"], b.as_str());
    assert_eq!(entry["node"], node_b.as_str());
    assert!(
        entry["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{peers_a}"
    );

    // B's node is drained: its replica moves to the third home; A's peers.json names the new
    // replica (and no longer B) and A reaches it.
    cli_ok(&m, &["node", "drain", &node_b]);
    let moved = eventually(WAIT, async || {
        let r = running(&deployment(&m, "echo"));
        let new = r.iter().find(|(i, n)| *i != a && *n != node_b)?.clone();
        (r.len() == 2 && r.iter().all(|(_, n)| *n != node_b)).then_some(new)
    })
    .await;
    let (c, node_c) = moved.expect("the drained replica never moved");
    assert_ne!(node_c, node_a);
    let names = eventually(WAIT, async || {
        let v = read_json(&dir_a.join("peers.json"))?;
        let names: Vec<String> = v
            .as_array()?
            .iter()
            .filter_map(|e| e["instance"].as_str().map(str::to_owned))
            .collect();
        (names == [c.clone()]).then_some(names)
    })
    .await;
    assert!(
        names.is_some(),
        "peers.json of {a} never named only {c}: {:?}",
        read_json(&dir_a.join("peers.json"))
    );
    reaches(&dir_a, &a, &c).await;
    reaches(&instance_dir(&nodes, &ids, &node_c, &c), &c, &a).await;
}
