//! A protocol-level test node: enrols through the real agent library, then drives a session by
//! hand so tests can stop heartbeats or send bad frames.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hearth_node_agent::enrol::{EnrolError, enrol};
use hearth_node_agent::facts::Declared;
use hearth_node_agent::state::NodeDir;
use hearth_protocol::messages::session::{Counters, Heartbeat, Hello};
use hearth_protocol::{
    EnrolToken, ErrorCode, MasterId, Message, NodeId, PROTOCOL_VERSION, Resources, SecretKey,
};
use hearth_transport::{
    Identity, MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
};

/// What a test volunteer declares.
pub fn declared(country: &str, isp: &str, home: &str) -> Declared {
    Declared {
        country: country.parse().unwrap(),
        isp: isp.into(),
        asn: None,
        home: home.parse().unwrap(),
        uplink_mbps: 100,
        downlink_mbps: 500,
        labels: Default::default(),
        power_w: None,
        disk_mib: Some(65536),
    }
}

/// Enrols a node in `dir` with the real agent code.
pub async fn enrol_node(
    dir: &Path,
    master: SocketAddr,
    token: &str,
) -> Result<(NodeId, SecretKey), EnrolError> {
    let token: EnrolToken = token.parse().unwrap();
    let nd = NodeDir::new(dir);
    let e = enrol(&nd, master, &token, declared("BE", "Proximus", "home-1")).await?;
    Ok((e.node, nd.require_key().unwrap()))
}

/// Asserts that the next message on `stream` is a fatal `error` with `code` and that `conn` is
/// then closed with `close_code` (10 s limit each).
pub async fn expect_fatal(
    stream: &mut MessageStream,
    conn: &quinn::Connection,
    code: ErrorCode,
    close_code: quinn::VarInt,
) {
    let wait = Duration::from_secs(10);
    match tokio::time::timeout(wait, stream.recv()).await {
        Ok(Ok(Some(Message::Error(e)))) => assert_eq!((e.code, e.fatal), (code, true)),
        other => panic!("expected a fatal {code}, got {other:?}"),
    }
    match tokio::time::timeout(wait, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, close_code, "{c:?}")
        }
        other => panic!("expected close code {close_code}, got {other:?}"),
    }
}

/// An open session driven by the test.
#[derive(Debug)]
pub struct TestSession {
    /// The connection.
    pub conn: quinn::Connection,
    /// The control stream.
    pub control: MessageStream,
    /// Keeps the endpoint alive.
    pub endpoint: quinn::Endpoint,
    seq: u64,
}

/// Connects with `key`'s certificate (ALPN `hearth/1`). Errors are connection failures.
pub async fn connect(
    master: SocketAddr,
    master_id: MasterId,
    key: &SecretKey,
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    let identity = Identity::new(key, "test-node").unwrap();
    let config = client_config(
        Purpose::Session,
        Some(&identity),
        master_id,
        &TransportTuning::default(),
    )
    .unwrap();
    // Loopback, or (NAT tests in namespaces) the namespace's own address.
    let bind = if master.ip().is_loopback() {
        "127.0.0.1:0"
    } else {
        "0.0.0.0:0"
    };
    let endpoint = client_endpoint(bind.parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(config, master, SERVER_NAME)
        .unwrap()
        .await?;
    Ok((endpoint, conn))
}

/// Opens an enrolment connection (ALPN for enrolment, no client certificate), as a node that has
/// no key enrolled yet does.
pub async fn connect_enrol(
    master: SocketAddr,
    master_id: MasterId,
) -> (quinn::Endpoint, quinn::Connection) {
    let config =
        client_config(Purpose::Enrol, None, master_id, &TransportTuning::default()).unwrap();
    let endpoint = client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(config, master, SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

impl TestSession {
    /// Connects and completes hello/welcome.
    pub async fn open(master: SocketAddr, master_id: MasterId, key: &SecretKey) -> Self {
        Self::open_with_overlay(master, master_id, key, None).await
    }

    /// Like [`TestSession::open`], the hello naming the overlay member set held (SPEC §16.2).
    pub async fn open_with_overlay(
        master: SocketAddr,
        master_id: MasterId,
        key: &SecretKey,
        overlay: Option<hearth_protocol::messages::overlay::OverlayRevision>,
    ) -> Self {
        let (endpoint, conn) = connect(master, master_id, key).await.expect("connect");
        let (send, recv) = conn.open_bi().await.expect("control stream");
        let mut control = MessageStream::new(send, recv, hearth_protocol::DEFAULT_MAX_FRAME);
        let node = NodeId::from_key(key.public());
        let hello = Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            node,
            agent: "test".into(),
            applied_revision: 0,
            overlay,
        };
        control
            .send(&Message::Hello(hello))
            .await
            .expect("send hello");
        match tokio::time::timeout(Duration::from_secs(5), control.recv()).await {
            Ok(Ok(Some(Message::Welcome(_)))) => {}
            other => panic!("expected welcome, got {other:?}"),
        }
        Self {
            conn,
            control,
            endpoint,
            seq: 0,
        }
    }

    /// Sends one heartbeat and waits for its ack.
    pub async fn heartbeat(&mut self) {
        self.seq += 1;
        let hb = Heartbeat {
            seq: self.seq,
            used: Resources::default(),
            applied_revision: 0,
            instances: vec![],
            counters: Counters::default(),
            ack: true,
        };
        self.control
            .send(&Message::Heartbeat(hb))
            .await
            .expect("send heartbeat");
        let reply = self.next().await;
        assert!(
            matches!(reply, Some(Message::HeartbeatAck(ref a)) if a.seq == self.seq),
            "expected ack, got {reply:?}"
        );
    }

    /// The next message (5 s limit), skipping `overlay` member-set messages (SPEC §16.2), which
    /// the master sends every session after `welcome` and on each enrolment or revocation:
    /// tests of the overlay read the control stream themselves.
    pub async fn next(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.control.recv())
                .await
                .ok()?
                .ok()?
            {
                Some(Message::Overlay(_)) => continue,
                other => return other,
            }
        }
    }

    /// The next message of any type, `overlay` included (5 s limit).
    pub async fn next_any(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(5), self.control.recv())
            .await
            .ok()?
            .ok()?
    }

    /// Waits (5 s limit) for the connection to close; returns the close reason.
    pub async fn closed(&self) -> Option<quinn::ConnectionError> {
        tokio::time::timeout(Duration::from_secs(5), self.conn.closed())
            .await
            .ok()
    }
}

/// A real `hearth-node run` process; killed on drop.
#[derive(Debug)]
pub struct NodeProc {
    /// Data directory.
    pub dir: std::path::PathBuf,
    child: std::process::Child,
}

impl NodeProc {
    /// `hearth-node enrol` (the real binary), then `run`.
    pub fn enrol_and_run(dir: &Path, master: SocketAddr, token: &str) -> Self {
        Self::enrol_and_run_at(dir, master, token, ("BE", "Proximus", "home-1"))
    }

    /// Like [`NodeProc::enrol_and_run`], declaring (country, ISP, home).
    pub fn enrol_and_run_at(
        dir: &Path,
        master: SocketAddr,
        token: &str,
        at: (&str, &str, &str),
    ) -> Self {
        Self::enrol_and_run_with(dir, master, token, at, &[])
    }

    /// Like [`NodeProc::enrol_and_run_at`], with extra `enrol` arguments (labels…).
    pub fn enrol_and_run_with(
        dir: &Path,
        master: SocketAddr,
        token: &str,
        at: (&str, &str, &str),
        extra: &[&str],
    ) -> Self {
        // Instances may run as their own users (the agent runs as root here): let them
        // traverse the test's temporary directory, as they would /var/lib.
        if let Some(parent) = dir.parent() {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711));
        }
        let out = std::process::Command::new(crate::bin("hearth-node"))
            .args([
                "enrol",
                "--master",
                &master.to_string(),
                "--token",
                token,
                "--data-dir",
            ])
            .arg(dir)
            .args(["--country", at.0, "--isp", at.1, "--home", at.2])
            // Placement must not depend on how full the test machine's disk is.
            .args(["--disk-mib", "65536"])
            .args(extra)
            .output()
            .expect("run hearth-node enrol");
        assert!(
            out.status.success(),
            "enrol: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::run(dir)
    }

    /// Starts `hearth-node run` on an enrolled data directory (its overlay on loopback).
    pub fn run(dir: &Path) -> Self {
        Self::run_with(dir, &["--overlay-listen", "127.0.0.1:0"])
    }

    /// Starts `hearth-node run` on an enrolled data directory with these flags.
    pub fn run_with(dir: &Path, flags: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .expect("log");
        let child = std::process::Command::new(crate::bin("hearth-node"))
            .args(["run", "--data-dir"])
            .arg(dir)
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hearth-node");
        Self {
            dir: dir.to_owned(),
            child,
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9` the agent (its instances keep running).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `hearth-node status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = std::process::Command::new(crate::bin("hearth-node"))
            .args(["status", "--json", "--data-dir"])
            .arg(&self.dir)
            .output()
            .expect("run hearth-node status");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The agent's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Processes tagged as instance `id` of this agent.
    pub fn processes_of(&self, id: &str) -> Vec<u32> {
        let root = std::fs::canonicalize(&self.dir).expect("dir");
        hearth_node_agent::process::find_tagged(&root)
            .into_iter()
            .filter(|(_, i)| i == id)
            .map(|(p, _)| p)
            .collect()
    }

    /// The real user id of a process.
    pub fn uid_of(pid: u32) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Kills every process of this agent's instances (test cleanup).
    pub fn kill_instances(&self) {
        let root = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        for (pid, _) in hearth_node_agent::process::find_tagged(&root) {
            let _ = hearth_node_agent::process::signal(pid, true);
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
        self.kill_instances();
    }
}
