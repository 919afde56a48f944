//! The in-memory Merkle log (RFC 6962 / RFC 9162 §2.1) over the ledger's leaf hashes.
//!
//! [`Tree`] keeps every hash the tree will ever need in tlog_tiles' stored-hash layout (Crosby
//! and Wallach's dense ordering: each leaf adds its hash and the hash of every subtree it
//! completes, just under two hashes per leaf on average, so about 64 bytes per leaf). Those
//! hashes never change once written, so the root, inclusion proofs and consistency proofs at
//! any earlier size come from the same array. [`Frontier`] is the verifier's streaming
//! counterpart: only the roots of the complete subtrees left of the next leaf (at most 64
//! hashes), enough to compute the root at the current size and to continue a tree from a given
//! size without the leaves before it.

use hearth_protocol::Hex;
use tlog_tiles::{HashReader, stored_hash_index};

use crate::entry::Hash;
use crate::proof::{ConsistencyProof, InclusionProof};

/// Why the tree cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A size beyond the tree's.
    #[error("size {asked} is beyond the tree's size {size}")]
    BeyondSize {
        /// The size asked for.
        asked: u64,
        /// The tree's size.
        size: u64,
    },
    /// An inclusion proof for a leaf that is not in the tree of that size.
    #[error("entry {seq} is not in the tree of size {size}")]
    NotInTree {
        /// The leaf index.
        seq: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("no consistency proof from size {from} to the smaller size {to}")]
    Backwards {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// A frontier that does not fit its size.
    #[error("a frontier of size {size} has {expected} subtree hashes, not {got}")]
    FrontierShape {
        /// The size.
        size: u64,
        /// Hashes expected (the number of bits set in the size).
        expected: u32,
        /// Hashes given.
        got: usize,
    },
    /// The hash library refused (cannot happen for sizes checked above; kept as a clear error).
    #[error("Merkle tree computation failed: {0}")]
    Tlog(String),
}

/// An append-only Merkle tree over leaf hashes, with every stored hash in memory.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    hashes: Vec<tlog_tiles::Hash>,
    size: u64,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns its index.
    pub fn append(&mut self, leaf: Hash) -> u64 {
        let n = self.size;
        // Reading our own stored hashes cannot fail: every index asked for is below
        // stored_hash_count(n), which we hold.
        match tlog_tiles::stored_hashes_for_record_hash(n, tlog_tiles::Hash(leaf.0), self) {
            Ok(new) => self.hashes.extend(new),
            Err(e) => unreachable!("stored hashes of a complete prefix: {e}"),
        }
        self.size += 1;
        n
    }

    /// The root of the tree at `size` (≤ the tree's size).
    pub fn root(&self, size: u64) -> Result<Hash, TreeError> {
        self.check_size(size)?;
        tlog_tiles::tree_hash(size, self)
            .map(|h| Hex(h.0))
            .map_err(tlog)
    }

    /// The inclusion proof of leaf `seq` in the tree of size `size`.
    pub fn inclusion(&self, seq: u64, size: u64) -> Result<InclusionProof, TreeError> {
        self.check_size(size)?;
        if seq >= size {
            return Err(TreeError::NotInTree { seq, size });
        }
        let path = tlog_tiles::prove_record(size, seq, self).map_err(tlog)?;
        let leaf = self.read(stored_hash_index(0, seq))?;
        Ok(InclusionProof {
            seq,
            size,
            leaf_hash: Hex(leaf.0),
            path: path.into_iter().map(|h| Hex(h.0)).collect(),
        })
    }

    /// The consistency proof from size `from` to size `to` (`from ≤ to ≤ size`).
    pub fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, TreeError> {
        self.check_size(to)?;
        if from > to {
            return Err(TreeError::Backwards { from, to });
        }
        let path = if from == 0 {
            Vec::new()
        } else {
            tlog_tiles::prove_tree(to, from, self).map_err(tlog)?
        };
        Ok(ConsistencyProof {
            from,
            to,
            path: path.into_iter().map(|h| Hex(h.0)).collect(),
        })
    }

    /// The frontier at `size`: the roots of the complete subtrees covering leaves `0..size`,
    /// largest (leftmost) first.
    pub fn frontier(&self, size: u64) -> Result<Frontier, TreeError> {
        self.check_size(size)?;
        let mut subtrees = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                subtrees.push(Hex(self.read(stored_hash_index(level, start >> level))?.0));
                start += 1u64 << level;
            }
        }
        Frontier::from_parts(size, subtrees)
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError> {
        if size > self.size {
            return Err(TreeError::BeyondSize {
                asked: size,
                size: self.size,
            });
        }
        Ok(())
    }

    fn read(&self, index: u64) -> Result<tlog_tiles::Hash, TreeError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.hashes.get(i))
            .copied()
            .ok_or_else(|| TreeError::Tlog(format!("stored hash {index} missing")))
    }
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.read(i)
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn tlog(e: tlog_tiles::Error) -> TreeError {
    TreeError::Tlog(e.to_string())
}

/// The right edge of a Merkle tree: enough to append leaves and compute roots, without the
/// leaves themselves (O(log n) memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each complete subtree, leftmost (highest level) first.
    subtrees: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its size and its subtree roots, largest first (one per bit set in
    /// `size`, from the highest bit), as [`Self::hashes`] gives them.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, TreeError> {
        let expected = size.count_ones();
        if hashes.len() != expected as usize {
            return Err(TreeError::FrontierShape {
                size,
                expected,
                got: hashes.len(),
            });
        }
        let levels = (0..64u8).rev().filter(|l| size & (1u64 << l) != 0);
        Ok(Self {
            size,
            subtrees: levels.zip(hashes).collect(),
        })
    }

    /// The frontier at `size` from the leaf hash of entry `size - 1` and that entry's inclusion
    /// path at `size` (RFC 9162 order). The last leaf's audit path holds exactly the left
    /// siblings on its way up: first those inside the last complete subtree, then the roots of
    /// the other complete subtrees, right to left. So the frontier's root is the root the path
    /// proves, and checking it against a signed root checks the frontier.
    pub fn from_last_leaf(size: u64, leaf: Hash, path: &[Hash]) -> Result<Self, TreeError> {
        if size == 0 {
            return Err(TreeError::FrontierShape {
                size,
                expected: 0,
                got: path.len(),
            });
        }
        let inner = size.trailing_zeros() as usize;
        let expected = inner + size.count_ones() as usize - 1;
        if path.len() != expected {
            return Err(TreeError::FrontierShape {
                size,
                expected: expected as u32,
                got: path.len(),
            });
        }
        let (inside, others) = path.split_at(inner);
        let last = inside.iter().fold(tlog_tiles::Hash(leaf.0), |h, left| {
            tlog_tiles::node_hash(tlog_tiles::Hash(left.0), h)
        });
        let mut hashes: Vec<Hash> = others.iter().rev().copied().collect();
        hashes.push(Hex(last.0));
        Self::from_parts(size, hashes)
    }

    /// The number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn hashes(&self) -> Vec<Hash> {
        self.subtrees.iter().map(|(_, h)| *h).collect()
    }

    /// Appends a leaf hash.
    pub fn append(&mut self, leaf: Hash) {
        let mut level = 0u8;
        let mut hash = tlog_tiles::Hash(leaf.0);
        while let Some(&(l, left)) = self.subtrees.last() {
            if l != level {
                break;
            }
            self.subtrees.pop();
            hash = tlog_tiles::node_hash(tlog_tiles::Hash(left.0), hash);
            level += 1;
        }
        self.subtrees.push((level, Hex(hash.0)));
        self.size += 1;
    }

    /// The root of the tree of the current size.
    pub fn root(&self) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        let Some(&(_, last)) = iter.next() else {
            return Hex(tlog_tiles::EMPTY_HASH.0);
        };
        let root = iter.fold(tlog_tiles::Hash(last.0), |right, (_, left)| {
            tlog_tiles::node_hash(tlog_tiles::Hash(left.0), right)
        });
        Hex(root.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::proof::{verify_consistency, verify_inclusion};

    fn leaf(i: u64) -> Hash {
        crate::leaf_hash(format!("entry {i}").as_bytes())
    }

    fn node(l: [u8; 32], r: [u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    /// Largest power of two strictly less than n (n ≥ 2).
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    /// RFC 6962 §2.1 MTH, naively.
    fn mth(d: &[[u8; 32]]) -> [u8; 32] {
        match d.len() {
            0 => Sha256::digest([]).into(),
            1 => d[0],
            n => {
                let k = split(n);
                node(mth(&d[..k]), mth(&d[k..]))
            }
        }
    }

    /// RFC 6962 §2.1.1 PATH(m, D).
    fn path(m: usize, d: &[[u8; 32]]) -> Vec<[u8; 32]> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    /// RFC 6962 §2.1.2 SUBPROOF(m, D, b).
    fn subproof(m: usize, d: &[[u8; 32]], b: bool) -> Vec<[u8; 32]> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn build(n: u64) -> (Tree, Vec<[u8; 32]>) {
        let mut t = Tree::new();
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| leaf(i).0).collect();
        for i in 0..n {
            assert_eq!(t.append(leaf(i)), i);
        }
        (t, leaves)
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(Tree::new().root(0).unwrap().0, mth(&[]));
        assert_eq!(Frontier::new().root().0, mth(&[]));
    }

    #[test]
    fn out_of_range_requests_are_refused() {
        let (t, _) = build(5);
        assert!(matches!(t.root(6), Err(TreeError::BeyondSize { .. })));
        assert!(matches!(
            t.inclusion(5, 5),
            Err(TreeError::NotInTree { .. })
        ));
        assert!(matches!(
            t.consistency(4, 3),
            Err(TreeError::Backwards { .. })
        ));
        assert!(matches!(
            Frontier::from_parts(5, vec![leaf(0)]),
            Err(TreeError::FrontierShape { .. })
        ));
    }

    #[test]
    fn memory_is_about_64_bytes_per_leaf() {
        let (t, _) = build(10_000);
        let bytes = t.hashes.len() * 32;
        assert!(
            bytes <= 64 * 10_000 + 64 * 32,
            "{bytes} bytes for 10,000 leaves"
        );
    }

    proptest! {
        #[test]
        fn roots_and_proofs_match_rfc6962(n in 1u64..80, a in 0u64..80, b in 0u64..80, m in 0u64..80) {
            let (t, leaves) = build(n);
            let size = 1 + b % n;
            let from = a % (size + 1);
            let seq = m % size;
            // roots at every size, tree and frontier
            let mut f = Frontier::new();
            for s in 0..=n {
                let root = t.root(s).unwrap();
                prop_assert_eq!(root.0, mth(&leaves[..s as usize]));
                prop_assert_eq!(f.root(), root);
                prop_assert_eq!(&t.frontier(s).unwrap(), &f);
                if s < n { f.append(leaf(s)); }
            }
            let root = t.root(size).unwrap();
            // inclusion
            let p = t.inclusion(seq, size).unwrap();
            let want: Vec<[u8; 32]> = path(seq as usize, &leaves[..size as usize]);
            prop_assert_eq!(p.path.iter().map(|h| h.0).collect::<Vec<_>>(), want);
            prop_assert!(verify_inclusion(&p, &leaf(seq), &root).is_ok());
            prop_assert!(verify_inclusion(&p, &leaf(seq + 1), &root).is_err());
            // consistency
            let c = t.consistency(from, size).unwrap();
            let want: Vec<[u8; 32]> = if from == 0 { vec![] } else {
                subproof(from as usize, &leaves[..size as usize], true)
            };
            prop_assert_eq!(c.path.iter().map(|h| h.0).collect::<Vec<_>>(), want);
            let old = t.root(from).unwrap();
            prop_assert!(verify_consistency(&c, &old, &root).is_ok());
            if from > 0 && from < size {
                prop_assert!(verify_consistency(&c, &root, &root).is_err());
            }
            // the last leaf's inclusion path gives the frontier
            let last = t.inclusion(size - 1, size).unwrap();
            prop_assert_eq!(
                Frontier::from_last_leaf(size, last.leaf_hash, &last.path).unwrap(),
                t.frontier(size).unwrap()
            );
            // a frontier continues a tree
            let mut g = t.frontier(from).unwrap();
            for i in from..size { g.append(leaf(i)); }
            prop_assert_eq!(g.root(), root);
        }
    }
}
