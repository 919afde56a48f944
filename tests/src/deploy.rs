//! Deployment helpers shared by the end-to-end tests: homes enrolled in given places, the
//! `hearth-static` recipe uploaded, deployments read through the CLI.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::master::MasterProc;
use crate::node::NodeProc;
use crate::recipes::static_site;
use crate::{bin, eventually};

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

/// Uploads `hearth-static` and its recipe, passed through `edit` (to change the version or
/// break it); returns `static-site@VERSION:SHA` for `--recipe`.
pub fn upload_static_site(m: &MasterProc, dir: &Path, edit: impl Fn(String) -> String) -> String {
    let binary = bin("hearth-static");
    let art = cli_ok(m, &["upload", binary.to_str().unwrap()])
        .trim()
        .to_owned();
    let size = std::fs::metadata(&binary).unwrap().len();
    let text = edit(static_site(&art.parse().unwrap(), size));
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let file = dir.join(format!("recipe-{version}.toml"));
    std::fs::write(&file, text).unwrap();
    let sha = cli_ok(m, &["upload", file.to_str().unwrap()])
        .trim()
        .to_owned();
    format!("static-site@{version}:{sha}")
}
