//! The witness registry (`witnesses.json`): the witnesses whose co-signatures the master accepts,
//! each a name and a C2SP Ed25519 verifier key whose key name is that name. Written durably
//! (temporary file, sync, rename) on every change.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A registered witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// Its name: the key name of its signature lines.
    pub name: String,
    /// Its C2SP verifier key.
    pub vkey: String,
}

/// Why a registry change or read failed.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A bad name or key.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken by another key.
    #[error("witness `{0}` is registered with another key; remove it first")]
    Exists(String),
    /// No such witness.
    #[error("no witness named `{0}` is registered")]
    Unknown(String),
    /// The file could not be read or written.
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Checks a witness: a valid key name, a C2SP Ed25519 vkey, whose name is `name`.
pub fn check(w: &Witness) -> Result<(), WitnessError> {
    if !signed_note::is_key_name_valid(&w.name) || w.name.len() > 128 {
        return Err(WitnessError::Invalid(format!(
            "`{}` is not a witness name: 1 to 128 characters, no spaces or `+`",
            w.name
        )));
    }
    let verifier = super::notes::witness_verifier(&w.vkey).map_err(WitnessError::Invalid)?;
    if verifier.name() != w.name {
        return Err(WitnessError::Invalid(format!(
            "the verifier key names `{}`, not `{}`",
            verifier.name(),
            w.name
        )));
    }
    Ok(())
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    list: Vec<Witness>,
}

impl Registry {
    /// Reads `path` (absent: empty).
    pub fn open(path: &Path) -> Result<Self, WitnessError> {
        let io = |e: String| WitnessError::Io {
            path: path.to_owned(),
            reason: e,
        };
        let list: Vec<Witness> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e.to_string())),
        };
        for w in &list {
            check(w).map_err(|e| io(e.to_string()))?;
        }
        Ok(Self {
            path: path.to_owned(),
            list,
        })
    }

    /// Every witness, by name.
    pub fn list(&self) -> &[Witness] {
        &self.list
    }

    /// The witness named `name`.
    pub fn get(&self, name: &str) -> Option<&Witness> {
        self.list.iter().find(|w| w.name == name)
    }

    /// Registers `w`; `Ok(false)` when it was registered already with the same key.
    pub fn add(&mut self, w: Witness) -> Result<bool, WitnessError> {
        check(&w)?;
        if let Some(old) = self.get(&w.name) {
            return if old.vkey == w.vkey {
                Ok(false)
            } else {
                Err(WitnessError::Exists(w.name))
            };
        }
        let mut list = self.list.clone();
        list.push(w);
        list.sort_by(|a, b| a.name.cmp(&b.name));
        self.save(list)?;
        Ok(true)
    }

    /// Removes the witness named `name`.
    pub fn remove(&mut self, name: &str) -> Result<Witness, WitnessError> {
        let w = self
            .get(name)
            .cloned()
            .ok_or_else(|| WitnessError::Unknown(name.to_owned()))?;
        let list = self
            .list
            .iter()
            .filter(|x| x.name != name)
            .cloned()
            .collect();
        self.save(list)?;
        Ok(w)
    }

    fn save(&mut self, list: Vec<Witness>) -> Result<(), WitnessError> {
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| WitnessError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        crate::durable::write(&self.path, &bytes, None).map_err(|e| WitnessError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        self.list = list;
        Ok(())
    }
}
