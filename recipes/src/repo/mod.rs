//! The cooperative's signed recipe repository, following The Update Framework (TUF) through the
//! `tough` crate: key generation and root rotation ([`keys`]), staging recipes and artifacts
//! ([`build`]), signing the targets, snapshot and timestamp roles ([`sign`]), and the node's
//! side of it, which downloads and checks the metadata ([`trust`]).
//!
//! Layout of a repository work directory (what `hearth recipe build`/`sign` write and
//! `hearth recipe publish` uploads):
//!
//! ```text
//! WORK/targets/recipes/<name>/<version>.toml   recipe documents, artifacts filled in
//! WORK/targets/artifacts/<sha256>              artifacts, content-addressed
//! WORK/metadata/N.root.json                    every root version, 1 to the latest
//! WORK/metadata/{targets,snapshot,timestamp}.json
//! ```

pub mod build;
pub mod chunks;
pub mod keys;
pub mod sign;
pub mod trust;

use chrono::{DateTime, SubsecRound as _, Utc};
use hearth_protocol::Sha256;

/// Target name of a recipe document.
pub fn recipe_target(name: &str, version: &str) -> String {
    format!("recipes/{name}/{version}.toml")
}

/// Target name of an artifact.
pub fn artifact_target(sha256: &Sha256) -> String {
    format!("artifacts/{sha256}")
}

/// Whether `file` is a metadata file name a repository may hold: `N.root.json`,
/// `targets.json`, `snapshot.json` or `timestamp.json`.
pub fn is_metadata_file(file: &str) -> bool {
    match file {
        "targets.json" | "snapshot.json" | "timestamp.json" => true,
        _ => file.strip_suffix(".root.json").is_some_and(|n| {
            !n.is_empty()
                && n.len() <= 19
                && n.bytes().all(|b| b.is_ascii_digit())
                && !n.starts_with('0')
        }),
    }
}

/// `t` without its fraction of a second. TUF 1.0 (§4.2) writes `expires` as
/// `YYYY-MM-DDTHH:MM:SSZ`; python-tuf, the reference implementation, refuses anything finer,
/// so every `expires` this module writes goes through here.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// Largest metadata file accepted anywhere: it travels in one protocol frame (1 MiB, base64).
pub const MAX_METADATA: u64 = 512 * 1024;

/// Errors of the repository tooling.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TUF (tough) refused or failed.
    #[error("{0}")]
    Tuf(String),
    /// Bad input to the tooling.
    #[error("{0}")]
    Invalid(String),
    /// A recipe in the repository is invalid.
    #[error(transparent)]
    Recipe(#[from] crate::RecipeError),
}

impl RepoError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn tuf(e: impl std::fmt::Display) -> Self {
        Self::Tuf(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_file_names() {
        for ok in [
            "1.root.json",
            "12.root.json",
            "targets.json",
            "timestamp.json",
        ] {
            assert!(is_metadata_file(ok), "{ok}");
        }
        for bad in [
            "0.root.json",
            ".root.json",
            "../targets.json",
            "a.root.json",
            "root.json",
            "01.root.json",
            "x.json",
        ] {
            assert!(!is_metadata_file(bad), "{bad}");
        }
    }

    #[test]
    fn expiry_is_written_in_whole_seconds() {
        let t = DateTime::parse_from_rfc3339("2027-03-04T05:06:07.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let json = serde_json::to_string(&whole_seconds(t)).unwrap();
        assert_eq!(json, "\"2027-03-04T05:06:07Z\"");
    }
}
