//! The overlay across NATs (SPEC §16.3), in network namespaces this test creates (root, `ip`
//! and `iptables` needed; skipped with a message otherwise). A public namespace holds the
//! master and the gateway (the relay); two routers each masquerade a home, and in each home runs
//! a real agent (`hearth-node run`). A `[peers]` deployment of two replicas
//! (`hearth-test-peer`) puts one in each home, so the agents link to each other over the
//! overlay: through the relay first; with port-preserving NATs hole punching (DCUtR) makes the
//! link direct, with `--random-fully` NATs it stays relayed. Either way the replicas reach each
//! other through the addresses their agents gave them, and both agents' `hearth-node status
//! --json` show the link as it is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use hearth_node_agent::overlay::LinkKind;
use hearth_tests::deploy::{cli_ok, deployment, running};
use hearth_tests::gateway::GatewayProc;
use hearth_tests::master::{FAST, MasterProc};
use hearth_tests::netns::{HOME_IPS, Nat, NatLab, PUBLIC_IP, unsupported};
use hearth_tests::{bin, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// An agent in one home; killed on drop.
struct Agent {
    dir: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Enrols and runs an agent in `lab`'s home `i`.
    fn start(lab: &NatLab, i: usize, root: &Path, master: &MasterProc, node_bin: &Path) -> Self {
        let dir = root.join(format!("agent{i}"));
        let out = NatLab::command(&lab.homes[i], node_bin)
            .args(["enrol", "--master", &master.quic.to_string(), "--token"])
            .arg(master.token(&[]))
            .arg("--data-dir")
            .arg(&dir)
            .args(["--country", "BE", "--isp", ["Proximus", "Telenet"][i]])
            .args(["--home", &format!("home-{i}")])
            .args(["--disk-mib", "65536"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "enrol: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = root.join(format!("agent{i}.log"));
        let child = NatLab::command(&lab.homes[i], node_bin)
            .args(["run", "--data-dir"])
            .arg(&dir)
            .args(["--overlay-listen", &format!("{}:0", HOME_IPS[i])])
            .env(
                "RUST_LOG",
                std::env::var("HEARTH_NAT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { dir, log, child }
    }

    fn status(&self) -> Value {
        let out = std::process::Command::new(bin("hearth-node"))
            .args(["status", "--json", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("status");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The link to `peer` as this agent's status shows it.
    fn link(&self, peer: &str) -> Option<String> {
        let s = self.status();
        s["overlay"]["peers"]
            .as_array()?
            .iter()
            .find(|p| p["node"] == peer)
            .and_then(|p| p["link"].as_str().map(str::to_owned))
    }
}

/// `reached.json` of replica `me` in `dir` once it holds `peer`'s answer, written after `since`.
fn reached(dir: &Path, me: &str, peer: &str, since: SystemTime) -> bool {
    let file = dir.join("data").join("reached.json");
    let fresh = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > since);
    let v: Option<Value> = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    fresh && v.is_some_and(|v| v["peers"][peer] == format!("{peer} got hello from {me}").as_str())
}

/// One case: two agents behind NATs of kind `nat` link with `expect`.
fn case(tag: &str, nat: Nat, expect: LinkKind) {
    if let Some(why) = unsupported() {
        eprintln!("SKIPPED overlay_nat ({tag}): {why}");
        return;
    }
    // Build the binaries before leaving the host's namespace.
    let node_bin = bin("hearth-node");
    let peer_bin = PathBuf::from(env!("CARGO_BIN_EXE_hearth-test-peer"));
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
    let agents = [0, 1].map(|i| Agent::start(&lab, i, root.path(), &master, &node_bin));
    let logs = || {
        agents
            .iter()
            .map(|a| format!("--- {}\n{}", a.log.display(), a.log()))
            .collect::<String>()
    };
    for a in &agents {
        rt.block_on(eventually(WAIT, async || {
            a.status()["overlay"]["relays"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["reserved"] == true))
                .then_some(())
        }))
        .unwrap_or_else(|| panic!("no reservation on the relay: {}\n{}", a.status(), logs()));
    }
    let ids: Vec<String> = agents
        .iter()
        .map(|a| a.status()["node"].as_str().unwrap().to_owned())
        .collect();

    // One replica in each home; their agents link to each other for the `[peers]` port.
    let size = std::fs::metadata(&peer_bin).unwrap().len();
    let placeholder = hearth_protocol::Sha256::digest(b"filled in by hearth recipe build");
    let reference = hearth_tests::recipes::sign_and_publish(
        &master,
        &hearth_tests::recipes::peer_echo(&placeholder, size),
        &[("server", &peer_bin)],
    );
    cli_ok(
        &master,
        &["deploy", "echo", "--recipe", &reference, "--replicas", "2"],
    );
    let two = rt
        .block_on(eventually(WAIT, async || {
            let r = running(&deployment(&master, "echo"));
            (r.len() == 2).then_some(r)
        }))
        .unwrap_or_else(|| {
            panic!(
                "two replicas never ran: {}\n{}",
                deployment(&master, "echo"),
                logs()
            )
        });
    let replica = |i: usize| {
        let (instance, _) = two.iter().find(|(_, n)| *n == ids[i]).unwrap().clone();
        let dir = agents[i].dir.join("instances").join(&instance);
        (instance, dir)
    };
    let [(a, dir_a), (b, dir_b)] = [replica(0), replica(1)];

    // The replicas reach each other (through the relay at first, whatever the NATs).
    let start = SystemTime::now();
    let both = |since| reached(&dir_a, &a, &b, since) && reached(&dir_b, &b, &a, since);
    rt.block_on(eventually(WAIT, async || both(start).then_some(())))
        .unwrap_or_else(|| {
            panic!(
                "the replicas never reached each other: {:?} {:?}\n{}",
                std::fs::read_to_string(dir_a.join("data/reached.json")),
                std::fs::read_to_string(dir_b.join("data/reached.json")),
                logs()
            )
        });

    // Both agents show the link as the NATs allow it, and it carries the replicas' bytes.
    let settle = Duration::from_secs(if expect == LinkKind::Direct { 30 } else { 12 });
    let links = rt
        .block_on(eventually(settle, async || {
            let l = (agents[0].link(&ids[1])?, agents[1].link(&ids[0])?);
            (l.0 == expect.as_str() && l.1 == expect.as_str()).then_some(l)
        }))
        .unwrap_or_else(|| {
            panic!(
                "the agents never both showed a {} link: {:?} / {:?}\n{}",
                expect.as_str(),
                agents[0].link(&ids[1]),
                agents[1].link(&ids[0]),
                logs()
            )
        });
    eprintln!("{tag}: agent status shows {links:?}");
    if expect == LinkKind::Relayed {
        // Relayed for good: nothing upgrades it later.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(agents[0].link(&ids[1]).as_deref(), Some("relayed"));
    }
    let settled = SystemTime::now();
    rt.block_on(eventually(WAIT, async || both(settled).then_some(())))
        .unwrap_or_else(|| {
            panic!(
                "the link stopped carrying the replicas' bytes once {}: {:?} {:?}\n{}",
                expect.as_str(),
                std::fs::read_to_string(dir_a.join("data/reached.json")),
                std::fs::read_to_string(dir_b.join("data/reached.json")),
                logs()
            )
        });
    let bytes = |s: &Value| s["overlay"]["bytes_up"].as_u64().unwrap_or(0);
    assert!(
        agents.iter().all(|a| bytes(&a.status()) > 0),
        "no overlay bytes counted: {} / {}",
        agents[0].status(),
        agents[1].status()
    );
    drop(agents);
}

#[test]
fn port_preserving_nats_are_hole_punched_to_a_direct_link() {
    case("a", Nat::PortPreserving, LinkKind::Direct);
}

#[test]
fn random_port_nats_keep_a_relayed_link_that_carries_data() {
    case("b", Nat::RandomFully, LinkKind::Relayed);
}
