//! The master's data directory: identity, admin token, database and the addresses it serves on.
//!
//! ```text
//! D/master.key     Ed25519 seed of the master identity (hex, mode 0600)
//! D/admin.token    bearer token of the operator API (mode 0600)
//! D/master.db      SQLite database (WAL)
//! D/quic.addr      QUIC address in use (written by `run`)
//! D/http.addr      HTTP address in use (written by `run`)
//! ```

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use hearth_protocol::{Hex, MasterId, SecretKey};

use crate::store::{SqliteStore, StoreError};

/// Why the data directory could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Filesystem error on a path.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `init` on a directory that already has a master.
    #[error("{0} already holds a master identity; refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// `run` on a directory without `init`.
    #[error("{0} has no master identity: run `hearth-master init --data-dir {0}` first")]
    NotInitialised(PathBuf),
    /// A file has the wrong content.
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Paths inside a master data directory.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_owned(),
        source,
    }
}

impl DataDir {
    /// The directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `master.key`.
    pub fn key_path(&self) -> PathBuf {
        self.0.join("master.key")
    }
    /// `admin.token`.
    pub fn admin_token_path(&self) -> PathBuf {
        self.0.join("admin.token")
    }
    /// `master.db`.
    pub fn db_path(&self) -> PathBuf {
        self.0.join("master.db")
    }
    /// `quic.addr`.
    pub fn quic_addr_path(&self) -> PathBuf {
        self.0.join("quic.addr")
    }
    /// `http.addr`.
    pub fn http_addr_path(&self) -> PathBuf {
        self.0.join("http.addr")
    }

    /// Creates the identity, the admin token and the database. Returns the master id.
    pub fn init(&self) -> Result<MasterId, DataDirError> {
        fs::create_dir_all(&self.0).map_err(io(&self.0))?;
        fs::set_permissions(&self.0, fs::Permissions::from_mode(0o700)).map_err(io(&self.0))?;
        if self.key_path().exists() {
            return Err(DataDirError::AlreadyInitialised(self.0.clone()));
        }
        let key = SecretKey::generate();
        let token: [u8; 32] = rand::random();
        // Token and database first, the key last: a directory with a key is a complete one.
        write_secret(&self.admin_token_path(), &format!("{}\n", Hex(token)))?;
        SqliteStore::open(&self.db_path())?;
        write_secret(&self.key_path(), &format!("{}\n", Hex(key.seed())))?;
        Ok(MasterId::from_key(key.public()))
    }

    /// Loads the master's secret key.
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

    /// Reads the admin token.
    pub fn load_admin_token(&self) -> Result<String, DataDirError> {
        let path = self.admin_token_path();
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        Ok(text.trim().to_owned())
    }

    /// Writes `addr` to `path` atomically (readers never see a partial address).
    pub fn publish_addr(
        &self,
        path: &Path,
        addr: std::net::SocketAddr,
    ) -> Result<(), DataDirError> {
        crate::durable::write(path, format!("{addr}\n").as_bytes(), None).map_err(io(path))
    }
}

/// Creates `path` with mode 0600 and writes `content` durably; refuses to replace a file.
pub fn write_secret(path: &Path, content: &str) -> Result<(), DataDirError> {
    if path.exists() {
        return Err(io(path)(std::io::Error::from(
            std::io::ErrorKind::AlreadyExists,
        )));
    }
    crate::durable::write(path, content.as_bytes(), Some(0o600)).map_err(io(path))
}
