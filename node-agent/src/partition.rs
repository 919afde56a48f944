//! An instance's partition: its directory, persistent data, logs, parameters (secrets generated
//! here and kept), and the launch plan and health check resolved from its verified recipe.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hearth_protocol::messages::state::{Assignment, Endpoint};
use hearth_protocol::{Hex, Sha256};
use hearth_recipes::template::{Context, expand};
use hearth_recipes::{HealthCheck, VerifiedRecipe};

use std::os::unix::fs::PermissionsExt as _;

use crate::health::Check;
use crate::overlay::replica::peers_file::{self, PeerEntry};
use crate::process::Launch;
use crate::users;

/// Everything the driver needs to run and watch an instance.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// How to start it.
    pub launch: Launch,
    /// Its health check.
    pub check: Option<Check>,
    /// Endpoints to publish.
    pub endpoints: Vec<Endpoint>,
    /// Parameters to publish back (generated secrets included).
    pub published: BTreeMap<String, String>,
    /// Blobs it uses (kept by cache garbage collection).
    pub blobs: Vec<Sha256>,
    /// The port its recipe's `[peers]` names, where its peer replicas reach it.
    pub peers_port: Option<u16>,
    /// The recipe's `[data] snapshot_command`, run before each snapshot in the instance's
    /// environment (its output appended to `logs/snapshot.log`).
    pub snapshot_hook: Option<Launch>,
}

/// Why a partition could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The filesystem failed (a full disk, no descriptors): may work on a retry.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The instance's user could not be set up.
    #[error("instance user: {0}")]
    User(#[from] users::UserError),
    /// The recipe and assignment cannot make a launch plan (a missing parameter, a bad
    /// template): the same inputs never will.
    #[error("{0}")]
    Invalid(String),
}

impl PartitionError {
    /// Whether a retry can help.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PartitionError + '_ {
    move |source| PartitionError::Io {
        what: path.display().to_string(),
        source,
    }
}

/// `D/instances/<id>`.
pub fn instance_dir(root: &Path, spec: &Assignment) -> PathBuf {
    root.join("instances").join(spec.instance.as_str())
}

/// Creates the partition and resolves the recipe for this assignment. `peers`: the local
/// addresses of its peer replicas (a `[peers]` recipe's instance gets them in `HEARTH_PEERS`,
/// and `HEARTH_PEERS_FILE` names its `peers.json`).
pub fn prepare(
    root: &Path,
    spec: &Assignment,
    recipe: &VerifiedRecipe,
    artifacts: BTreeMap<String, PathBuf>,
    advertise: IpAddr,
    isolate: bool,
    peers: Option<&[PeerEntry]>,
) -> Result<Prepared, PartitionError> {
    let dir = instance_dir(root, spec);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io(&data))?;
    let (run_as, artifacts) = if isolate {
        let run_as = users::ensure_user(&spec.instance)?;
        for p in [root, &root.join("instances"), &dir] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).map_err(io(p))?;
        }
        users::chown_tree(&data, run_as)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&data))?;
        (Some(run_as), private_copies(&dir, artifacts)?)
    } else {
        (None, artifacts)
    };
    let r = recipe.recipe();
    let params = parameters(&dir, spec, recipe)?;
    let ports = ports(&dir, spec, recipe)?;
    let ctx = Context {
        artifacts: artifacts
            .iter()
            .map(|(k, v)| (k.clone(), v.display().to_string()))
            .collect(),
        ports: ports.clone(),
        params: params.clone(),
        dir: Some(&dir),
        data: Some(&data),
    };
    let expand =
        |text: &str| expand(text, &ctx).map_err(|e| PartitionError::Invalid(e.to_string()));
    let program = PathBuf::from(expand(&r.run.command)?);
    let args = r
        .run
        .args
        .iter()
        .map(|a| expand(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut env = BTreeMap::from([
        ("PATH".to_owned(), "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME".to_owned(), data.display().to_string()),
        ("HEARTH_INSTANCE".to_owned(), spec.instance.to_string()),
        ("HEARTH_AGENT_DIR".to_owned(), root.display().to_string()),
    ]);
    let peers_port = match (&r.peers, peers) {
        (Some(p), Some(entries)) => {
            let file = peers_file::path(&dir);
            if !file.exists() {
                peers_file::write(&dir, entries).map_err(io(&file))?;
            }
            env.insert("HEARTH_PEERS".into(), peers_file::env_list(entries));
            env.insert("HEARTH_PEERS_FILE".into(), file.display().to_string());
            ports.get(p.port.as_str()).copied()
        }
        _ => None,
    };
    for (k, v) in &r.run.env {
        env.insert(k.clone(), expand(v)?);
    }
    let port_addr = |name: &str| {
        ports
            .get(name)
            .map(|p| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), *p))
    };
    let check = match &r.health {
        None => None,
        Some(HealthCheck::Http { port, path }) => port_addr(port).map(|addr| Check::Http {
            addr,
            path: path.clone(),
        }),
        Some(HealthCheck::Tcp { port }) => port_addr(port).map(|addr| Check::Tcp { addr }),
        Some(HealthCheck::Command { argv }) => Some(Check::Command {
            argv: argv.iter().map(|a| expand(a)).collect::<Result<_, _>>()?,
            dir: dir.clone(),
            run_as,
        }),
    };
    let endpoints = r
        .ports
        .iter()
        .filter_map(|p| {
            Some(Endpoint {
                name: p.name.parse().ok()?,
                protocol: p.protocol.clone(),
                host: advertise.to_string(),
                port: *ports.get(&p.name)?,
            })
        })
        .collect();
    let mut blobs: Vec<Sha256> = r.artifacts.iter().map(|a| a.sha256).collect();
    blobs.push(recipe.sha256());
    let snapshot_hook = match r.data.snapshot_command.split_first() {
        None => None,
        Some((program, args)) => Some(Launch {
            program: PathBuf::from(expand(program)?),
            args: args.iter().map(|a| expand(a)).collect::<Result<_, _>>()?,
            env: env.clone(),
            dir: dir.clone(),
            log: dir.join("logs").join("snapshot.log"),
            run_as,
        }),
    };
    Ok(Prepared {
        launch: Launch {
            program,
            args,
            env,
            dir: dir.clone(),
            log: dir.join("logs").join("output.log"),
            run_as,
        },
        check,
        endpoints,
        published: params
            .into_iter()
            .filter(|(k, _)| r.params.get(k).is_some_and(|p| p.secret))
            .collect(),
        blobs,
        peers_port,
        snapshot_hook,
    })
}

/// Copies artifacts into `dir/bin`, owned by root and read-only for the instance's user, so that
/// the instance needs no access to the agent's cache.
fn private_copies(
    dir: &Path,
    artifacts: BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>, PartitionError> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).map_err(io(&bin))?;
    let mut out = BTreeMap::new();
    for (name, source) in artifacts {
        let target = bin.join(&name);
        let same = std::fs::metadata(&source).ok().map(|m| m.len())
            == std::fs::metadata(&target).ok().map(|m| m.len())
            && crate::fetcher::hash_file(&source).ok() == crate::fetcher::hash_file(&target).ok();
        if !same {
            let tmp = bin.join(format!(".{name}.tmp"));
            std::fs::copy(&source, &tmp).map_err(io(&tmp))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&tmp))?;
            std::fs::rename(&tmp, &target).map_err(io(&target))?;
        }
        out.insert(name, target);
    }
    Ok(out)
}

/// Port numbers: the assignment's, else chosen here from the free ports of this machine and kept
/// in `ports.json` so that restarts keep them (the node knows what is free; the master learns the
/// numbers from the endpoints the node publishes).
fn ports(
    dir: &Path,
    spec: &Assignment,
    recipe: &VerifiedRecipe,
) -> Result<BTreeMap<String, u16>, PartitionError> {
    let path = dir.join("ports.json");
    let mut chosen: BTreeMap<String, u16> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut changed = false;
    for p in &recipe.recipe().ports {
        let number = match (spec.ports.get(&p.name), chosen.get(&p.name)) {
            (Some(n), _) | (None, Some(n)) => *n,
            (None, None) => {
                let free = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .and_then(|l| l.local_addr())
                    .map_err(|e| PartitionError::Io {
                        what: format!("no free port for `{}`", p.name),
                        source: e,
                    })?
                    .port();
                chosen.insert(p.name.clone(), free);
                changed = true;
                free
            }
        };
        out.insert(p.name.clone(), number);
    }
    if changed {
        let text = serde_json::to_vec_pretty(&chosen)
            .map_err(|e| PartitionError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(out)
}

/// Parameter values: the assignment's, then the recipe's defaults, then secrets generated once on
/// this node and kept in `params.json` so that restarts see the same values.
fn parameters(
    dir: &Path,
    spec: &Assignment,
    recipe: &VerifiedRecipe,
) -> Result<BTreeMap<String, String>, PartitionError> {
    let path = dir.join("params.json");
    let mut generated: BTreeMap<String, String> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let mut changed = false;
    for (name, p) in &recipe.recipe().params {
        let value = match (spec.params.get(name), &p.default, p.secret) {
            (Some(v), _, _) => v.clone(),
            (None, Some(d), false) => d.clone(),
            (None, _, true) => generated
                .entry(name.clone())
                .or_insert_with(|| {
                    changed = true;
                    Hex(rand::random::<[u8; 16]>()).to_string()
                })
                .clone(),
            (None, None, false) => {
                return Err(PartitionError::Invalid(format!(
                    "parameter `{name}` has no value and no default"
                )));
            }
        };
        p.kind
            .check(&value)
            .map_err(|e| PartitionError::Invalid(format!("parameter `{name}`: {e}")))?;
        out.insert(name.clone(), value);
    }
    if changed {
        let text = serde_json::to_vec_pretty(&generated)
            .map_err(|e| PartitionError::Invalid(e.to_string()))?;
        std::fs::write(&path, text).map_err(io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&path))?;
    }
    Ok(out)
}
