//! `hearth-node`: enrol this home server, run the agent, show its status.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use hearth_node_agent::artifacts::Artifacts;
use hearth_node_agent::artifacts::serve::Bucket;
use hearth_node_agent::backup::Backups;
use hearth_node_agent::credits;
use hearth_node_agent::enrol::{RootSource, enrol_with_root};
use hearth_node_agent::facts::{Declared, free_disk_mib};
use hearth_node_agent::fetcher::Fetcher;
use hearth_node_agent::gateway::settle::{self, ReporterConfig};
use hearth_node_agent::gateway::{GatewayConfig, Gateways, GatewaysStatus, RECEIPTS_KEPT};
use hearth_node_agent::link::{self, Hooks, LinkStatus};
use hearth_node_agent::overlay::replica::ReplicaLinks;
use hearth_node_agent::overlay::status::OverlayHealth;
use hearth_node_agent::overlay::{self, Overlay, OverlayConfig};
use hearth_node_agent::state::NodeDir;
use hearth_node_agent::supervisor::{Supervisor, Wiring};
use hearth_node_agent::users::Isolation;
use hearth_protocol::{CountryCode, EnrolToken, HomeId};
use hearth_recipes::repo::sign::previous_version;
use hearth_recipes::repo::trust::check_root;

/// The Hearth node agent.
#[derive(Debug, Parser)]
#[command(name = "hearth-node", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol this machine with a one-time token from the cooperative.
    Enrol {
        /// Master QUIC address, HOST:PORT (repeatable). Tried first, in the order given, then
        /// the addresses the token lists (`…@ADDR,ADDR`); needed only when it lists none.
        #[arg(long = "master")]
        masters: Vec<String>,
        /// The token (`ht2:…`, or `ht1:…` from a master that published no root yet). Also read
        /// from HEARTH_ENROL_TOKEN.
        #[arg(long, env = "HEARTH_ENROL_TOKEN", hide_env_values = true)]
        token: String,
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Country of the home (ISO 3166-1 alpha-2).
        #[arg(long, default_value = "BE")]
        country: CountryCode,
        /// Internet service provider.
        #[arg(long, default_value = "unknown")]
        isp: String,
        /// ISP's autonomous system number.
        #[arg(long)]
        asn: Option<u32>,
        /// Household id (nodes in one home share it).
        #[arg(long, default_value = "home")]
        home: HomeId,
        /// Uplink in Mbit/s.
        #[arg(long, default_value_t = 100)]
        uplink_mbps: u32,
        /// Downlink in Mbit/s.
        #[arg(long, default_value_t = 100)]
        downlink_mbps: u32,
        /// Placement labels, KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Watts this home server draws, for the energy figure of its credit statement
        /// (without it the cooperative's default is used).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        power_watts: Option<u32>,
        /// Disk in MiB this home gives to the cooperative's instances (what placement may
        /// reserve on it); without it, the space free on the data directory's filesystem now.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
        disk_mib: Option<u64>,
        /// The cooperative's signed root metadata (`N.root.json`, from `hearth recipe keys`),
        /// for those who bring their own: it wins over the root an `ht2` token pins. Without
        /// it an `ht2` token's root is fetched from the master and checked against the token;
        /// an `ht1` token's node trusts the master's root on first use.
        #[arg(long)]
        trust_root: Option<PathBuf>,
    },
    /// Run the agent: keep the session to the master.
    Run {
        /// Data directory of an enrolled node.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address at which this node's instances are reachable, published in their endpoints.
        #[arg(long, default_value = "127.0.0.1")]
        advertise_host: std::net::IpAddr,
        /// Run each instance as its own Unix user (auto: when the agent runs as root).
        #[arg(long, value_enum, default_value = "auto")]
        isolate_users: Isolation,
        /// How often bandwidth receipts not yet settled are reported to the master again, in
        /// seconds (new receipts are reported within a few seconds of arriving).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        report_interval_secs: u64,
        /// The node overlay (SPEC §16): artifact chunks from peers and replica links. `off`:
        /// every fetch from the master, no replica links.
        #[arg(long, value_enum, default_value = "on")]
        overlay: OnOff,
        /// UDP address the overlay listens on (QUIC).
        #[arg(long, default_value = "0.0.0.0:0")]
        overlay_listen: SocketAddr,
        /// Serve Prometheus text of the overlay's counters at `http://ADDR/metrics` (off by
        /// default).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Upload budget for artifact chunks served to peers, in Mbit/s (a token bucket;
        /// requests beyond it are answered `busy`). 0: serve no artifact chunks.
        #[arg(long, default_value_t = 20)]
        upload_budget_mbps: u64,
    },
    /// Show this node's credits from the cooperative's public ledger, checked locally: the
    /// checkpoint's master signature and every entry's inclusion proof. Exit 1 if any fails.
    Credits {
        /// Data directory (the master's id pinned at enrolment, this node's id).
        #[arg(long)]
        data_dir: PathBuf,
        /// The master's API, e.g. `http://master.example.coop:8080`.
        #[arg(long)]
        api: url::Url,
        /// The month, `YYYY-MM` (default: this month, UTC).
        #[arg(long)]
        month: Option<hearth_ledger::Month>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what this node runs and its link to the master.
    Status {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A feature switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

/// `println!` whose failure (a closed pipe, a full disk) is returned, not a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    hearth_transport::init_logging();
    match main_inner(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `hearth-node status | head -1`: the reader went away; exit as SIGPIPE would.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn main_inner(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Enrol {
            masters,
            token,
            data_dir,
            country,
            isp,
            asn,
            home,
            uplink_mbps,
            downlink_mbps,
            labels,
            power_watts,
            disk_mib,
            trust_root,
        } => {
            let token: EnrolToken = token.parse()?;
            let root = match &trust_root {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading --trust-root {}", path.display()))?;
                    check_root(&bytes)
                        .with_context(|| format!("--trust-root {}", path.display()))?;
                    Some(bytes)
                }
                None => None,
            };
            let addrs = masters
                .iter()
                .map(|m| resolve(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let declared = Declared {
                country,
                isp,
                asn,
                home,
                uplink_mbps,
                downlink_mbps,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                power_w: power_watts,
                disk_mib,
            };
            if let (Some(given), Some(free)) = (disk_mib, free_disk_mib(&data_dir))
                && given > free
            {
                eprintln!(
                    "warning: --disk-mib {given} is more than the {free} MiB free on the data \
                     directory's filesystem: instances may fill it"
                );
            }
            let done =
                enrol_with_root(&NodeDir::new(&data_dir), &addrs, &token, declared, root).await?;
            match done.root {
                RootSource::Given {
                    differs_from: Some(pin),
                } => eprintln!(
                    "note: --trust-root differs from the root the token pins ({} with SHA-256 \
                     {}); pinned --trust-root",
                    pin.file(),
                    pin.sha256
                ),
                RootSource::Given { differs_from: None } => {}
                RootSource::Token(pin) => eprintln!(
                    "pinned the cooperative's root {} (SHA-256 {}, as the token says)",
                    pin.file(),
                    pin.sha256
                ),
                RootSource::FirstUse => eprintln!(
                    "warning: this ht1 token pins no root and no --trust-root was given: the \
                     master's root will be trusted on first use; ask for an ht2 token or pass \
                     --trust-root FILE"
                ),
            }
            let e = done.enrolment;
            outln!("{}", e.node)?;
            eprintln!(
                "enrolled with master {} at {}; start with `hearth-node run --data-dir {}`",
                e.master,
                join(&e.master_addrs),
                data_dir.display()
            );
        }
        Command::Run {
            data_dir,
            advertise_host,
            isolate_users,
            report_interval_secs,
            overlay,
            overlay_listen,
            metrics_listen,
            upload_budget_mbps,
        } => {
            if isolate_users == Isolation::On && !nix::unistd::geteuid().is_root() {
                bail!("--isolate-users on needs the agent to run as root");
            }
            let dir = NodeDir::new(data_dir);
            let enrolment = dir.require_enrolment()?;
            let key = dir.require_key()?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            tracing::info!(node = %enrolment.node, masters = %join(&enrolment.master_addrs), "agent starting");
            let (inputs_tx, inputs_rx) = tokio::sync::mpsc::unbounded_channel();
            let (outbound_tx, outbound_rx) = tokio::sync::mpsc::unbounded_channel();
            let (reports_tx, reports_rx) = tokio::sync::watch::channel(Vec::new());
            let (conn_tx, conn_rx) = tokio::sync::watch::channel(None);
            let root = std::fs::canonicalize(dir.path())?;
            let gateways = Gateways::new(GatewayConfig {
                key: &key,
                node: enrolment.node,
                bind: SocketAddr::from(([0, 0, 0, 0], 0)),
                dir: &root,
                receipts_kept: RECEIPTS_KEPT,
            })?;
            let (usage_tx, usage_rx) = tokio::sync::mpsc::unbounded_channel();
            let interval = std::time::Duration::from_secs(report_interval_secs);
            let reporter = tokio::spawn(settle::run(
                ReporterConfig {
                    dir: root.clone(),
                    interval,
                    poll: interval.min(std::time::Duration::from_secs(2)),
                },
                gateways.receipts().clone(),
                outbound_tx.clone(),
                usage_rx,
                rx.clone(),
            ));
            let overlay = match overlay {
                OnOff::Off => {
                    // A status from an earlier run with the overlay would mislead.
                    let _ = std::fs::remove_file(dir.path().join(overlay::status::STATUS_FILE));
                    if metrics_listen.is_some() {
                        eprintln!(
                            "note: --metrics-listen serves the overlay's counters; with --overlay off there are none"
                        );
                    }
                    None
                }
                OnOff::On => Some(
                    start_overlay(
                        &dir,
                        &key,
                        OverlayFlags {
                            listen: overlay_listen,
                            metrics: metrics_listen,
                            budget_mbps: upload_budget_mbps,
                        },
                        &rx,
                    )
                    .await?,
                ),
            };
            let (overlay, replicas, bucket) = match overlay {
                Some((overlay, incoming, bucket)) => {
                    let links = ReplicaLinks::start(&root, overlay.clone(), incoming);
                    (Some(overlay), Some(links), bucket)
                }
                None => (
                    None,
                    None,
                    Arc::new(Mutex::new(Bucket::new(upload_budget_mbps))),
                ),
            };
            let backups = Backups::start(&root, overlay.clone(), outbound_tx.clone(), bucket);
            let artifacts = overlay.as_ref().map(|o| Artifacts {
                dir: root.join("cache"),
                overlay: o.clone(),
                changed: Default::default(),
            });
            if let Some(a) = &artifacts {
                tokio::spawn(hearth_node_agent::artifacts::holdings::run(
                    a.dir.clone(),
                    a.changed.clone(),
                    outbound_tx.clone(),
                    conn_rx.clone(),
                ));
                a.changed.notify_one();
            }
            let wiring = Wiring {
                inputs: inputs_tx.clone(),
                outbound: outbound_tx,
                reports: reports_tx,
                gateways: Some(gateways),
                replicas,
                artifacts,
                backups: Some(backups),
            };
            let supervisor = Supervisor::start(
                root,
                Fetcher::new(conn_rx),
                advertise_host,
                isolate_users.enabled(),
                wiring,
            )?;
            let supervised = tokio::spawn(supervisor.run(inputs_rx, rx.clone()));
            let hooks = Hooks {
                inputs: inputs_tx,
                outbound: outbound_rx,
                reports: reports_rx,
                conn: conn_tx,
                usage: Some(usage_tx),
                overlay,
            };
            let linked = link::run(&dir, &enrolment, &key, rx, hooks).await;
            let _ = supervised.await;
            reporter.abort();
            if let Ok(Err(e)) = reporter.await {
                tracing::error!(error = %e, "the usage reporter stopped");
            }
            linked?;
        }
        Command::Credits {
            data_dir,
            api,
            month,
            json,
        } => {
            let enrolment = NodeDir::new(&data_dir).require_enrolment()?;
            let month = month.unwrap_or_else(|| hearth_ledger::Month::of(now_unix_ms()));
            let url = api
                .join(&format!("v1/ledger/nodes/{}?month={month}", enrolment.node))
                .context("--api")?;
            let resp = reqwest::get(url.clone())
                .await
                .with_context(|| format!("GET {url}"))?;
            let status = resp.status();
            let body = resp.text().await.with_context(|| format!("GET {url}"))?;
            if !status.is_success() {
                bail!("GET {url}: {status}: {body}");
            }
            let answer: credits::NodeLedger = serde_json::from_str(&body)
                .with_context(|| format!("GET {url}: not a node ledger"))?;
            let summary = credits::check(&answer, &enrolment.master, &enrolment.node)
                .context("the ledger's answer does not check out")?;
            if json {
                let v = serde_json::json!({ "month": month.to_string(), "node": enrolment.node, "summary": summary });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                use std::io::Write as _;
                write!(
                    std::io::stdout().lock(),
                    "{}",
                    credits::render(month, &summary)
                )?;
            }
        }
        Command::Status { data_dir, json } => {
            let dir = NodeDir::new(&data_dir);
            let enrolment = dir.require_enrolment()?;
            let link: LinkStatus = std::fs::read_to_string(data_dir.join("link.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let state: serde_json::Value =
                std::fs::read_to_string(data_dir.join("agent-state.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
            let instances = state
                .pointer("/agent/instances")
                .cloned()
                .unwrap_or_default();
            let tuf = data_dir.join("tuf");
            let versions: Vec<u64> = ["root", "targets", "snapshot", "timestamp"]
                .iter()
                .map(|r| {
                    previous_version(&tuf.join("datastore").join(format!("{r}.json"))).unwrap_or(0)
                })
                .collect();
            let pinned = tuf.join("anchor.json").exists();
            let gateways = GatewaysStatus::read(&data_dir);
            let credits = settle::Ledger::load(&data_dir)
                .map(|l| l.summary(gateways.receipts))
                .unwrap_or_else(|e| {
                    eprintln!("warning: {e}");
                    settle::SettleSummary::default()
                });
            let overlay = OverlayHealth::read(&data_dir);
            // The address in use while the agent runs, else the first it will try.
            let current = match link.master.as_str() {
                "" => enrolment
                    .master_addrs
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                running => running.to_owned(),
            };
            if json {
                let v = serde_json::json!({ "node": enrolment.node, "master": enrolment.master, "master_addr": current, "master_addrs": enrolment.master_addrs, "standing": link.standing, "link": link, "gateways": gateways, "settlement": credits, "instances": instances,
                    "trust": { "pinned": pinned, "versions": versions }, "overlay": overlay });
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!("node:     {}", enrolment.node)?;
                outln!(
                    "trust:    {} (root v{}, targets v{}, snapshot v{}, timestamp v{})",
                    if pinned { "root pinned" } else { "no root yet" },
                    versions.first().unwrap_or(&0),
                    versions.get(1).unwrap_or(&0),
                    versions.get(2).unwrap_or(&0),
                    versions.get(3).unwrap_or(&0)
                )?;
                outln!("master:   {} at {current}", enrolment.master)?;
                outln!("masters:  {}", join(&enrolment.master_addrs))?;
                outln!(
                    "link:     {} (sessions {}, revision {})",
                    if link.state.is_empty() {
                        "not running"
                    } else {
                        &link.state
                    },
                    link.sessions,
                    link.revision
                )?;
                if let Some(e) = &link.last_error {
                    outln!("last error: {e}")?;
                }
                match &link.standing {
                    Some(s) => outln!(
                        "standing: {} (online score {}, {} probes{}): {}",
                        s.standing.as_str(),
                        percent(s.score_ppm),
                        s.probes,
                        if s.since_ms == 0 {
                            String::new()
                        } else {
                            format!(", since {}", show_time(s.since_ms))
                        },
                        s.reason
                    )?,
                    None => outln!("standing: not known yet (the master has not sent one)")?,
                }
                for g in &gateways.links {
                    let detail = match (g.connected_since_ms, &g.last_error) {
                        (Some(since), _) => format!("since {}", show_time(since)),
                        (None, Some(e)) => format!("last error: {e}"),
                        (None, None) => String::new(),
                    };
                    outln!("gateway:  {} at {} {} {detail}", g.gateway, g.addr, g.state)?;
                }
                outln!("receipts: {} stored", gateways.receipts)?;
                let rejected: Vec<String> = credits
                    .rejected
                    .iter()
                    .map(|(code, n)| format!("{n} {code}"))
                    .collect();
                outln!(
                    "settled:  {} bytes credited; receipts {} pending, {} credited, {} rejected{}",
                    credits.credited_bytes,
                    credits.pending,
                    credits.credited,
                    credits.rejected.values().sum::<usize>(),
                    if rejected.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", rejected.join(", "))
                    }
                )?;
                print_overlay(overlay.as_ref())?;
                let list = instances.as_object().cloned().unwrap_or_default();
                if list.is_empty() {
                    outln!("instances: none")?;
                }
                for (id, i) in list {
                    let phase = i
                        .pointer("/phase/phase")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    let pid = i
                        .pointer("/phase/pid")
                        .and_then(|v| v.as_u64())
                        .map_or(String::new(), |p| format!(" pid {p}"));
                    let health = i.get("health").and_then(|v| v.as_str()).unwrap_or("?");
                    outln!(
                        "instance: {id} {phase}{pid} health {health} restarts {}",
                        i.get("restarts").and_then(|v| v.as_u64()).unwrap_or(0)
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The Overlay section of `hearth-node status`.
fn print_overlay(overlay: Option<&OverlayHealth>) -> std::io::Result<()> {
    let Some(o) = overlay else {
        return outln!("overlay:  off (or the agent has not run with it)");
    };
    outln!("overlay:  peer id {}", o.peer_id)?;
    outln!("  listen: {}", o.listen.join(", "))?;
    for r in &o.relays {
        outln!(
            "  relay:  {} {}",
            r.relay,
            if r.reserved {
                "reserved"
            } else {
                "not reserved"
            }
        )?;
    }
    for p in &o.peers {
        outln!(
            "  peer:   {} {} since {}",
            p.node,
            p.link.as_str(),
            show_time(p.since_ms)
        )?;
    }
    outln!(
        "  bytes:  {} up, {} down; budget {} Mbit/s ({} bytes served), {} chunk requests refused",
        o.bytes_up,
        o.bytes_down,
        o.budget_mbps,
        o.budget_used_bytes,
        o.chunks_refused
    )
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS UTC`.
/// Parts per million as a percentage with two decimals (`91.25%`).
fn percent(ppm: u32) -> String {
    format!("{}.{:02}%", ppm / 10_000, ppm % 10_000 / 100)
}

fn show_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Addresses as `A, B, C`.
fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve(master: &str) -> anyhow::Result<SocketAddr> {
    let mut addrs = master
        .to_socket_addrs()
        .with_context(|| format!("`{master}` is not HOST:PORT"))?;
    match addrs.next() {
        Some(a) => Ok(a),
        None => bail!("`{master}` resolves to no address"),
    }
}

/// The overlay's flags of `hearth-node run`.
struct OverlayFlags {
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    budget_mbps: u64,
}

/// Starts the overlay, the artifact server, its `overlay.json` writer and (with
/// `--metrics-listen`) `/metrics`; returns it with its receiver of replica-link streams.
async fn start_overlay(
    dir: &NodeDir,
    key: &hearth_protocol::SecretKey,
    flags: OverlayFlags,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(
    Overlay,
    tokio::sync::mpsc::Receiver<overlay::Incoming>,
    Arc<Mutex<Bucket>>,
)> {
    let OverlayFlags {
        listen,
        metrics,
        budget_mbps,
    } = flags;
    let (overlay, artifacts, replicas) = Overlay::start(OverlayConfig {
        key: hearth_protocol::SecretKey::from_seed(&key.seed()),
        listen,
        dir: Some(dir.path().to_owned()),
    })
    .context("--overlay on")?;
    tracing::info!(peer_id = %overlay.peer_id(), %listen, "overlay started");
    // One upload budget for what this home serves: artifact chunks and backup transfers.
    let bucket = Arc::new(Mutex::new(Bucket::new(budget_mbps)));
    tokio::spawn(hearth_node_agent::artifacts::serve::serve(
        artifacts,
        std::fs::canonicalize(dir.path())?.join("cache"),
        overlay.clone(),
        budget_mbps,
        bucket.clone(),
    ));
    tokio::spawn(overlay::status::write_loop(
        overlay.clone(),
        dir.path().to_owned(),
        shutdown.clone(),
    ));
    if let Some(addr) = metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
        let bound = listener.local_addr()?;
        std::fs::write(dir.path().join("metrics.addr"), bound.to_string())
            .context("writing metrics.addr")?;
        tracing::info!(addr = %bound, "metrics at /metrics");
        tokio::spawn(overlay::metrics::serve(listener, overlay.clone()));
    }
    Ok((overlay, replicas, bucket))
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::show_time;

    #[test]
    fn times_are_shown_as_utc_dates() {
        assert_eq!(show_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(show_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(show_time(1_796_256_061_999), "2026-12-03 00:01:01 UTC");
        assert_eq!(show_time(4_102_444_799_000), "2099-12-31 23:59:59 UTC");
    }
}
