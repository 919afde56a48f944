//! Starting, signalling and recognising instance processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How to start one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Program path.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment (the process gets only this).
    pub env: BTreeMap<String, String>,
    /// Working directory (the instance's partition).
    pub dir: PathBuf,
    /// Log file for stdout and stderr.
    pub log: PathBuf,
    /// The instance's own user, when the agent isolates instances.
    pub run_as: Option<crate::users::RunAs>,
}

/// A started process.
#[derive(Debug)]
pub struct Started {
    /// Process id, also its process group id.
    pub pid: u32,
    /// Kernel start time, to recognise the process later.
    pub start_ticks: u64,
    /// The child, to wait on.
    pub child: tokio::process::Child,
}

/// Starts the process in its own process group, stdout and stderr appended to the log file.
/// It survives the agent: a restarted agent re-adopts it.
pub fn start(launch: &Launch) -> std::io::Result<Started> {
    if let Some(parent) = launch.log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)?;
    let mut command = tokio::process::Command::new(&launch.program);
    if let Some(run_as) = launch.run_as {
        command.uid(run_as.uid).gid(run_as.gid);
    }
    let child = command
        .args(&launch.args)
        .env_clear()
        .envs(&launch.env)
        .current_dir(&launch.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("process exited at once"))?;
    let start_ticks = start_ticks(pid).unwrap_or(0);
    Ok(Started {
        pid,
        start_ticks,
        child,
    })
}

/// Sends SIGTERM (or SIGKILL) to the process group.
pub fn signal(pid: u32, kill: bool) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::Error::EINVAL)?;
    killpg(
        Pid::from_raw(pid),
        if kill {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        },
    )
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks after boot.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is the same process that started at `ticks` (and is not a zombie).
pub fn is_alive(pid: u32, ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    state != "Z" && state != "X" && fields.nth(18).and_then(|t| t.parse().ok()) == Some(ticks)
}

/// Processes carrying `HEARTH_INSTANCE=<id>` and `HEARTH_AGENT_DIR=<dir>` in their environment.
pub fn find_tagged(agent_dir: &Path) -> Vec<(u32, String)> {
    let dir_tag = format!("HEARTH_AGENT_DIR={}", agent_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&dir_tag.as_bytes()) {
            continue;
        }
        if let Some(id) = vars
            .iter()
            .find_map(|v| v.strip_prefix(b"HEARTH_INSTANCE="))
        {
            out.push((pid, String::from_utf8_lossy(id).into_owned()));
        }
    }
    out
}

/// Rotates `log` when it exceeds `max` bytes: copies to `.1` (older ones shift, `keep` kept) and
/// truncates in place, so the process keeps appending to the same open file.
pub fn rotate_log(log: &Path, max: u64, keep: u32) -> std::io::Result<bool> {
    if std::fs::metadata(log).map(|m| m.len()).unwrap_or(0) <= max {
        return Ok(false);
    }
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::copy(log, numbered(1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)?;
    Ok(true)
}
