//! The witness's decision, sans-IO (SPEC.md §15.5): co-sign a new checkpoint only if it is the
//! master's and provably extends the last checkpoint this witness signed.
//!
//! Trust on first use: with no state yet, the first checkpoint that carries a valid master
//! signature is accepted as the starting point, whatever it contains. From then on a smaller
//! size is a rollback, the same size with another root is a fork, and a larger size needs a
//! consistency proof from the size signed last; a proof that does not lead from the signed root
//! to the new one is a fork too (the master signed two trees that cannot both be its log). The
//! driver (`hearth ledger witness run`) does the HTTP and keeps the state and any evidence.

use hearth_protocol::MasterId;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, SignedCheckpoint, WitnessKey};
use crate::entry::Hash;
use crate::proof::{ConsistencyProof, verify_consistency};

/// What a witness remembers: the last checkpoint it co-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessState {
    /// The log's origin.
    pub origin: String,
    /// The size signed last.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The note as it was co-signed (text and master signature).
    pub note: String,
}

/// Why a witness refused to co-sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// Not a checkpoint signed by the master.
    #[error("refused: {0}")]
    BadSignature(#[from] CheckpointError),
    /// A checkpoint of another log than the one this witness follows.
    #[error("refused: checkpoint of `{got}`, this witness follows `{expected}`")]
    OtherLog {
        /// The origin in the state.
        expected: String,
        /// The note's.
        got: String,
    },
    /// Smaller than the checkpoint signed last.
    #[error(
        "refused: rollback: the checkpoint has size {offered}, smaller than the size {signed} signed before"
    )]
    Rollback {
        /// The size signed before.
        signed: u64,
        /// The size offered.
        offered: u64,
    },
    /// Two trees that cannot both be the log.
    #[error(
        "FORK: the master signed size {signed} with root {signed_root} and now size {offered} with root {offered_root}, and {why}"
    )]
    Fork {
        /// Size signed before.
        signed: u64,
        /// Its root.
        signed_root: Hash,
        /// Size offered.
        offered: u64,
        /// Its root.
        offered_root: Hash,
        /// What did not hold.
        why: String,
    },
    /// No usable proof for a larger checkpoint.
    #[error("refused: {0}")]
    BadProof(String),
}

impl WitnessError {
    /// Whether this is evidence of a misbehaving master (keep both notes).
    pub fn is_evidence(&self) -> bool {
        matches!(self, Self::Fork { .. } | Self::Rollback { .. })
    }
}

/// Decides whether to co-sign `note` (the master's checkpoint note), given the state (None:
/// first use), a consistency proof from the state's size to the note's, the master's id and
/// the witness key. On success returns the new state and the co-signature line to post.
pub fn cosign(
    state: Option<&WitnessState>,
    note: &str,
    proof: Option<&ConsistencyProof>,
    master: &MasterId,
    key: &WitnessKey,
) -> Result<(WitnessState, String), WitnessError> {
    let signed = SignedCheckpoint::open(note, master)?;
    let new = &signed.checkpoint;
    if let Some(old) = state {
        if old.origin != new.origin {
            return Err(WitnessError::OtherLog {
                expected: old.origin.clone(),
                got: new.origin.clone(),
            });
        }
        let fork = |why: String| WitnessError::Fork {
            signed: old.size,
            signed_root: old.root,
            offered: new.size,
            offered_root: new.root,
            why,
        };
        if new.size < old.size {
            return Err(WitnessError::Rollback {
                signed: old.size,
                offered: new.size,
            });
        }
        if new.size == old.size {
            if new.root != old.root {
                return Err(fork("the same size cannot have two roots".into()));
            }
        } else {
            let proof = proof.ok_or_else(|| {
                WitnessError::BadProof(format!(
                    "no consistency proof from size {} to {}",
                    old.size, new.size
                ))
            })?;
            if (proof.from, proof.to) != (old.size, new.size) {
                return Err(WitnessError::BadProof(format!(
                    "the consistency proof is from {} to {}, not from {} to {}",
                    proof.from, proof.to, old.size, new.size
                )));
            }
            verify_consistency(proof, &old.root, &new.root)
                .map_err(|e| fork(format!("the consistency proof fails: {e}")))?;
        }
    }
    let line = key.cosign(&signed)?;
    let state = WitnessState {
        origin: new.origin.clone(),
        size: new.size,
        root: new.root,
        note: format!("{}\n{}", signed.text(), master_line(note)),
    };
    Ok((state, line))
}

/// The note with only its text and first signature (the master's comes first as the master
/// writes it; co-signatures are not part of what the witness vouches for).
fn master_line(note: &str) -> String {
    note.rsplit_once("\n\n")
        .and_then(|(_, sigs)| sigs.lines().next())
        .map(|l| format!("{l}\n"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use hearth_protocol::SecretKey;

    use super::*;
    use crate::checkpoint::{Checkpoint, WitnessVkey, origin_for};
    use crate::tree::Tree;

    struct Log {
        key: SecretKey,
        id: MasterId,
        tree: Tree,
    }

    impl Log {
        fn new(seed: u8) -> Self {
            let key = SecretKey::from_seed(&[seed; 32]);
            let id = MasterId::from_key(key.public());
            Self {
                key,
                id,
                tree: Tree::new(),
            }
        }
        fn grow(&mut self, n: u64, tag: &str) {
            for i in 0..n {
                self.tree
                    .append(crate::leaf_hash(format!("{tag}{i}").as_bytes()));
            }
        }
        fn note(&self, size: u64) -> String {
            let cp = Checkpoint {
                origin: origin_for(&self.id),
                size,
                root: self.tree.root(size).unwrap(),
            };
            cp.sign(&self.key).unwrap()
        }
    }

    #[test]
    fn first_use_then_only_extensions_are_cosigned() {
        let key = WitnessKey::from_seed("w", &[3; 32]).unwrap();
        let mut log = Log::new(1);
        log.grow(5, "a");
        let (s1, line) = cosign(None, &log.note(5), None, &log.id, &key).unwrap();
        assert_eq!(s1.size, 5);
        let mut cp = SignedCheckpoint::open(&log.note(5), &log.id).unwrap();
        cp.add_cosignature(&line).unwrap();
        assert_eq!(
            cp.check_cosignatures(&[WitnessVkey::parse(key.vkey()).unwrap()])
                .valid,
            vec!["w"]
        );

        log.grow(4, "b");
        let proof = log.tree.consistency(5, 9).unwrap();
        let (s2, _) = cosign(Some(&s1), &log.note(9), Some(&proof), &log.id, &key).unwrap();
        assert_eq!((s2.size, s2.root), (9, log.tree.root(9).unwrap()));
        // the same checkpoint again is fine
        assert!(cosign(Some(&s2), &log.note(9), None, &log.id, &key).is_ok());
        // rollback
        let err = cosign(Some(&s2), &log.note(5), None, &log.id, &key).unwrap_err();
        assert!(matches!(
            err,
            WitnessError::Rollback {
                signed: 9,
                offered: 5
            }
        ));
        // no proof, or a proof for other sizes
        log.grow(1, "c");
        assert!(matches!(
            cosign(Some(&s2), &log.note(10), None, &log.id, &key),
            Err(WitnessError::BadProof(_))
        ));
        let wrong = log.tree.consistency(5, 10).unwrap();
        assert!(matches!(
            cosign(Some(&s2), &log.note(10), Some(&wrong), &log.id, &key),
            Err(WitnessError::BadProof(_))
        ));
        // not the master's
        let other = Log::new(2);
        assert!(matches!(
            cosign(Some(&s2), &log.note(10), None, &other.id, &key),
            Err(WitnessError::BadSignature(_))
        ));
    }

    #[test]
    fn a_forked_log_is_refused_as_a_fork() {
        let key = WitnessKey::from_seed("w", &[3; 32]).unwrap();
        let mut log = Log::new(1);
        log.grow(6, "a");
        let (s, _) = cosign(None, &log.note(6), None, &log.id, &key).unwrap();
        // the same master rewrites entry 3 onward and grows to 8
        let mut forked = Log::new(1);
        forked.grow(3, "a");
        forked.grow(5, "x");
        let proof = forked.tree.consistency(6, 8).unwrap();
        let err = cosign(Some(&s), &forked.note(8), Some(&proof), &forked.id, &key).unwrap_err();
        assert!(err.is_evidence(), "{err}");
        assert!(err.to_string().contains("FORK"), "{err}");
        let same_size = cosign(Some(&s), &forked.note(6), None, &forked.id, &key).unwrap_err();
        assert!(matches!(
            same_size,
            WitnessError::Fork {
                signed: 6,
                offered: 6,
                ..
            }
        ));
    }
}
