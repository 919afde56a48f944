//! What the CLI reads from a master's data directory on this machine (`--data-dir D`): the
//! address the API is bound to (`D/http.addr`, written by `hearth-master run`) and the admin
//! token (`D/admin.token`, written by `hearth-master init`). Nothing else of the master's
//! directory is read, and nothing is written.

use std::path::{Path, PathBuf};

/// Why the data directory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MasterDirError {
    /// `http.addr` is missing or unreadable: the master is not running (or elsewhere).
    #[error("cannot read {} (is the master running?): {source}", path.display())]
    Address {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `admin.token` is missing or unreadable.
    #[error("{}: {source}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A master's data directory, read-only.
#[derive(Debug, Clone)]
pub struct MasterDir(PathBuf);

impl MasterDir {
    /// The directory at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The API's base URL, `http://HOST:PORT`, from `http.addr`.
    pub fn url(&self) -> Result<String, MasterDirError> {
        let path = self.file("http.addr");
        let addr = std::fs::read_to_string(&path)
            .map_err(|source| MasterDirError::Address { path, source })?;
        Ok(format!("http://{}", addr.trim()))
    }

    /// The admin token, from `admin.token`.
    pub fn admin_token(&self) -> Result<String, MasterDirError> {
        let path = self.file("admin.token");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| MasterDirError::Token { path, source })?;
        Ok(text.trim().to_owned())
    }

    fn file(&self, name: &str) -> PathBuf {
        Path::new(&self.0).join(name)
    }
}
