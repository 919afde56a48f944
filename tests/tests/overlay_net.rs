//! The overlay's admission on loopback (SPEC §16.1, §16.3): a master, a gateway relaying the
//! overlay, and a real agent. A member (a node enrolled with the master, its overlay in this
//! test process) reaches the agent, directly and through the relay; a stranger (a fresh key)
//! is refused by the agent and by the relay; a revoked member is cut off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use hearth_node_agent::overlay::{Incoming, Overlay, OverlayConfig, OverlayError};
use hearth_protocol::messages::overlay::{HaveRequest, Overlay as OverlayMessage};
use hearth_protocol::{ErrorCode, Message, NodeId, SecretKey, Sha256};
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::node::{NodeProc, TestSession, enrol_node};
use hearth_tests::{eventually, output_text};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(30);

/// An overlay in this process with `key`, on loopback.
fn overlay(key: &SecretKey) -> (Overlay, Receiver<Incoming>, Receiver<Incoming>) {
    Overlay::start(OverlayConfig {
        key: SecretKey::from_seed(&key.seed()),
        listen: "127.0.0.1:0".parse().unwrap(),
        dir: None,
    })
    .expect("overlay")
}

/// The agent's `overlay` section of `hearth-node status --json` once `check` holds.
async fn status_until(
    agent: &NodeProc,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(WAIT, async || {
        let s = agent.status();
        let o = s.get("overlay").cloned().unwrap_or_default();
        check(&o).then_some(o)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "agent overlay status never showed {what}: {}\n{}",
            agent.status(),
            agent.log()
        )
    })
}

/// A `have_request` on a fresh stream to `peer`: the agent's answer (any protocol answer
/// proves the stream was admitted and dispatched).
async fn ask(o: &Overlay, peer: NodeId) -> Result<Message, OverlayError> {
    let mut s = o.open(peer).await?;
    s.send(&Message::HaveRequest(HaveRequest {
        sha256: Sha256::digest(b"nothing here"),
    }))
    .await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), s.recv())
        .await
        .map_err(|_| OverlayError::Timeout {
            what: "the answer",
            after: Duration::from_secs(10),
        })??;
    answer.ok_or(OverlayError::Closed)
}

/// The `overlay` message the master sends a session after `welcome`.
async fn member_set(session: &mut TestSession) -> OverlayMessage {
    for _ in 0..20 {
        match session.next_any().await {
            Some(Message::Overlay(m)) => return m,
            Some(_) => continue,
            None => break,
        }
    }
    panic!("the master sent no overlay message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_reach_an_agent_strangers_and_revoked_members_do_not() {
    let root = tempfile::tempdir().unwrap();
    let master = MasterProc::start(root.path(), FAST);
    let gateway = GatewayProc::start(
        root.path(),
        "gw1",
        &master,
        &["--overlay-listen", "127.0.0.1:0"],
    );
    let relay_addr = gateway.overlay.expect("overlay.addr");

    // The agent under test.
    let agent_dir = root.path().join("agent");
    let agent = NodeProc::enrol_and_run(&agent_dir, master.quic, &master.token(&[]));
    let o = status_until(&agent, "a reservation on the relay", |o| {
        o["relays"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["reserved"] == true))
    })
    .await;
    let direct: libp2p::Multiaddr = o["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.starts_with("/ip4/127.0.0.1/udp/") && !a.contains("p2p-circuit"))
        .expect("a loopback QUIC listen address")
        .parse()
        .unwrap();
    let agent_id: NodeId = agent.status()["node"].as_str().unwrap().parse().unwrap();

    // A member: enrolled with the master, which sends it the member set and the relay.
    let (member_id, member_key) =
        enrol_node(&root.path().join("member"), master.quic, &master.token(&[]))
            .await
            .expect("enrol member");
    let mut session = TestSession::open(master.quic, master.id, &member_key).await;
    let mut set = member_set(&mut session).await;
    while !set.add.contains(&agent_id) || !set.add.contains(&member_id) || set.relays.is_empty() {
        let next = member_set(&mut session).await;
        set = next;
    }
    assert!(
        set.relays.iter().any(|r| r.addr.as_str()
            == format!("/ip4/127.0.0.1/udp/{}/quic-v1", relay_addr.port())),
        "relay not in the set: {set:?}"
    );
    // The agent learns the new member in a delta: wait for the relay route to work.
    let (member, _a, _r) = overlay(&member_key);
    member.apply(&set).expect("apply the master's set");
    let started = std::time::Instant::now();
    let answer = eventually(WAIT, async || ask(&member, agent_id).await.ok())
        .await
        .expect("the member never reached the agent through the relay");
    assert!(
        matches!(&answer, Message::Error(e) if e.code == ErrorCode::NotFound)
            || matches!(answer, Message::Have(_)),
        "unexpected answer {answer:?}"
    );
    eprintln!("member answered after {:?}: {answer:?}", started.elapsed());
    assert!(member.link(&agent_id).is_some());
    status_until(&agent, "the member's link", |o| {
        o["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["node"] == member_id.to_string()))
    })
    .await;

    // A stranger: a fresh key, which believes the agent is a member, dials the agent's direct
    // address and its circuit through the relay; both refuse it.
    let stranger_key = SecretKey::generate();
    let (stranger, _sa, _sr) = overlay(&stranger_key);
    let mut fake = set.clone();
    fake.add.push(NodeId::from_key(stranger_key.public()));
    stranger.apply(&fake).expect("apply");
    stranger.add_addresses(agent_id, vec![direct.clone()]);
    let started = std::time::Instant::now();
    let got = ask(&stranger, agent_id).await;
    assert!(got.is_err(), "the stranger got an answer: {got:?}");
    eprintln!("stranger refused after {:?}: {got:?}", started.elapsed());
    // The QUIC handshake may complete before the agent's allow list closes the connection.
    let gone = eventually(WAIT, async || {
        stranger.link(&agent_id).is_none().then_some(())
    })
    .await;
    assert!(gone.is_some(), "the stranger kept a link to the agent");
    let s = agent.status();
    let stranger_id = NodeId::from_key(stranger_key.public()).to_string();
    assert!(
        !s["overlay"]["peers"].to_string().contains(&stranger_id),
        "the agent lists the stranger: {s}"
    );

    // Revoking the member: the master sends a delta, the agent closes the member's link and
    // refuses it from then on.
    let out = master.cli(&["node", "revoke", &member_id.to_string()]);
    assert!(out.status.success(), "revoke: {}", output_text(&out));
    status_until(&agent, "the revoked member's link gone", |o| {
        o["peers"]
            .as_array()
            .is_some_and(|p| !p.iter().any(|p| p["node"] == member_id.to_string()))
    })
    .await;
    member.add_addresses(agent_id, vec![direct]);
    let got = ask(&member, agent_id).await;
    assert!(
        got.is_err(),
        "the revoked member still got an answer: {got:?}"
    );
    drop(gateway);
}

/// Idle resident memory of an agent with the overlay on (a reservation held on the relay) and
/// with `--overlay off`, printed for the record; the overlay must cost under 64 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rss_with_and_without_the_overlay() {
    let root = tempfile::tempdir().unwrap();
    let master = MasterProc::start(root.path(), FAST);
    let _gateway = GatewayProc::start(
        root.path(),
        "gw1",
        &master,
        &["--overlay-listen", "127.0.0.1:0"],
    );
    let on = NodeProc::enrol_and_run(&root.path().join("on"), master.quic, &master.token(&[]));
    status_until(&on, "a reservation on the relay", |o| {
        o["relays"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["reserved"] == true))
    })
    .await;
    let off_dir = root.path().join("off");
    let mut off = NodeProc::enrol_and_run(&off_dir, master.quic, &master.token(&[]));
    off.kill9();
    let off = NodeProc::run_with(&off_dir, &["--overlay", "off"]);
    eventually(WAIT, async || {
        (off.status()["link"]["state"] == "connected").then_some(())
    })
    .await
    .expect("the --overlay off agent connects");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_on = hearth_tests::procstat::rss_kib(on.pid()).unwrap();
    let rss_off = hearth_tests::procstat::rss_kib(off.pid()).unwrap();
    eprintln!("idle agent RSS: overlay on {rss_on} KiB, --overlay off {rss_off} KiB");
    assert!(off.status()["overlay"].is_null(), "{}", off.status());
    assert!(
        rss_on < rss_off + 64 * 1024,
        "the overlay costs {} KiB",
        rss_on.saturating_sub(rss_off)
    );
}
