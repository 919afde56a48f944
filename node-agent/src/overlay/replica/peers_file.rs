//! An instance's `peers.json`: `[{"instance", "node", "addr": "127.0.0.1:P"}]`, the local
//! addresses that reach its peer replicas, written durably (temporary file, fsync, rename,
//! directory fsync) whenever its peers change.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hearth_protocol::NodeId;
use hearth_protocol::messages::state::InstanceId;
use serde::{Deserialize, Serialize};

/// The file name in the instance directory.
pub const PEERS_FILE: &str = "peers.json";

/// One peer replica and the local address that reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer replica.
    pub instance: InstanceId,
    /// The node it runs on.
    pub node: NodeId,
    /// Where this instance connects to reach it.
    pub addr: SocketAddr,
}

/// `dir/peers.json`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(PEERS_FILE)
}

/// The entries last written (none when the file is missing or unreadable).
pub fn read(dir: &Path) -> Vec<PeerEntry> {
    std::fs::read_to_string(path(dir))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the entries durably, creating the directory if needed.
pub fn write(dir: &Path, entries: &[PeerEntry]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(entries).map_err(std::io::Error::other)?;
    let tmp = dir.join(".peers.json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    set_readable(&tmp)?;
    std::fs::rename(&tmp, path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Readable by the instance's own user when instances run isolated.
fn set_readable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

/// `HEARTH_PEERS`: the addresses, comma-separated.
pub fn env_list(entries: &[PeerEntry]) -> String {
    entries
        .iter()
        .map(|e| e.addr.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_rewrite_in_place() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let node = NodeId::from_key(hearth_protocol::SecretKey::generate().public());
        let one = PeerEntry {
            instance: "kv-1".parse()?,
            node,
            addr: "127.0.0.1:4001".parse()?,
        };
        assert!(read(dir.path()).is_empty());
        write(dir.path(), std::slice::from_ref(&one))?;
        assert_eq!(read(dir.path()), vec![one.clone()]);
        let two = PeerEntry {
            instance: "kv-2".parse()?,
            addr: "127.0.0.1:4002".parse()?,
            ..one.clone()
        };
        write(dir.path(), &[one.clone(), two.clone()])?;
        assert_eq!(read(dir.path()), vec![one, two]);
        assert_eq!(env_list(&read(dir.path())), "127.0.0.1:4001,127.0.0.1:4002");
        let text = std::fs::read_to_string(path(dir.path()))?;
        assert!(text.contains("\"addr\": \"127.0.0.1:4001\""), "{text}");
        assert!(!dir.path().join(".peers.json.tmp").exists());
        Ok(())
    }
}
