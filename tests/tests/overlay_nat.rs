//! The overlay across NATs (SPEC §16.3), in network namespaces this test creates (root, `ip`
//! and `iptables` needed; skipped with a message otherwise). A public namespace holds the
//! master and the gateway (the relay); two routers each masquerade a home. In home 1 runs a
//! real agent; in home 2 a member enrolled with the master (its overlay in a thread of this
//! test moved into that namespace). The member reaches the agent through the relay; with
//! port-preserving NATs hole punching (DCUtR) makes the link direct, with `--random-fully`
//! NATs it stays relayed and still carries data. The agent's `hearth-node status --json` is
//! what is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hearth_node_agent::overlay::{LinkKind, Overlay, OverlayConfig, OverlayError};
use hearth_protocol::messages::overlay::HaveRequest;
use hearth_protocol::{Message, NodeId, Sha256};
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::netns::{HOME_IPS, Nat, NatLab, PUBLIC_IP, unsupported};
use hearth_tests::node::{TestSession, enrol_node};
use hearth_tests::{bin, eventually};

const WAIT: Duration = Duration::from_secs(40);

/// The agent in home 1; killed on drop.
struct Agent {
    dir: PathBuf,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(bin("hearth-node"))
        .args(["status", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .expect("status");
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

async fn ask(o: &Overlay, peer: NodeId) -> Result<Message, OverlayError> {
    let mut s = o.open(peer).await?;
    s.send(&Message::HaveRequest(HaveRequest {
        sha256: Sha256::digest(b"nothing"),
    }))
    .await?;
    tokio::time::timeout(Duration::from_secs(10), s.recv())
        .await
        .map_err(|_| OverlayError::Closed)??
        .ok_or(OverlayError::Closed)
}

/// What the member in home 2 saw.
#[derive(Debug)]
struct Seen {
    first_answer_after: Duration,
    link: Option<LinkKind>,
    later_answer: bool,
}

/// The member: enrols, reads the member set, reaches the agent, waits `settle` for hole
/// punching, asks again; stays up until `stop` is dropped.
#[allow(clippy::too_many_arguments)] // one thread's whole brief
fn member(
    home: String,
    master: (std::net::SocketAddr, hearth_protocol::MasterId),
    token: String,
    dir: PathBuf,
    agent: NodeId,
    settle: Duration,
    report: std::sync::mpsc::Sender<Result<Seen, String>>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    NatLab::enter(&home);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let result = async {
            let (_, key) = enrol_node(&dir, master.0, &token)
                .await
                .map_err(|e| format!("enrol: {e}"))?;
            let mut session = TestSession::open(master.0, master.1, &key).await;
            let mut set = None;
            for _ in 0..40 {
                if let Some(Message::Overlay(m)) = session.next_any().await
                    && m.add.contains(&agent)
                    && !m.relays.is_empty()
                {
                    set = Some(m);
                    break;
                }
            }
            let set = set.ok_or("no overlay message naming the agent and a relay")?;
            let (o, _a, _r) = Overlay::start(OverlayConfig {
                key,
                listen: format!("{}:0", HOME_IPS[1]).parse().unwrap(),
                dir: None,
            })
            .map_err(|e| e.to_string())?;
            o.apply(&set).map_err(|e| e.to_string())?;
            let started = Instant::now();
            let mut last = String::new();
            let mut answered = false;
            while started.elapsed() < WAIT {
                match ask(&o, agent).await {
                    Ok(_) => {
                        answered = true;
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if !answered {
                return Err(format!("the agent never answered: {last}"));
            }
            let first_answer_after = started.elapsed();
            let deadline = Instant::now() + settle;
            while Instant::now() < deadline && o.link(&agent) != Some(LinkKind::Direct) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let link = o.link(&agent);
            let later_answer = ask(&o, agent).await.is_ok();
            let _ = report.send(Ok(Seen {
                first_answer_after,
                link,
                later_answer,
            }));
            // Keep the link up while the test reads the agent's status.
            for _ in 0..600 {
                if !matches!(stop.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(session);
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = result {
            let _ = report.send(Err(e));
        }
    });
}

/// One case: returns the agent's link to the member as its status shows it.
fn case(tag: &str, nat: Nat, expect: LinkKind) {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED overlay_nat ({tag}): {why}");
        return;
    }
    // Build the binaries before leaving the host's namespace.
    let node_bin = bin("hearth-node");
    let lab = NatLab::new(tag, nat);
    NatLab::enter(&lab.public);
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let quic = format!("{PUBLIC_IP}:0");
    let mut flags: Vec<&str> = FAST.to_vec();
    flags.extend(["--quic", &quic]);
    let master = MasterProc::start(root.path(), &flags);
    let relay_listen = format!("{PUBLIC_IP}:0");
    let _gateway = GatewayProc::start(
        root.path(),
        "gw1",
        &master,
        &["--overlay-listen", &relay_listen],
    );

    let dir = root.path().join("agent");
    let out = NatLab::command(&lab.homes[0], &node_bin)
        .args(["enrol", "--master", &master.quic.to_string(), "--token"])
        .arg(master.token(&[]))
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enrol: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::File::create(root.path().join("agent.log")).unwrap();
    let agent = Agent {
        child: NatLab::command(&lab.homes[0], &node_bin)
            .args(["run", "--data-dir"])
            .arg(&dir)
            .args(["--overlay-listen", &format!("{}:0", HOME_IPS[0])])
            .env(
                "RUST_LOG",
                std::env::var("HEARTH_NAT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        dir,
    };
    let agent_log = || std::fs::read_to_string(root.path().join("agent.log")).unwrap_or_default();
    rt.block_on(eventually(WAIT, async || {
        let s = status(&agent.dir);
        s["overlay"]["relays"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["reserved"] == true))
            .then_some(())
    }))
    .unwrap_or_else(|| {
        panic!(
            "no reservation on the relay: {}\n{}",
            status(&agent.dir),
            agent_log()
        )
    });
    let agent_id: NodeId = status(&agent.dir)["node"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let (report_tx, report) = std::sync::mpsc::channel();
    let (stop, stop_rx) = std::sync::mpsc::channel();
    let settle = Duration::from_secs(if expect == LinkKind::Direct { 20 } else { 12 });
    let home = lab.homes[1].clone();
    let m = (master.quic, master.id);
    let token = master.token(&[]);
    let member_dir = root.path().join("member");
    let member_thread = std::thread::spawn(move || {
        member(
            home, m, token, member_dir, agent_id, settle, report_tx, stop_rx,
        )
    });
    let seen = report
        .recv_timeout(WAIT + settle + Duration::from_secs(20))
        .expect("the member reported")
        .unwrap_or_else(|e| panic!("member: {e}\n{}", agent_log()));
    eprintln!(
        "{tag}: member saw {seen:?} (first answer after {:?})",
        seen.first_answer_after
    );
    assert!(
        seen.later_answer,
        "the link stopped carrying data: {seen:?}"
    );
    assert_eq!(
        seen.link,
        Some(expect),
        "member side: {seen:?}\n{}",
        agent_log()
    );
    let shown = rt
        .block_on(eventually(Duration::from_secs(10), async || {
            let s = status(&agent.dir);
            let peers = s["overlay"]["peers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            peers.iter().find(|p| p["link"] == expect.as_str()).cloned()
        }))
        .unwrap_or_else(|| {
            panic!(
                "agent status never showed a {} link: {}",
                expect.as_str(),
                status(&agent.dir)
            )
        });
    eprintln!("{tag}: agent status shows {shown}");
    drop(stop);
    let _ = member_thread.join();
    drop(agent);
}

#[test]
fn port_preserving_nats_are_hole_punched_to_a_direct_link() {
    case("a", Nat::PortPreserving, LinkKind::Direct);
}

#[test]
fn random_port_nats_keep_a_relayed_link_that_carries_data() {
    case("b", Nat::RandomFully, LinkKind::Relayed);
}
