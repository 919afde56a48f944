//! The catalogue, signed by the real tooling and run by a real agent that pins the cooperative's
//! root at enrolment: the static website, the key-value store (its generated token guards
//! writes) and the notes service all run and answer; a root rotation is followed; a master that
//! serves older signed metadata again (rollback) gets nothing new run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_tests::deploy::{cli_ok, deployment};
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::NodeProc;
use hearth_tests::recipes::rotate_root;
use hearth_tests::{bin, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn catalogue(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../catalogue/recipes")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

async fn ready(m: &MasterProc, name: &str) -> Value {
    let up = eventually(WAIT, async || {
        let d = deployment(m, name);
        let r = d["replicas"].as_array()?.first()?.clone();
        (r["state"] == "running" && r["health"] == "healthy").then_some(r)
    })
    .await;
    up.unwrap_or_else(|| panic!("{name} not healthy: {}\n{}", deployment(m, name), m.log()))
}

async fn instance_published(m: &MasterProc, id: &str) -> Value {
    m.instance(id).await.unwrap()["published"].clone()
}

#[tokio::test]
async fn catalogue_recipes_signed_by_the_tooling_run_on_a_real_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let keys = tmp.path().join("keys");
    let work = tmp.path().join("repo");
    let (k, w) = (keys.to_str().unwrap(), work.to_str().unwrap());
    cli_ok(
        &m,
        &[
            "recipe",
            "keys",
            "init",
            "--keys",
            k,
            "--root-keys",
            "3",
            "--threshold",
            "2",
        ],
    );
    let root = keys.join("1.root.json");
    let node = NodeProc::enrol_and_run_with(
        &tmp.path().join("n1"),
        m.quic,
        &m.token(&[]),
        ("BE", "Proximus", "home-a"),
        &["--trust-root", root.to_str().unwrap()],
    );
    for (dir, binary) in [
        ("static-site", "hearth-static"),
        ("kv-store", "hearth-kv"),
        ("notes", "hearth-notes"),
    ] {
        let artifact = format!("server={}", bin(binary).display());
        let src = catalogue(dir);
        cli_ok(
            &m,
            &[
                "recipe",
                "build",
                src.to_str().unwrap(),
                "--repo",
                w,
                "--artifact",
                &artifact,
            ],
        );
    }
    cli_ok(&m, &["recipe", "sign", "--repo", w, "--keys", k]);
    let first_signing = tmp.path().join("metadata-v1");
    copy_dir(&work.join("metadata"), &first_signing);
    cli_ok(&m, &["recipe", "publish", "--repo", w]);
    let listed: Value = serde_json::from_str(&cli_ok(&m, &["recipe", "list", "--json"])).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kv-store", "notes", "static-site"], "{listed}");

    // Deployed by name and version: the master resolves the hash from the signed targets.
    for name in ["static-site", "kv-store", "notes"] {
        let version = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["version"]
            .as_str()
            .unwrap()
            .to_owned();
        cli_ok(
            &m,
            &["deploy", name, "--recipe", &format!("{name}@{version}")],
        );
    }
    let http = reqwest::Client::new();
    let base = |r: &Value| {
        format!(
            "http://{}:{}",
            r["endpoints"][0]["host"].as_str().unwrap(),
            r["endpoints"][0]["port"]
        )
    };
    let site = ready(&m, "static-site").await;
    let page = http
        .get(base(&site))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hello co-op"), "{page}");

    // The key-value store: its token was generated on the node and guards writes.
    let kv = ready(&m, "kv-store").await;
    let url = format!("{}/v1/objects/members/alice", base(&kv));
    let refused = http.put(&url).body("x").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let token = instance_published(&m, kv["instance"].as_str().unwrap()).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = http
        .put(&url)
        .bearer_auth(&token)
        .body("alice@coop")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let got = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(got, "alice@coop");

    // The notes service answers too.
    let notes = ready(&m, "notes").await;
    let token = instance_published(&m, notes["instance"].as_str().unwrap()).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let posted = http
        .post(format!("{}/v1/notes", base(&notes)))
        .bearer_auth(&token)
        .body("agenda: general assembly")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);

    // Root rotation: new root keys (2 of 3), signed by the old ones too; the node follows and
    // keeps running what it verifies under the new root.
    rotate_root(&m, &keys);
    let static_src = tmp.path().join("site-2");
    copy_dir(&catalogue("static-site"), &static_src);
    let text = std::fs::read_to_string(static_src.join("recipe.toml")).unwrap();
    std::fs::write(
        static_src.join("recipe.toml"),
        text.replace("version = \"1.0.0\"", "version = \"1.1.0\""),
    )
    .unwrap();
    let artifact = format!("server={}", bin("hearth-static").display());
    cli_ok(
        &m,
        &[
            "recipe",
            "build",
            static_src.to_str().unwrap(),
            "--repo",
            w,
            "--artifact",
            &artifact,
        ],
    );
    cli_ok(&m, &["recipe", "sign", "--repo", w, "--keys", k]);
    cli_ok(&m, &["recipe", "publish", "--repo", w]);
    cli_ok(
        &m,
        &[
            "update",
            "static-site",
            "--recipe",
            "static-site@1.1.0",
            "--wait",
            "90s",
        ],
    );
    let status = node.status();
    assert_eq!(
        status["trust"]["versions"][0], 2,
        "root v2 followed: {status}"
    );

    // Rollback: the master serves the first signing's (validly signed, older) metadata again.
    for file in ["targets.json", "snapshot.json", "timestamp.json"] {
        let bytes = std::fs::read(first_signing.join(file)).unwrap();
        let resp = http
            .put(format!("http://{}/v1/repository/{file}", m.http))
            .bearer_auth(&m.token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    let out = m.cli(&[
        "update",
        "static-site",
        "--recipe",
        "static-site@1.0.0",
        "--deadline",
        "30s",
        "--wait",
        "90s",
    ]);
    assert!(
        !out.status.success(),
        "an update under rolled-back metadata succeeded"
    );
    let d = deployment(&m, "static-site");
    assert_eq!(d["rollout"]["state"]["state"], "rolled_back", "{d}");
    let events = node.log();
    assert!(
        events.contains("when we had previously fetched version"),
        "the node did not report the rollback:\n{events}"
    );
}
