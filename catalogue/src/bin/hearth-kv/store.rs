//! The objects of `hearth-kv` on disk (one file per key under `objects/`) and an in-memory index
//! of their keys and sizes, changed in the same order as the directory.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::common::{self, Token};

/// Longest key, in characters.
pub(crate) const MAX_KEY: usize = 200;
/// Object bodies held in memory at once (reads); bounds memory to this × the largest object.
const CONCURRENT_READS: usize = 8;

/// Why a key was refused; the message says what a key may be.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KeyError(String);

/// An object's name: 1–200 characters of `[A-Za-z0-9._-/]`, made of non-empty `/`-separated
/// segments, none of them `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key(pub(crate) String);

impl Key {
    pub(crate) fn parse(text: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError(format!("{why} (key `{}`)", excerpt(text)));
        if text.is_empty() || text.chars().count() > MAX_KEY {
            return Err(bad("a key has 1 to 200 characters"));
        }
        if !text.chars().all(key_char) {
            return Err(bad("a key uses only A-Z a-z 0-9 . _ - /"));
        }
        if text
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad(
                "key segments between `/` must be non-empty and not `.` or `..`",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The file name: `/` becomes `~`, which keys cannot contain, so the mapping is one to one.
    fn file_name(&self) -> String {
        self.0.replace('/', "~")
    }

    fn from_file_name(name: &str) -> Option<Self> {
        Self::parse(&name.replace('~', "/")).ok()
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

pub(crate) fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

/// At most 60 characters of peer text, for error messages.
fn excerpt(text: &str) -> String {
    text.chars().take(60).collect()
}

/// The objects on disk and an in-memory index of their keys and sizes.
#[derive(Debug)]
pub(crate) struct Store {
    objects: PathBuf,
    /// Uploads in progress (same file system as `objects`, so a rename moves them in place).
    pub(crate) tmp: PathBuf,
    /// Largest object accepted.
    pub(crate) max_bytes: u64,
    /// Guards writes when set.
    pub(crate) token: Option<Token>,
    /// Key → size. Held while a write renames or removes a file, so that the index and the
    /// directory change in the same order.
    index: Mutex<BTreeMap<Key, u64>>,
    /// Permits to hold an object in memory while answering a read.
    pub(crate) reads: Semaphore,
}

impl Store {
    pub(crate) fn open(data: &Path, max_bytes: u64, token: Option<Token>) -> anyhow::Result<Self> {
        let objects = data.join("objects");
        let tmp = data.join("tmp");
        std::fs::create_dir_all(&objects)?;
        let leftovers = common::clean_temp(&tmp)?;
        if leftovers > 0 {
            eprintln!(
                "removed {leftovers} unfinished uploads from {}",
                tmp.display()
            );
        }
        let mut index = BTreeMap::new();
        let mut foreign = 0usize;
        for entry in std::fs::read_dir(&objects)? {
            let entry = entry?;
            let key = entry.file_name().to_str().and_then(Key::from_file_name);
            match (key, entry.metadata()) {
                (Some(key), Ok(meta)) if meta.is_file() => {
                    index.insert(key, meta.len());
                }
                _ => foreign += 1,
            }
        }
        if foreign > 0 {
            eprintln!(
                "ignoring {foreign} entries in {} that are not objects",
                objects.display()
            );
        }
        Ok(Self {
            objects,
            tmp,
            max_bytes,
            token,
            index: Mutex::new(index),
            reads: Semaphore::new(CONCURRENT_READS),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.index
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub(crate) fn path(&self, key: &Key) -> PathBuf {
        self.objects.join(key.file_name())
    }

    /// Moves a synced upload into place; true if the key is new.
    pub(crate) fn commit(&self, tmp: &Path, key: Key, size: u64) -> std::io::Result<bool> {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        common::commit(tmp, &self.path(&key))?;
        Ok(index.insert(key, size).is_none())
    }

    /// Removes an object durably; false if there was none.
    pub(crate) fn remove(&self, key: &Key) -> std::io::Result<bool> {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if !index.contains_key(key) {
            return Ok(false);
        }
        common::remove_durably(&self.path(key))?;
        index.remove(key);
        Ok(true)
    }

    /// Up to `limit` keys starting with `prefix` and greater than `after`; true if there are more.
    pub(crate) fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Entry>, bool) {
        let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut matching = index
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.0.starts_with(prefix))
            .map(|(k, size)| Entry {
                key: k.0.clone(),
                size: *size,
            });
        let entries: Vec<Entry> = matching.by_ref().take(limit).collect();
        (entries, matching.next().is_some())
    }
}

/// One line of a listing.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_map_one_to_one_to_file_names() {
        for good in ["a", "photos/2024/cat.jpg", "A-b_c.d", ".hidden", "x/..y"] {
            let key = Key::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(Key::from_file_name(&key.file_name()), Some(key));
        }
        let long = "k".repeat(201);
        for bad in [
            "", "a/../b", "..", "./a", "a//b", "/a", "a/", "a b", "a~b", "é", &long,
        ] {
            assert!(Key::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
