//! Rolling updates end to end: a good version rolls onto every replica in place, one at a time;
//! a version that fails its health check is rolled back after touching only one replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::time::Duration;

use hearth_tests::deploy::{THREE_HOMES, cli_ok, deployment, homes, upload_static_site};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

/// instance → (node, generation, recipe, state, health)
fn replicas(d: &Value) -> BTreeMap<String, (String, u64, String, String, String)> {
    d["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                s("instance"),
                (
                    s("node"),
                    r["generation"].as_u64().unwrap(),
                    s("recipe"),
                    s("state"),
                    s("health"),
                ),
            )
        })
        .collect()
}

fn all_healthy_on(d: &Value, recipe: &str) -> bool {
    let r = replicas(d);
    r.len() == 2
        && r.values().all(|(_, _, rec, state, health)| {
            rec == recipe && state == "running" && health == "healthy"
        })
}

#[tokio::test]
async fn a_good_version_rolls_in_place_and_a_failing_one_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let (nodes, _ids) = homes(&m, tmp.path(), &THREE_HOMES, WAIT).await;
    let v1 = upload_static_site(&m, tmp.path(), |r| r);
    let v2 = upload_static_site(&m, tmp.path(), |r| {
        r.replace("version = \"1.0.0\"", "version = \"1.1.0\"")
    });
    // 1.2.0 answers its health check with 404: it starts but never becomes healthy.
    let bad = upload_static_site(&m, tmp.path(), |r| {
        r.replace("version = \"1.0.0\"", "version = \"1.2.0\"")
            .replace("path = \"/healthz\"", "path = \"/no-such-page\"")
    });
    cli_ok(&m, &["deploy", "web", "--recipe", &v1, "--replicas", "2"]);
    let up = eventually(WAIT, async || {
        Some(deployment(&m, "web")).filter(|d| all_healthy_on(d, "static-site@1.0.0"))
    })
    .await;
    let before = replicas(&up.unwrap_or_else(|| panic!("not up: {}", deployment(&m, "web"))));

    // A good version: every replica moves to it in place, each exactly once.
    let out = m.cli(&["update", "web", "--recipe", &v2, "--wait", "90s"]);
    assert!(
        out.status.success(),
        "update failed: {}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        deployment(&m, "web"),
        m.log()
    );
    let d = deployment(&m, "web");
    assert_eq!(d["rollout"]["state"]["state"], "complete", "{d}");
    assert_eq!(d["spec"]["recipe"]["version"], "1.1.0");
    let healthy = eventually(WAIT, async || {
        Some(deployment(&m, "web")).filter(|d| all_healthy_on(d, "static-site@1.1.0"))
    })
    .await;
    let after = replicas(&healthy.unwrap_or_else(|| panic!("{}", deployment(&m, "web"))));
    for (id, (node, generation, ..)) in &before {
        let (n, g, ..) = &after[id];
        assert_eq!(n, node, "{id} moved during the update");
        assert_eq!(*g, generation + 1, "{id} updated once");
    }
    // The update is idempotent: the same request again changes nothing.
    cli_ok(&m, &["update", "web", "--recipe", &v2]);
    assert_eq!(replicas(&deployment(&m, "web")), after);

    // A failing version: one replica tries it, fails its health check, and is rolled back;
    // the other replica is never touched, so at most one is ever down.
    let out = m.cli(&[
        "update",
        "web",
        "--recipe",
        &bad,
        "--deadline",
        "60s",
        "--wait",
        "120s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a failing update reported success");
    assert!(
        stderr.contains("rolled back") && stderr.contains("failed its health check"),
        "{stderr}\n{}",
        m.log()
    );
    let d = deployment(&m, "web");
    assert_eq!(d["rollout"]["state"]["state"], "rolled_back", "{d}");
    assert_eq!(d["spec"]["recipe"]["version"], "1.1.0", "the spec is back");
    let healthy = eventually(WAIT, async || {
        Some(deployment(&m, "web")).filter(|d| all_healthy_on(d, "static-site@1.1.0"))
    })
    .await;
    let back = replicas(&healthy.unwrap_or_else(|| panic!("{}", deployment(&m, "web"))));
    let bumps: Vec<u64> = after
        .iter()
        .map(|(id, (_, g, ..))| back[id].1 - g)
        .collect();
    let mut sorted = bumps.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [0, 2],
        "one replica went there and back, the other untouched: {bumps:?}"
    );

    // Unknown deployments and malformed recipes get clear errors.
    let out = m.cli(&["update", "nope", "--recipe", &v2]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deployment nope"));
    let out = m.cli(&["update", "web", "--recipe", "static-site"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME@VERSION:SHA256"));
    drop(nodes);
}
