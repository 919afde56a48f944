//! Public routes and gateways: `hearth deploy … --host/--tcp` (their parsing), `hearth expose`,
//! `hearth unexpose` (compare-and-set read-modify-writes of the deployment's spec, through
//! `Client::change_deployment`), and `hearth gateway add|list|remove`.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use hearth_api::{
    DeploymentSpec, GatewaySpec, GatewayView, HostName, HostRoute, TcpRoute, default_http_port,
};
use hearth_protocol::messages::state::Name;
use serde_json::Value;

use crate::client::Client;

/// The route flags `hearth deploy` and `hearth expose` share.
#[derive(Debug, Clone, Default, Args)]
pub struct RouteFlags {
    /// Public host names routed to the replicas (repeatable, or comma-separated).
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// The recipe's port the `--host` names go to (default `http`).
    #[arg(long)]
    pub port: Option<String>,
    /// Also serve the `--host` names over plain HTTP (otherwise redirected to HTTPS).
    #[arg(long)]
    pub plain_http: bool,
    /// A public TCP port routed to a recipe port, PORTNAME=PUBLICPORT (repeatable).
    #[arg(long = "tcp")]
    pub tcp: Vec<String>,
    /// Prefix the `--tcp` connections with a PROXY protocol v2 header naming the client.
    #[arg(long)]
    pub proxy_protocol: bool,
}

impl RouteFlags {
    /// The routes the flags give, or why they make no sense.
    pub fn routes(&self) -> anyhow::Result<(Vec<HostRoute>, Vec<TcpRoute>)> {
        if self.hosts.is_empty() && (self.plain_http || self.port.is_some()) {
            bail!("--plain-http and --port apply to --host names: give at least one --host");
        }
        if self.tcp.is_empty() && self.proxy_protocol {
            bail!("--proxy-protocol applies to --tcp routes: give at least one --tcp");
        }
        let port = match &self.port {
            Some(p) => name(p, "--port")?,
            None => default_http_port(),
        };
        let hosts = self
            .hosts
            .iter()
            .map(|h| {
                Ok(HostRoute {
                    host: HostName::parse(h).map_err(|e| anyhow!("--host: {e}"))?,
                    port: port.clone(),
                    plain_http: self.plain_http,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let tcp = self
            .tcp
            .iter()
            .map(|t| {
                let (port, public) = t
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--tcp {t} is not PORTNAME=PUBLICPORT, e.g. db=5432"))?;
                let public_port = public
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| anyhow!("--tcp {t}: `{public}` is not a port (1-65535)"))?;
                Ok(TcpRoute {
                    port: name(port, "--tcp")?,
                    public_port,
                    proxy_protocol: self.proxy_protocol,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok((hosts, tcp))
    }
}

fn name(text: &str, flag: &str) -> anyhow::Result<Name> {
    text.parse()
        .map_err(|e| anyhow!("{flag}: `{text}` is not a port name: {e}"))
}

/// `hearth unexpose` flags.
#[derive(Debug, Clone, Args)]
pub struct UnexposeFlags {
    /// Host names to stop routing (repeatable, or comma-separated).
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Public TCP ports to stop routing (repeatable).
    #[arg(long = "tcp")]
    pub tcp: Vec<u16>,
}

/// Gateway commands.
#[derive(Debug, Subcommand)]
pub enum GatewayCmd {
    /// Register a gateway (its key is what `hearth-gateway init` printed).
    Add {
        /// Its name (a DNS label).
        name: String,
        /// Its identity, `hk-…`.
        #[arg(long)]
        key: String,
        /// The UDP address nodes dial, HOST:PORT (an IP address).
        #[arg(long)]
        tunnel_addr: String,
        /// The UDP address of its overlay relay, HOST:PORT (`hearth-gateway run
        /// --overlay-listen`; its data dir's `overlay.addr`), if it runs one.
        #[arg(long)]
        overlay_addr: Option<String>,
    },
    /// List gateways.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a gateway.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `hearth expose DEPLOYMENT …`: adds (or changes) routes of the deployment.
pub(crate) async fn expose(
    client: &Client,
    deployment: &str,
    flags: &RouteFlags,
) -> anyhow::Result<()> {
    let (hosts, tcp) = flags.routes()?;
    if hosts.is_empty() && tcp.is_empty() {
        bail!("say what to expose: --host NAME and/or --tcp PORTNAME=PUBLICPORT");
    }
    let v = client
        .change_deployment(deployment, |spec| {
            add_routes(spec, &hosts, &tcp);
            Ok(())
        })
        .await?;
    outln!("deployment {deployment}: {}", describe(&v))?;
    Ok(())
}

/// `hearth unexpose DEPLOYMENT …`: removes routes; naming one the deployment lacks is an error.
pub(crate) async fn unexpose(
    client: &Client,
    deployment: &str,
    flags: &UnexposeFlags,
) -> anyhow::Result<()> {
    if flags.hosts.is_empty() && flags.tcp.is_empty() {
        bail!("say what to unexpose: --host NAME and/or --tcp PUBLICPORT");
    }
    let hosts = flags
        .hosts
        .iter()
        .map(|h| HostName::parse(h).map_err(|e| anyhow!("--host: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let v = client
        .change_deployment(deployment, |spec| {
            for h in &hosts {
                let before = spec.hosts.len();
                spec.hosts.retain(|r| r.host != *h);
                if spec.hosts.len() == before {
                    bail!("deployment {deployment} does not route host {h}");
                }
            }
            for p in &flags.tcp {
                let before = spec.tcp.len();
                spec.tcp.retain(|r| r.public_port != *p);
                if spec.tcp.len() == before {
                    bail!("deployment {deployment} does not route public TCP port {p}");
                }
            }
            Ok(())
        })
        .await?;
    outln!("deployment {deployment}: {}", describe(&v))?;
    Ok(())
}

/// Adds routes to a spec, replacing a route for the same host or public port.
fn add_routes(spec: &mut DeploymentSpec, hosts: &[HostRoute], tcp: &[TcpRoute]) {
    for h in hosts {
        spec.hosts.retain(|r| r.host != h.host);
        spec.hosts.push(h.clone());
    }
    for t in tcp {
        spec.tcp.retain(|r| r.public_port != t.public_port);
        spec.tcp.push(t.clone());
    }
}

/// One line on a spec's routes (`POST /v1/deployments`'s answer or a view's `spec`).
pub(crate) fn describe(v: &Value) -> String {
    let spec = v.get("spec").unwrap_or(v);
    let lines = route_lines(spec);
    if lines.is_empty() {
        "no public routes".into()
    } else {
        lines.join(", ")
    }
}

/// Each route of a spec, for humans: `www.example.coop → http (https only)`, `:5432 → db`.
pub(crate) fn route_lines(spec: &Value) -> Vec<String> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    let hosts = spec
        .get("hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let tcp = spec
        .get("tcp")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    hosts
        .map(|h| {
            format!(
                "{} → port {}{}",
                text(h, "host"),
                text(h, "port"),
                if flag(h, "plain_http") {
                    " (http and https)"
                } else {
                    " (https; http redirected)"
                }
            )
        })
        .chain(tcp.map(|t| {
            format!(
                "tcp :{} → port {}{}",
                t.get("public_port").and_then(Value::as_u64).unwrap_or(0),
                text(t, "port"),
                if flag(t, "proxy_protocol") {
                    " (PROXY v2)"
                } else {
                    ""
                }
            )
        }))
        .collect()
}

/// `hearth gateway …`.
pub(crate) async fn gateway(client: &Client, cmd: GatewayCmd) -> anyhow::Result<()> {
    match cmd {
        GatewayCmd::Add {
            name,
            key,
            tunnel_addr,
            overlay_addr,
        } => {
            let body = GatewaySpec {
                name: name
                    .parse()
                    .map_err(|e| anyhow!("`{name}` is not a gateway name: {e}"))?,
                key: key
                    .parse()
                    .map_err(|e| anyhow!("--key {key} is not a gateway id (hk-…): {e}"))?,
                tunnel_addr: tunnel_addr.parse().map_err(|e| {
                    anyhow!(
                        "--tunnel-addr {tunnel_addr} is not IP:PORT (e.g. 192.0.2.10:7443): {e}"
                    )
                })?,
                overlay_addr: overlay_addr
                    .map(|a| {
                        a.parse().map_err(|e| {
                            anyhow!("--overlay-addr {a} is not IP:PORT (e.g. 192.0.2.10:7444): {e}")
                        })
                    })
                    .transpose()?,
            };
            let (v, _) = client
                .send(reqwest::Method::POST, "/v1/gateways", Some(&body), None)
                .await?;
            let g: GatewayView = serde_json::from_value(v)?;
            outln!(
                "gateway {} registered: key {}, tunnel {}{}",
                g.spec.name,
                g.spec.key,
                g.spec.tunnel_addr,
                g.spec
                    .overlay_addr
                    .map_or(String::new(), |a| format!(", overlay relay {a}"))
            )?;
        }
        GatewayCmd::List { json } => {
            let v = client.get("/v1/gateways").await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            let gateways: Vec<GatewayView> = serde_json::from_value(v)?;
            outln!(
                "{:<20} {:<56} {:<22} {:<22} LAST SEEN",
                "NAME",
                "KEY",
                "TUNNEL",
                "OVERLAY"
            )?;
            for g in gateways {
                outln!(
                    "{:<20} {:<56} {:<22} {:<22} {}",
                    g.spec.name,
                    g.spec.key,
                    g.spec.tunnel_addr,
                    g.spec.overlay_addr.map_or("-".into(), |a| a.to_string()),
                    g.last_seen_ms.map_or("never".into(), crate::relative)
                )?;
            }
        }
        GatewayCmd::Remove { name } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/gateways/{name}"),
                    None,
                )
                .await?;
            outln!("gateway {name} removed")?;
        }
    }
    Ok(())
}
