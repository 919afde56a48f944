//! The master end to end: real `hearth-master` and `hearth` processes on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::time::Duration;

use hearth_node_agent::enrol::EnrolError;
use hearth_protocol::{ErrorCode, Message, SecretKey};
use hearth_tests::eventually;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{TestSession, connect, enrol_node, expect_fatal};
use hearth_transport::close;

const WAIT: Duration = Duration::from_secs(10);

async fn wait_state(m: &MasterProc, node: &str, want: &str) {
    let got = eventually(WAIT, async || {
        let s = m.node_state(node).await;
        (s == want).then_some(s)
    })
    .await;
    assert_eq!(
        got.as_deref(),
        Some(want),
        "node never became {want}; log:\n{}",
        m.log()
    );
}

/// Whether `/metrics` shows `line` within the wait limit.
async fn metric_reaches(m: &MasterProc, line: &str) -> bool {
    eventually(WAIT, async || {
        let (_, v) = m.call(reqwest::Method::GET, "/metrics", None, None).await;
        v.as_str()
            .is_some_and(|t| t.lines().any(|l| l == line))
            .then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn enrolled_node_goes_active_suspect_down_and_revoked_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let token = m.token(&["--label", "volunteer-1", "--expires", "1h"]);
    let (node, key) = enrol_node(&tmp.path().join("n1"), m.quic, &token)
        .await
        .unwrap();
    let id = node.to_string();
    assert_eq!(m.node_state(&id).await, "pending");

    let mut s = TestSession::open(m.quic, m.id, &key).await;
    s.heartbeat().await;
    wait_state(&m, &id, "active").await;

    // Heartbeats stop (the connection stays open): suspect, then down.
    wait_state(&m, &id, "suspect").await;
    wait_state(&m, &id, "down").await;
    s.heartbeat().await;
    wait_state(&m, &id, "active").await;

    // Revocation cuts the session at once with close code 3 ...
    let out = m.cli(&["node", "revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    match s.closed().await {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, close::REVOKED)
        }
        other => panic!("expected a close with code 3, got {other:?}"),
    }
    assert_eq!(m.node_state(&id).await, "revoked");
    // ... and a reconnect is refused at the handshake.
    let refused = match connect(m.quic, m.id, &key).await {
        Err(_) => true,
        Ok((_ep, conn)) => tokio::time::timeout(WAIT, conn.closed()).await.is_ok(),
    };
    assert!(refused, "revoked node could reconnect");
    assert!(metric_reaches(&m, "hearth_master_nodes{state=\"revoked\"} 1").await);
    assert!(metric_reaches(&m, "hearth_master_handshakes_refused_total 1").await);
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    // 16 clients at once, so that writes share group commits; each keeps what was acknowledged.
    let url = format!("http://{}/v1/tokens", m.http);
    let writers: Vec<_> = (0..16)
        .map(|c| {
            let (url, admin) = (url.clone(), m.token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acked = Vec::new();
                for i in 0..8 {
                    let resp = client
                        .post(&url)
                        .bearer_auth(&admin)
                        .json(&serde_json::json!({ "label": format!("t{c}-{i}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 201);
                    let v: serde_json::Value = resp.json().await.unwrap();
                    acked.push(v["id"].as_str().unwrap().to_owned());
                }
                acked
            })
        })
        .collect();
    let mut created = Vec::new();
    for w in writers {
        created.extend(w.await.unwrap());
    }
    assert_eq!(created.len(), 128, "every write acknowledged");
    let token = m.token(&[]);
    let (node, _) = enrol_node(&tmp.path().join("n1"), m.quic, &token)
        .await
        .unwrap();
    let revoke_me = created[0].clone();
    let (status, _) = m
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{revoke_me}"),
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = m
        .call(
            reqwest::Method::POST,
            &format!("/v1/nodes/{node}/drain"),
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(status, 200);

    let m = m.kill9_and_restart();
    let (_, tokens) = m.get("/v1/tokens").await;
    let tokens = tokens.as_array().unwrap();
    for id in &created {
        assert!(
            tokens.iter().any(|t| t["id"] == id.as_str()),
            "token {id} lost"
        );
    }
    let status_of = |id: &str| {
        tokens
            .iter()
            .find(|t| t["id"] == id)
            .map(|t| t["status"].clone())
    };
    assert_eq!(status_of(&revoke_me), Some("revoked".into()));
    let (status, v) = m.get(&format!("/v1/nodes/{node}")).await;
    assert_eq!(status, 200, "enrolled node lost: {v}");
    assert_eq!(v["admin"], "draining");
}

#[tokio::test]
async fn bad_tokens_are_refused_with_clear_errors_and_leave_no_state() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let good = m.token(&[]);
    let refused = async |dir: &str, token: &str| -> ErrorCode {
        let path = tmp.path().join(dir);
        match enrol_node(&path, m.quic, token).await {
            Err(EnrolError::Refused { code, message }) => {
                assert!(!message.is_empty());
                assert!(
                    !path.join("enrolment.json").exists() && !path.join("node.key").exists(),
                    "state left behind"
                );
                code
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    // Forged: right id, wrong secret.
    let mut parts: Vec<String> = good.split(':').map(str::to_owned).collect();
    parts[2] = "0".repeat(32);
    assert_eq!(
        refused("forged", &parts.join(":")).await,
        ErrorCode::TokenInvalid
    );
    // Unknown id.
    parts[1] = "00000000".into();
    assert_eq!(
        refused("unknown", &parts.join(":")).await,
        ErrorCode::TokenInvalid
    );
    // Spent.
    enrol_node(&tmp.path().join("first"), m.quic, &good)
        .await
        .unwrap();
    assert_eq!(refused("second", &good).await, ErrorCode::TokenSpent);
    // Revoked.
    let revoked = m.token(&[]);
    let id = revoked.split(':').nth(1).unwrap();
    assert!(m.cli(&["token", "revoke", id]).status.success());
    assert_eq!(refused("revoked", &revoked).await, ErrorCode::TokenRevoked);
    // Expired.
    let short = m.token(&["--expires", "1s"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(refused("expired", &short).await, ErrorCode::TokenExpired);
    // A token pinning another master: the TLS handshake fails on the pin.
    let other = hearth_protocol::MasterId::from_key(SecretKey::generate().public());
    let pinned_elsewhere = good.replace(&m.id.to_string(), &other.to_string());
    let path = tmp.path().join("pin");
    match enrol_node(&path, m.quic, &pinned_elsewhere).await {
        Err(EnrolError::PinMismatch { .. }) => assert!(!path.join("enrolment.json").exists()),
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    // Nothing listening: unreachable, quickly reported as such.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let token: hearth_protocol::EnrolToken = good.parse().unwrap();
    let nd = hearth_node_agent::state::NodeDir::new(tmp.path().join("dead"));
    let r = hearth_node_agent::enrol::enrol(
        &nd,
        dead_addr,
        &token,
        hearth_tests::node::declared("FR", "Free", "h"),
    )
    .await;
    assert!(
        matches!(
            r,
            Err(EnrolError::Unreachable(_) | EnrolError::Connection { .. })
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn unknown_nodes_are_refused_at_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let stranger = SecretKey::generate();
    let refused = match connect(m.quic, m.id, &stranger).await {
        Err(_) => true,
        Ok((_ep, conn)) => {
            // TLS 1.3: the client may finish before the server rejects its certificate.
            let opened = conn.open_bi().await;
            opened.is_err() || tokio::time::timeout(WAIT, conn.closed()).await.is_ok()
        }
    };
    assert!(refused);
    assert!(metric_reaches(&m, "hearth_master_handshakes_refused_total 1").await);
}

#[tokio::test]
async fn malformed_and_oversized_frames_close_only_that_session() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (_, key_a) = enrol_node(&tmp.path().join("a"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let (_, key_b) = enrol_node(&tmp.path().join("b"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let mut a = TestSession::open(m.quic, m.id, &key_a).await;
    let mut b = TestSession::open(m.quic, m.id, &key_b).await;

    // Invalid JSON: a non-fatal error, the session goes on.
    let junk = b"{not json";
    let mut frame = (junk.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(junk);
    a.control.send_raw(&frame).await.unwrap();
    match a.next().await {
        Some(Message::Error(e)) => assert_eq!((e.code, e.fatal), (ErrorCode::InvalidJson, false)),
        other => panic!("expected invalid_json, got {other:?}"),
    }
    // An unknown type and a master-only message: distinct codes.
    let unknown = br#"{"v":1,"type":"reboot","body":{}}"#;
    let mut frame = (unknown.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(unknown);
    a.control.send_raw(&frame).await.unwrap();
    assert!(
        matches!(a.next().await, Some(Message::Error(e)) if e.code == ErrorCode::UnknownMessageType)
    );
    a.heartbeat().await;

    // A header announcing 64 MiB: refused before reading, the connection is closed with code 1.
    a.control
        .send_raw(&(64u32 << 20).to_be_bytes())
        .await
        .unwrap();
    match a.next().await {
        Some(Message::Error(e)) => assert_eq!((e.code, e.fatal), (ErrorCode::FrameTooLarge, true)),
        other => panic!("expected frame_too_large, got {other:?}; log:\n{}", m.log()),
    }
    match a.closed().await {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, close::PROTOCOL_ERROR)
        }
        other => panic!("expected close code 1, got {other:?}"),
    }
    // The other node is unaffected.
    b.heartbeat().await;
    let (_, metrics) = m.call(reqwest::Method::GET, "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("hearth_master_frame_errors_total{code=\"frame_too_large\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hearth_master_frame_errors_total{code=\"invalid_json\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn hello_without_a_common_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (node, key) = enrol_node(&tmp.path().join("a"), m.quic, &m.token(&[]))
        .await
        .unwrap();
    let (_ep, conn) = connect(m.quic, m.id, &key).await.unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    let mut control = hearth_transport::MessageStream::new(send, recv, 1 << 20);
    let hello = hearth_protocol::messages::session::Hello {
        min_version: 2,
        max_version: 3,
        node,
        agent: "future".into(),
        applied_revision: 0,
        overlay: None,
    };
    control.send(&Message::Hello(hello)).await.unwrap();
    expect_fatal(
        &mut control,
        &conn,
        ErrorCode::UnsupportedVersion,
        close::UNSUPPORTED_VERSION,
    )
    .await;
}

#[tokio::test]
async fn bad_api_requests_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    use reqwest::Method;
    type Case<'a> = (
        Method,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        u16,
        &'a str,
    );
    let cases: &[Case<'_>] = &[
        (Method::GET, "/v1/nodes", None, None, 401, "unauthorized"),
        (
            Method::GET,
            "/v1/nodes",
            None,
            Some("wrong"),
            401,
            "unauthorized",
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some("{not json"),
            Some(&m.token),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some(r#"{"lable":"typo"}"#),
            Some(&m.token),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/tokens",
            Some(r#"{"expires_in_secs":0}"#),
            Some(&m.token),
            400,
            "bad_request",
        ),
        (
            Method::GET,
            "/v1/nodes/not-a-node",
            None,
            Some(&m.token),
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            "/v1/tokens/zz",
            None,
            Some(&m.token),
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            "/v1/tokens/00000000",
            None,
            Some(&m.token),
            404,
            "unknown_token",
        ),
        (
            Method::GET,
            "/v1/nowhere",
            None,
            Some(&m.token),
            404,
            "not_found",
        ),
    ];
    for (method, path, body, token, status, code) in cases {
        let (got, v) = m.call(method.clone(), path, *body, *token).await;
        assert_eq!(
            (got, v["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{method} {path}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().is_some_and(|s| s.len() > 10),
            "{v}"
        );
    }
    let stranger = hearth_protocol::NodeId::from_key(SecretKey::generate().public());
    let (got, v) = m
        .call(
            Method::GET,
            &format!("/v1/nodes/{stranger}"),
            None,
            Some(&m.token),
        )
        .await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (404, Some("unknown_node"))
    );
    let (got, _) = m
        .call(
            Method::POST,
            "/v1/tokens",
            Some(&"x".repeat(200_000)),
            Some(&m.token),
        )
        .await;
    assert_eq!(got, 413);

    // The CLI: bad flags and bad ids exit non-zero with a sentence.
    let out = m.cli(&["token", "create", "--expires", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expires"));
    let out = m.cli(&["node", "show", "hn-nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a node id"));
    let out = m.cli(&["node", "drain", &stranger.to_string()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node"));
}
