//! People and sign-in: `hearth user add|list|remove`, `hearth whoami`, and `hearth login` /
//! `hearth logout`, which keep the master's URL and a person's credential in a file of their
//! own (`$HEARTH_CONFIG_DIR/login.json`, else `$XDG_CONFIG_HOME/hearth/`, else
//! `~/.config/hearth/`; mode 0600), read by every later command when no flag, variable or data
//! dir says otherwise.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use hearth_api::{CreateUser, CreatedUser, UserName, UserRole, UserView, WhoAmI};
use hearth_protocol::NodeId;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::relative;

/// `hearth user …`.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a person with a role; prints their credential once.
    Add {
        /// Their name (a-z, 0-9, `.`, `_`, `-`).
        name: UserName,
        /// operator, volunteer or auditor.
        #[arg(long)]
        role: UserRole,
        /// A volunteer's node (repeatable; required for a volunteer).
        #[arg(long = "node")]
        nodes: Vec<NodeId>,
        /// Lifetime of the credential in days (default 365, at most 1098).
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List people.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a person: their credential and browser sessions stop working at once.
    Remove {
        /// Their name.
        name: UserName,
    },
}

/// What `hearth login` keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// Version of this file.
    pub v: u32,
    /// The master's API URL.
    pub url: String,
    /// The credential.
    pub credential: String,
}

/// Where `hearth login` keeps its file.
pub fn login_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HEARTH_CONFIG_DIR")
        .or_else(|| env("XDG_CONFIG_HOME").map(|d| d.join("hearth")))
        .or_else(|| env("HOME").map(|d| d.join(".config").join("hearth")))
        .map(|d| d.join("login.json"))
}

/// The saved login, if any (a damaged file is an error, not silently ignored).
pub fn saved_login() -> anyhow::Result<Option<Login>> {
    let Some(path) = login_path() else {
        return Ok(None);
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let login: Login = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged; `hearth logout` and sign in again",
                    path.display()
                )
            })?;
            if login.v != 1 {
                bail!(
                    "{} is version {}, newer than this hearth reads",
                    path.display(),
                    login.v
                );
            }
            Ok(Some(login))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `hearth login`: reads the credential (first line of stdin), checks it with the master and
/// saves it.
pub(crate) async fn login(url: Option<String>) -> anyhow::Result<()> {
    let Some(url) = url.or_else(|| saved_login().ok().flatten().map(|l| l.url)) else {
        bail!("say where the master is: hearth --url URL login (or HEARTH_URL)");
    };
    eprintln!("paste your credential (hu1:… from `hearth user add`, or your enrolment token):");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the credential from stdin")?;
    let credential = line.trim().to_owned();
    if credential.is_empty() {
        bail!("no credential given");
    }
    let url = url.trim_end_matches('/').to_owned();
    let client = Client::with(&url, &credential)?;
    let who: WhoAmI = serde_json::from_value(client.get("/v1/whoami").await?)?;
    let path = login_path().context("no home directory: set HEARTH_CONFIG_DIR")?;
    write_private(
        &path,
        &serde_json::to_vec_pretty(&Login {
            v: 1,
            url,
            credential,
        })?,
    )?;
    outln!("signed in as {} ({})", who.name, who.role)?;
    eprintln!("credential saved in {}", path.display());
    Ok(())
}

/// `hearth logout`: forgets the saved credential.
pub(crate) fn logout() -> anyhow::Result<()> {
    let Some(path) = login_path() else {
        return Ok(());
    };
    match std::fs::remove_file(&path) {
        Ok(()) => outln!("signed out ({} removed)", path.display())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => outln!("not signed in")?,
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `hearth whoami`.
pub(crate) async fn whoami(client: &Client, json: bool) -> anyhow::Result<()> {
    let v = client.get("/v1/whoami").await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let who: WhoAmI = serde_json::from_value(v)?;
    outln!("{} ({})", who.name, who.role)?;
    for n in who.nodes {
        outln!("  node {n}")?;
    }
    Ok(())
}

/// `hearth user …`.
pub(crate) async fn run(client: &Client, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            role,
            nodes,
            expires_in_days,
            json,
        } => {
            let body = CreateUser {
                name,
                role,
                nodes,
                expires_in_days,
            };
            let (v, _) = client
                .send(reqwest::Method::POST, "/v1/users", Some(&body), None)
                .await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            let created: CreatedUser = serde_json::from_value(v)?;
            outln!("{}", created.credential)?;
            eprintln!(
                "{} added as {}; give them this credential (shown once) for `hearth login` and the dashboard at /ui",
                created.user.name, created.user.role
            );
        }
        UserCmd::List { json } => {
            let v = client.get("/v1/users").await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            let users: Vec<UserView> = serde_json::from_value(v)?;
            outln!(
                "{:<20} {:<10} {:<16} {:<20} NODES",
                "NAME",
                "ROLE",
                "CREDENTIAL",
                "EXPIRES"
            )?;
            for u in users {
                outln!(
                    "{:<20} {:<10} {:<16} {:<20} {}",
                    u.name,
                    u.role,
                    u.credential,
                    u.expires_at_ms.map_or("never".into(), relative),
                    u.nodes.len()
                )?;
            }
        }
        UserCmd::Remove { name } => {
            client
                .call(reqwest::Method::DELETE, &format!("/v1/users/{name}"), None)
                .await?;
            outln!("user {name} removed")?;
        }
    }
    Ok(())
}
