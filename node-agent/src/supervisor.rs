//! The driver of the reconciliation core: runs its actions (fetch and verify, start, signal,
//! report, persist) and turns what happens to processes into events.
//!
//! State survives the agent in `D/agent-state.json`; processes survive it too (own process
//! groups). A restarted agent re-adopts running processes it recognises by pid and kernel start
//! time, and kills any process tagged with this agent's directory that it does not own, so an
//! instance never runs twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_protocol::messages::state::{Assignment, InstanceId, InstanceReport, InstanceStatus};
use hearth_protocol::{Message, Sha256};
use hearth_recipes::verify_recipe;
use tokio::sync::{mpsc, watch};

use crate::fetcher::{Cache, FetchError, Fetcher};
use crate::gateway::Gateways;
use crate::gateway::drain::Drains;
use crate::now_ms;
use crate::overlay::replica::ReplicaLinks;
use crate::partition::{self, Prepared};
use crate::process;
use crate::reconcile::{Action, Agent, Event, Phase, Prepare};
use crate::trust::QuicTransport;
use hearth_recipes::repo::trust::{TrustStore, TrustedTargets};

mod gateway;

/// Largest recipe document accepted.
const MAX_RECIPE: u64 = 1024 * 1024;
/// Seconds between health checks of one instance.
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// Log rotation threshold and number of old logs kept.
const LOG_MAX: u64 = 5 * 1024 * 1024;
const LOG_KEEP: u32 = 3;
/// Version of `agent-state.json`.
const STATE_VERSION: u32 = 1;

/// Inputs of the driver loop.
#[derive(Debug)]
pub enum Input {
    /// An event for the core.
    Core(Event),
    /// A preparation finished.
    Prepared {
        instance: InstanceId,
        generation: u64,
        result: Result<Box<Prepared>, Prepare>,
        start: bool,
    },
    /// A signal the core asked for, sent later (drain before stop, deferred SIGKILL): sent only
    /// if the instance's process `pid` is still being stopped.
    Signal {
        instance: InstanceId,
        pid: u32,
        kill: bool,
    },
}

/// Channels between the supervisor and the link.
#[derive(Debug)]
pub struct Wiring {
    /// Inputs (the link sends desired states and link up/down here).
    pub inputs: mpsc::UnboundedSender<Input>,
    /// Messages for the master (instance status).
    pub outbound: mpsc::UnboundedSender<Message>,
    /// Heartbeat summary.
    pub reports: watch::Sender<Vec<InstanceReport>>,
    /// The gateway links, when this agent keeps them.
    pub gateways: Option<Gateways>,
    /// The replica links, when the overlay is on.
    pub replicas: Option<ReplicaLinks>,
    /// Artifacts by chunks over the overlay (`None` with `--overlay off`: all from the master).
    pub artifacts: Option<crate::artifacts::Artifacts>,
    /// Snapshots, copies and restores of persistent data (`None`: this agent takes none).
    pub backups: Option<crate::backup::Backups>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Persisted {
    version: u32,
    agent: Agent,
}

/// The supervisor.
#[derive(Debug)]
pub struct Supervisor {
    root: PathBuf,
    agent: Agent,
    plans: HashMap<InstanceId, (u64, Box<Prepared>)>,
    adopted: HashMap<InstanceId, (u32, u64)>,
    last_health: HashMap<InstanceId, Instant>,
    cache: Cache,
    fetcher: Fetcher,
    trust: Arc<TrustStore>,
    advertise: IpAddr,
    isolate: bool,
    cgroup: Option<PathBuf>,
    wiring: Wiring,
    drains: Drains,
    ticks: u64,
}

impl Supervisor {
    /// Loads the persisted state, re-adopts live processes and kills strays.
    pub fn start(
        root: PathBuf,
        fetcher: Fetcher,
        advertise: IpAddr,
        isolate: bool,
        wiring: Wiring,
    ) -> std::io::Result<Self> {
        let cache = Cache::open(&root.join("cache"))
            .map_err(std::io::Error::other)?
            .with_artifacts(wiring.artifacts.clone());
        let trust = Arc::new(TrustStore::open(&root.join("tuf")).map_err(std::io::Error::other)?);
        let agent = match std::fs::read_to_string(root.join("agent-state.json")) {
            Ok(text) => {
                let p: Persisted = serde_json::from_str(&text).map_err(std::io::Error::other)?;
                if p.version != STATE_VERSION {
                    return Err(std::io::Error::other(format!(
                        "agent-state.json version {} is unknown",
                        p.version
                    )));
                }
                p.agent
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Agent::default(),
            Err(e) => return Err(e),
        };
        let mut s = Self {
            root,
            agent,
            plans: HashMap::new(),
            adopted: HashMap::new(),
            last_health: HashMap::new(),
            cache,
            fetcher,
            trust,
            advertise,
            isolate,
            cgroup: crate::cgroup::agent_cgroup(),
            wiring,
            drains: Drains::default(),
            ticks: 0,
        };
        match &s.cgroup {
            Some(dir) => {
                tracing::info!(cgroup = %dir.display(), "resource limits through cgroups v2")
            }
            None => tracing::warn!(
                "no writable cgroups v2 hierarchy: instances run without resource limits"
            ),
        }
        s.adopt();
        Ok(s)
    }

    fn adopt(&mut self) {
        let mut owned = HashSet::new();
        let mut gone = Vec::new();
        for (id, i) in &self.agent.instances {
            let (pid, ticks) = match i.phase {
                Phase::Running {
                    pid, start_ticks, ..
                } => (pid, start_ticks),
                Phase::Stopping { pid, .. } => (pid, process::start_ticks(pid).unwrap_or(0)),
                _ => continue,
            };
            if process::is_alive(pid, ticks) {
                tracing::info!(instance = %id, pid, "re-adopted running process");
                if matches!(i.phase, Phase::Stopping { killed: false, .. }) {
                    // Stopped while draining by the previous agent: its SIGTERM may not have
                    // been sent. Sending it again is harmless.
                    let _ = process::signal(pid, false);
                }
                self.adopted.insert(id.clone(), (pid, ticks));
                owned.insert(pid);
                self.replan(i.spec.clone());
            } else {
                gone.push((id.clone(), pid));
            }
        }
        for (pid, instance) in process::find_tagged(&self.root) {
            let group = process_group(pid).unwrap_or(pid);
            if !owned.contains(&group) {
                tracing::warn!(pid, %instance, "killing a stray process of this agent (not in its state)");
                let _ = process::signal(group, true);
            }
        }
        for (instance, pid) in gone {
            let _ = self.wiring.inputs.send(Input::Core(Event::Exited {
                instance,
                pid,
                status: "gone while the agent was down".into(),
            }));
        }
    }

    /// Runs until `shutdown`; instances keep running after the agent stops.
    pub async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        self.publish();
        loop {
            tokio::select! {
                Some(input) = inputs.recv() => self.input(input),
                _ = tick.tick() => self.tick(),
                _ = shutdown.changed() => break,
            }
        }
        self.persist();
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Core(Event::Desired(ds)) => {
                // Not only newer revisions: after a restart the master sends the revision this
                // agent already applied, and the links must come up from it all the same.
                if ds.revision >= self.agent.applied_revision {
                    if let Some(backups) = &self.wiring.backups {
                        backups.set_desired(&ds);
                    }
                    if let Some(gateways) = &self.wiring.gateways {
                        gateways.set(&ds.gateways);
                    }
                    // Peers change without a new generation (a replica moves): the links
                    // follow every desired state, not only the core's new generations.
                    if let Some(replicas) = &self.wiring.replicas {
                        let wanted: Vec<_> = ds
                            .instances
                            .iter()
                            .map(|a| (a.instance.clone(), a.peers.clone()))
                            .collect();
                        replicas.set_desired(&wanted);
                    }
                }
                self.apply(Event::Desired(ds));
            }
            Input::Core(event) => self.apply(event),
            Input::Signal {
                instance,
                pid,
                kill,
            } => self.delayed_signal(&instance, pid, kill),
            Input::Prepared {
                instance,
                generation,
                result,
                start,
            } => {
                let result = match result {
                    Ok(plan) => {
                        self.plans.insert(instance.clone(), (generation, plan));
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                if start {
                    self.apply(Event::Prepared {
                        instance,
                        generation,
                        result,
                    });
                } else {
                    // A re-adopted process's plan: its ports can be tunnelled to from now.
                    self.publish();
                }
            }
        }
    }

    fn apply(&mut self, event: Event) {
        for action in self.agent.step(now_ms(), event) {
            self.execute(action);
        }
        self.publish();
    }

    fn publish(&mut self) {
        let _ = self.wiring.reports.send(self.agent.reports());
        self.publish_to_gateways();
        if let Some(replicas) = &self.wiring.replicas {
            replicas.set_running(self.serving_peers());
        }
    }

    /// Instances running their current generation, with the port their `[peers]` names.
    fn serving_peers(&self) -> HashMap<InstanceId, u16> {
        self.agent
            .instances
            .iter()
            .filter(|(_, i)| matches!(i.phase, Phase::Running { .. }))
            .filter_map(|(id, i)| {
                let (_, plan) = self
                    .plans
                    .get(id)
                    .filter(|(g, _)| *g == i.spec.generation)?;
                Some((id.clone(), plan.peers_port?))
            })
            .collect()
    }

    fn tick(&mut self) {
        self.ticks += 1;
        self.apply(Event::Tick);
        let dead: Vec<_> = self
            .adopted
            .iter()
            .filter(|(_, (pid, ticks))| !process::is_alive(*pid, *ticks))
            .map(|(id, (pid, _))| (id.clone(), *pid))
            .collect();
        for (instance, pid) in dead {
            self.adopted.remove(&instance);
            self.apply(Event::Exited {
                instance,
                pid,
                status: "exited".into(),
            });
        }
        self.health_checks();
        self.backups_due();
        if self.ticks.is_multiple_of(10) {
            for (_, plan) in self.plans.values() {
                if let Err(e) = process::rotate_log(&plan.launch.log, LOG_MAX, LOG_KEEP) {
                    tracing::warn!(error = %e, "log rotation failed");
                }
            }
        }
        if self.ticks.is_multiple_of(60) {
            let keep: HashSet<Sha256> = self
                .plans
                .values()
                .flat_map(|(_, p)| p.blobs.iter().copied())
                .chain(self.agent.instances.values().map(|i| i.spec.recipe.sha256))
                .collect();
            match self.cache.retain(&keep) {
                Ok(n) if n > 0 => tracing::info!(removed = n, "cache garbage-collected"),
                Err(e) => tracing::warn!(error = %e, "cache garbage collection failed"),
                _ => {}
            }
        }
    }

    /// Hands the backups the running instances whose plan backs up their data.
    fn backups_due(&self) {
        let Some(backups) = &self.wiring.backups else {
            return;
        };
        let running = self
            .agent
            .instances
            .iter()
            .filter(|(_, i)| matches!(i.phase, Phase::Running { .. }))
            .filter_map(|(id, i)| {
                let plan = i.spec.backup.clone()?;
                let (_, prepared) = self
                    .plans
                    .get(id)
                    .filter(|(g, _)| *g == i.spec.generation)?;
                Some(crate::backup::Running {
                    instance: id.clone(),
                    deployment: i.spec.deployment.clone(),
                    plan,
                    data: partition::instance_dir(&self.root, &i.spec).join("data"),
                    hook: prepared.snapshot_hook.clone(),
                })
            })
            .collect();
        backups.tick(running);
    }

    /// Restores the snapshot `spec`'s plan names, then tells the core.
    fn restore(&self, spec: Assignment) {
        let inputs = self.wiring.inputs.clone();
        let backups = self.wiring.backups.clone();
        let data = partition::instance_dir(&self.root, &spec).join("data");
        let run_as = self
            .plans
            .get(&spec.instance)
            .filter(|(g, _)| *g == spec.generation)
            .and_then(|(_, p)| p.launch.run_as);
        tokio::spawn(async move {
            let seq = spec
                .backup
                .as_ref()
                .and_then(|b| b.restore.as_ref())
                .map_or(0, |r| r.seq);
            let result = match (&backups, &spec.backup) {
                (Some(b), Some(plan)) => {
                    b.restore(&spec.instance, &spec.deployment, plan, &data)
                        .await
                }
                _ => Err(crate::backup::BackupNetError::Unexpected(
                    "this agent keeps no backups".into(),
                )),
            };
            let result = match result {
                Ok(outcome) => {
                    tracing::info!(instance = %spec.instance, ?outcome, "restore step done");
                    match run_as.map(|r| crate::users::chown_tree(&data, r)) {
                        Some(Err(e)) => Err(Prepare::Retry(format!("restored data: {e}"))),
                        _ => Ok(()),
                    }
                }
                Err(e) if e.is_retryable() => Err(Prepare::Retry(format!("restoring: {e}"))),
                Err(e) => Err(Prepare::Refused(format!("restore refused: {e}"))),
            };
            let _ = inputs.send(Input::Core(Event::Restored {
                instance: spec.instance.clone(),
                generation: spec.generation,
                seq,
                result,
            }));
        });
    }

    fn health_checks(&mut self) {
        for (id, i) in &self.agent.instances {
            let Phase::Running { pid, .. } = i.phase else {
                continue;
            };
            let Some((_, plan)) = self.plans.get(id).filter(|(g, _)| *g == i.spec.generation)
            else {
                continue;
            };
            let Some(check) = plan.check.clone() else {
                continue;
            };
            if self
                .last_health
                .get(id)
                .is_some_and(|t| t.elapsed() < HEALTH_EVERY)
            {
                continue;
            }
            self.last_health.insert(id.clone(), Instant::now());
            let (inputs, instance) = (self.wiring.inputs.clone(), id.clone());
            tokio::spawn(async move {
                let healthy = crate::health::run(&check).await;
                let _ = inputs.send(Input::Core(Event::Health {
                    instance,
                    pid,
                    healthy,
                }));
            });
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Prepare(spec) => self.prepare(spec, true),
            Action::Start(spec) => self.launch(&spec),
            Action::Restore(spec) => self.restore(spec),
            Action::Signal {
                instance,
                pid,
                kill,
            } => self.signal_or_drain(instance, pid, kill),
            Action::Report { report, message } => {
                let plan = self
                    .plans
                    .get(&report.instance)
                    .filter(|(g, _)| *g == report.generation);
                let running =
                    report.state == hearth_protocol::messages::state::InstanceState::Running;
                let status = InstanceStatus {
                    endpoints: plan
                        .filter(|_| running)
                        .map(|(_, p)| p.endpoints.clone())
                        .unwrap_or_default(),
                    published: plan.map(|(_, p)| p.published.clone()).unwrap_or_default(),
                    report,
                    message,
                };
                let _ = self.wiring.outbound.send(Message::InstanceStatus(status));
            }
            Action::Forget(id) => {
                self.plans.remove(&id);
                self.adopted.remove(&id);
                self.last_health.remove(&id);
            }
            Action::Persist => self.persist(),
        }
    }

    fn replan(&self, spec: Assignment) {
        self.prepare(spec, false);
    }

    fn prepare(&self, spec: Assignment, start: bool) {
        let (cache, fetcher, trust, root, advertise, isolate) = (
            self.cache.clone(),
            self.fetcher.clone(),
            self.trust.clone(),
            self.root.clone(),
            self.advertise,
            self.isolate,
        );
        let inputs = self.wiring.inputs.clone();
        let peers = self
            .wiring
            .replicas
            .as_ref()
            .map(|r| r.addresses(&spec.instance));
        tokio::spawn(async move {
            let host = Host {
                root: &root,
                advertise,
                isolate,
                peers,
            };
            let result = prepare(&cache, &fetcher, &trust, &host, &spec)
                .await
                .map(Box::new);
            if let Err(e) = &result {
                tracing::warn!(instance = %spec.instance, error = ?e, "preparation failed");
            }
            let _ = inputs.send(Input::Prepared {
                instance: spec.instance.clone(),
                generation: spec.generation,
                result,
                start,
            });
        });
    }

    fn launch(&mut self, spec: &Assignment) {
        let (instance, generation) = (spec.instance.clone(), spec.generation);
        let Some((_, plan)) = self.plans.get(&instance).filter(|(g, _)| *g == generation) else {
            self.apply(Event::StartFailed {
                instance,
                generation,
                reason: "no prepared plan".into(),
            });
            return;
        };
        match process::start(&plan.launch) {
            Ok(started) => {
                tracing::info!(%instance, pid = started.pid, "instance started");
                if let Some(parent) = &self.cgroup
                    && let Err(e) =
                        crate::cgroup::confine(parent, &instance, &spec.resources, started.pid)
                {
                    tracing::warn!(%instance, error = %e, "cannot apply resource limits");
                }
                let inputs = self.wiring.inputs.clone();
                let (pid, mut child, id) = (started.pid, started.child, instance.clone());
                tokio::spawn(async move {
                    let status = match child.wait().await {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    let _ = inputs.send(Input::Core(Event::Exited {
                        instance: id,
                        pid,
                        status,
                    }));
                });
                self.apply(Event::Started {
                    instance,
                    generation,
                    pid,
                    start_ticks: started.start_ticks,
                });
            }
            Err(e) => {
                let reason = format!("cannot start {}: {e}", plan.launch.program.display());
                self.apply(Event::StartFailed {
                    instance,
                    generation,
                    reason,
                });
            }
        }
    }

    fn persist(&self) {
        let path = self.root.join("agent-state.json");
        let tmp = self.root.join("agent-state.json.tmp");
        let result = serde_json::to_vec_pretty(&Persisted {
            version: STATE_VERSION,
            agent: self.agent.clone(),
        })
        .map_err(std::io::Error::other)
        .and_then(|bytes| write_synced(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot persist agent state");
        }
    }
}

fn signal(instance: &InstanceId, pid: u32, kill: bool) {
    tracing::info!(%instance, pid, kill, "signalling instance");
    if let Err(e) = process::signal(pid, kill) {
        tracing::debug!(%instance, error = %e, "signal failed (already gone?)");
    }
}

fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The signed targets, fresh from the master when the link is up, else re-verified from what
/// this node last trusted.
async fn trusted_targets(trust: &TrustStore, fetcher: &Fetcher) -> Result<TrustedTargets, Prepare> {
    if !fetcher.connected() {
        return trust
            .refresh_offline()
            .await
            .map_err(|e| Prepare::Retry(e.to_string()));
    }
    crate::trust::ensure_root(trust, fetcher)
        .await
        .map_err(|e| {
            if e.is_transient() {
                Prepare::Retry(e.to_string())
            } else {
                Prepare::Refused(e.to_string())
            }
        })?;
    // A refresh that fails (the master busy or restarting, no descriptors, a full disk, or
    // metadata the co-op has yet to re-sign) says nothing final about this recipe: retried with
    // backoff, its cause reported. Only what is verified against the trusted targets is final.
    trust
        .refresh(QuicTransport(fetcher.clone()))
        .await
        .map_err(|e| Prepare::Retry(format!("cannot refresh the signed targets: {e}")))
}

/// Where and how a partition is set up on this node.
struct Host<'a> {
    root: &'a std::path::Path,
    advertise: IpAddr,
    isolate: bool,
    /// The instance's peer addresses (`None`: no replica links, the overlay is off).
    peers: Option<Vec<crate::overlay::replica::peers_file::PeerEntry>>,
}

/// Fetches and verifies the recipe and its artifacts, then sets up the partition.
async fn prepare(
    cache: &Cache,
    fetcher: &Fetcher,
    trust: &TrustStore,
    host: &Host<'_>,
    spec: &Assignment,
) -> Result<Prepared, Prepare> {
    let fetch_err = |e: FetchError| {
        if e.is_retryable() {
            Prepare::Retry(e.to_string())
        } else {
            Prepare::Refused(e.to_string())
        }
    };
    let trusted = trusted_targets(trust, fetcher).await?;
    // The signed listing bounds the download: a master serving more bytes is refused early.
    let listed = trusted
        .recipe(&spec.recipe)
        .map_err(|e| Prepare::Refused(e.to_string()))?;
    let recipe_path = cache
        .get(fetcher, &spec.recipe.sha256, listed.length.min(MAX_RECIPE))
        .await
        .map_err(fetch_err)?;
    let bytes = std::fs::read(&recipe_path).map_err(|e| Prepare::Retry(e.to_string()))?;
    let recipe = verify_recipe(&bytes, &spec.recipe, &trusted)
        .map_err(|e| Prepare::Refused(e.to_string()))?;
    let arch = crate::facts::arch();
    let mut artifacts = BTreeMap::new();
    for a in recipe
        .recipe()
        .artifacts
        .iter()
        .filter(|a| a.arch.is_none_or(|x| x == arch))
    {
        let path = cache
            .artifact(fetcher, &a.sha256, a.size, trusted.chunks(&a.sha256))
            .await
            .map_err(fetch_err)?;
        artifacts.insert(a.name.clone(), path);
    }
    // Hashing and copying artifacts is blocking work: off the runtime, so the link keeps its
    // heartbeats while a large artifact is checked.
    let (root, spec, advertise, isolate) = (
        host.root.to_owned(),
        spec.clone(),
        host.advertise,
        host.isolate,
    );
    let peers = host.peers.clone();
    tokio::task::spawn_blocking(move || {
        for a in recipe
            .recipe()
            .artifacts
            .iter()
            .filter(|a| a.arch.is_none_or(|x| x == arch))
        {
            let Some(path) = artifacts.get(&a.name) else {
                continue;
            };
            let size = std::fs::metadata(path)
                .map_err(|e| Prepare::Retry(e.to_string()))?
                .len();
            let sha = crate::fetcher::hash_file(path).map_err(|e| Prepare::Retry(e.to_string()))?;
            recipe
                .check_artifact(a, size, &sha)
                .map_err(|e| Prepare::Refused(e.to_string()))?;
            if a.executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| Prepare::Retry(e.to_string()))?;
            }
        }
        let peers = peers.as_deref();
        partition::prepare(&root, &spec, &recipe, artifacts, advertise, isolate, peers).map_err(
            |e| {
                if e.is_transient() {
                    Prepare::Retry(e.to_string())
                } else {
                    Prepare::Refused(e.to_string())
                }
            },
        )
    })
    .await
    .map_err(|e| Prepare::Retry(e.to_string()))?
}
