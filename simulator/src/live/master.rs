//! A real `hearth-master` process for live runs: `init`, `run` on loopback (HTTP port 0, QUIC
//! port 0), `kill -9` and restart on the same QUIC port with the same data dir; its API
//! (tokens, `/v1/nodes`, `/metrics`) and its CPU time and RSS from `/proc`. With a shared store
//! (`--store postgres://…`), further masters beside the first share its identity and token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearth_protocol::{EnrolToken, MasterId};
use serde::Deserialize;

/// Polls for the published addresses: 400 × 25 ms.
const START_POLLS: u32 = 400;
const START_POLL: Duration = Duration::from_millis(25);

/// Why the master could not be run or asked.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The binary could not be started.
    #[error(
        "cannot run {bin}: {source}; build it with `cargo build --release -p hearth-master` or pass --master-bin"
    )]
    Spawn {
        /// The binary.
        bin: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `hearth-master init` failed.
    #[error("`hearth-master init` failed: {0}")]
    Init(String),
    /// The master did not publish `quic.addr` and `http.addr` in time.
    #[error("the master did not publish its addresses within 10 s; see its log {0}")]
    NotStarted(PathBuf),
    /// A file of the data dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An API request failed.
    #[error("master API {what}: {source}")]
    Api {
        /// The request.
        what: &'static str,
        /// The HTTP error.
        source: reqwest::Error,
    },
    /// An API answer was not what the API documents.
    #[error("master API {what}: {detail}")]
    Answer {
        /// The request.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// `/proc/PID/stat` or `/proc/PID/status` could not be read or parsed.
    #[error("/proc/{pid}: {detail}")]
    Proc {
        /// The master's process id.
        pid: u32,
        /// What was wrong.
        detail: String,
    },
}

/// How the master is run.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The `hearth-master` binary.
    pub bin: PathBuf,
    /// Heartbeat interval asked of nodes (`--heartbeat-ms`).
    pub heartbeat: Duration,
    /// Silence after which a node is suspect (`--suspect-after-ms`).
    pub suspect_after: Duration,
    /// Silence after which a node is down (`--down-after-ms`).
    pub down_after: Duration,
    /// Threads for QUIC (`--quic-threads`).
    pub quic_threads: u16,
    /// Mean interval of the random uptime probes (`--probe-mean`: `5m`, `30s`, `off`).
    pub probe_mean: String,
    /// The store (`--store`), when not the data dir's SQLite file: several masters share it.
    pub store: Option<String>,
}

/// The master's figures from `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterMetrics {
    /// `hearth_master_heartbeats_total`: heartbeats ingested since the process started.
    pub heartbeats: u64,
    /// `hearth_master_sessions`: sessions open now.
    pub sessions: u64,
    /// `hearth_master_nodes{state=…}`: nodes per display state.
    pub nodes: BTreeMap<String, u64>,
    /// `hearth_master_scheduling`: whether this master holds the scheduler lease.
    pub scheduling: bool,
    /// `hearth_master_masters`: live masters this one knows (itself included).
    pub masters: u64,
}

/// A node as `GET /v1/nodes` shows it (the fields live runs look at).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeSummary {
    /// Node id.
    pub id: String,
    /// Display state (`active`, `suspect`, `down`, …).
    pub state: String,
    /// Whether a session is open.
    pub connected: bool,
}

/// A running master; killed (SIGKILL) on drop.
#[derive(Debug)]
pub struct MasterProcess {
    name: String,
    dir: PathBuf,
    id: MasterId,
    quic: SocketAddr,
    api: MasterApi,
    config: MasterConfig,
    child: Child,
}

/// The operator API of a master: its HTTP address and admin token.
#[derive(Debug, Clone)]
pub struct MasterApi {
    http: SocketAddr,
    token: String,
    client: reqwest::Client,
}

impl MasterProcess {
    /// `init`s a data dir under `root` and runs the master on loopback, both ports 0.
    pub async fn start(root: &Path, config: MasterConfig) -> Result<Self, MasterError> {
        let dir = root.join("master");
        let id = init(&config, &dir)?;
        Self::run("m0".into(), dir, id, config).await
    }

    /// Another master beside `first`, on the same store (`config.store`): `init`s a data dir
    /// under `root`, copies `first`'s identity key and admin token into it (masters sharing a
    /// store are one master to the nodes) and runs it as `name`.
    pub async fn start_sharing(
        root: &Path,
        first: &MasterProcess,
        name: &str,
        config: MasterConfig,
    ) -> Result<Self, MasterError> {
        let dir = root.join(name);
        init(&config, &dir)?;
        for file in ["master.key", "admin.token"] {
            let path = dir.join(file);
            std::fs::copy(first.dir.join(file), &path)
                .map_err(|source| MasterError::Io { path, source })?;
        }
        Self::run(name.to_owned(), dir, first.id, config).await
    }

    async fn run(
        name: String,
        dir: PathBuf,
        id: MasterId,
        config: MasterConfig,
    ) -> Result<Self, MasterError> {
        let child = spawn(&config, &name, &dir, SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let (quic, http, token) = published(&dir).await?;
        Ok(Self {
            name,
            dir,
            id,
            quic,
            api: MasterApi::new(http, token),
            config,
            child,
        })
    }

    /// Its name among the masters of one store (`--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the master again on the same data dir and QUIC port (nodes know that address;
    /// the HTTP port is new). Call [`MasterProcess::kill9`] first.
    pub async fn restart_same_quic(&mut self) -> Result<(), MasterError> {
        self.kill9();
        self.child = spawn(&self.config, &self.name, &self.dir, self.quic)?;
        let (quic, http, token) = published(&self.dir).await?;
        self.quic = quic;
        self.api = MasterApi::new(http, token);
        Ok(())
    }

    /// The master's identity (nodes pin it).
    pub fn id(&self) -> MasterId {
        self.id
    }

    /// The QUIC address nodes connect to.
    pub fn quic(&self) -> SocketAddr {
        self.quic
    }

    /// The current process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its operator API (the HTTP port changes with each restart).
    pub fn api(&self) -> &MasterApi {
        &self.api
    }

    /// User plus system CPU time of the master process since it started, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64, MasterError> {
        let pid = self.pid();
        let bad = |detail: String| MasterError::Proc { pid, detail };
        let stat =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| bad(e.to_string()))?;
        // After the parenthesised command name, utime and stime are the 12th and 13th fields.
        let rest = stat
            .rsplit_once(')')
            .ok_or_else(|| bad("no command name in stat".into()))?
            .1;
        let mut fields = rest.split_whitespace().skip(11);
        let mut tick = || -> Result<u64, MasterError> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("no utime/stime in stat".into()))
        };
        let ticks = tick()? + tick()?;
        Ok(ticks as f64 / ticks_per_second())
    }

    /// Resident set size of the master process (`VmRSS`), KiB.
    pub fn rss_kib(&self) -> Result<u64, MasterError> {
        let pid = self.pid();
        let bad = |detail: String| MasterError::Proc { pid, detail };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| bad(e.to_string()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no VmRSS in status".into()))
    }
}

impl MasterApi {
    /// The API at `http`, with the admin `token`.
    pub fn new(http: SocketAddr, token: String) -> Self {
        Self {
            http,
            token,
            client: reqwest::Client::new(),
        }
    }

    /// Creates an enrolment token through `POST /v1/tokens`.
    pub async fn create_token(&self, label: &str) -> Result<EnrolToken, MasterError> {
        const WHAT: &str = "POST /v1/tokens";
        #[derive(Deserialize)]
        struct Created {
            token: String,
        }
        let created: Created = Self::json(
            WHAT,
            self.authed(reqwest::Method::POST, "/v1/tokens")
                .json(&serde_json::json!({ "label": label })),
        )
        .await?;
        created.token.parse().map_err(|e| MasterError::Answer {
            what: WHAT,
            detail: format!("token `{}`: {e}", created.token),
        })
    }

    /// Sends `request`: its answer, if the status is a success.
    pub(crate) async fn send(
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, MasterError> {
        request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| MasterError::Api { what, source })
    }

    /// Sends `request` and reads its JSON answer.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, MasterError> {
        Self::send(what, request)
            .await?
            .json()
            .await
            .map_err(|source| MasterError::Api { what, source })
    }

    /// A request to `path` with the admin token.
    pub(crate) fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("http://{}{path}", self.http))
            .bearer_auth(&self.token)
    }

    /// `GET /v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>, MasterError> {
        const WHAT: &str = "GET /v1/nodes";
        Self::json(WHAT, self.authed(reqwest::Method::GET, "/v1/nodes")).await
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Result<MasterMetrics, MasterError> {
        const WHAT: &str = "GET /metrics";
        let text = Self::send(
            WHAT,
            self.client.get(format!("http://{}/metrics", self.http)),
        )
        .await?
        .text()
        .await
        .map_err(|source| MasterError::Api { what: WHAT, source })?;
        Ok(parse_metrics(&text))
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Parses the counters live runs use from the Prometheus text exposition.
pub fn parse_metrics(text: &str) -> MasterMetrics {
    let mut out = MasterMetrics::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        if name == "hearth_master_heartbeats_total" {
            out.heartbeats = value;
        } else if name == "hearth_master_sessions" {
            out.sessions = value;
        } else if name == "hearth_master_scheduling" {
            out.scheduling = value == 1;
        } else if name == "hearth_master_masters" {
            out.masters = value;
        } else if let Some(state) = name
            .strip_prefix("hearth_master_nodes{state=\"")
            .and_then(|s| s.strip_suffix("\"}"))
        {
            out.nodes.insert(state.to_owned(), value);
        }
    }
    out
}

/// `hearth-master init --data-dir DIR`; the master id it prints.
fn init(config: &MasterConfig, dir: &Path) -> Result<MasterId, MasterError> {
    let out = Command::new(&config.bin)
        .arg("init")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .map_err(|source| MasterError::Spawn {
            bin: config.bin.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(MasterError::Init(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    printed
        .parse()
        .map_err(|e| MasterError::Init(format!("printed `{printed}`, not a master id: {e}")))
}

fn spawn(
    config: &MasterConfig,
    name: &str,
    dir: &Path,
    quic: SocketAddr,
) -> Result<Child, MasterError> {
    for name in ["quic.addr", "http.addr"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let path = dir.join("master.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| MasterError::Io { path, source })?;
    let ms = |d: Duration| d.as_millis().to_string();
    Command::new(&config.bin)
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .arg("--quic")
        .arg(quic.to_string())
        .args(["--http", "127.0.0.1:0"])
        .args(["--heartbeat-ms", &ms(config.heartbeat)])
        .args(["--suspect-after-ms", &ms(config.suspect_after)])
        .args(["--down-after-ms", &ms(config.down_after)])
        .args(["--quic-threads", &config.quic_threads.to_string()])
        .args(["--probe-mean", &config.probe_mean])
        .args(match &config.store {
            Some(store) => vec!["--store", store.as_str(), "--name", name],
            None => vec![],
        })
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| MasterError::Spawn {
            bin: config.bin.clone(),
            source,
        })
}

/// Waits (bounded) for the addresses the master publishes once it listens; reads the admin token.
async fn published(dir: &Path) -> Result<(SocketAddr, SocketAddr, String), MasterError> {
    let read = |name: &str| -> Option<SocketAddr> {
        std::fs::read_to_string(dir.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    for _ in 0..START_POLLS {
        if let (Some(quic), Some(http)) = (read("quic.addr"), read("http.addr")) {
            let path = dir.join("admin.token");
            let token = std::fs::read_to_string(&path)
                .map_err(|source| MasterError::Io { path, source })?
                .trim()
                .to_owned();
            return Ok((quic, http, token));
        }
        tokio::time::sleep(START_POLL).await;
    }
    Err(MasterError::NotStarted(dir.join("master.log")))
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_parsed() {
        let text = "# HELP x\nhearth_master_heartbeats_total 42\nhearth_master_sessions 7\n\
                    hearth_master_nodes{state=\"down\"} 2\nhearth_master_nodes{state=\"active\"} 5\n\
                    hearth_master_scheduling 1\nhearth_master_masters 2\n";
        let m = parse_metrics(text);
        assert_eq!(m.heartbeats, 42);
        assert_eq!(m.sessions, 7);
        assert_eq!(m.nodes.get("down"), Some(&2));
        assert_eq!(m.nodes.get("active"), Some(&5));
        assert!(m.scheduling);
        assert_eq!(m.masters, 2);
    }
}
