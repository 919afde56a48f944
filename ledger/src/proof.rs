//! Inclusion and consistency proofs, their JSON encodings (SPEC.md §15.3) and their checks.
//!
//! A proof's `path` travels as base64 (standard alphabet, padded) of its 32-byte hashes
//! concatenated in RFC 9162 order (the audit path from the leaf up; the consistency path as
//! RFC 9162 §2.1.4 produces it). The checks take only the proof, the leaf hash and the roots:
//! an auditor needs no tree.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hearth_protocol::Hex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::entry::Hash;

/// More hashes than any tree of 2^64 leaves needs: a longer path is malformed.
pub const MAX_PATH_HASHES: usize = 128;

/// Proof that leaf `seq` is in the tree of size `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf's index.
    pub seq: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The leaf hash (hex).
    pub leaf_hash: Hash,
    /// The audit path.
    #[serde(serialize_with = "ser_path", deserialize_with = "de_path")]
    pub path: Vec<Hash>,
}

/// Proof that the tree of size `to` extends the tree of size `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The consistency path.
    #[serde(serialize_with = "ser_path", deserialize_with = "de_path")]
    pub path: Vec<Hash>,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof is for another leaf hash than the one checked.
    #[error("the proof is for leaf hash {proof}, not {leaf}")]
    OtherLeaf {
        /// The proof's.
        proof: Hash,
        /// The one checked.
        leaf: Hash,
    },
    /// Index or sizes that cannot hold.
    #[error("impossible proof coordinates: {0}")]
    Coordinates(String),
    /// The path does not lead to the root.
    #[error("the proof's path does not lead to the expected root")]
    Mismatch,
    /// A path that is not a whole number of hashes, or too long.
    #[error("malformed proof path: {0}")]
    Malformed(String),
}

impl InclusionProof {
    /// The path's binary size, bytes.
    pub fn path_bytes(&self) -> usize {
        self.path.len() * 32
    }
}

impl ConsistencyProof {
    /// The path's binary size, bytes.
    pub fn path_bytes(&self) -> usize {
        self.path.len() * 32
    }
}

/// Checks that `proof` shows `leaf` in the tree whose root at `proof.size` is `root`.
pub fn verify_inclusion(
    proof: &InclusionProof,
    leaf: &Hash,
    root: &Hash,
) -> Result<(), ProofError> {
    if proof.leaf_hash != *leaf {
        return Err(ProofError::OtherLeaf {
            proof: proof.leaf_hash,
            leaf: *leaf,
        });
    }
    if proof.seq >= proof.size {
        return Err(ProofError::Coordinates(format!(
            "entry {} is not below the tree size {}",
            proof.seq, proof.size
        )));
    }
    if proof.path.len() > MAX_PATH_HASHES {
        return Err(ProofError::Malformed(format!(
            "{} hashes",
            proof.path.len()
        )));
    }
    tlog_tiles::check_record(
        &to_tlog(&proof.path),
        proof.size,
        t(root),
        proof.seq,
        t(leaf),
    )
    .map_err(|_| ProofError::Mismatch)
}

/// Checks that `proof` shows the tree with root `new_root` at `proof.to` extends the tree with
/// root `old_root` at `proof.from`.
pub fn verify_consistency(
    proof: &ConsistencyProof,
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if proof.from > proof.to {
        return Err(ProofError::Coordinates(format!(
            "from {} is beyond to {}",
            proof.from, proof.to
        )));
    }
    if proof.path.len() > MAX_PATH_HASHES {
        return Err(ProofError::Malformed(format!(
            "{} hashes",
            proof.path.len()
        )));
    }
    if proof.from == 0 {
        // Every tree extends the empty one; RFC 9162 defines no proof for it.
        let empty = Hex(tlog_tiles::EMPTY_HASH.0);
        return if proof.path.is_empty() && *old_root == empty {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    tlog_tiles::check_tree(
        &to_tlog(&proof.path),
        proof.to,
        t(new_root),
        proof.from,
        t(old_root),
    )
    .map_err(|_| ProofError::Mismatch)
}

/// Encodes a path (base64 of the concatenated hashes).
pub fn encode_path(path: &[Hash]) -> String {
    let bytes: Vec<u8> = path.iter().flat_map(|h| h.0).collect();
    BASE64.encode(bytes)
}

/// Decodes a path.
pub fn decode_path(text: &str) -> Result<Vec<Hash>, ProofError> {
    if text.len() > MAX_PATH_HASHES * 32 * 4 / 3 + 4 {
        return Err(ProofError::Malformed("longer than any path".into()));
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|e| ProofError::Malformed(e.to_string()))?;
    if bytes.len() % 32 != 0 {
        return Err(ProofError::Malformed(format!(
            "{} bytes is not a whole number of 32-byte hashes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hex(h)
        })
        .collect())
}

fn t(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(h.0)
}

fn to_tlog(path: &[Hash]) -> Vec<tlog_tiles::Hash> {
    path.iter().map(t).collect()
}

fn ser_path<S: Serializer>(path: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode_path(path))
}

fn de_path<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
    let text = String::deserialize(d)?;
    decode_path(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    #[test]
    fn json_encoding_is_the_spec_one() {
        let mut tree = Tree::new();
        for i in 0..7u8 {
            tree.append(crate::leaf_hash(&[i]));
        }
        let p = tree.inclusion(2, 7).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["seq"], 2);
        assert_eq!(json["size"], 7);
        assert_eq!(json["leaf_hash"].as_str().unwrap().len(), 64);
        let path = json["path"].as_str().unwrap();
        assert_eq!(decode_path(path).unwrap().len(), 3);
        let back: InclusionProof = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let c = tree.consistency(3, 7).unwrap();
        let back: ConsistencyProof =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn malformed_paths_are_refused() {
        assert!(decode_path("AAAA").is_err()); // 3 bytes
        assert!(decode_path("not base64!").is_err());
        assert!(decode_path(&"A".repeat(10_000)).is_err());
        assert_eq!(decode_path("").unwrap(), vec![]);
        let bad = r#"{"seq":0,"size":1,"leaf_hash":"00","path":""}"#;
        assert!(serde_json::from_str::<InclusionProof>(bad).is_err());
    }

    #[test]
    fn impossible_coordinates_are_refused_not_panicking() {
        let h = crate::leaf_hash(b"x");
        let p = InclusionProof {
            seq: 5,
            size: 5,
            leaf_hash: h,
            path: vec![],
        };
        assert!(matches!(
            verify_inclusion(&p, &h, &h),
            Err(ProofError::Coordinates(_))
        ));
        let c = ConsistencyProof {
            from: 6,
            to: 5,
            path: vec![],
        };
        assert!(matches!(
            verify_consistency(&c, &h, &h),
            Err(ProofError::Coordinates(_))
        ));
        let c = ConsistencyProof {
            from: 0,
            to: 5,
            path: vec![h],
        };
        assert!(verify_consistency(&c, &h, &h).is_err());
    }
}
