//! `hearth backup now|list|restore DEPLOYMENT` and `hearth where DEPLOYMENT`: a deployment's
//! backup snapshots, the homes keeping them, and where its data lives.

use clap::Subcommand;
use serde_json::Value;

use hearth_api::{BackupsView, RestoreSpec, WhereView};

use crate::client::Client;
use crate::show::count;

/// Backup commands.
#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Ask every replica for a snapshot now.
    Now {
        /// Deployment name.
        name: String,
    },
    /// List a deployment's snapshots, newest first, with the homes holding each.
    List {
        /// Deployment name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot into every replica (default: the newest one a home holds).
    Restore {
        /// Deployment name.
        name: String,
        /// Snapshot id (64 hex characters, as `hearth backup list --json` shows).
        #[arg(long)]
        snapshot: Option<String>,
    },
}

/// Runs a backup command.
pub(crate) async fn backup(client: &Client, cmd: BackupCmd) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Now { name } => {
            let (v, _) = client
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/deployments/{name}/backups"),
                    None::<&Value>,
                    None,
                )
                .await?;
            let n = v.get("now").and_then(Value::as_u64).unwrap_or(0);
            outln!(
                "snapshot {n} of {name} asked for; `hearth backup list {name}` shows it once taken"
            )?;
        }
        BackupCmd::List { name, json } => {
            let path = format!("/v1/deployments/{name}/backups");
            if json {
                let v = client.get(&path).await?;
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let (view, _) = client.read::<BackupsView>(&path).await?;
                list(&view)?;
            }
        }
        BackupCmd::Restore { name, snapshot } => {
            let body = RestoreSpec {
                snapshot: snapshot
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--snapshot: {e}"))?,
            };
            let (v, _) = client
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/deployments/{name}/restore"),
                    Some(&body),
                    None,
                )
                .await?;
            outln!(
                "restoring snapshot {} into every replica of {name}",
                short(v.get("snapshot").and_then(Value::as_str).unwrap_or("?"))
            )?;
        }
    }
    Ok(())
}

/// `hearth where DEPLOYMENT [--json]`.
pub(crate) async fn where_is(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let path = format!("/v1/deployments/{name}/where");
    if json {
        let v = client.get(&path).await?;
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let (w, _) = client.read::<WhereView>(&path).await?;
    let allowed: Vec<String> = w
        .countries_allowed
        .iter()
        .map(ToString::to_string)
        .collect();
    outln!(
        "deployment {}: {}, {}; countries: {}",
        w.deployment,
        count(w.replicas.len() as u64, "replica", "replicas"),
        count(w.copies.len() as u64, "backup copy", "backup copies"),
        if allowed.is_empty() {
            "any".to_owned()
        } else {
            allowed.join(", ")
        }
    )?;
    outln!(
        "{:<8} {:<16} {:<14} {:<16} {:<12} {:<3} LATEST SNAPSHOT",
        "KIND",
        "INSTANCE",
        "NODE",
        "HOME",
        "ISP",
        "CC"
    )?;
    for r in &w.replicas {
        outln!(
            "{:<8} {:<16} {:<14} {:<16} {:<12} {:<3} {}",
            "replica",
            r.instance.to_string(),
            short(&r.node.to_string()),
            r.home,
            r.isp,
            r.country.to_string(),
            r.state
        )?;
    }
    for c in &w.copies {
        let latest = match (c.latest_snapshot, c.latest_ms) {
            (Some(s), Some(ms)) => format!(
                "{} {} ({} held)",
                short(&s.to_string()),
                crate::relative(ms),
                c.snapshots
            ),
            _ => "none yet".to_owned(),
        };
        outln!(
            "{:<8} {:<16} {:<14} {:<16} {:<12} {:<3} {}",
            "copy",
            "-",
            short(&c.node.to_string()),
            c.home,
            c.isp,
            c.country.to_string(),
            latest
        )?;
    }
    Ok(())
}

fn list(v: &BackupsView) -> anyhow::Result<()> {
    let homes: Vec<&str> = v.holders.iter().map(|h| h.home.as_str()).collect();
    outln!(
        "deployment {}: a snapshot every {}, {} kept, {} asked; held by: {}",
        v.deployment,
        humantime::format_duration(std::time::Duration::from_secs(v.every_s)),
        v.keep,
        count(u64::from(v.copies), "copy", "copies"),
        if homes.is_empty() {
            "no home yet".to_owned()
        } else {
            homes.join(", ")
        }
    )?;
    outln!(
        "{:<13} {:<18} {:>10} {:>10} HELD BY",
        "SNAPSHOT",
        "TAKEN",
        "SIZE",
        "SENT"
    )?;
    for s in &v.snapshots {
        let held: Vec<&str> = s.held_by.iter().map(|h| h.home.as_str()).collect();
        outln!(
            "{:<13} {:<18} {:>10} {:>10} {}",
            short(&s.id.to_string()),
            crate::relative(s.taken_ms),
            bytes(s.bytes),
            bytes(s.sent_bytes),
            if held.is_empty() {
                "-".to_owned()
            } else {
                held.join(", ")
            }
        )?;
    }
    Ok(())
}

/// The first 12 characters of an id.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `512 B`, `3.2 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_humans_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
