//! The master's side of the node overlay (SPEC §16) against a real `hearth-master` on
//! 127.0.0.1, with protocol-level nodes (`hearth_tests::node`) speaking real sessions: the
//! member set after `welcome` and its deltas (enrolment, revocation, a relay registered with
//! `hearth gateway add --overlay-addr`), no full set for a node whose `hello.overlay` is
//! current, `providers` built from live sessions' `holdings`, the signed `GET
//! /v1/gateway/members` long poll, and `Assignment.peers` of a `[peers]` deployment following a
//! move.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_node_agent::enrol::enrol;
use hearth_node_agent::state::NodeDir;
use hearth_protocol::messages::fetch::FetchBlob;
use hearth_protocol::messages::overlay::{
    Holdings, MAX_HOLDINGS, Overlay, OverlayRevision, ProvidersRequest,
};
use hearth_protocol::messages::session::{Counters, Heartbeat};
use hearth_protocol::messages::state::DesiredState;
use hearth_protocol::messages::tunnel::GatewayRequest;
use hearth_protocol::{
    DEFAULT_MAX_FRAME, EnrolToken, ErrorCode, Message, NodeId, Resources, SecretKey, Sha256,
    SignerId,
};
use hearth_tests::deploy::{cli_ok, upload_static_site};
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{TestSession, declared};
use hearth_transport::MessageStream;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// Enrols a node declared in its own home `home`.
async fn enrol_in(m: &MasterProc, dir: &Path, home: &str) -> (NodeId, SecretKey) {
    let token: EnrolToken = m.token(&[]).parse().unwrap();
    let nd = NodeDir::new(dir.join(home));
    let e = enrol(&nd, m.quic, &token, declared("BE", home, home))
        .await
        .unwrap();
    (e.node, nd.require_key().unwrap())
}

/// A session that heartbeats by itself (every 200 ms) and hands over what the master sends.
struct Pumped {
    conn: quinn::Connection,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Message>,
    task: tokio::task::JoinHandle<()>,
    _endpoint: quinn::Endpoint,
}

impl Pumped {
    async fn open(m: &MasterProc, key: &SecretKey, held: Option<OverlayRevision>) -> Self {
        let s = TestSession::open_with_overlay(m.quic, m.id, key, held).await;
        let TestSession {
            conn,
            mut control,
            endpoint,
            ..
        } = s;
        let (out, mut to_send) = mpsc::unbounded_channel::<Message>();
        let (tx, inbox) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        seq += 1;
                        let hb = Heartbeat { seq, used: Resources::default(), applied_revision: 0,
                            instances: vec![], counters: Counters::default(), ack: false };
                        if control.send(&Message::Heartbeat(hb)).await.is_err() { return; }
                    }
                    Some(m) = to_send.recv() => {
                        if control.send(&m).await.is_err() { return; }
                    }
                    r = control.recv() => match r {
                        Ok(Some(m)) => { let _ = tx.send(m); }
                        _ => return,
                    },
                }
            }
        });
        Self {
            conn,
            out,
            inbox,
            task,
            _endpoint: endpoint,
        }
    }

    /// The next message `pick` takes, skipping others, within `limit`.
    async fn next_of<T>(
        &mut self,
        limit: Duration,
        pick: impl Fn(Message) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let m = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .ok()??;
            if let Some(t) = pick(m) {
                return Some(t);
            }
        }
    }

    async fn overlay(&mut self, limit: Duration) -> Option<Overlay> {
        self.next_of(limit, |m| match m {
            Message::Overlay(o) => Some(o),
            _ => None,
        })
        .await
    }

    async fn desired(&mut self, limit: Duration) -> Option<DesiredState> {
        self.next_of(limit, |m| match m {
            Message::DesiredState(d) => Some(d),
            _ => None,
        })
        .await
    }

    /// One request on a stream of its own; the answer.
    async fn ask(&self, request: Message) -> Option<Message> {
        let (send, recv) = self.conn.open_bi().await.ok()?;
        let mut s = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
        s.send(&request).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .ok()?
            .ok()?
    }

    async fn providers(&self, sha256: Sha256) -> Vec<NodeId> {
        match self
            .ask(Message::ProvidersRequest(ProvidersRequest { sha256 }))
            .await
        {
            Some(Message::Providers(p)) if p.sha256 == sha256 => p.peers,
            other => panic!("expected providers, got {other:?}"),
        }
    }

    fn close(self) {
        self.task.abort();
        self.conn.close(0u32.into(), b"test done");
    }
}

fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
    v.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_the_full_set_after_welcome_then_deltas_on_enrolment_revocation_and_relays() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let (a, key_a) = enrol_in(&m, tmp.path(), "home-a").await;
    let mut sa = Pumped::open(&m, &key_a, None).await;
    let first = sa.overlay(WAIT).await.expect("a full set after welcome");
    assert!(first.full);
    assert_eq!(first.add, vec![a]);
    assert!(first.relays.is_empty());

    // Another node enrols: A gets a delta adding it, at the next revision.
    let (b, key_b) = enrol_in(&m, tmp.path(), "home-b").await;
    let d1 = sa.overlay(WAIT).await.expect("a delta for the enrolment");
    assert!(!d1.full);
    assert_eq!((d1.add.clone(), d1.remove.clone()), (vec![b], vec![]));
    assert_eq!(d1.revision.epoch, first.revision.epoch);
    assert_eq!(d1.revision.seq, first.revision.seq + 1);
    let mut sb = Pumped::open(&m, &key_b, None).await;
    let b_first = sb.overlay(WAIT).await.unwrap();
    assert!(b_first.full);
    assert_eq!(ids(&b_first.add), ids(&[a, b]));
    assert_eq!(b_first.revision, d1.revision);

    // A gateway with an overlay relay registered through the CLI: every member gets the relay.
    let gw = SecretKey::generate();
    let gw_id = SignerId::from_key(gw.public()).to_string();
    let out = cli_ok(
        &m,
        &[
            "gateway",
            "add",
            "edge",
            "--key",
            &gw_id,
            "--tunnel-addr",
            "127.0.0.1:7443",
            "--overlay-addr",
            "127.0.0.1:7444",
        ],
    );
    assert!(out.contains("overlay relay 127.0.0.1:7444"), "{out}");
    assert!(cli_ok(&m, &["gateway", "list"]).contains("127.0.0.1:7444"));
    for s in [&mut sa, &mut sb] {
        let d = s.overlay(WAIT).await.expect("a delta for the relay");
        assert!(d.add.is_empty() && d.remove.is_empty());
        assert_eq!(d.relays.len(), 1);
        assert_eq!(d.relays[0].relay.to_string(), gw_id);
        assert_eq!(d.relays[0].addr.as_str(), "/ip4/127.0.0.1/udp/7444/quic-v1");
    }

    // B is revoked: removed from A's set (and its session cut).
    cli_ok(&m, &["node", "revoke", &b.to_string()]);
    let d3 = sa.overlay(WAIT).await.expect("a delta for the revocation");
    assert_eq!((d3.add.clone(), d3.remove.clone()), (vec![], vec![b]));
    assert_eq!(d3.relays.len(), 1, "every delta carries the relays");
    sb.close();

    // A reconnects naming its current set: no overlay message at all.
    sa.close();
    let mut again = Pumped::open(&m, &key_a, Some(d3.revision)).await;
    assert!(
        again.overlay(Duration::from_secs(2)).await.is_none(),
        "a current node got a set"
    );
    again.close();
    // Naming the set before the revocation: only the missing delta.
    let mut behind = Pumped::open(
        &m,
        &key_a,
        Some(OverlayRevision {
            epoch: d3.revision.epoch,
            seq: d3.revision.seq - 1,
        }),
    )
    .await;
    let caught_up = behind.overlay(WAIT).await.unwrap();
    assert_eq!(caught_up, d3);
    assert!(behind.overlay(Duration::from_millis(500)).await.is_none());
    behind.close();
    // Another epoch (as after a master restart): the full set.
    let mut other = Pumped::open(
        &m,
        &key_a,
        Some(OverlayRevision {
            epoch: d3.revision.epoch ^ 1,
            seq: 1,
        }),
    )
    .await;
    let full = other.overlay(WAIT).await.unwrap();
    assert!(full.full);
    assert_eq!(full.add, vec![a]);
    assert_eq!(full.revision, d3.revision);
    other.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_name_live_holders_whole_first_never_the_asker() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let mut nodes = Vec::new();
    for home in ["home-a", "home-b", "home-c"] {
        let (id, key) = enrol_in(&m, tmp.path(), home).await;
        nodes.push((id, Pumped::open(&m, &key, None).await));
    }
    let art = Sha256::digest(b"an artifact");
    let report = |complete: Vec<Sha256>, partial: Vec<Sha256>| {
        Message::Holdings(Holdings { complete, partial })
    };
    // A and B hold it whole, C in part.
    nodes[0].1.out.send(report(vec![art], vec![])).unwrap();
    nodes[1].1.out.send(report(vec![art], vec![])).unwrap();
    nodes[2].1.out.send(report(vec![], vec![art])).unwrap();
    let (a, b, c) = (nodes[0].0, nodes[1].0, nodes[2].0);
    let got = hearth_tests::eventually(WAIT, async || {
        Some(nodes[2].1.providers(art).await).filter(|p| p.len() == 2)
    })
    .await
    .unwrap();
    assert_eq!(ids(&got), ids(&[a, b]), "never the asker");
    let got = hearth_tests::eventually(WAIT, async || {
        Some(nodes[0].1.providers(art).await).filter(|p| p.len() == 2)
    })
    .await
    .unwrap();
    assert_eq!(got, vec![b, c], "whole holders first");
    assert!(
        nodes[0]
            .1
            .providers(Sha256::digest(b"unknown"))
            .await
            .is_empty()
    );

    // A report over MAX_HOLDINGS is refused (invalid_message) and the previous one kept.
    let many: Vec<Sha256> = (0..=MAX_HOLDINGS)
        .map(|i| Sha256::digest(&i.to_be_bytes()))
        .collect();
    nodes[1].1.out.send(report(many, vec![])).unwrap();
    let refused = nodes[1]
        .1
        .next_of(WAIT, |m| match m {
            Message::Error(e) => Some(e),
            _ => None,
        })
        .await
        .expect("an error for the oversized report");
    assert_eq!(
        (refused.code, refused.fatal),
        (ErrorCode::InvalidMessage, false)
    );
    assert!(nodes[0].1.providers(art).await.contains(&b));

    // B's session ends: B is forgotten.
    let (_, sb) = nodes.remove(1);
    sb.close();
    let got = hearth_tests::eventually(WAIT, async || {
        Some(nodes[0].1.providers(art).await).filter(|p| p.len() == 1)
    })
    .await
    .unwrap();
    assert_eq!(got, vec![c]);

    // Blob bytes served on fetch streams are counted.
    let blob = vec![7u8; 300_000];
    let sha = m.put_blob(blob.clone()).await;
    let mut received = 0;
    let (send, recv) = nodes[0].1.conn.open_bi().await.unwrap();
    let mut s = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    s.send(&Message::FetchBlob(FetchBlob {
        sha256: sha,
        offset: 0,
        max_len: 1 << 30,
    }))
    .await
    .unwrap();
    while let Ok(Some(Message::BlobChunk(c))) = s.recv().await {
        received += c.data.0.len();
    }
    assert_eq!(received, blob.len());
    let (_, text) = m.call(reqwest::Method::GET, "/metrics", None, None).await;
    let text = text.as_str().unwrap_or_default().to_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("hearth_master_blob_bytes_sent_total"))
        .unwrap_or_else(|| panic!("no blob bytes metric in:\n{text}"));
    assert_eq!(
        line,
        format!("hearth_master_blob_bytes_sent_total {}", blob.len())
    );
    for (_, s) in nodes {
        s.close();
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A signed `GET path` as gateway `key`, with `If-None-Match: known`: status, unquoted ETag, body.
async fn members_get(
    m: &MasterProc,
    key: Option<&SecretKey>,
    path: &str,
    known: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", m.http));
    if let Some(key) = key {
        let id = SignerId::from_key(key.public());
        let unix_ms = now_ms();
        let r = GatewayRequest {
            gateway: &id,
            unix_ms,
            method: "GET",
            path,
        };
        let sig = key.sign(&r.signing_bytes());
        req = req.header(
            "authorization",
            format!("Hearth-Gateway {id} {unix_ms} {sig}"),
        );
    }
    if let Some(k) = known {
        req = req.header("if-none-match", format!("\"{k}\""));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    let body = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default();
    (status, etag, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_long_poll_wakes_on_an_enrolment() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let (a, _) = enrol_in(&m, tmp.path(), "home-a").await;
    let gw = SecretKey::generate();
    let gw_id = SignerId::from_key(gw.public()).to_string();
    cli_ok(
        &m,
        &[
            "gateway",
            "add",
            "edge",
            "--key",
            &gw_id,
            "--tunnel-addr",
            "127.0.0.1:7443",
        ],
    );

    // Unsigned, or signed by an unregistered key: 401.
    let (status, _, _) = members_get(&m, None, "/v1/gateway/members", None).await;
    assert_eq!(status, 401);
    let stranger = SecretKey::generate();
    let (status, _, _) = members_get(&m, Some(&stranger), "/v1/gateway/members", None).await;
    assert_eq!(status, 401);

    let (status, etag, body) = members_get(&m, Some(&gw), "/v1/gateway/members", None).await;
    assert_eq!(status, 200, "{body}");
    let etag = etag.unwrap();
    assert_eq!(etag, format!("{}-{}", body["epoch"], body["seq"]));
    assert_eq!(body["members"], serde_json::json!([a.to_string()]));
    // Current, no wait: 304 at once; with a wait and no change: 304 after it.
    let (status, _, _) = members_get(&m, Some(&gw), "/v1/gateway/members", Some(&etag)).await;
    assert_eq!(status, 304);
    let t = Instant::now();
    let (status, _, _) =
        members_get(&m, Some(&gw), "/v1/gateway/members?wait_s=1", Some(&etag)).await;
    assert_eq!(status, 304);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );

    // A long poll waiting when a node enrols answers at once with the new set.
    let path = "/v1/gateway/members?wait_s=30";
    let poll = members_get(&m, Some(&gw), path, Some(&etag));
    let enrolment = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        enrol_in(&m, tmp.path(), "home-b").await
    };
    let t = Instant::now();
    let ((status, new_tag, body), (b, _)) = tokio::join!(poll, enrolment);
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "woke late: {:?}",
        t.elapsed()
    );
    assert_ne!(new_tag.as_deref(), Some(etag.as_str()));
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(body["members"], serde_json::json!(want));
}

/// `static-site` with a `cluster` port and `[peers] port = "cluster"`.
fn with_peers(recipe: String) -> String {
    recipe.replace("[health]", "[[ports]]\nname = \"cluster\"\n[health]")
        + "[peers]\nport = \"cluster\"\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_deployment_lists_the_other_replica_and_follows_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), FAST);
    let mut sessions = Vec::new();
    for home in ["home-a", "home-b", "home-c"] {
        let (id, key) = enrol_in(&m, tmp.path(), home).await;
        sessions.push((id, Pumped::open(&m, &key, None).await));
    }
    for (id, _) in &sessions {
        let id = id.to_string();
        let up = hearth_tests::eventually(WAIT, async || {
            (m.node_state(&id).await == "active").then_some(())
        })
        .await;
        assert!(up.is_some(), "node {id} never active");
    }
    let recipe = upload_static_site(&m, tmp.path(), with_peers);
    cli_ok(
        &m,
        &["deploy", "db", "--recipe", &recipe, "--replicas", "2"],
    );

    // The two nodes given a replica each see the other as its peer.
    let mut placed = Vec::new(); // (node, instance, peers)
    let deadline = Instant::now() + WAIT;
    while placed.len() < 2 && Instant::now() < deadline {
        for (id, s) in sessions.iter_mut() {
            if placed.iter().any(|(n, _, _)| n == id) {
                continue;
            }
            if let Some(ds) = s.desired(Duration::from_millis(200)).await
                && let Some(a) = ds.instances.iter().find(|a| a.deployment.as_str() == "db")
                && !a.peers.is_empty()
            {
                placed.push((*id, a.instance.clone(), a.peers.clone()));
            }
        }
    }
    assert_eq!(
        placed.len(),
        2,
        "two replicas with peers: {placed:?}\n{}",
        m.log()
    );
    let (n0, i0, p0) = placed[0].clone();
    let (n1, i1, p1) = placed[1].clone();
    assert_eq!((p0.len(), &p0[0].instance, p0[0].node), (1, &i1, n1));
    assert_eq!((p1.len(), &p1[0].instance, p1[0].node), (1, &i0, n0));

    // The second replica's node is revoked: its replica moves to the third node, and the first
    // replica's node gets a new desired state naming the new peer.
    cli_ok(&m, &["node", "revoke", &n1.to_string()]);
    let third = sessions
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != n0 && *n != n1)
        .unwrap();
    let s0 = &mut sessions.iter_mut().find(|(n, _)| *n == n0).unwrap().1;
    let deadline = Instant::now() + WAIT;
    let mut moved = None;
    while moved.is_none() && Instant::now() < deadline {
        if let Some(ds) = s0.desired(Duration::from_millis(500)).await {
            let a = ds.instances.iter().find(|a| a.instance == i0).cloned();
            if let Some(a) = a.filter(|a| a.peers.len() == 1 && a.peers[0].node == third) {
                moved = Some(a);
            }
        }
    }
    let a = moved.unwrap_or_else(|| panic!("no desired state with the moved peer\n{}", m.log()));
    assert_ne!(a.peers[0].instance, i0);
    for (_, s) in sessions {
        s.close();
    }
}
