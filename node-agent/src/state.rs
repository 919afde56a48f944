//! The node's data directory: its key, and its enrolment (written only once enrolment succeeded).
//!
//! ```text
//! D/node.key          Ed25519 seed (hex, mode 0600)
//! D/enrolment.json    master addresses and pinned master id, node id, facts (versioned)
//! ```
//!
//! `enrolment.json` versions: 1 held one `master_addr`; 2 holds `master_addrs`, the list the
//! link rotates through (the master may replace it, `DesiredState.masters`). A version-1 file
//! is read as a list of its one address and written as version 2 at the next save.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use hearth_core::link::{Masters, MastersError};
use hearth_protocol::{Hex, MasterId, NodeFacts, NodeId, SecretKey};
use serde::{Deserialize, Serialize};

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is damaged.
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    /// Not enrolled yet.
    #[error("{0} holds no enrolment: run `hearth-node enrol` first")]
    NotEnrolled(PathBuf),
    /// Already enrolled.
    #[error("{0} is already enrolled with master {1}")]
    AlreadyEnrolled(PathBuf, MasterId),
}

/// Version of `enrolment.json`.
const ENROLMENT_VERSION: u32 = 2;

/// The stored enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// Format version.
    pub version: u32,
    /// Where the masters listen, in the order tried (never empty, no address twice, at most
    /// [`hearth_protocol::MAX_MASTER_ADDRS`]: checked when read).
    pub master_addrs: Vec<SocketAddr>,
    /// The pinned master key.
    pub master: MasterId,
    /// This node.
    pub node: NodeId,
    /// Heartbeat interval the master asked for at enrolment.
    pub heartbeat_interval_ms: u64,
    /// Facts declared at enrolment.
    pub facts: NodeFacts,
}

impl Enrolment {
    /// A current-version record.
    pub fn new(
        master_addrs: Vec<SocketAddr>,
        master: MasterId,
        node: NodeId,
        heartbeat_interval_ms: u64,
        facts: NodeFacts,
    ) -> Self {
        Self {
            version: ENROLMENT_VERSION,
            master_addrs,
            master,
            node,
            heartbeat_interval_ms,
            facts,
        }
    }

    /// The master addresses as the link's rotation.
    pub fn masters(&self) -> Result<Masters, MastersError> {
        Masters::new(self.master_addrs.clone())
    }
}

/// Earlier formats of `enrolment.json`, read and migrated forward.
mod v1 {
    use std::net::SocketAddr;

    use hearth_protocol::{MasterId, NodeFacts, NodeId};
    use serde::Deserialize;

    /// Version 1: one master address.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Enrolment {
        #[allow(dead_code)] // always 1: how it was chosen
        pub(super) version: u32,
        pub(super) master_addr: SocketAddr,
        pub(super) master: MasterId,
        pub(super) node: NodeId,
        pub(super) heartbeat_interval_ms: u64,
        pub(super) facts: NodeFacts,
    }

    impl From<Enrolment> for super::Enrolment {
        fn from(e: Enrolment) -> Self {
            Self::new(
                vec![e.master_addr],
                e.master,
                e.node,
                e.heartbeat_interval_ms,
                e.facts,
            )
        }
    }
}

/// Parses `enrolment.json` of any known version into the current one.
fn parse_enrolment(text: &str) -> Result<Enrolment, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let e: Enrolment = match version {
        1 => serde_json::from_str::<v1::Enrolment>(text)
            .map_err(|e| e.to_string())?
            .into(),
        ENROLMENT_VERSION => serde_json::from_str(text).map_err(|e| e.to_string())?,
        other => return Err(format!("unknown version {other}")),
    };
    e.masters().map_err(|e| format!("master_addrs: {e}"))?;
    Ok(e)
}

/// A node data directory.
#[derive(Debug, Clone)]
pub struct NodeDir(PathBuf);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

impl NodeDir {
    /// The directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    fn key_path(&self) -> PathBuf {
        self.0.join("node.key")
    }

    fn enrolment_path(&self) -> PathBuf {
        self.0.join("enrolment.json")
    }

    /// The node key, if one was stored.
    pub fn load_key(&self) -> Result<Option<SecretKey>, StateError> {
        let path = self.key_path();
        match fs::read_to_string(&path) {
            Ok(text) => {
                SecretKey::from_seed_hex(&text)
                    .map(Some)
                    .map_err(|e| StateError::Damaged {
                        path: path.clone(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The node key; an error if it is missing.
    pub fn require_key(&self) -> Result<SecretKey, StateError> {
        self.load_key()?
            .ok_or_else(|| StateError::NotEnrolled(self.0.clone()))
    }

    /// Stores a new node key (mode 0600, synced). Fails if one exists.
    pub fn save_key(&self, key: &SecretKey) -> Result<(), StateError> {
        fs::create_dir_all(&self.0).map_err(io(&self.0))?;
        write_new(
            &self.key_path(),
            format!("{}\n", Hex(key.seed())).as_bytes(),
            0o600,
        )
    }

    /// The enrolment, if any.
    pub fn enrolment(&self) -> Result<Option<Enrolment>, StateError> {
        let path = self.enrolment_path();
        match fs::read_to_string(&path) {
            Ok(text) => parse_enrolment(&text)
                .map(Some)
                .map_err(|reason| StateError::Damaged { path, reason }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The enrolment, or an error saying to enrol.
    pub fn require_enrolment(&self) -> Result<Enrolment, StateError> {
        self.enrolment()?
            .ok_or_else(|| StateError::NotEnrolled(self.0.clone()))
    }

    /// Writes the enrolment atomically (temp file, fsync, rename), as the current version.
    pub fn save_enrolment(&self, e: &Enrolment) -> Result<(), StateError> {
        let path = self.enrolment_path();
        let tmp = path.with_extension("json.tmp");
        let _ = fs::remove_file(&tmp);
        let e = Enrolment {
            version: ENROLMENT_VERSION,
            ..e.clone()
        };
        let text = serde_json::to_vec_pretty(&e).map_err(|e| StateError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_new(&tmp, &text, 0o600)?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }
}

fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<(), StateError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(content).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts_json() -> serde_json::Value {
        serde_json::json!({
            "agent": "hearth-node/0.1.0", "arch": "x86_64",
            "capacity": {"cpu_millis": 4000, "memory_mib": 8192, "disk_mib": 65536, "bandwidth_mbps": 100},
            "country": "BE", "isp": "Proximus", "home": "home-1",
            "uplink_mbps": 100, "downlink_mbps": 500, "cgroups_v2": true, "labels": {}
        })
    }

    fn ids() -> (MasterId, NodeId) {
        (
            MasterId::from_key(SecretKey::from_seed(&[2; 32]).public()),
            NodeId::from_key(SecretKey::from_seed(&[1; 32]).public()),
        )
    }

    #[test]
    fn a_version_1_file_reads_as_a_list_of_its_address_and_is_saved_as_version_2() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = NodeDir::new(tmp.path());
        let (master, node) = ids();
        let old = serde_json::json!({
            "version": 1, "master_addr": "192.0.2.1:7000", "master": master, "node": node,
            "heartbeat_interval_ms": 3000, "facts": facts_json()
        });
        std::fs::write(
            tmp.path().join("enrolment.json"),
            serde_json::to_vec_pretty(&old).unwrap(),
        )
        .unwrap();
        let e = dir.require_enrolment().unwrap();
        assert_eq!(e.version, ENROLMENT_VERSION);
        assert_eq!(e.master_addrs, vec!["192.0.2.1:7000".parse().unwrap()]);
        assert_eq!(
            (e.master, e.node, e.heartbeat_interval_ms),
            (master, node, 3000)
        );
        assert_eq!(e.masters().unwrap().current(), e.master_addrs[0]);

        dir.save_enrolment(&e).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("enrolment.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["master_addrs"], serde_json::json!(["192.0.2.1:7000"]));
        assert!(v.get("master_addr").is_none(), "{text}");
        assert_eq!(dir.require_enrolment().unwrap(), e);
    }

    #[test]
    fn damaged_or_unknown_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = NodeDir::new(tmp.path());
        let (master, node) = ids();
        let cases = [
            (serde_json::json!({"version": 3}), "unknown version 3"),
            (
                serde_json::json!({
                    "version": 2, "master_addrs": [], "master": master, "node": node,
                    "heartbeat_interval_ms": 3000, "facts": facts_json()
                }),
                "master_addrs: no master address",
            ),
            (
                serde_json::json!({
                    "version": 2, "master_addrs": ["192.0.2.1:7000", "192.0.2.1:7000"],
                    "master": master, "node": node, "heartbeat_interval_ms": 3000,
                    "facts": facts_json()
                }),
                "listed twice",
            ),
            // A version-1 field in a version-2 file.
            (
                serde_json::json!({
                    "version": 2, "master_addr": "192.0.2.1:7000", "master": master,
                    "node": node, "heartbeat_interval_ms": 3000, "facts": facts_json()
                }),
                "master_addr",
            ),
        ];
        for (json, want) in cases {
            std::fs::write(tmp.path().join("enrolment.json"), json.to_string()).unwrap();
            let err = dir.require_enrolment().unwrap_err().to_string();
            assert!(err.contains("is damaged") && err.contains(want), "{err}");
        }
    }
}
