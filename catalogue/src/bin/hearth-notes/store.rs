//! The notes on disk: one versioned JSON file per note under `notes/`, written durably, and an
//! in-memory index (id → creation, expiry, title) that answers listings and expiry without
//! touching the disk. Time is passed in (`now`, Unix seconds), never read here.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use hearth_protocol::Hex;
use serde::{Deserialize, Serialize};

use crate::common;

/// Longest title shown, in characters.
const TITLE_CHARS: usize = 80;
/// Largest note file read at startup (a 1 MiB note escaped as JSON stays far below).
const MAX_FILE: u64 = 8 * 1024 * 1024;
/// Version of the note files.
const VERSION: u32 = 1;

/// A note's id: 8 random bytes, written as 16 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NoteId(Hex<8>);

impl NoteId {
    fn random() -> std::io::Result<Self> {
        let mut bytes = [0u8; 8];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(Hex(bytes)))
    }
}

impl FromStr for NoteId {
    type Err = hearth_protocol::ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl std::fmt::Display for NoteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotesError {
    /// As many notes as allowed are live.
    #[error("the service holds its maximum of {0} notes; try again when some have expired")]
    Full(usize),
    /// The disk failed.
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

/// A note file (`notes/<id>.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteFile {
    /// Format version ([`VERSION`]).
    v: u32,
    /// Unix seconds.
    created: u64,
    /// Unix seconds after which the note is gone; `None`: kept.
    expires: Option<u64>,
    text: String,
}

/// What the index keeps of a note.
#[derive(Debug, Clone)]
struct Meta {
    created: u64,
    expires: Option<u64>,
    title: String,
}

impl Meta {
    fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// A line of a listing.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) created: u64,
    pub(crate) expires: Option<u64>,
}

/// The notes.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    tmp: PathBuf,
    max_notes: usize,
    index: Mutex<BTreeMap<NoteId, Meta>>,
}

impl Store {
    /// Opens `data`, dropping unfinished writes and notes expired before `now`.
    pub(crate) fn open(data: &Path, max_notes: usize, now: u64) -> anyhow::Result<Self> {
        let dir = data.join("notes");
        let tmp = data.join("tmp");
        std::fs::create_dir_all(&dir)?;
        common::clean_temp(&tmp)?;
        let mut index = BTreeMap::new();
        let mut unreadable = 0usize;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            match load(&path) {
                Some((id, meta)) if meta.live(now) => {
                    index.insert(id, meta);
                }
                Some(_) => common::remove_durably(&path)?,
                None => unreadable += 1,
            }
        }
        if unreadable > 0 {
            eprintln!(
                "ignoring {unreadable} unreadable files in {}",
                dir.display()
            );
        }
        Ok(Self {
            dir,
            tmp,
            max_notes,
            index: Mutex::new(index),
        })
    }

    /// Number of notes in the index.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stores a note durably and returns its id.
    pub(crate) fn add(
        &self,
        text: String,
        now: u64,
        expires: Option<u64>,
    ) -> Result<NoteId, NotesError> {
        let title = title(&text);
        let mut index = self.lock();
        if index.values().filter(|m| m.live(now)).count() >= self.max_notes {
            return Err(NotesError::Full(self.max_notes));
        }
        let mut id = NoteId::random()?;
        for _ in 0..4 {
            if !index.contains_key(&id) {
                break;
            }
            id = NoteId::random()?;
        }
        let file = NoteFile {
            v: VERSION,
            created: now,
            expires,
            text,
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        // Written under the lock: notes are small, and the index never names a missing file.
        common::write_durably(&self.tmp, &self.path(id), &bytes)?;
        index.insert(
            id,
            Meta {
                created: now,
                expires,
                title,
            },
        );
        Ok(id)
    }

    /// The text of a live note.
    pub(crate) fn read(&self, id: NoteId, now: u64) -> Result<Option<String>, NotesError> {
        if !self.lock().get(&id).is_some_and(|m| m.live(now)) {
            return Ok(None);
        }
        match read_file(&self.path(id)) {
            Ok(Some(file)) => Ok(Some(file.text)),
            Ok(None) => Err(NotesError::Io(std::io::Error::other(format!(
                "note {id} is unreadable"
            )))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Live notes, newest first, at most `n`.
    pub(crate) fn recent(&self, now: u64, n: usize) -> Vec<Summary> {
        let index = self.lock();
        let mut live: Vec<_> = index.iter().filter(|(_, m)| m.live(now)).collect();
        live.sort_by(|a, b| (b.1.created, b.0).cmp(&(a.1.created, a.0)));
        live.into_iter()
            .take(n)
            .map(|(id, m)| Summary {
                id: id.to_string(),
                title: m.title.clone(),
                created: m.created,
                expires: m.expires,
            })
            .collect()
    }

    /// Removes notes expired at `now`; returns how many.
    pub(crate) fn prune(&self, now: u64) -> Result<usize, NotesError> {
        let mut index = self.lock();
        let expired: Vec<NoteId> = index
            .iter()
            .filter(|(_, m)| !m.live(now))
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            common::remove_durably(&self.path(*id))?;
            index.remove(id);
        }
        Ok(expired.len())
    }

    fn path(&self, id: NoteId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NoteId, Meta>> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A note file's id and metadata; `None` if it is not a valid note file.
fn load(path: &Path) -> Option<(NoteId, Meta)> {
    let id: NoteId = path
        .file_name()?
        .to_str()?
        .strip_suffix(".json")?
        .parse()
        .ok()?;
    let file = read_file(path).ok()??;
    let meta = Meta {
        created: file.created,
        expires: file.expires,
        title: title(&file.text),
    };
    Some((id, meta))
}

/// Reads a note file; `Ok(None)` if it is too large, not JSON of the right shape, or of another
/// version.
fn read_file(path: &Path) -> std::io::Result<Option<NoteFile>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<NoteFile>(&bytes)
        .ok()
        .filter(|f| f.v == VERSION))
}

/// The first non-blank line without control characters, at most [`TITLE_CHARS`] characters.
pub(crate) fn title(text: &str) -> String {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    let Some(line) = line else {
        return "(untitled)".into();
    };
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() > TITLE_CHARS {
        let cut: String = clean.chars().take(TITLE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian calendar).
pub(crate) fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notes_expire_and_are_pruned_at_the_time_given() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let store = Store::open(dir, 10, 1000).unwrap();
        let keep = store.add("kept\nbody".into(), 1000, None).unwrap();
        let gone = store.add("brief".into(), 1000, Some(1060)).unwrap();
        assert_eq!(store.read(gone, 1059).unwrap().as_deref(), Some("brief"));
        assert_eq!(store.read(gone, 1060).unwrap(), None);
        assert_eq!(store.recent(1060, 10).len(), 1);
        assert_eq!(store.prune(1060).unwrap(), 1);
        let reopened = Store::open(dir, 10, 2000).unwrap();
        assert_eq!(reopened.len(), 1);
        assert_eq!(
            reopened.read(keep, 2000).unwrap().as_deref(),
            Some("kept\nbody")
        );
    }

    #[test]
    fn titles_and_dates() {
        assert_eq!(title("\n  Shopping list \nmilk"), "Shopping list");
        assert_eq!(title(" \n "), "(untitled)");
        assert_eq!(title(&"x".repeat(100)).chars().count(), TITLE_CHARS);
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_827_696), "2000-02-29 12:34 UTC");
        assert_eq!(utc(1_735_689_599), "2024-12-31 23:59 UTC");
    }
}
