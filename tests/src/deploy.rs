//! Deployment helpers shared by the end-to-end tests: homes enrolled in given places, the
//! `hearth-static` recipe uploaded, deployments read through the CLI.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::master::MasterProc;
use crate::node::NodeProc;
use crate::recipes::static_site;
use crate::{bin, eventually};

/// Three homes in three countries with three ISPs.
pub const THREE_HOMES: [(&str, &str, &str); 3] = [
    ("BE", "Proximus", "home-a"),
    ("FR", "Free", "home-b"),
    ("DE", "Telekom", "home-c"),
];

/// Runs `hearth ARGS` and returns its stdout, failing the test with stderr if it fails.
pub fn cli_ok(m: &MasterProc, args: &[&str]) -> String {
    let out = m.cli(args);
    assert!(
        out.status.success(),
        "hearth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hearth deployment show NAME --json`.
pub fn deployment(m: &MasterProc, name: &str) -> Value {
    serde_json::from_str(&cli_ok(m, &["deployment", "show", name, "--json"])).unwrap()
}

/// The running replicas of a deployment view: (instance, node).
pub fn running(d: &Value) -> Vec<(String, String)> {
    d["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "running")
        .map(|r| {
            (
                r["instance"].as_str().unwrap().to_owned(),
                r["node"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Enrols and runs one home per `(country, isp, home)` under `dir`, waits until each is active
/// and returns the processes with their node ids.
pub async fn homes(
    m: &MasterProc,
    dir: &Path,
    places: &[(&str, &str, &str)],
    wait: Duration,
) -> (Vec<NodeProc>, Vec<String>) {
    let nodes: Vec<NodeProc> = places
        .iter()
        .enumerate()
        .map(|(i, at)| {
            NodeProc::enrol_and_run_at(&dir.join(format!("n{i}")), m.quic, &m.token(&[]), *at)
        })
        .collect();
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| n.status()["node"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        let up = eventually(wait, async || {
            (m.node_state(id).await == "active").then_some(())
        })
        .await;
        assert!(up.is_some(), "node {id} never active");
    }
    (nodes, ids)
}

/// Signs and publishes `hearth-static`'s recipe, passed through `edit` (to change the version
/// or break it); returns `static-site@VERSION:SHA` for `--recipe`.
pub fn upload_static_site(m: &MasterProc, _dir: &Path, edit: impl Fn(String) -> String) -> String {
    let binary = bin("hearth-static");
    let size = std::fs::metadata(&binary).unwrap().len();
    let placeholder = hearth_protocol::Sha256::digest(b"filled in by hearth recipe build");
    let text = edit(static_site(&placeholder, size));
    crate::recipes::sign_and_publish(m, &text, &[("server", &binary)])
}
