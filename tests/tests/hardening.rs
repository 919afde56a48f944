//! Hardening against bad input and races, end to end against a real master: requests that can
//! never run are refused at the API, parallel uploads of one blob all succeed and store it whole,
//! a revoke is never undone by a racing activate, slow clients do not starve the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_tests::deploy::upload_static_site;
use hearth_tests::master::{FAST, MasterProc};
use serde_json::{Value, json};

fn recipe_json(reference: &str) -> Value {
    let (nv, sha) = reference.rsplit_once(':').unwrap();
    let (name, version) = nv.split_once('@').unwrap();
    json!({ "name": name, "version": version, "sha256": sha })
}

#[tokio::test]
async fn what_can_never_run_is_refused_at_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let recipe = recipe_json(&upload_static_site(&m, tmp.path(), |r| r));
    let deploy = |params: Value, labels: Value| {
        json!({ "name": "web", "recipe": recipe, "replicas": 1, "params": params, "labels": labels })
            .to_string()
    };
    let post = |body: String| {
        let m = &m;
        async move {
            m.call(
                reqwest::Method::POST,
                "/v1/deployments",
                Some(&body),
                Some(&m.token),
            )
            .await
        }
    };
    let (status, v) = post(deploy(json!({ "title": "x\u{0}y" }), json!({}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("NUL"),
        "{v}"
    );
    let (status, v) = post(deploy(json!({ "titel": "typo" }), json!({}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("declares no parameter titel"),
        "{v}"
    );
    let (status, v) = post(deploy(json!({}), json!({ "k".repeat(300): "v" }))).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(deploy(
        json!({ "title": "Hello" }),
        json!({ "disk": "ssd" }),
    ))
    .await;
    assert_eq!(status, 200, "{v}");
    // Nothing refused was stored.
    let (_, listed) = m.get("/v1/deployments").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["spec"]["params"]["title"], "Hello");
}

#[tokio::test]
async fn parallel_uploads_of_one_blob_all_succeed_and_store_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let sha = hearth_protocol::Sha256::digest(&data);
    let url = format!("http://{}/v1/blobs/{sha}", m.http);
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let (url, token, data) = (url.clone(), m.token.clone(), data.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .put(url)
                    .bearer_auth(token)
                    .body(data)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for u in uploads {
        statuses.push(u.await.unwrap().unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    assert!(statuses.contains(&201), "{statuses:?}");
    let stored = std::fs::read(m.dir.join("blobs").join(sha.to_string())).unwrap();
    assert!(
        stored == data,
        "stored blob is {} bytes, not whole",
        stored.len()
    );
    let leftovers = std::fs::read_dir(m.dir.join("blobs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
    // A 0-byte blob (what a kill -9 left before) is repaired by the next upload.
    std::fs::write(m.dir.join("blobs").join(sha.to_string()), b"").unwrap();
    let status = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&m.token)
        .body(data.clone())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 201, "repaired, not 'already stored'");
    assert!(std::fs::read(m.dir.join("blobs").join(sha.to_string())).unwrap() == data);
}

#[tokio::test]
async fn a_racing_activate_never_undoes_a_revoke() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    for round in 0..6 {
        let dir = tmp.path().join(format!("n{round}"));
        let (node, _) = hearth_tests::node::enrol_node(&dir, m.quic, &m.token(&[]))
            .await
            .unwrap();
        let action = |verb: &'static str| {
            let (http, token) = (m.http, m.token.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("http://{http}/v1/nodes/{node}/{verb}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap()
            })
        };
        let mut racing: Vec<_> = (0..12).map(|_| action("activate")).collect();
        racing.insert(6, action("revoke"));
        let mut revoked = false;
        for (i, r) in racing.into_iter().enumerate() {
            let status = r.await.unwrap();
            if i == 6 {
                assert_eq!(status, 200, "the revoke itself");
                revoked = true;
            } else {
                assert!(status == 200 || status == 409, "activate answered {status}");
            }
        }
        assert!(revoked);
        let (_, v) = m.get(&format!("/v1/nodes/{node}")).await;
        assert_eq!(v["admin"], "revoked", "round {round}: {v}");
        // And it stays so: an activate now is refused.
        assert_eq!(action("activate").await.unwrap(), 409);
    }
    // After a restart (state from the store, not memory) it is still revoked.
    let m = m.kill9_and_restart();
    let (_, nodes) = m.get("/v1/nodes").await;
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["admin"] == "revoked"),
        "{nodes}"
    );
}

#[tokio::test]
async fn refused_enrolments_are_logged_at_a_bounded_rate_and_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let good = m.token(&[]);
    let parts: Vec<&str> = good.split(':').collect();
    let secret = "0".repeat(parts[2].len());
    let bad = format!("{}:{}:{secret}:{}", parts[0], parts[1], parts[3]);
    let mut message = String::new();
    let started = std::time::Instant::now();
    for i in 0..60 {
        let dir = tmp.path().join(format!("bad{i}"));
        let e = hearth_tests::node::enrol_node(&dir, m.quic, &bad)
            .await
            .unwrap_err();
        message = e.to_string();
    }
    assert!(message.contains("copy the whole token"), "{message}");
    let lines = m
        .log()
        .lines()
        .filter(|l| l.contains("enrolment refused"))
        .count();
    // A burst of 10, then one a second.
    let allowed = 10 + started.elapsed().as_secs() as usize + 2;
    assert!(
        (1..=allowed.min(59)).contains(&lines),
        "{lines} log lines for 60 refused enrolments"
    );
    // The good token still works.
    hearth_tests::node::enrol_node(&tmp.path().join("good"), m.quic, &good)
        .await
        .unwrap();
}

/// Reads until the peer closes or answers; true if that happened within `limit`.
async fn ends_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    // An end, an error or an answer (e.g. 408): the master did not wait for ever.
    tokio::time::timeout(limit, stream.read(&mut buf))
        .await
        .is_ok()
}

#[tokio::test]
async fn slow_clients_neither_starve_the_api_nor_stay_open() {
    use tokio::io::AsyncWriteExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let mut args = FAST.to_vec();
    args.extend([
        "--http-max-connections",
        "32",
        "--http-header-timeout-ms",
        "1500",
        "--http-body-timeout-ms",
        "1500",
    ]);
    let m = MasterProc::start(tmp.path(), &args);
    // 100 connections that send half a request head and wait, more than the cap.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(m.http).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: master\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // And one that sends a head and half its body.
    let mut body = tokio::net::TcpStream::connect(m.http).await.unwrap();
    body.write_all(
        format!(
            "PUT /v1/blobs/{} HTTP/1.1\r\nHost: master\r\nAuthorization: Bearer {}\r\nContent-Length: 1000\r\n\r\n0123456789",
            "0".repeat(64),
            m.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The API still answers at once.
    let started = std::time::Instant::now();
    let health = reqwest::Client::new()
        .get(format!("http://{}/healthz", m.http))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(
        health.as_ref().is_ok_and(|r| r.status().is_success()),
        "healthz: {health:?} after {:?}",
        started.elapsed()
    );
    // Every slow connection is closed by the master soon after its timeout.
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(
            ends_within(s, Duration::from_secs(6)).await,
            "slow connection {i} still open"
        );
    }
    assert!(
        ends_within(&mut body, Duration::from_secs(6)).await,
        "stalled body still open"
    );
}
