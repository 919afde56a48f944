//! A real `hearth-master` process and its API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use hearth_protocol::MasterId;
use serde_json::Value;

use crate::bin;

/// A running master; killed on drop.
#[derive(Debug)]
pub struct MasterProc {
    /// Its data directory.
    pub dir: PathBuf,
    /// Master identity.
    pub id: MasterId,
    /// QUIC address.
    pub quic: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// Admin token.
    pub token: String,
    child: Child,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

/// Fast liveness timeouts for tests: heartbeat 200 ms, suspect 600 ms, down 1200 ms.
pub const FAST: &[&str] = &[
    "--heartbeat-ms",
    "200",
    "--suspect-after-ms",
    "600",
    "--down-after-ms",
    "1200",
];

impl MasterProc {
    /// `init` a data dir under `root` and `run` it.
    pub fn start(root: &Path, extra: &[&str]) -> Self {
        Self::start_env(root, extra, &[])
    }

    /// Like [`MasterProc::start`], with environment variables for the master (kept on
    /// restarts, e.g. `HEARTH_TEST_CLOCK_OFFSET_MS`).
    pub fn start_env(root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = root.join("master");
        let out = Command::new(bin("hearth-master"))
            .arg("init")
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .expect("init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("master id printed by init");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::run(
            dir,
            id,
            extra.iter().map(|s| (*s).to_owned()).collect(),
            env,
        )
    }

    /// A second master beside `first`, sharing its store: `init` a data dir under `root`, copy
    /// `first`'s identity key and admin token into it (masters sharing a store are one master
    /// to the nodes), and `run` it with `extra` (which must name the same `--store`).
    pub fn start_sharing(root: &Path, first: &MasterProc, extra: &[&str]) -> Self {
        let dir = root.join("master");
        let out = Command::new(bin("hearth-master"))
            .arg("init")
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .expect("init");
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in ["master.key", "admin.token"] {
            std::fs::copy(first.dir.join(file), dir.join(file)).expect("copy the identity");
        }
        Self::run(
            dir,
            first.id,
            extra.iter().map(|s| (*s).to_owned()).collect(),
            Vec::new(),
        )
    }

    fn run(dir: PathBuf, id: MasterId, extra: Vec<String>, env: Vec<(String, String)>) -> Self {
        let _ = std::fs::remove_file(dir.join("quic.addr"));
        let _ = std::fs::remove_file(dir.join("http.addr"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("master.log"))
            .expect("log");
        let child = Command::new(bin("hearth-master"))
            .arg("run")
            .arg("--data-dir")
            .arg(&dir)
            .args(if extra.iter().any(|a| a == "--quic") {
                vec![]
            } else {
                vec!["--quic", "127.0.0.1:0"]
            })
            .args(["--http", "127.0.0.1:0"])
            // Random uptime probes only where a test asks for them: elsewhere an unexpected
            // `audit_probe` would surprise a test session reading its next message.
            .args(if extra.iter().any(|a| a == "--probe-mean") {
                vec![]
            } else {
                vec!["--probe-mean", "off"]
            })
            .args(&extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn master");
        let [quic, http] = crate::published_addrs(&dir, ["quic.addr", "http.addr"]);
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .expect("admin token")
            .trim()
            .to_owned();
        Self {
            dir,
            id,
            quic,
            http,
            token,
            child,
            extra,
            env,
        }
    }

    /// `kill -9`, then start again on the same data dir with this environment instead.
    pub fn kill9_and_restart_env(mut self, env: &[(&str, &str)]) -> Self {
        self.kill9();
        let dir = self.dir.clone();
        let extra = std::mem::take(&mut self.extra);
        let id = self.id;
        drop(self);
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::run(dir, id, extra, env)
    }

    /// `kill -9`, then start again on the same data dir (new ports).
    pub fn kill9_and_restart(mut self) -> Self {
        self.kill9();
        let dir = self.dir.clone();
        let extra = std::mem::take(&mut self.extra);
        let env = std::mem::take(&mut self.env);
        let id = self.id;
        drop(self);
        Self::run(dir, id, extra, env)
    }

    /// `kill -9`, then start again on the same data dir and the same QUIC port (nodes know it).
    pub fn kill9_and_restart_same_quic(mut self) -> Self {
        self.kill9();
        let dir = self.dir.clone();
        let mut extra = std::mem::take(&mut self.extra);
        extra.extend(["--quic".to_owned(), self.quic.to_string()]);
        let env = std::mem::take(&mut self.env);
        let id = self.id;
        drop(self);
        Self::run(dir, id, extra, env)
    }

    /// Uploads a blob through the API; returns its SHA-256.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> hearth_protocol::Sha256 {
        let sha = hearth_protocol::Sha256::digest(&bytes);
        let resp = reqwest::Client::new()
            .put(format!("http://{}/v1/blobs/{sha}", self.http))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await
            .expect("API reachable");
        assert!(resp.status().is_success(), "blob upload: {}", resp.status());
        sha
    }

    /// The instance's entry in `GET /v1/instances`.
    pub async fn instance(&self, id: &str) -> Option<Value> {
        let (_, v) = self.get("/v1/instances").await;
        v.as_array()?.iter().find(|i| i["instance"] == id).cloned()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The master's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("master.log")).unwrap_or_default()
    }

    /// Runs the `hearth` CLI against this master.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("hearth"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("HEARTH_URL")
            .env_remove("HEARTH_TOKEN")
            .output()
            .expect("run hearth")
    }

    /// Creates a token through the CLI and returns its text.
    pub fn token(&self, extra: &[&str]) -> String {
        let mut args = vec!["token", "create"];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `GET path` with the admin token; returns status and JSON.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None, Some(&self.token))
            .await
    }

    /// Any API call; `token` None sends no Authorization header.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", self.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("API reachable");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A node's display state, through the CLI (for code without an async context).
    pub fn node_state_blocking(&self, node: &str) -> String {
        let out = self.cli(&["node", "show", node, "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["state"].as_str().unwrap_or_default().to_owned()
    }

    /// A node's display state as the API reports it.
    pub async fn node_state(&self, node: &str) -> String {
        let (status, v) = self.get(&format!("/v1/nodes/{node}")).await;
        assert_eq!(status, 200, "{v}");
        v["state"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
