//! What each node with a live session can serve to its peers (`holdings`, SPEC §16.4), and the
//! `providers` answer built from it.
//!
//! In memory only: a report belongs to the session that sent it and is dropped when that
//! session ends, so `providers` names only nodes that are connected now. Each report is bounded
//! by [`MAX_HOLDINGS`]; the map holds at most one report per node.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use hearth_protocol::messages::overlay::{Holdings, MAX_HOLDINGS, MAX_PROVIDERS};
use hearth_protocol::{NodeId, Sha256};
use rand::seq::SliceRandom as _;

/// A `holdings` report that cannot be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldingsError {
    /// More entries than [`MAX_HOLDINGS`].
    #[error("a holdings report lists {got} artifacts; at most {MAX_HOLDINGS} are allowed")]
    TooMany {
        /// Entries in the report.
        got: usize,
    },
}

#[derive(Debug)]
struct Held {
    session: u64,
    complete: HashSet<Sha256>,
    partial: HashSet<Sha256>,
}

/// Every live session's latest report.
#[derive(Debug, Default)]
pub struct HoldingsMap {
    by_node: Mutex<HashMap<NodeId, Held>>,
}

impl HoldingsMap {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Held>> {
        self.by_node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the report of `node`'s session `session`. A report over the limit is refused
    /// and the previous one kept.
    pub fn report(&self, node: NodeId, session: u64, h: Holdings) -> Result<(), HoldingsError> {
        let got = h.complete.len().saturating_add(h.partial.len());
        if got > MAX_HOLDINGS {
            return Err(HoldingsError::TooMany { got });
        }
        let complete: HashSet<Sha256> = h.complete.into_iter().collect();
        let partial = h
            .partial
            .into_iter()
            .filter(|s| !complete.contains(s))
            .collect();
        self.lock().insert(
            node,
            Held {
                session,
                complete,
                partial,
            },
        );
        Ok(())
    }

    /// Forgets `node`'s report if it came from `session` (a newer session keeps its own).
    pub fn session_ended(&self, node: &NodeId, session: u64) {
        let mut map = self.lock();
        if map.get(node).is_some_and(|h| h.session == session) {
            map.remove(node);
        }
    }

    /// Forgets `node`'s report whatever its session (the node left the overlay).
    pub fn forget(&self, node: &NodeId) {
        self.lock().remove(node);
    }

    /// Whether `node`'s live session reported holdings (it takes part in the overlay).
    pub fn reported(&self, node: &NodeId) -> bool {
        self.lock().contains_key(node)
    }

    /// A node other than `asker` that holds all of `sha256`, if any.
    pub fn whole_holder(&self, sha256: &Sha256, asker: &NodeId) -> Option<NodeId> {
        self.lock()
            .iter()
            .find(|(n, h)| *n != asker && h.complete.contains(sha256))
            .map(|(n, _)| *n)
    }

    /// Nodes that reported `sha256`, whole holders first, each group shuffled, at most
    /// [`MAX_PROVIDERS`], never `asker`.
    pub fn providers(&self, sha256: &Sha256, asker: &NodeId) -> Vec<NodeId> {
        let (mut complete, mut partial) = (Vec::new(), Vec::new());
        for (node, held) in self.lock().iter().filter(|(n, _)| *n != asker) {
            if held.complete.contains(sha256) {
                complete.push(*node);
            } else if held.partial.contains(sha256) {
                partial.push(*node);
            }
        }
        let mut rng = rand::thread_rng();
        complete.shuffle(&mut rng);
        partial.shuffle(&mut rng);
        complete.extend(partial);
        complete.truncate(MAX_PROVIDERS);
        complete
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use hearth_protocol::SecretKey;

    fn node(i: u8) -> NodeId {
        NodeId::from_key(SecretKey::from_seed(&[i; 32]).public())
    }

    #[test]
    fn whole_holders_come_first_and_the_asker_is_never_named() {
        let map = HoldingsMap::default();
        let art = Sha256::digest(b"a");
        for i in 1..=40u8 {
            let h = if i % 2 == 0 {
                Holdings {
                    complete: vec![art],
                    partial: vec![],
                }
            } else {
                Holdings {
                    complete: vec![],
                    partial: vec![art],
                }
            };
            map.report(node(i), u64::from(i), h).unwrap();
        }
        let got = map.providers(&art, &node(2));
        assert_eq!(got.len(), MAX_PROVIDERS);
        assert!(!got.contains(&node(2)));
        // 19 whole holders other than the asker, then partial ones.
        let whole: HashSet<_> = (1..=40u8)
            .filter(|i| i % 2 == 0 && *i != 2)
            .map(node)
            .collect();
        assert!(got[..19].iter().all(|n| whole.contains(n)));
        assert!(got[19..].iter().all(|n| !whole.contains(n)));
    }

    #[test]
    fn a_report_belongs_to_its_session() {
        let map = HoldingsMap::default();
        let art = Sha256::digest(b"a");
        let h = || Holdings {
            complete: vec![art],
            partial: vec![],
        };
        map.report(node(1), 1, h()).unwrap();
        map.report(node(1), 2, h()).unwrap();
        map.session_ended(&node(1), 1); // the superseded session ends: the new one's report stays
        assert_eq!(map.providers(&art, &node(9)), vec![node(1)]);
        map.session_ended(&node(1), 2);
        assert!(map.providers(&art, &node(9)).is_empty());
    }

    #[test]
    fn an_oversized_report_is_refused_and_the_old_one_kept() {
        let map = HoldingsMap::default();
        let art = Sha256::digest(b"a");
        map.report(
            node(1),
            1,
            Holdings {
                complete: vec![art],
                partial: vec![],
            },
        )
        .unwrap();
        let big = Holdings {
            complete: vec![art; MAX_HOLDINGS + 1],
            partial: vec![],
        };
        assert!(matches!(
            map.report(node(1), 1, big),
            Err(HoldingsError::TooMany { .. })
        ));
        assert_eq!(map.providers(&art, &node(9)), vec![node(1)]);
    }
}
