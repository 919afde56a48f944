//! Compare-and-set of deployments against a real master on 127.0.0.1: `GET` gives a version
//! (`version` and `ETag`), a write with a stale `If-Match` gets 412 `version_mismatch` and
//! changes nothing, and two read-modify-writes racing each other (`hearth scale` and another
//! client changing the labels) both land, every round.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use hearth_tests::deploy::{cli_ok, upload_static_site};
use hearth_tests::master::MasterProc;
use serde_json::{Value, json};

/// `GET /v1/deployments/{name}`: the view and its `ETag` (unquoted).
async fn read(m: &MasterProc, name: &str) -> (Value, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/v1/deployments/{name}", m.http))
        .bearer_auth(&m.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    (resp.json().await.unwrap(), etag)
}

/// `POST /v1/deployments` with `If-Match`: status and body.
async fn write(m: &MasterProc, spec: &Value, if_match: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/deployments", m.http))
        .bearer_auth(&m.token)
        .header("if-match", format!("\"{if_match}\""))
        .json(spec)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Sets label `round` to `k` by read-modify-write, retrying on 412 (at most 20 times).
async fn label_round(m: &MasterProc, k: usize) {
    for _ in 0..20 {
        let (view, etag) = read(m, "web").await;
        let mut spec = view["spec"].clone();
        spec["labels"]["round"] = json!(k.to_string());
        match write(m, &spec, &etag).await {
            (200, _) => return,
            (412, v) => assert_eq!(v["error"]["code"], "version_mismatch", "{v}"),
            (s, v) => panic!("label write answered {s}: {v}"),
        }
    }
    panic!("the label write lost 20 races in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_is_refused_and_racing_changes_are_both_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let recipe = upload_static_site(&m, tmp.path(), |r| r);
    cli_ok(
        &m,
        &["deploy", "web", "--recipe", &recipe, "--replicas", "1"],
    );

    // The version is the ETag; a stale one is refused with 412 and nothing changes.
    let (view, first) = read(&m, "web").await;
    assert_eq!(view["version"], first.as_str(), "{view}");
    let mut spec = view["spec"].clone();
    spec["replicas"] = json!(2);
    let (status, v) = write(&m, &spec, &"0".repeat(64)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (412, Some("version_mismatch")),
        "{v}"
    );
    assert_eq!(read(&m, "web").await.0["spec"]["replicas"], 1);

    // The current one is accepted, and then it is stale.
    let (status, v) = write(&m, &spec, &first).await;
    assert_eq!(status, 200, "{v}");
    let (view, second) = read(&m, "web").await;
    assert_eq!(view["spec"]["replicas"], 2);
    assert_ne!(first, second);
    spec["replicas"] = json!(5);
    assert_eq!(write(&m, &spec, &first).await.0, 412);
    assert_eq!(read(&m, "web").await.0["spec"]["replicas"], 2);

    // `hearth scale` races another read-modify-write: neither change is lost.
    for k in 1..=8usize {
        let replicas = (k % 3 + 1).to_string();
        let dir = tmp.path().join("master");
        let scale = tokio::task::spawn_blocking({
            let replicas = replicas.clone();
            move || {
                std::process::Command::new(hearth_tests::bin("hearth"))
                    .arg("--data-dir")
                    .arg(&dir)
                    .args(["scale", "web", &replicas])
                    .env_remove("HEARTH_URL")
                    .env_remove("HEARTH_TOKEN")
                    .output()
                    .unwrap()
            }
        });
        label_round(&m, k).await;
        let out = scale.await.unwrap();
        assert!(
            out.status.success(),
            "scale: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (view, _) = read(&m, "web").await;
        assert_eq!(
            view["spec"]["replicas"].to_string(),
            replicas,
            "round {k}: {view}"
        );
        assert_eq!(
            view["spec"]["labels"]["round"],
            k.to_string(),
            "round {k}: {view}"
        );
    }
}
