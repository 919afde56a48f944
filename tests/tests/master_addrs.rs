//! Several master addresses, end to end with the real binaries on loopback: `hearth-node enrol`
//! tries each address in turn (given ones first, then the token's) and keeps them all; the
//! agent's link gives up a master killed with `kill -9` (no close reaches it) within about 5 s
//! at the default 3 s heartbeat, moves on to the next address, and comes back round to the
//! master once it runs again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code: a panic is a failure report

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use hearth_tests::master::MasterProc;
use hearth_tests::node::NodeProc;
use hearth_tests::{bin, eventually};
use serde_json::{Value, json};

/// Generous: the machine running the tests may be loaded.
const WAIT: Duration = Duration::from_secs(60);

/// A UDP address nothing listens on (bound, then closed): it never answers.
fn dead_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// `hearth-node enrol --token TOKEN` with `args` into `dir`.
fn enrol(dir: &Path, token: &str, args: &[&str]) -> Output {
    std::process::Command::new(bin("hearth-node"))
        .args([
            "enrol",
            "--token",
            token,
            "--disk-mib",
            "65536",
            "--data-dir",
        ])
        .arg(dir)
        .args(args)
        .output()
        .expect("run hearth-node enrol")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The agent's link as `hearth-node status --json` shows it, once `check` accepts it.
async fn link_when(node: &NodeProc, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    match eventually(WAIT, async || {
        Some(node.status()).filter(|s| check(&s["link"]))
    })
    .await
    {
        Some(status) => status,
        None => panic!(
            "the link never became {what}: {}\nagent log:\n{}",
            node.status(),
            node.log()
        ),
    }
}

#[tokio::test]
async fn a_node_enrols_past_a_dead_master_and_gives_up_a_silent_one_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    // The default heartbeat (3 s): the loss detection measured below is the real one.
    let m = MasterProc::start(tmp.path(), &[]);
    let (dead, real) = (dead_addr(), m.quic);
    let dir = tmp.path().join("node");

    // The dead address is tried first, then the master; both are kept, the one that answered
    // first.
    let out = enrol(
        &dir,
        &m.token(&[]),
        &["--master", &dead.to_string(), "--master", &real.to_string()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let node = NodeProc::run(&dir);
    let status = link_when(&node, "connected", |l| l["state"] == "connected").await;
    assert_eq!(status["master_addrs"], json!([real, dead]), "{status}");
    assert_eq!(status["link"]["master"], real.to_string(), "{status}");
    assert_eq!(
        status["link"]["masters"],
        json!([real.to_string(), dead.to_string()])
    );

    // kill -9: no close frame, no reset (nothing answers on that port any more). The agent
    // notices the silence itself, within 4/3 of a heartbeat interval and two checks (4.8 s).
    let mut m = m;
    m.kill9();
    let killed = Instant::now();
    link_when(&node, "given up", |l| l["state"] != "connected").await;
    let noticed = killed.elapsed();
    eprintln!("silent master given up after {noticed:?}");
    assert!(
        noticed < Duration::from_secs(7),
        "took {noticed:?} to notice (4 s and two checks of 0.4 s expected)"
    );
    let log = node.log();
    assert!(log.contains("nothing heard from the master"), "{log}");

    // Back on the same port: the node, which went on to the next address (the dead one) and
    // round again, reconnects.
    let m = m.kill9_and_restart_same_quic();
    let status = link_when(&node, "connected again", |l| {
        l["state"] == "connected" && l["sessions"] == 2
    })
    .await;
    assert_eq!(status["link"]["master"], real.to_string(), "{status}");
    let log = node.log();
    assert!(
        log.lines()
            .any(|l| l.contains("link to master lost") && l.contains(&format!("master={dead}"))),
        "the dead address was not tried after the loss:\n{log}"
    );
    drop(m);
}

#[tokio::test]
async fn a_token_listing_the_masters_needs_no_master_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let m = MasterProc::start(tmp.path(), &[]);
    let (dead, real) = (dead_addr(), m.quic);
    let token = m.token(&[]);

    // Without any address the refusal says what to do.
    let out = enrol(&tmp.path().join("none"), &token, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--master"), "{}", stderr(&out));
    // A bad address in the suffix is named.
    let out = enrol(
        &tmp.path().join("bad"),
        &format!("{token}@{real},nowhere"),
        &[],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("`nowhere`"), "{}", stderr(&out));
    assert!(!tmp.path().join("bad").join("enrolment.json").exists());

    let dir = tmp.path().join("node");
    let out = enrol(&dir, &format!("{token}@{dead},{real}"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let node = NodeProc::run(&dir);
    let status = link_when(&node, "connected", |l| l["state"] == "connected").await;
    assert_eq!(status["master_addrs"], json!([real, dead]), "{status}");
    assert_eq!(status["master_addr"], real.to_string());
}
