//! The node agent end to end: real `hearth-master`, `hearth-node` and `hearth-static` processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_protocol::Sha256;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use hearth_tests::recipes::{sign_and_publish, static_site};
use hearth_tests::{bin, eventually};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Signs and publishes hearth-static's recipe; returns the recipe reference and the artifact.
async fn publish(m: &MasterProc) -> (Value, Sha256) {
    let binary = bin("hearth-static");
    let artifact = Sha256::digest(&std::fs::read(&binary).unwrap());
    let size = std::fs::metadata(&binary).unwrap().len();
    let reference = sign_and_publish(m, &static_site(&artifact, size), &[("server", &binary)]);
    let sha = reference.rsplit_once(':').unwrap().1.to_owned();
    (
        json!({ "name": "static-site", "version": "1.0.0", "sha256": sha }),
        artifact,
    )
}

async fn place(m: &MasterProc, node: &str, instance: &str, recipe: &Value, port: u16) {
    let body = json!({ "instance": instance, "node": node, "deployment": "web", "recipe": recipe, "ports": { "http": port } });
    let (status, v) = m
        .call(
            reqwest::Method::POST,
            "/v1/instances",
            Some(&body.to_string()),
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

async fn wait_instance(
    m: &MasterProc,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let got = eventually(WAIT, async || m.instance(id).await.filter(|v| check(v))).await;
    match got {
        Some(v) => v,
        None => panic!(
            "instance {id} never became {what}: {:?}\nmaster log:\n{}",
            m.instance(id).await,
            m.log()
        ),
    }
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

fn pid_of(node: &NodeProc, id: &str) -> Option<u64> {
    node.status()["instances"][id]["phase"]["pid"].as_u64()
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    resp.status().is_success().then_some(())?;
    resp.text().await.ok()
}

#[tokio::test]
async fn an_assigned_service_runs_heals_and_is_never_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let mut node = NodeProc::enrol_and_run(&tmp.path().join("n1"), m.quic, &m.token(&[]));
    let node_id = node.status()["node"].as_str().unwrap().to_owned();
    let (recipe, _) = publish(&m).await;
    let port = free_port();
    place(&m, &node_id, "web-0", &recipe, port).await;

    // Running, healthy, endpoint and generated secret reported back, and really serving.
    let v = wait_instance(&m, "web-0", "running and healthy", |v| {
        v["state"] == "running" && v["health"] == "healthy"
    })
    .await;
    assert_eq!(v["endpoints"][0]["port"], port);
    assert_eq!(
        v["published"]["admin_password"].as_str().map(str::len),
        Some(32)
    );
    assert!(http_get(port, "/").await.unwrap().contains("Hello co-op"));
    let listing = String::from_utf8_lossy(&m.cli(&["instances"]).stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("web-0") && l.contains("running") && l.contains("healthy")),
        "{listing}"
    );
    // Run as root, the agent gives the instance a user of its own.
    let pid = pid_of(&node, "web-0").unwrap() as u32;
    if nix::unistd::geteuid().is_root() {
        assert_ne!(NodeProc::uid_of(pid), Some(0), "instance runs as root");
    }

    // The process is killed: the agent restarts it.
    let first = pid_of(&node, "web-0").expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let second = eventually(WAIT, async || {
        pid_of(&node, "web-0").filter(|p| *p != first)
    })
    .await;
    let second = second.unwrap_or_else(|| panic!("not restarted; agent log:\n{}", node.log()));
    assert_eq!(node.status()["instances"]["web-0"]["restarts"], 1);
    wait_instance(&m, "web-0", "healthy again", |v| {
        v["state"] == "running" && v["health"] == "healthy"
    })
    .await;

    // The agent is killed with -9 and started again: the running process is adopted, not doubled.
    let revision = node.status()["link"]["revision"].as_u64().unwrap();
    assert!(revision > 0, "no desired state received: {}", node.status());
    node.kill9();
    let node = NodeProc::run(&node.dir.clone());
    let adopted = eventually(WAIT, async || {
        node.log().contains("re-adopted").then_some(())
    })
    .await;
    assert!(adopted.is_some(), "agent log:\n{}", node.log());
    assert_eq!(node.processes_of("web-0"), vec![second as u32]);
    // The master re-sends the desired state after the new session's welcome: wait until this
    // agent process has received it, then until the master has a heartbeat sent after it (the
    // link handed it to the supervisor before sending that heartbeat).
    let received = eventually(WAIT, async || {
        let link = &node.status()["link"];
        (link["state"] == "connected" && link["revision"].as_u64() >= Some(revision)).then(unix_ms)
    })
    .await;
    let received = received.unwrap_or_else(|| {
        panic!(
            "desired state {revision} not re-sent; status {}\nagent log:\n{}",
            node.status(),
            node.log()
        )
    });
    let heartbeat = eventually(WAIT, async || {
        let (_, v) = m.get(&format!("/v1/nodes/{node_id}")).await;
        (v["last_heartbeat_ms"].as_u64() > Some(received)).then_some(())
    })
    .await;
    assert!(
        heartbeat.is_some(),
        "no heartbeat after the desired state; master log:\n{}",
        m.log()
    );
    // Still exactly one after the master re-sent the desired state: the same process, not
    // restarted.
    assert_eq!(node.processes_of("web-0"), vec![second as u32]);
    assert_eq!(pid_of(&node, "web-0"), Some(second));
    assert_eq!(node.status()["instances"]["web-0"]["restarts"], 1);
    assert!(http_get(port, "/healthz").await.is_some());

    // Removing the instance stops it.
    let (status, _) = m
        .call(
            reqwest::Method::DELETE,
            "/v1/instances/web-0",
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 200);
    let stopped = eventually(WAIT, async || {
        node.processes_of("web-0").is_empty().then_some(())
    })
    .await;
    assert!(stopped.is_some(), "instance still running after removal");
}

#[tokio::test]
async fn the_agent_reconnects_when_the_master_returns_and_instances_keep_running() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let node = NodeProc::enrol_and_run(&tmp.path().join("n1"), m.quic, &m.token(&[]));
    let node_id = node.status()["node"].as_str().unwrap().to_owned();
    let (recipe, _) = publish(&m).await;
    let port = free_port();
    place(&m, &node_id, "web-0", &recipe, port).await;
    wait_instance(&m, "web-0", "running", |v| v["state"] == "running").await;

    let m = m.kill9_and_restart_same_quic();
    let back = eventually(WAIT, async || {
        let s = node.status();
        (s["link"]["state"] == "connected" && s["link"]["sessions"].as_u64() >= Some(2))
            .then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "agent did not reconnect; log:\n{}",
        node.log()
    );
    assert!(
        http_get(port, "/healthz").await.is_some(),
        "the instance stopped while the master was away"
    );
    // The restarted master learns the instance's state again from the node.
    wait_instance(&m, "web-0", "reported after the master restart", |v| {
        v["state"] == "running"
    })
    .await;
    assert_eq!(node.processes_of("web-0").len(), 1);
}

#[tokio::test]
async fn tampered_artifacts_and_recipes_are_refused_and_nothing_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let node = NodeProc::enrol_and_run(&tmp.path().join("n1"), m.quic, &m.token(&[]));
    let node_id = node.status()["node"].as_str().unwrap().to_owned();
    let (recipe, artifact) = publish(&m).await;

    // Someone with access to the master's disk swaps the artifact's bytes.
    let blob = m.dir.join("blobs").join(artifact.to_string());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    place(&m, &node_id, "web-0", &recipe, free_port()).await;
    let v = wait_instance(&m, "web-0", "failed", |v| v["state"] == "failed").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{v}"
    );
    assert!(node.processes_of("web-0").is_empty());
    assert!(
        !node.dir.join("cache").join(artifact.to_string()).exists(),
        "tampered bytes kept in the cache"
    );

    // A signed recipe whose bytes on the master's disk were changed afterwards: more bytes
    // than the signed listing, refused before use.
    let binary = bin("hearth-static");
    let size = std::fs::metadata(&binary).unwrap().len();
    let second = static_site(&artifact, size).replace("1.0.0", "1.0.1");
    let reference = sign_and_publish(&m, &second, &[("server", &binary)]);
    let recipe_sha: Sha256 = reference.rsplit_once(':').unwrap().1.parse().unwrap();
    let doc = m.dir.join("blobs").join(recipe_sha.to_string());
    let text = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, text.replace("--title", "--tiitle")).unwrap();
    let recipe =
        json!({ "name": "static-site", "version": "1.0.1", "sha256": recipe_sha.to_string() });
    place(&m, &node_id, "web-1", &recipe, free_port()).await;
    let v = wait_instance(&m, "web-1", "failed", |v| v["state"] == "failed").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&recipe_sha.to_string()),
        "{v}"
    );
    assert!(node.processes_of("web-1").is_empty());

    // A recipe uploaded to the master but never signed: not listed, refused.
    let unsigned = static_site(&artifact, size).replace("1.0.0", "6.6.6");
    let sha = m.put_blob(unsigned.into_bytes()).await;
    let recipe = json!({ "name": "static-site", "version": "6.6.6", "sha256": sha.to_string() });
    place(&m, &node_id, "web-2", &recipe, free_port()).await;
    let v = wait_instance(&m, "web-2", "failed", |v| v["state"] == "failed").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not listed in the signed targets metadata"),
        "{v}"
    );
    assert!(node.processes_of("web-2").is_empty());
}

#[tokio::test]
async fn a_metadata_refresh_that_fails_for_a_moment_is_retried_not_failed_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let node = NodeProc::enrol_and_run(&tmp.path().join("n1"), m.quic, &m.token(&[]));
    let node_id = node.status()["node"].as_str().unwrap().to_owned();
    let (recipe, _) = publish(&m).await;
    // The master cannot serve the signed timestamp for a moment.
    let timestamp = m.dir.join("repository").join("timestamp.json");
    let aside = m.dir.join("timestamp.json.aside");
    std::fs::rename(&timestamp, &aside).unwrap();
    place(&m, &node_id, "web-0", &recipe, free_port()).await;
    let v = wait_instance(&m, "web-0", "retrying", |v| {
        v["state"] == "restarting"
            && v["message"]
                .as_str()
                .is_some_and(|s| s.contains("cannot refresh the signed targets"))
    })
    .await;
    assert_ne!(v["state"], "failed");
    // The master recovers: the instance runs without anyone touching it.
    std::fs::rename(&aside, &timestamp).unwrap();
    wait_instance(&m, "web-0", "running", |v| v["state"] == "running").await;
    assert_eq!(node.processes_of("web-0").len(), 1);
}
