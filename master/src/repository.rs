//! The signed recipe repository as the master holds it: TUF metadata files published by the
//! cooperative's signing tool (`hearth recipe publish`), kept in `D/repository/`, served to
//! nodes with `fetch_metadata`. The master does not vouch for them — nodes verify everything —
//! but it reads the targets listing to resolve `NAME@VERSION` and to list recipes.

use std::path::{Path, PathBuf};

use hearth_protocol::{RootPin, Sha256};
use hearth_recipes::repo::{MAX_METADATA, is_metadata_file};
use serde::Serialize;

/// Why a metadata file could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Not a metadata file name.
    #[error(
        "`{0}` is not a repository metadata file (N.root.json, targets.json, snapshot.json or timestamp.json)"
    )]
    BadName(String),
    /// Too big for one protocol frame.
    #[error("metadata files are at most {MAX_METADATA} bytes, this one is {0}")]
    TooLarge(usize),
    /// Not JSON of the signed-metadata shape.
    #[error("not signed TUF metadata: {0}")]
    NotMetadata(String),
    /// Filesystem failure (disk full…).
    #[error("repository store: {0}")]
    Io(#[from] std::io::Error),
}

/// One recipe the signed targets list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Recipe name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the recipe document.
    pub sha256: Sha256,
    /// Its length.
    pub length: u64,
}

/// The directory of published metadata.
#[derive(Debug, Clone)]
pub struct Repository {
    dir: PathBuf,
}

impl Repository {
    /// Metadata under `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<Self, RepositoryError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Stores a metadata file durably (`durable::write`).
    pub fn put(&self, file: &str, data: &[u8]) -> Result<(), RepositoryError> {
        if !is_metadata_file(file) {
            return Err(RepositoryError::BadName(file.to_owned()));
        }
        if data.len() as u64 > MAX_METADATA {
            return Err(RepositoryError::TooLarge(data.len()));
        }
        let v: serde_json::Value = serde_json::from_slice(data)
            .map_err(|e| RepositoryError::NotMetadata(e.to_string()))?;
        if !v.get("signed").is_some_and(serde_json::Value::is_object)
            || !v.get("signatures").is_some_and(serde_json::Value::is_array)
        {
            return Err(RepositoryError::NotMetadata(
                "a JSON object with a `signed` object and a `signatures` array is expected".into(),
            ));
        }
        crate::durable::write(&self.dir.join(file), data, None)?;
        Ok(())
    }

    /// A metadata file's bytes, `None` when not published.
    pub fn get(&self, file: &str) -> Result<Option<Vec<u8>>, RepositoryError> {
        if !is_metadata_file(file) {
            return Ok(None);
        }
        match std::fs::read(self.dir.join(file)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The recipes the published targets list (empty before the first publish).
    pub fn recipes(&self) -> Result<Vec<Listed>, RepositoryError> {
        let Some(bytes) = self.get("targets.json")? else {
            return Ok(Vec::new());
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RepositoryError::NotMetadata(e.to_string()))?;
        let mut out = Vec::new();
        let targets = v
            .pointer("/signed/targets")
            .and_then(serde_json::Value::as_object);
        for (name, t) in targets.into_iter().flatten() {
            let Some((recipe, version)) = name
                .strip_prefix("recipes/")
                .and_then(|n| n.strip_suffix(".toml"))
                .and_then(|n| n.split_once('/'))
            else {
                continue;
            };
            let sha = t
                .pointer("/hashes/sha256")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse().ok());
            let length = t.get("length").and_then(serde_json::Value::as_u64);
            if let (Some(sha256), Some(length)) = (sha, length) {
                out.push(Listed {
                    name: recipe.to_owned(),
                    version: version.to_owned(),
                    sha256,
                    length,
                });
            }
        }
        out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(out)
    }

    /// The newest published root, `<version>.root.json`, with the SHA-256 of its bytes: what an
    /// `ht2` enrolment token pins. `None` while no root is published.
    pub fn current_root(&self) -> Result<Option<RootPin>, RepositoryError> {
        let mut newest = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            let version = is_metadata_file(&name)
                .then(|| name.strip_suffix(".root.json"))
                .flatten()
                .and_then(|n| n.parse::<u64>().ok());
            newest = newest.max(version);
        }
        let Some(version) = newest else {
            return Ok(None);
        };
        let file = format!("{version}.root.json");
        Ok(self.get(&file)?.map(|bytes| RootPin {
            version,
            sha256: Sha256::digest(&bytes),
        }))
    }

    /// The published version of each role file present: `(file, version)`.
    pub fn versions(&self) -> Result<Vec<(String, u64)>, RepositoryError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !is_metadata_file(&name) {
                continue;
            }
            let version =
                hearth_recipes::repo::sign::previous_version(&self.dir.join(&name)).unwrap_or(0);
            out.push((name, version));
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_metadata_is_refused_and_nothing_is_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::open(tmp.path()).unwrap();
        let ok = br#"{"signed":{"version":3},"signatures":[]}"#;
        for (file, data, want) in [
            ("../etc.json", &ok[..], "not a repository metadata file"),
            ("0.root.json", &ok[..], "not a repository metadata file"),
            (
                "timestamp.json",
                &b"not json"[..],
                "not signed TUF metadata",
            ),
            (
                "timestamp.json",
                &b"{\"signed\":{}}"[..],
                "a `signed` object and a `signatures` array",
            ),
            (
                "timestamp.json",
                &b"{\"signed\":1,\"signatures\":[]}"[..],
                "a `signed` object and a `signatures` array",
            ),
            (
                "timestamp.json",
                &b"{\"signed\":{},\"signatures\":{}}"[..],
                "a `signed` object and a `signatures` array",
            ),
        ] {
            let e = repo.put(file, data).unwrap_err().to_string();
            assert!(e.contains(want), "{file}: {e}");
        }
        let big = vec![b' '; usize::try_from(MAX_METADATA).unwrap() + 1];
        assert!(matches!(
            repo.put("targets.json", &big),
            Err(RepositoryError::TooLarge(_))
        ));
        assert_eq!(repo.get("timestamp.json").unwrap(), None);
        assert!(repo.recipes().unwrap().is_empty());
        repo.put("timestamp.json", ok).unwrap();
        assert_eq!(repo.get("timestamp.json").unwrap().unwrap(), ok);
        assert_eq!(
            repo.versions().unwrap(),
            vec![("timestamp.json".to_owned(), 3)]
        );
    }

    #[test]
    fn the_current_root_is_the_newest_version_and_its_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::open(tmp.path()).unwrap();
        assert_eq!(repo.current_root().unwrap(), None);
        let (one, ten) = (
            br#"{"signed":{"version":1},"signatures":[]}"#,
            br#"{"signed":{"version":10},"signatures":[]}"#,
        );
        repo.put("1.root.json", one).unwrap();
        repo.put("targets.json", ten).unwrap();
        assert_eq!(
            repo.current_root().unwrap(),
            Some(RootPin {
                version: 1,
                sha256: Sha256::digest(one)
            })
        );
        repo.put("10.root.json", ten).unwrap();
        repo.put("9.root.json", one).unwrap();
        assert_eq!(
            repo.current_root().unwrap(),
            Some(RootPin {
                version: 10,
                sha256: Sha256::digest(ten)
            })
        );
    }
}
