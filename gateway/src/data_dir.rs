//! The gateway's data directory: its identity, the addresses it serves on, its receipts.
//!
//! ```text
//! D/gateway.key              Ed25519 seed of the gateway's identity (hex, mode 0600)
//! D/tunnel.addr              UDP address of the tunnel endpoint (written by `run`)
//! D/http.addr, D/https.addr  public HTTP and HTTPS addresses (written by `run`)
//! D/metrics.addr             address of /metrics (written by `run`)
//! D/receipts/pending/        signed receipts not yet acknowledged by their node
//! D/receipts/refused/        receipts their node refused too many times
//! D/receipts/issued.jsonl    every receipt issued, one JSON line each (append only)
//! ```
//!
//! Every file is written durably: a temporary beside it, synced, renamed into place, and the
//! directory synced, so that after a crash a file is absent, old, or whole.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hearth_protocol::{Hex, SecretKey, SignerId};

/// Why the data directory could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Filesystem error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `init` on a directory that already has a key.
    #[error("{0} already holds a gateway identity; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// `run` on a directory without `init`.
    #[error("{0} has no gateway identity: run `hearth-gateway init --data {0}` first")]
    NotInitialised(PathBuf),
    /// The key file has the wrong content.
    #[error("{path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Paths inside a gateway data directory.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    /// The directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `gateway.key`.
    pub fn key_path(&self) -> PathBuf {
        self.0.join("gateway.key")
    }

    /// `receipts/`.
    pub fn receipts(&self) -> PathBuf {
        self.0.join("receipts")
    }

    /// Creates the directory (mode 0700) and the identity; returns the gateway's id.
    pub fn init(&self) -> Result<SignerId, DataDirError> {
        fs::create_dir_all(&self.0).map_err(io(&self.0))?;
        fs::set_permissions(&self.0, fs::Permissions::from_mode(0o700)).map_err(io(&self.0))?;
        let path = self.key_path();
        if path.exists() {
            return Err(DataDirError::AlreadyInitialised(self.0.clone()));
        }
        let key = SecretKey::generate();
        write_durable(
            &path,
            format!("{}\n", Hex(key.seed())).as_bytes(),
            Some(0o600),
        )
        .map_err(io(&path))?;
        Ok(SignerId::from_key(key.public()))
    }

    /// Loads the gateway's secret key.
    pub fn load_key(&self) -> Result<SecretKey, DataDirError> {
        let path = self.key_path();
        if !path.exists() {
            return Err(DataDirError::NotInitialised(self.0.clone()));
        }
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        SecretKey::from_seed_hex(&text).map_err(|e| DataDirError::Damaged {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes `addr` (`HOST:PORT` and a newline) to `D/<name>.addr` durably.
    pub fn publish_addr(&self, name: &str, addr: std::net::SocketAddr) -> Result<(), DataDirError> {
        let path = self.0.join(format!("{name}.addr"));
        write_durable(&path, format!("{addr}\n").as_bytes(), None).map_err(io(&path))
    }
}

/// Writes `data` to `path` durably (see the module doc); `mode` sets a new file's permissions.
pub fn write_durable(path: &Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Syncs the directory holding `path`, so a rename or removal in it survives a power cut.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}
