//! Checkpoints and co-signatures: the master signs a C2SP tlog checkpoint (origin
//! `hearth-ledger/<master id>`, size, root) as a C2SP signed note with its Ed25519 key, keeps
//! every one in `checkpoints.log` (`{"size":N,"note":"..."}`, one JSON line each) and the
//! witnesses' co-signature lines in `cosignatures.log` (`{"size":N,"witness":"..","line":".."}`).

use std::collections::BTreeMap;

use hearth_ledger::Hash;
use hearth_ledger::checkpoint::{self, SignedCheckpoint, WitnessVkey};
use hearth_protocol::{MasterId, SecretKey};
use serde::{Deserialize, Serialize};

/// One line of `checkpoints.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    /// The tree size it signs.
    pub size: u64,
    /// The signed note: checkpoint text, a blank line, the master's signature line.
    pub note: String,
}

/// One line of `cosignatures.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignatureLine {
    /// The checkpoint's size.
    pub size: u64,
    /// The witness's registered name.
    pub witness: String,
    /// Its signature line (`— name base64`, no newline).
    pub line: String,
}

/// The master's checkpoint key (notes per `hearth_ledger::checkpoint`, SPEC.md §15.3).
pub struct NoteKey {
    key: SecretKey,
    master: MasterId,
    origin: String,
    vkey: String,
}

impl std::fmt::Debug for NoteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteKey").field("vkey", &self.vkey).finish()
    }
}

impl NoteKey {
    /// The key of master `key`.
    pub fn new(key: &SecretKey) -> Self {
        let master = MasterId::from_key(key.public());
        Self {
            key: SecretKey::from_seed(&key.seed()),
            master,
            origin: checkpoint::origin_for(&master),
            vkey: checkpoint::master_vkey(&master),
        }
    }

    /// The C2SP verifier key (`name+keyid+base64(0x01‖pubkey)`).
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Signs the checkpoint of a tree of `size` with root `root`: the whole note.
    pub fn sign(&self, size: u64, root: &Hash) -> Result<String, String> {
        checkpoint::Checkpoint {
            origin: self.origin.clone(),
            size,
            root: *root,
        }
        .sign(&self.key)
        .map_err(|e| e.to_string())
    }

    /// Checks a note is a checkpoint of this master's log signed by it.
    pub fn open(&self, note: &str) -> Result<SignedCheckpoint, String> {
        SignedCheckpoint::open(note, &self.master).map_err(|e| e.to_string())
    }
}

/// The text part of a note (up to and including the line before the blank one).
pub fn note_text(note: &str) -> &str {
    match note.find("\n\n") {
        Some(i) => &note[..i + 1],
        None => note,
    }
}

/// Every checkpoint and the co-signatures received for each, by size.
#[derive(Debug, Default)]
pub struct Notes {
    /// Checkpoints by size (the master signs one size once).
    pub checkpoints: BTreeMap<u64, String>,
    /// Co-signature lines by size, in arrival order, one per witness.
    pub cosignatures: BTreeMap<u64, Vec<CosignatureLine>>,
}

impl Notes {
    /// The latest checkpoint.
    pub fn latest(&self) -> Option<(u64, &str)> {
        self.checkpoints
            .iter()
            .next_back()
            .map(|(s, n)| (*s, n.as_str()))
    }

    /// A checkpoint with every co-signature line appended.
    pub fn with_cosignatures(&self, size: u64) -> Option<String> {
        let mut note = self.checkpoints.get(&size)?.clone();
        for c in self.cosignatures.get(&size).into_iter().flatten() {
            note.push_str(&c.line);
            note.push('\n');
        }
        Some(note)
    }
}

/// A witness's verifier, from its registered vkey.
pub fn witness_verifier(vkey: &str) -> Result<WitnessVkey, String> {
    WitnessVkey::parse(vkey).map_err(|e| format!("not a C2SP Ed25519 verifier key: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_signed_checkpoint_opens_under_its_master_only() {
        let key = NoteKey::new(&SecretKey::generate());
        let root = hearth_ledger::leaf_hash(b"x");
        let note = key.sign(7, &root).unwrap();
        let signed = key.open(&note).unwrap();
        assert_eq!((signed.checkpoint.size, signed.checkpoint.root), (7, root));
        assert_eq!(note_text(&note), signed.text());
        let other = NoteKey::new(&SecretKey::generate());
        assert!(other.open(&note).is_err());
        assert!(key.open(&note.replace("\n7\n", "\n8\n")).is_err());
    }
}
