//! The master's one way to write a file durably: a temporary file with a name no other writer
//! uses (process id, a counter and random bits), written, synced, renamed into place, and the
//! directory synced, so that after `kill -9` or a power cut the file is either absent, the old
//! version, or the whole new one; never empty or partial. A failed write removes its temporary.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `data` to `path` durably (see the module doc). `mode` sets the new file's permissions
/// (e.g. `0o600` for secrets); `None` keeps the default.
pub fn write(path: &Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let tmp = temporary(path)?;
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary name beside `path` that no concurrent writer (thread or process) uses:
/// `.<name>.<pid>.<counter>.<random>.tmp`.
pub fn temporary(path: &Path) -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", path.display())))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = format!(
        ".{name}.{}.{n}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    );
    Ok(path.with_file_name(tmp))
}

/// Syncs the directory holding `path`, so a rename into it survives a power cut.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn concurrent_writers_of_one_file_never_share_a_temporary_and_leave_one_whole_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 1 << 20]).collect();
        std::thread::scope(|s| {
            for d in &data {
                let path = &path;
                s.spawn(move || write(path, d, None).unwrap());
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(data.contains(&got), "a mix of writers: {} bytes", got.len());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "temporaries left behind");
    }
}
