//! `hearth recipe`: the cooperative's signing workflow. `keys`, `build` and `sign` work offline
//! on local directories (root keys belong on an offline machine); `publish`, `list` and `show`
//! talk to the master.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use chrono::Utc;
use clap::Subcommand;
use hearth_recipes::repo::{build, keys, sign};
use serde_json::Value;

use super::Client;

/// Recipe repository commands.
#[derive(Debug, Subcommand)]
pub enum RecipeCmd {
    /// Signing keys and root metadata.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Stage DIR/recipe.toml and its artifacts in the repository work directory, filling in
    /// each artifact's SHA-256 and size.
    Build {
        /// Directory holding recipe.toml (and artifacts named like the recipe's artifacts).
        dir: PathBuf,
        /// Repository work directory.
        #[arg(long)]
        repo: PathBuf,
        /// An artifact's file, NAME=PATH (repeatable; default DIR/NAME).
        #[arg(long = "artifact")]
        artifacts: Vec<String>,
    },
    /// Sign every staged target: new targets, snapshot and timestamp metadata.
    Sign {
        /// Repository work directory.
        #[arg(long)]
        repo: PathBuf,
        /// Keys directory.
        #[arg(long)]
        keys: PathBuf,
        /// Lifetime of the targets and snapshot metadata.
        #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
        expires: Duration,
        /// Lifetime of the timestamp (how long nodes may be held on stale metadata).
        #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
        timestamp_expires: Duration,
    },
    /// Upload the signed metadata and every staged target to the master.
    Publish {
        /// Repository work directory.
        #[arg(long)]
        repo: PathBuf,
    },
    /// Recipes the master's published targets list.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One recipe, NAME@VERSION.
    Show {
        /// NAME@VERSION.
        recipe: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create root keys (with a threshold), one key per other role, and 1.root.json.
    Init(RootArgs),
    /// Replace the root keys: root version N+1 signed by the old and the new root keys.
    RotateRoot(RootArgs),
}

/// A root version to write.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// Keys directory (created by `init`).
    #[arg(long)]
    keys: PathBuf,
    /// Number of (new) root keys.
    #[arg(long, default_value_t = 1)]
    root_keys: usize,
    /// Root signatures required.
    #[arg(long, default_value_t = 1)]
    threshold: u64,
    /// Lifetime of the root metadata.
    #[arg(long, default_value = "365days", value_parser = humantime::parse_duration)]
    expires: Duration,
}

fn when(d: Duration) -> anyhow::Result<chrono::DateTime<Utc>> {
    Ok(Utc::now() + chrono::Duration::from_std(d).map_err(|e| anyhow!("duration: {e}"))?)
}

/// Runs the offline commands; false for those that need the master.
pub(super) async fn local(cmd: &RecipeCmd) -> anyhow::Result<bool> {
    match cmd {
        RecipeCmd::Keys(KeysCmd::Init(RootArgs {
            keys,
            root_keys,
            threshold,
            expires,
        })) => {
            let root = keys::init(keys, *root_keys, *threshold, when(*expires)?).await?;
            outln!("{}", root.display())?;
            eprintln!(
                "root version 1 with {root_keys} root key(s), threshold {threshold}; \
                 give {} to nodes (hearth-node enrol --trust-root) and keep root-*.pk8 offline",
                keys.join("1.root.json").display()
            );
        }
        RecipeCmd::Keys(KeysCmd::RotateRoot(RootArgs {
            keys,
            root_keys,
            threshold,
            expires,
        })) => {
            let v = keys::rotate_root(keys, *root_keys, *threshold, when(*expires)?).await?;
            outln!("root version {v}: sign and publish the repository so nodes follow it")?;
        }
        RecipeCmd::Build {
            dir,
            repo,
            artifacts,
        } => {
            let files = artifacts
                .iter()
                .map(|a| {
                    a.split_once('=')
                        .map(|(k, v)| (k.to_owned(), PathBuf::from(v)))
                        .ok_or_else(|| anyhow!("--artifact {a} is not NAME=PATH"))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            let built = build::build(dir, repo, &files)?;
            outln!("{}@{}:{}", built.name, built.version, built.sha256)?;
        }
        RecipeCmd::Sign {
            repo,
            keys,
            expires,
            timestamp_expires,
        } => {
            let s = sign::sign(
                repo,
                keys,
                sign::Expiry {
                    targets: when(*expires)?,
                    snapshot: when(*expires)?,
                    timestamp: when(*timestamp_expires)?,
                },
            )
            .await?;
            outln!(
                "signed {} targets: targets v{}, snapshot v{}, timestamp v{} (root v{})",
                s.listed,
                s.targets,
                s.snapshot,
                s.timestamp,
                s.root
            )?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Runs the commands that talk to the master.
pub(super) async fn remote(client: &Client, cmd: RecipeCmd) -> anyhow::Result<()> {
    match cmd {
        RecipeCmd::Publish { repo } => publish(client, &repo).await,
        RecipeCmd::List { json } => {
            let v = client.get("/v1/recipes").await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                outln!("{:<24} {:<12} SHA-256", "NAME", "VERSION")?;
                for r in v.as_array().into_iter().flatten() {
                    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
                    outln!("{:<24} {:<12} {}", s("name"), s("version"), s("sha256"))?;
                }
            }
            Ok(())
        }
        RecipeCmd::Show { recipe, json } => {
            let (name, version) = recipe
                .split_once('@')
                .ok_or_else(|| anyhow!("give the recipe as NAME@VERSION"))?;
            let v = client.get(&format!("/v1/recipes/{name}/{version}")).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let s = |p: &str| {
                    v.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                outln!("recipe:      {name} {version}")?;
                outln!("sha256:      {}", s("/sha256"))?;
                outln!("description: {}", s("/recipe/description"))?;
                outln!("command:     {}", s("/recipe/run/command"))?;
            }
            Ok(())
        }
        RecipeCmd::Keys(_) | RecipeCmd::Build { .. } | RecipeCmd::Sign { .. } => {
            bail!("this command works offline and needs no master")
        }
    }
}

/// Uploads targets first, then root versions, targets, snapshot and timestamp last, so that a
/// node never sees a timestamp naming metadata the master does not have yet.
async fn publish(client: &Client, repo: &Path) -> anyhow::Result<()> {
    let targets = repo.join("targets");
    let mut files = Vec::new();
    collect(&targets, &mut files)?;
    for file in &files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let sha = hearth_protocol::Sha256::digest(&bytes);
        client.put_bytes(&format!("/v1/blobs/{sha}"), bytes).await?;
    }
    let metadata = repo.join("metadata");
    let mut roots: Vec<(u64, String)> = std::fs::read_dir(&metadata)
        .with_context(|| {
            format!(
                "{} has no signed metadata: run `hearth recipe sign`",
                metadata.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_suffix(".root.json")?.parse().ok()?;
            Some((n, name))
        })
        .collect();
    roots.sort();
    let order = roots
        .into_iter()
        .map(|(_, n)| n)
        .chain(["targets.json", "snapshot.json", "timestamp.json"].map(String::from));
    let mut published = 0;
    for name in order {
        let path = metadata.join(&name);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        client
            .put_bytes(&format!("/v1/repository/{name}"), bytes)
            .await?;
        published += 1;
    }
    outln!(
        "published {} targets and {published} metadata files",
        files.len()
    )?;
    Ok(())
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
