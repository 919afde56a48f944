//! Deployments end to end: spread over homes, ISPs and countries, healing after a node dies,
//! stale copies stopped when it returns, unplaceable requests explained.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::time::Duration;

use hearth_tests::deploy::{THREE_HOMES, cli_ok, deployment, homes, running, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test]
async fn replicas_spread_heal_after_a_node_dies_and_stale_copies_stop_on_return() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let (mut nodes, ids) = homes(&m, tmp.path(), &THREE_HOMES, WAIT).await;

    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    let deploy = [
        "deploy",
        "web",
        "--recipe",
        &recipe,
        "--replicas",
        "2",
        "--spread",
        "isp,country",
    ];
    cli_ok(&m, &deploy);
    cli_ok(&m, &deploy); // idempotent by name

    let two = eventually(WAIT, async || {
        Some(running(&deployment(&m, "web"))).filter(|r| r.len() == 2)
    })
    .await;
    let before = two.unwrap_or_else(|| {
        panic!(
            "not 2 running: {}\n{}\nnode0:\n{}",
            deployment(&m, "web"),
            m.log(),
            nodes[0].log()
        )
    });
    let used: BTreeSet<&String> = before.iter().map(|(_, n)| n).collect();
    assert_eq!(used.len(), 2, "two replicas on one node");

    // The node of the first replica dies (agent killed, heartbeats stop): re-placed elsewhere.
    let (moved, dead) = before[0].clone();
    let dead_index = ids.iter().position(|i| *i == dead).unwrap();
    nodes[dead_index].kill9();
    let healed = eventually(WAIT, async || {
        let r = running(&deployment(&m, "web"));
        (r.len() == 2 && r.iter().all(|(_, n)| *n != dead)).then_some(r)
    })
    .await;
    let after =
        healed.unwrap_or_else(|| panic!("not healed: {}\n{}", deployment(&m, "web"), m.log()));
    assert!(
        after.iter().any(|(i, _)| *i == moved),
        "the lost replica keeps its id"
    );
    assert!(
        after
            .iter()
            .any(|(i, n)| *i == before[1].0 && *n == before[1].1),
        "the healthy replica moved"
    );

    // The dead node returns: its stale copy of the moved replica is stopped.
    let dir = nodes[dead_index].dir.clone();
    assert_eq!(
        nodes[dead_index].processes_of(&moved).len(),
        1,
        "the orphan ran on while the agent was down"
    );
    nodes[dead_index] = NodeProc::run(&dir);
    let stopped = eventually(WAIT, async || {
        nodes[dead_index]
            .processes_of(&moved)
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        stopped.is_some(),
        "stale copy still running; agent log:\n{}",
        nodes[dead_index].log()
    );

    // Draining a node moves its replica to another node.
    let current = running(&deployment(&m, "web"));
    let (drained_instance, drained_node) = current[0].clone();
    cli_ok(&m, &["node", "drain", &drained_node]);
    let moved_off = eventually(WAIT, async || {
        let r = running(&deployment(&m, "web"));
        (r.len() == 2 && r.iter().all(|(_, n)| *n != drained_node)).then_some(r)
    })
    .await;
    let moved_off =
        moved_off.unwrap_or_else(|| panic!("drain did not move: {}", deployment(&m, "web")));
    // Make-before-break: a new replica took the drained one's place, then the old one went.
    assert!(!moved_off.iter().any(|(i, _)| *i == drained_instance));

    // Scale down, then ask for what the fleet cannot give.
    cli_ok(&m, &["scale", "web", "1"]);
    let one = eventually(WAIT, async || {
        (deployment(&m, "web")["replicas"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    assert!(one.is_some());
    cli_ok(
        &m,
        &[
            "deploy",
            "nl-only",
            "--recipe",
            &recipe,
            "--replicas",
            "2",
            "--countries",
            "NL",
        ],
    );
    let why = eventually(WAIT, async || {
        deployment(&m, "nl-only")["notes"]
            .as_array()
            .and_then(|n| n.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
    .await
    .unwrap();
    assert!(
        why.starts_with(
            "0 of 2 replicas placed: needs 2 replicas in distinct homes in NL, 0 possible"
        ),
        "{why}"
    );
    cli_ok(&m, &["undeploy", "web"]);
}
