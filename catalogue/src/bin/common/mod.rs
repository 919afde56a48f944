//! Pieces shared by the catalogue's small services (`hearth-kv`, `hearth-notes`): durable file
//! writes (temporary file, fsync, rename, fsync of the directory), the optional bearer token that
//! guards writes, the SIGTERM shutdown future and the wall clock in seconds.
//!
//! Each binary includes this module with `mod common;` and uses a part of it.
#![allow(
    dead_code,
    reason = "shared by several binaries; each uses only a part"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody as _};
use axum::http::{HeaderMap, header};

/// Resolves when the process gets SIGTERM (how the node agent stops an instance) or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                eprintln!("cannot watch SIGTERM ({e}); stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => eprintln!("SIGTERM: finishing open requests, then exiting"),
        _ = tokio::signal::ctrl_c() => eprintln!("SIGINT: finishing open requests, then exiting"),
    }
}

/// The next chunk of a request body (trailers skipped); `None` at its end.
pub(crate) async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => return Some(Ok(data)),
            Ok(Err(_trailers)) => {}
            Err(e) => return Some(Err(e)),
        }
    }
}

/// The body's `Content-Length`, if it declares a valid one.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh, unused path in `tmp_dir` for a file that will be renamed into place.
pub(crate) fn temp_path(tmp_dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tmp_dir.join(format!("{}-{n}-{nanos}.tmp", std::process::id()))
}

/// Renames the already synced file `tmp` to `target` and syncs `target`'s directory, so that the
/// new name survives a crash. `tmp` and `target` must be on the same file system.
pub(crate) fn commit(tmp: &Path, target: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, target)?;
    sync_parent(target)
}

/// Writes `bytes` to `target` durably: a temporary file in `tmp_dir`, fsync, rename, fsync of the
/// directory. Readers see the old content or the new one, never a part.
pub(crate) fn write_durably(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(tmp_dir);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        commit(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes `path` and syncs its directory; a file that is already gone is not an error.
pub(crate) fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `tmp_dir` and removes what a crash left in it (files never renamed into place).
pub(crate) fn clean_temp(tmp_dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(tmp_dir)?;
    let mut removed = 0;
    for entry in std::fs::read_dir(tmp_dir)? {
        if std::fs::remove_file(entry?.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()
}

/// The bearer token that guards writes. Its `Debug` form never shows the secret.
pub(crate) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Why a request was refused by the token check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is not the service's.
    Wrong,
}

impl Token {
    /// The token from `file` (surrounding whitespace trimmed) or else from the environment
    /// variable `env` (how a recipe hands over a secret parameter); `None` when neither is set.
    /// Secrets never come from the command line, where other users could read them.
    pub(crate) fn load(file: Option<&Path>, env: &str) -> anyhow::Result<Option<Self>> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?,
            None => match std::env::var(env) {
                Ok(text) => text,
                Err(std::env::VarError::NotPresent) => return Ok(None),
                Err(e) => anyhow::bail!("{env}: {e}"),
            },
        };
        let token = text.trim();
        if token.is_empty() {
            anyhow::bail!("the token is empty; give a non-empty one or none at all");
        }
        if token.len() > 1024 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!("the token must be at most 1024 printable ASCII characters");
        }
        Ok(Some(Self(token.to_owned())))
    }

    /// Checks the request's `Authorization: Bearer …` header in constant time.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthFailure::Missing)?;
        if constant_time_eq(given.trim().as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(AuthFailure::Wrong)
        }
    }
}

/// Compares without an early exit on the first differing byte (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `req` against an optional token: no token configured means everyone may write.
pub(crate) fn authorize(token: Option<&Token>, headers: &HeaderMap) -> Result<(), AuthFailure> {
    token.map_or(Ok(()), |t| t.check(headers))
}
