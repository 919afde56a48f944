//! The `hearth` operator CLI: a thin client of the master's HTTP API, speaking it through the
//! `hearth-api` types (request bodies, answers, errors). It links no part of the control plane:
//! what it needs from a master's data directory is read by [`master_dir`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use serde_json::Value;

use hearth_api::{CreateToken, CreatedToken, DeploymentSpec, NodeView};

use crate::client::Client;

/// `println!` whose failure is returned as an error (use with `?`).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

mod backup;
mod client;
mod credits;
mod deploy;
pub mod ingress;
pub mod ledger;
pub mod master_dir;
mod recipe;
mod show;
pub mod users;
pub mod witnesses;

/// Operate a Hearth cooperative cloud.
#[derive(Debug, Parser)]
#[command(name = "hearth", version)]
pub struct Cli {
    /// Master API URL, e.g. http://127.0.0.1:7080.
    #[arg(long, env = "HEARTH_URL", global = true)]
    pub url: Option<String>,
    /// File holding the credential: the admin token or a person's (default: HEARTH_TOKEN, the
    /// data dir's admin.token, then what `hearth login` saved).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// A master data dir on this machine: its API address and admin token are read from it.
    #[arg(long, env = "HEARTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: reads your credential from stdin, checks it and keeps it (with --url) for later
    /// commands.
    Login,
    /// Forget the credential `hearth login` kept.
    Logout,
    /// Who the credential in use is.
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// People and their roles: add, list, remove.
    #[command(subcommand)]
    User(users::UserCmd),
    /// Enrolment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// List nodes.
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One node.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Deploy a service (idempotent by name: the same command again changes nothing).
    Deploy {
        /// Deployment name.
        name: String,
        /// Recipe as NAME@VERSION (resolved in the published signed targets) or
        /// NAME@VERSION:SHA256.
        #[arg(long)]
        recipe: String,
        /// Replicas, each in a distinct home.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Spread beyond homes, comma-separated: isp,country.
        #[arg(long, value_delimiter = ',')]
        spread: Vec<String>,
        /// Allowed countries, comma-separated (default: anywhere).
        #[arg(long, value_delimiter = ',')]
        countries: Vec<String>,
        /// Parameters, KEY=VALUE (repeatable).
        #[arg(long = "param")]
        params: Vec<String>,
        /// Labels nodes must carry, KEY=VALUE (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Public routes through the cooperative's gateways.
        #[command(flatten)]
        routes: ingress::RouteFlags,
        /// Wait until every replica runs and is healthy, for at most this long (e.g. 2m); exit
        /// status 1 if it does not.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish a deployment through the gateways: `--host NAME [--port NAME] [--plain-http]`
    /// and/or `--tcp PORTNAME=PUBLICPORT [--proxy-protocol]` (a route for the same host or
    /// public port is replaced).
    Expose {
        /// Deployment name.
        name: String,
        /// The routes to add.
        #[command(flatten)]
        routes: ingress::RouteFlags,
    },
    /// Stop publishing routes of a deployment: `--host NAME` and/or `--tcp PUBLICPORT`.
    Unexpose {
        /// Deployment name.
        name: String,
        /// The routes to remove.
        #[command(flatten)]
        routes: ingress::UnexposeFlags,
    },
    /// The cooperative's gateways: add, list, remove.
    #[command(subcommand)]
    Gateway(ingress::GatewayCmd),
    /// List deployments.
    Deployments {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One deployment: each replica's node, state, health and endpoints.
    #[command(subcommand)]
    Deployment(DeploymentCmd),
    /// A deployment's backups: snapshot now, list, restore.
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Where a deployment's data lives: every replica and backup copy, with home, ISP, country.
    Where {
        /// Deployment name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a deployment's number of replicas.
    Scale {
        /// Deployment name.
        name: String,
        /// Replicas.
        replicas: u32,
    },
    /// Roll a deployment onto another recipe, one replica at a time; rolled back if the new
    /// one fails its health check.
    Update {
        /// Deployment name.
        name: String,
        /// Recipe as NAME@VERSION or NAME@VERSION:SHA256.
        #[arg(long)]
        recipe: String,
        /// Time one replica gets to become ready on the new recipe (e.g. 90s, 5m).
        #[arg(long, value_parser = humantime::parse_duration)]
        deadline: Option<Duration>,
        /// Follow the update until it completes (exit 0) or rolls back (exit 1), for at most
        /// this long (e.g. 10m).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
    },
    /// A month's credit statements: logged ones once the month closed, else provisional.
    Credits {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Only this node (`hn-…`).
        #[arg(long)]
        node: Option<String>,
        /// Print JSON (the bytes `hearth ledger verify --statements M --json` prints).
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV.
        #[arg(long)]
        csv: bool,
    },
    /// The credits ledger: export it, verify an export, prove an entry, run a witness.
    #[command(subcommand)]
    Ledger(ledger::LedgerCmd),
    /// Remove a deployment and its instances.
    Undeploy {
        /// Deployment name.
        name: String,
    },
    /// The signed recipe repository: keys, build, sign, publish, list, show.
    #[command(subcommand)]
    Recipe(recipe::RecipeCmd),
    /// List placed instances with what their nodes report.
    Instances {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload a file (recipe or artifact) to the master's content-addressed store; prints its SHA-256.
    Upload {
        /// The file.
        file: PathBuf,
    },
}

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a one-time enrolment token.
    Create {
        /// Label shown in listings.
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, e.g. 24h, 30m, 7days.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// The node that enrols also makes (or joins) this volunteer's account: the volunteer
        /// signs in to the dashboard and `hearth login` with the same token.
        #[arg(long)]
        volunteer: Option<hearth_api::UserName>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an unused token.
    Revoke {
        /// Token id (8 hex characters).
        id: String,
    },
}

/// Deployment commands.
#[derive(Debug, Subcommand)]
pub enum DeploymentCmd {
    /// Show a deployment.
    Show {
        /// Name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Show a node.
    Show {
        /// Node id (`hn-…`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move its instances elsewhere before it leaves.
    Drain { id: String },
    /// Make it schedulable again.
    Activate { id: String },
    /// Keep it in reserve.
    Reserve { id: String },
    /// Use it for test deployments only.
    Test { id: String },
    /// It left the cooperative: refuse its sessions.
    Retire { id: String },
    /// Revoke its identity: its session is cut now and reconnects are refused.
    Revoke { id: String },
    /// Audit it now: send a fresh nonce over its session and check its signed answer (exit
    /// status 1 if the probe fails).
    Probe {
        /// Node id (`hn-…`).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the CLI; the binary prints the error and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Recipe(cmd) = &cli.command
        && recipe::local(cmd).await?
    {
        return Ok(());
    }
    if let Command::Ledger(cmd) = &cli.command {
        return ledger::run(&cli, cmd).await;
    }
    match &cli.command {
        Command::Login => return users::login(cli.url.clone()).await,
        Command::Logout => return users::logout(),
        _ => {}
    }
    let client = Client::new(&cli)?;
    match cli.command {
        Command::Login | Command::Logout => {}
        Command::Whoami { json } => users::whoami(&client, json).await?,
        Command::User(cmd) => users::run(&client, cmd).await?,
        Command::Token(TokenCmd::Create {
            label,
            expires,
            volunteer,
            json,
        }) => {
            let body = CreateToken {
                label,
                expires_in_secs: expires.map(|d| d.as_secs().max(1)),
                volunteer,
            };
            let (v, _) = client
                .send(reqwest::Method::POST, "/v1/tokens", Some(&body), None)
                .await?;
            let created: CreatedToken = serde_json::from_value(v.clone())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!("{}", created.token)?;
                eprintln!(
                    "token {} created; give it to the volunteer for `hearth-node enrol --token …`",
                    created.id
                );
                if created.token.starts_with("ht1:") {
                    eprintln!(
                        "warning: no signed root is published yet, so this ht1 token pins none: \
                         the node needs `--trust-root FILE` or trusts the master's root on first \
                         use; publish the repository (`hearth recipe publish`) first for an ht2 \
                         token that pins it"
                    );
                }
            }
        }
        Command::Token(TokenCmd::List { json }) => {
            let v = client.get("/v1/tokens").await?;
            output(&v, json, show::tokens)?;
        }
        Command::Token(TokenCmd::Revoke { id }) => {
            client
                .call(reqwest::Method::DELETE, &format!("/v1/tokens/{id}"), None)
                .await?;
            outln!("token {id} revoked")?;
        }
        Command::Nodes { json } => {
            let v = client.get("/v1/nodes").await?;
            output(&v, json, show::nodes)?;
        }
        Command::Deploy {
            name,
            recipe,
            replicas,
            spread,
            countries,
            params,
            labels,
            routes,
            wait,
            json,
        } => {
            let (hosts, tcp) = routes.routes()?;
            let body = DeploymentSpec {
                name: name
                    .parse()
                    .map_err(|e| anyhow!("`{name}` is not a deployment name: {e}"))?,
                recipe: deploy::recipe_ref(&client, &recipe).await?,
                replicas,
                spread: spread.into_iter().collect(),
                countries: countries
                    .iter()
                    .map(|c| {
                        c.parse()
                            .map_err(|e| anyhow!("--countries {c} is not a country code: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                params: key_values(&params, "--param")?,
                labels: key_values(&labels, "--label")?,
                hosts,
                tcp,
            };
            let (v, _) = client
                .send(reqwest::Method::POST, "/v1/deployments", Some(&body), None)
                .await?;
            deploy::requested(&client, &name, &v, json, wait).await?;
        }
        Command::Expose { name, routes } => ingress::expose(&client, &name, &routes).await?,
        Command::Unexpose { name, routes } => ingress::unexpose(&client, &name, &routes).await?,
        Command::Gateway(cmd) => ingress::gateway(&client, cmd).await?,
        Command::Deployments { json } => {
            let v = client.get("/v1/deployments").await?;
            output(&v, json, show::deployments)?;
        }
        Command::Deployment(DeploymentCmd::Show { name, json }) => {
            let v = client.get(&format!("/v1/deployments/{name}")).await?;
            output(&v, json, |v| show::deployment(&name, v))?;
        }
        Command::Backup(cmd) => backup::backup(&client, cmd).await?,
        Command::Where { name, json } => backup::where_is(&client, &name, json).await?,
        Command::Scale { name, replicas } => {
            client
                .change_deployment(&name, |spec| {
                    spec.replicas = replicas;
                    Ok(())
                })
                .await?;
            outln!("deployment {name} scaled to {replicas}")?;
        }
        Command::Update {
            name,
            recipe,
            deadline,
            wait,
        } => deploy::update(&client, &name, &recipe, deadline, wait).await?,
        Command::Undeploy { name } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/deployments/{name}"),
                    None,
                )
                .await?;
            outln!("deployment {name} removed")?;
        }
        Command::Instances { json } => {
            let v = client.get("/v1/instances").await?;
            output(&v, json, show::instances)?;
        }
        Command::Upload { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let sha = hearth_protocol::Sha256::digest(&bytes);
            client.put_bytes(&format!("/v1/blobs/{sha}"), bytes).await?;
            outln!("{sha}")?;
        }
        Command::Recipe(cmd) => recipe::remote(&client, cmd).await?,
        // handled above, before an admin token is needed
        Command::Ledger(_) => {}
        Command::Credits {
            month,
            node,
            json,
            csv,
        } => credits::credits(&client, &month, node.as_deref(), json, csv).await?,
        Command::Node(NodeCmd::Show { id, json }) => {
            let v = client.get(&format!("/v1/nodes/{id}")).await?;
            output(&v, json, show::node)?;
        }
        Command::Node(NodeCmd::Probe { id, json }) => {
            let v = client
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/nodes/{id}/probe"),
                    None,
                )
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            }
            let field = |k: &str| v.get(k).cloned().unwrap_or_default();
            if field("outcome") != "passed" {
                let reason = field("reason");
                let reason = reason.as_str().unwrap_or("no reason given");
                anyhow::bail!("node {id} failed the probe: {reason}");
            }
            if !json {
                outln!(
                    "node {id} passed the probe: signed answer in {} ms",
                    field("rtt_ms")
                )?;
            }
        }
        Command::Node(action) => {
            let (verb, id) = match &action {
                NodeCmd::Drain { id } => ("drain", id),
                NodeCmd::Activate { id } => ("activate", id),
                NodeCmd::Reserve { id } => ("reserve", id),
                NodeCmd::Test { id } => ("test", id),
                NodeCmd::Retire { id } => ("retire", id),
                NodeCmd::Revoke { id } => ("revoke", id),
                NodeCmd::Show { .. } | NodeCmd::Probe { .. } => unreachable!("handled above"),
            };
            let v = client
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/nodes/{id}/{verb}"),
                    None,
                )
                .await?;
            let node: NodeView = serde_json::from_value(v)?;
            outln!("node {} is now {}", node.id, node.state)?;
        }
    }
    Ok(())
}

/// `12s ago`, `3m ago`, `in 2h` relative to now.
fn relative(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (d, past) = if ms <= now {
        (now - ms, true)
    } else {
        (ms - now, false)
    };
    let text = humantime::format_duration(std::time::Duration::from_secs(d / 1000)).to_string();
    let text = text.split(' ').take(2).collect::<Vec<_>>().join(" ");
    let text = if text.is_empty() {
        "0s".to_owned()
    } else {
        text
    };
    if past {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// Parses repeated `KEY=VALUE` flags.
fn key_values(
    items: &[String],
    flag: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("{flag} {p} is not KEY=VALUE"))
        })
        .collect()
}

/// Prints pretty JSON when asked, else the human form.
fn output(
    v: &Value,
    json: bool,
    human: impl FnOnce(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(v)?)?;
        Ok(())
    } else {
        human(v)
    }
}

fn print_node(n: &NodeView) -> anyhow::Result<()> {
    outln!("id:             {}", n.id)?;
    outln!(
        "state:          {} (admin {}, liveness {})",
        n.state,
        n.admin,
        n.liveness
    )?;
    outln!("connected:      {}", n.connected)?;
    outln!(
        "last heartbeat: {}",
        n.last_heartbeat_ms.map_or("never".into(), relative)
    )?;
    outln!("enrolled at:    {}", n.enrolled_at_ms)?;
    match &n.standing {
        Some(s) => outln!(
            "standing:       {} (online score {}, {} probes passed, {} failed{}): {}",
            s.standing.as_str(),
            show::percent(s.score_ppm),
            s.probes_passed,
            s.probes_failed,
            if s.since_ms == 0 {
                String::new()
            } else {
                format!(", since {}", relative(s.since_ms))
            },
            s.reason
        )?,
        None => outln!("standing:       not probed yet")?,
    }
    outln!(
        "facts:          {}",
        serde_json::to_string_pretty(&n.facts).unwrap_or_default()
    )?;
    Ok(())
}

/// Writes one line to stdout. Unlike `println!`, a write that fails (the reader of a pipe went
/// away, a full disk) is an error the caller returns, not a panic; see [`is_closed_pipe`].
pub(crate) fn write_out(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether a failed command failed only because its output pipe was closed (`hearth … | head
/// -1`): the binary then exits quietly, as a tool killed by SIGPIPE would.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
