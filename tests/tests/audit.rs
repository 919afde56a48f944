//! Audit probes end to end: `hearth node probe` against a real master and a real agent, a node
//! that answers with a forged signature, a node without a session and an unknown node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_protocol::messages::audit::AuditAnswer;
use hearth_protocol::{Message, NodeId, SecretKey};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, TestSession, enrol_node};

const WAIT: Duration = Duration::from_secs(20);

use hearth_tests::output_text as text;

#[tokio::test]
async fn a_running_agent_passes_and_a_forged_silent_or_unknown_node_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);

    // A real agent signs the probe's nonce with its key.
    let agent = NodeProc::enrol_and_run(&tmp.path().join("agent"), m.quic, &m.token(&[]));
    let agent_id = agent.status()["node"].as_str().unwrap().to_owned();
    let active = eventually(WAIT, async || {
        (m.node_state(&agent_id).await == "active").then_some(())
    })
    .await;
    assert!(active.is_some(), "agent never active; log:\n{}", m.log());
    let out = m.cli(&["node", "probe", &agent_id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("passed the probe"), "{}", text(&out));
    let out = m.cli(&["node", "probe", &agent_id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "passed", "{v}");
    assert_eq!(v["node"], agent_id.as_str());

    // A node that answers with somebody else's signature fails, and says why.
    let (node, key) = enrol_node(&tmp.path().join("forger"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut forger = TestSession::open(m.quic, m.id, &key).await;
    forger.heartbeat().await;
    let id = node.to_string();
    let probe_cli = {
        let (dir, id) = (m.dir.clone(), id.clone());
        // The CLI waits for the answer: off this runtime, which drives the node's connection.
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(hearth_tests::bin("hearth"))
                .args(["--data-dir"])
                .arg(dir)
                .args(["node", "probe", &id])
                .output()
                .unwrap()
        })
    };
    let probe = loop {
        match forger.next().await {
            Some(Message::AuditProbe(p)) => break p,
            Some(_) => continue,
            None => panic!("no probe reached the node"),
        }
    };
    let mut answer = AuditAnswer::signed(&probe, &key);
    answer.signature = SecretKey::generate().sign(&answer.signing_bytes());
    forger
        .control
        .send(&Message::AuditAnswer(answer))
        .await
        .unwrap();
    let out = probe_cli.await.unwrap();
    assert!(
        !out.status.success(),
        "a forged answer passed: {}",
        text(&out)
    );
    assert!(
        text(&out).contains("failed the probe: the answer's signature does not verify"),
        "{}",
        text(&out)
    );

    // Without a session there is nobody to answer.
    drop(forger);
    let (silent, _key) = enrol_node(&tmp.path().join("silent"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let out = m.cli(&["node", "probe", &silent.to_string()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("failed the probe: the node has no open session"),
        "{}",
        text(&out)
    );

    // A node the master never enrolled is an error, not a failed probe.
    let stranger = NodeId::from_key(SecretKey::generate().public()).to_string();
    let out = m.cli(&["node", "probe", &stranger]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is enrolled"), "{}", text(&out));

    let (_, metrics) = m.call(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("hearth_master_probes_total{code=\"passed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hearth_master_probes_total{code=\"failed\"} 2"),
        "{metrics}"
    );
}
