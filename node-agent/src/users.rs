//! One Unix user per instance when the agent runs as root, so that instances cannot read each
//! other's data or touch the agent's files.

use std::path::Path;

use hearth_protocol::Sha256;
use hearth_protocol::messages::state::InstanceId;

/// Whether instances run under their own users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// When the agent runs as root (the default).
    Auto,
    /// Always (fails if the agent is not root).
    On,
    /// Never: instances run as the agent's user.
    Off,
}

impl Isolation {
    /// Whether users are created for instances.
    pub fn enabled(self) -> bool {
        match self {
            Self::Auto => nix::unistd::geteuid().is_root(),
            Self::On => true,
            Self::Off => false,
        }
    }
}

/// The user an instance runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// `hearth-` and 12 hex characters of the instance id's hash: stable and within the 32-character
/// limit of user names.
pub fn user_name(instance: &InstanceId) -> String {
    let hash = Sha256::digest(instance.as_str().as_bytes()).to_string();
    format!("hearth-{}", hash.get(..12).unwrap_or(&hash))
}

/// Why an instance's user could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// `useradd` could not be run.
    #[error("cannot run useradd (is it installed?): {0}")]
    Spawn(std::io::Error),
    /// `useradd` refused.
    #[error("useradd {name} failed: {stderr}")]
    Useradd {
        /// The user.
        name: String,
        /// What it said.
        stderr: String,
    },
    /// The user database could not be read.
    #[error("cannot look up user {name}: {source}")]
    Lookup {
        /// The user.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// `useradd` succeeded yet the user is not there.
    #[error("user {0} missing after useradd")]
    Missing(String),
    /// Ownership could not be given.
    #[error("chown {path}: {source}")]
    Chown {
        /// The file.
        path: String,
        /// Why.
        source: nix::Error,
    },
    /// A directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Creates the instance's system user (and group) if it does not exist yet.
pub fn ensure_user(instance: &InstanceId) -> Result<RunAs, UserError> {
    let name = user_name(instance);
    if let Some(run_as) = lookup(&name)? {
        return Ok(run_as);
    }
    let out = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
        ])
        .args(["--shell", "/usr/sbin/nologin", "--comment"])
        .arg(format!("Hearth instance {instance}"))
        .arg(&name)
        .output()
        .map_err(UserError::Spawn)?;
    // Exit status 9: created meanwhile by another agent thread or process.
    if !out.status.success() && out.status.code() != Some(9) {
        return Err(UserError::Useradd {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            name,
        });
    }
    lookup(&name)?.ok_or(UserError::Missing(name))
}

fn lookup(name: &str) -> Result<Option<RunAs>, UserError> {
    nix::unistd::User::from_name(name)
        .map(|u| {
            u.map(|u| RunAs {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            })
        })
        .map_err(|source| UserError::Lookup {
            name: name.to_owned(),
            source,
        })
}

/// Gives `path` (recursively) to the instance's user.
pub fn chown_tree(path: &Path, run_as: RunAs) -> Result<(), UserError> {
    let uid = Some(nix::unistd::Uid::from_raw(run_as.uid));
    let gid = Some(nix::unistd::Gid::from_raw(run_as.gid));
    let mut stack = vec![path.to_owned()];
    while let Some(p) = stack.pop() {
        nix::unistd::chown(&p, uid, gid).map_err(|source| UserError::Chown {
            path: p.display().to_string(),
            source,
        })?;
        if p.is_dir() && !p.is_symlink() {
            let io = |source| UserError::Io {
                path: p.display().to_string(),
                source,
            };
            for entry in std::fs::read_dir(&p).map_err(io)? {
                stack.push(entry.map_err(io)?.path());
            }
        }
    }
    Ok(())
}
