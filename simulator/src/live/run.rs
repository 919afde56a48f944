//! A whole live run: start the master (or several on one shared store), enrol and connect the
//! agents, measure the steady state, then (optionally) `kill -9` the master, restart it and
//! measure the agents' return, or (several masters) `kill -9` the one holding the scheduler
//! lease while deployments are written and measure the failover ([`crate::live::failover`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::live::agents::{Agents, AgentsConfig, AgentsError};
use crate::live::deploy::deploy;
use crate::live::enrol::{EnrolAllError, enrol_all};
use crate::live::failover::failover;
use crate::live::master::{MasterConfig, MasterError, MasterProcess};
use crate::live::probe::probe_all;
use crate::live::report::{Assign, LiveReport, Restart, Steady, quantiles};

/// Longest wait for several masters to see each other and one of them to schedule.
const CLUSTER_LIMIT: Duration = Duration::from_secs(60);

/// Progress is reported every this often while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Poll period for agents' welcomes.
const POLL: Duration = Duration::from_millis(50);
/// Poll period for the master's `down`/`suspect` counts during the restart.
const METRICS_POLL: Duration = Duration::from_millis(250);

/// Why a live run failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The master process or its API.
    #[error(transparent)]
    Master(#[from] MasterError),
    /// Enrolment.
    #[error(transparent)]
    Enrol(#[from] EnrolAllError),
    /// Starting the agents.
    #[error(transparent)]
    Agents(#[from] AgentsError),
    /// The temporary directory.
    #[error("cannot create a temporary directory: {0}")]
    TempDir(std::io::Error),
    /// The master did not deliver every placed replica to its agent within the wait.
    #[error("only {held} of {wanted} replicas reached their agents within {waited:?}")]
    NotAssigned {
        /// Replicas the agents hold.
        held: u64,
        /// Replicas asked for.
        wanted: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// Several masters did not form one cluster (each seeing all, one scheduling) in time.
    #[error(
        "the {masters} masters did not see each other with one of them scheduling within {waited:?}; see their logs"
    )]
    NoCluster {
        /// Masters started.
        masters: usize,
        /// How long it waited.
        waited: Duration,
    },
    /// The options ask for something a run cannot do.
    #[error("{0}")]
    Options(&'static str),
    /// Not every session opened within the wait.
    #[error("only {connected} of {nodes} sessions opened within {waited:?}")]
    NotConnected {
        /// Sessions open.
        connected: u64,
        /// Agents.
        nodes: usize,
        /// How long it waited.
        waited: Duration,
    },
}

/// What a live run does.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Number of agents.
    pub nodes: usize,
    /// The master and its liveness timeouts.
    pub master: MasterConfig,
    /// How the agents connect.
    pub agents: AgentsConfig,
    /// Enrolments in flight at once.
    pub enrol_concurrency: usize,
    /// Length of the steady-state measurement window.
    pub measure: Duration,
    /// Wait after all sessions opened before measuring (heartbeat phases spread out).
    pub settle: Duration,
    /// Kill -9 and restart the master after the steady state.
    pub restart: bool,
    /// Longest wait for all sessions to open, at the start and after the restart.
    pub connect_limit: Duration,
    /// Deployments created once every session is open (0: none), each of `replicas`.
    pub deployments: usize,
    /// Replicas of each deployment.
    pub replicas: u32,
    /// Probe every agent once (`POST /v1/nodes/{id}/probe`) before the steady state.
    pub probes: bool,
    /// Masters (more than one needs a shared store in `master.store`); the agents are
    /// enrolled through them in turn, and each starts at the master it was enrolled through.
    pub masters: usize,
    /// After the steady state, `kill -9` the master holding the scheduler lease while
    /// deployments are being written (several masters only).
    pub failover: bool,
}

/// Runs the master and the agents as `opts` says; `progress` gets one line at a time.
pub async fn run(opts: &LiveOptions, progress: &dyn Fn(&str)) -> Result<LiveReport, LiveError> {
    if opts.masters == 0 {
        return Err(LiveError::Options("at least one master"));
    }
    if opts.masters > 1 && opts.master.store.is_none() {
        return Err(LiveError::Options("several masters need a shared store"));
    }
    if opts.failover && opts.masters < 2 {
        return Err(LiveError::Options("a failover needs at least two masters"));
    }
    if opts.probes && opts.masters > 1 {
        return Err(LiveError::Options(
            "probes go through the master holding each session: one master only",
        ));
    }
    if opts.restart && opts.masters > 1 {
        return Err(LiveError::Options(
            "the restart is of a single master; with several, measure a failover",
        ));
    }
    let tmp = tempfile::tempdir().map_err(LiveError::TempDir)?;
    let mut masters = start_masters(tmp.path(), opts, progress).await?;

    let started = Instant::now();
    let mut keys = Vec::with_capacity(opts.nodes);
    for (g, m) in masters.iter().enumerate() {
        // Agent k is enrolled through master k mod M.
        let n = (opts.nodes + masters.len() - 1 - g) / masters.len();
        let enrolled = enrol_all(m.api(), m.quic(), n, opts.enrol_concurrency).await?;
        keys.extend(enrolled.into_iter().map(|k| (k, g)));
    }
    let enrol_secs = started.elapsed().as_secs_f64();
    progress(&format!(
        "enrolled {} agents in {enrol_secs:.1} s",
        keys.len()
    ));
    let rss_idle_kib = masters
        .iter()
        .map(MasterProcess::rss_kib)
        .collect::<Result<Vec<_>, _>>()?;

    let started = Instant::now();
    let addrs: Vec<_> = masters.iter().map(MasterProcess::quic).collect();
    let Some(first) = masters.first() else {
        return Err(LiveError::Options("at least one master"));
    };
    let agents = Agents::spawn(keys, &addrs, first.id(), &opts.agents)?;
    let all = wait_welcomed(&agents, started, opts.connect_limit, progress).await;
    let connect_secs = started.elapsed().as_secs_f64();
    if all.is_none() {
        return Err(LiveError::NotConnected {
            connected: agents.counters().connected,
            nodes: opts.nodes,
            waited: opts.connect_limit,
        });
    }
    progress(&format!(
        "{} sessions open in {connect_secs:.1} s; settling for {:?}",
        opts.nodes, opts.settle
    ));

    let assign = if opts.deployments > 0 {
        Some(assign(first, &agents, opts, progress).await?)
    } else {
        None
    };

    let probes = if opts.probes {
        let ids = first
            .api()
            .nodes()
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        let round = probe_all(first.api(), ids, opts.enrol_concurrency).await?;
        progress(&format!(
            "probed {} agents in {:.1} s: {} passed",
            round.sent, round.secs, round.passed
        ));
        Some(round)
    } else {
        None
    };

    tokio::time::sleep(opts.settle).await;
    let steady = measure(&masters, &agents, opts.measure, &rss_idle_kib).await?;
    for (m, st) in masters.iter().zip(&steady) {
        progress(&format!(
            "steady state: master {} CPU {:.2} % of one core, RSS {} KiB, {} sessions",
            m.name(),
            st.cpu_percent,
            st.rss_kib,
            st.master_sessions
        ));
    }

    let restart = match masters.first_mut() {
        Some(m) if opts.restart => Some(restart(m, &agents, opts, progress).await?),
        _ => None,
    };
    let failover = if opts.failover {
        Some(failover(&mut masters, &agents, opts, progress).await?)
    } else {
        None
    };
    Ok(LiveReport {
        nodes: opts.nodes,
        masters: masters.len(),
        interval_ms: millis(opts.master.heartbeat),
        suspect_after_ms: millis(opts.master.suspect_after),
        down_after_ms: millis(opts.master.down_after),
        enrol_secs,
        connect_secs,
        steady,
        assign,
        probes,
        restart,
        failover,
        agents: agents.counters(),
    })
}

/// Starts the first master, then the others on its store, and waits (several masters) until
/// each sees them all and one holds the scheduler lease.
async fn start_masters(
    root: &std::path::Path,
    opts: &LiveOptions,
    progress: &dyn Fn(&str),
) -> Result<Vec<MasterProcess>, LiveError> {
    let first = MasterProcess::start(root, opts.master.clone()).await?;
    let mut masters = Vec::with_capacity(opts.masters);
    masters.push(first);
    for i in 1..opts.masters {
        let name = format!("m{i}");
        let Some(first) = masters.first() else { break };
        let m = MasterProcess::start_sharing(root, first, &name, opts.master.clone()).await?;
        masters.push(m);
    }
    for m in &masters {
        progress(&format!(
            "master {} {} listening on {} (pid {})",
            m.name(),
            m.id(),
            m.quic(),
            m.pid()
        ));
    }
    if masters.len() > 1 {
        let started = Instant::now();
        loop {
            let mut scheduling = 0;
            let mut all_seen = true;
            for m in &masters {
                let metrics = m.api().metrics().await?;
                scheduling += usize::from(metrics.scheduling);
                all_seen &= metrics.masters == masters.len() as u64;
            }
            if scheduling == 1 && all_seen {
                break;
            }
            if started.elapsed() > CLUSTER_LIMIT {
                return Err(LiveError::NoCluster {
                    masters: masters.len(),
                    waited: CLUSTER_LIMIT,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        progress(&format!(
            "{} masters on one store, one scheduling, after {:.1} s",
            masters.len(),
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(masters)
}

/// Creates the deployments and waits until the agents hold every replica the master placed.
async fn assign(
    master: &MasterProcess,
    agents: &Agents,
    opts: &LiveOptions,
    progress: &dyn Fn(&str),
) -> Result<Assign, LiveError> {
    let started = Instant::now();
    let wanted = deploy(master.api(), opts.deployments, opts.replicas).await?;
    let mut last_progress = Instant::now();
    loop {
        let held = agents.assignments_held();
        if held >= wanted {
            break;
        }
        if started.elapsed() > opts.connect_limit {
            return Err(LiveError::NotAssigned {
                held,
                wanted,
                waited: opts.connect_limit,
            });
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(&format!("  {held} of {wanted} replicas at their agents"));
        }
        tokio::time::sleep(POLL).await;
    }
    let a = Assign {
        deployments: opts.deployments,
        replicas: opts.replicas,
        held: agents.assignments_held(),
        agents_with_work: agents.agents_with_work(),
        secs: started.elapsed().as_secs_f64(),
    };
    progress(&format!(
        "{} replicas of {} deployments placed and delivered to {} agents in {:.1} s",
        a.held, a.deployments, a.agents_with_work, a.secs
    ));
    Ok(a)
}

/// Each master's CPU, RSS and heartbeat rates over one `window`; the `/metrics` reads stay
/// outside it.
async fn measure(
    masters: &[MasterProcess],
    agents: &Agents,
    window: Duration,
    rss_idle_kib: &[u64],
) -> Result<Vec<Steady>, LiveError> {
    let mut before = Vec::with_capacity(masters.len());
    for m in masters {
        before.push(m.api().metrics().await?);
    }
    let cpu0 = masters
        .iter()
        .map(MasterProcess::cpu_seconds)
        .collect::<Result<Vec<_>, _>>()?;
    let (c0, t0) = (agents.counters(), Instant::now());
    tokio::time::sleep(window).await;
    let cpu1 = masters
        .iter()
        .map(MasterProcess::cpu_seconds)
        .collect::<Result<Vec<_>, _>>()?;
    let (c1, elapsed) = (agents.counters(), t0.elapsed());
    let secs = elapsed.as_secs_f64();
    let mut out = Vec::with_capacity(masters.len());
    for (i, m) in masters.iter().enumerate() {
        let after = m.api().metrics().await?;
        let ingested = before
            .get(i)
            .map_or(0, |b| after.heartbeats.saturating_sub(b.heartbeats));
        let cpu = cpu1.get(i).zip(cpu0.get(i)).map_or(0.0, |(a, b)| a - b);
        out.push(Steady {
            window_secs: secs,
            cpu_percent: cpu / secs * 100.0,
            rss_idle_kib: rss_idle_kib.get(i).copied().unwrap_or(0),
            rss_kib: m.rss_kib()?,
            heartbeats_sent_per_sec: c1.heartbeats.saturating_sub(c0.heartbeats) as f64 / secs,
            heartbeats_ingested_per_sec: ingested as f64 / secs,
            master_sessions: after.sessions,
            probes_answered_per_sec: c1.probes.saturating_sub(c0.probes) as f64 / secs,
        });
    }
    Ok(out)
}

/// Kill -9, restart on the same QUIC port, wait for every agent's welcome from the new master
/// while polling the master's `down` and `suspect` counts, then read `/v1/nodes`.
async fn restart(
    master: &mut MasterProcess,
    agents: &Agents,
    opts: &LiveOptions,
    progress: &dyn Fn(&str),
) -> Result<Restart, LiveError> {
    progress("kill -9 the master, restarting it on the same QUIC port");
    let killed = Instant::now();
    master.kill9();
    let respawned = Instant::now();
    master.restart_same_quic().await?;
    let master_start_secs = killed.elapsed().as_secs_f64();
    let (mut max_down_seen, mut max_suspect_seen) = (0, 0);
    let mut last_metrics = Instant::now();
    let mut last_progress = Instant::now();
    let back = loop {
        let back = agents.welcomed_since(killed).len();
        let work_back = agents.work_delivered_since(killed) >= agents.agents_with_work();
        if (back >= agents.len() && work_back) || respawned.elapsed() > opts.connect_limit {
            break back;
        }
        if last_metrics.elapsed() >= METRICS_POLL {
            last_metrics = Instant::now();
            if let Ok(m) = master.api().metrics().await {
                max_down_seen = max_down_seen.max(m.nodes.get("down").copied().unwrap_or(0));
                max_suspect_seen =
                    max_suspect_seen.max(m.nodes.get("suspect").copied().unwrap_or(0));
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(&format!(
                "  {back} agents back after {:.0} s",
                respawned.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let storm_cpu_percent = master.cpu_seconds()? / respawned.elapsed().as_secs_f64() * 100.0;
    let rss_kib = master.rss_kib()?;
    let welcomed = agents.welcomed_since(respawned);
    let all_back_secs =
        (back >= agents.len()).then(|| welcomed.iter().max().map_or(0.0, Duration::as_secs_f64));
    let nodes = master.api().nodes().await?;
    let mut states_after = BTreeMap::new();
    for n in &nodes {
        *states_after.entry(n.state.clone()).or_insert(0) += 1;
    }
    if let Ok(m) = master.api().metrics().await {
        max_down_seen = max_down_seen.max(m.nodes.get("down").copied().unwrap_or(0));
    }
    Ok(Restart {
        master_start_secs,
        back,
        all_back_secs,
        late: welcomed
            .iter()
            .filter(|t| t.as_secs_f64() > crate::live::report::GOAL_SECS)
            .count(),
        back_quantiles_secs: quantiles(welcomed),
        lost_quantiles_secs: quantiles(agents.lost_since(killed)),
        storm_cpu_percent,
        rss_kib,
        max_down_seen,
        max_suspect_seen,
        states_after,
        connected_after: nodes.iter().filter(|n| n.connected).count() as u64,
        agents_with_work: agents.agents_with_work(),
        work_redelivered: agents.work_delivered_since(respawned),
    })
}

/// Waits until every agent has been welcomed at least once since `since`, reporting progress.
pub(crate) async fn wait_welcomed(
    agents: &Agents,
    since: Instant,
    limit: Duration,
    progress: &dyn Fn(&str),
) -> Option<()> {
    let mut last_progress = Instant::now();
    while since.elapsed() <= limit {
        let welcomed = agents.welcomed_since(since).len();
        if welcomed >= agents.len() {
            return Some(());
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            progress(&format!(
                "  {welcomed} sessions open after {:.0} s",
                since.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
