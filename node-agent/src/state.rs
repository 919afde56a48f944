//! The node's data directory: its key, and its enrolment (written only once enrolment succeeded).
//!
//! ```text
//! D/node.key          Ed25519 seed (hex, mode 0600)
//! D/enrolment.json    master address and pinned master id, node id, facts (versioned)
//! ```

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

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
const ENROLMENT_VERSION: u32 = 1;

/// The stored enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// Format version.
    pub version: u32,
    /// Where the master listens.
    pub master_addr: SocketAddr,
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
        master_addr: SocketAddr,
        master: MasterId,
        node: NodeId,
        heartbeat_interval_ms: u64,
        facts: NodeFacts,
    ) -> Self {
        Self {
            version: ENROLMENT_VERSION,
            master_addr,
            master,
            node,
            heartbeat_interval_ms,
            facts,
        }
    }
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
            Ok(text) => {
                let e: Enrolment =
                    serde_json::from_str(&text).map_err(|e| StateError::Damaged {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if e.version != ENROLMENT_VERSION {
                    return Err(StateError::Damaged {
                        path,
                        reason: format!("unknown version {}", e.version),
                    });
                }
                Ok(Some(e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// The enrolment, or an error saying to enrol.
    pub fn require_enrolment(&self) -> Result<Enrolment, StateError> {
        self.enrolment()?
            .ok_or_else(|| StateError::NotEnrolled(self.0.clone()))
    }

    /// Writes the enrolment atomically (temp file, fsync, rename).
    pub fn save_enrolment(&self, e: &Enrolment) -> Result<(), StateError> {
        let path = self.enrolment_path();
        let tmp = path.with_extension("json.tmp");
        let _ = fs::remove_file(&tmp);
        let text = serde_json::to_vec_pretty(e).map_err(|e| StateError::Damaged {
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
