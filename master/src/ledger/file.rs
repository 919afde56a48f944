//! An append-only file of `\n`-terminated lines that is synced once per append call: what was
//! appended is on disk when `append` returns `Ok`; on any error the file is cut back to its
//! length before the call, so nothing half-written stays (a full disk leaves the log as it was).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// An open append-only file and its length.
#[derive(Debug)]
pub(super) struct AppendFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl AppendFile {
    /// Opens (creating) `path` and cuts it to `valid_len` (dropping a torn tail), synced.
    pub(super) fn open(path: &Path, valid_len: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len != valid_len {
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        crate::durable::sync_dir(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            len: valid_len,
        })
    }

    /// Current length in bytes.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` at the end and syncs the data; on error cuts the file back.
    pub(super) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let result = self
            .file
            .write_all_at(bytes, self.len)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len).and_then(|()| self.file.flush()) {
                    tracing::error!(path = %self.path.display(), error = %cut,
                        "could not cut a failed append back; the next start will drop the torn tail");
                }
                Err(e)
            }
        }
    }

    /// Reads `len` bytes at `offset` (a line already appended).
    #[cfg(test)]
    pub(super) fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// A second handle on the file for reads that do not wait for appends.
    pub(super) fn reader(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn appends_are_kept_and_a_torn_tail_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let mut f = AppendFile::open(&path, 0).unwrap();
        f.append(b"one\n").unwrap();
        f.append(b"two\n").unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(f.read_at(4, 3).unwrap(), b"two");
        drop(f);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"thr")
            .unwrap();
        let f = AppendFile::open(&path, 8).unwrap();
        assert_eq!(f.len(), 8);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
    }
}
