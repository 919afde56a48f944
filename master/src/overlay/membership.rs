//! The overlay's member set as the master hands it out (SPEC §16.2): an epoch chosen at random
//! when the master starts, a sequence number bumped by every change, and a bounded log of the
//! deltas since the start, so a node that reconnects with a recent revision gets only what it
//! missed. No I/O here: the caller computes the set and relays and sends what this returns.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use hearth_protocol::NodeId;
use hearth_protocol::messages::overlay::{MAX_MEMBERS, Overlay, OverlayRevision, RelayRef};

/// Deltas kept for reconnecting nodes; one further behind gets the full set.
pub const MAX_DELTAS: usize = 1024;

#[derive(Debug)]
struct State {
    seq: u64,
    members: BTreeSet<NodeId>,
    relays: Vec<RelayRef>,
    /// Deltas, oldest first, with consecutive `revision.seq`s ending at `seq`.
    log: VecDeque<Overlay>,
}

/// The member set, its revision and its recent deltas.
#[derive(Debug)]
pub struct Membership {
    epoch: u64,
    state: Mutex<State>,
    /// The current `seq`, for long polls.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Membership {
    /// The set at the master's start: revision `(epoch, 0)`.
    pub fn new(epoch: u64, members: BTreeSet<NodeId>, relays: Vec<RelayRef>) -> Self {
        Self {
            epoch,
            state: Mutex::new(State {
                seq: 0,
                members,
                relays,
                log: VecDeque::new(),
            }),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The revision of the current set.
    pub fn revision(&self) -> OverlayRevision {
        OverlayRevision {
            epoch: self.epoch,
            seq: self.lock().seq,
        }
    }

    /// The current revision and every member, in id order.
    pub fn snapshot(&self) -> (OverlayRevision, Vec<NodeId>) {
        let s = self.lock();
        let rev = OverlayRevision {
            epoch: self.epoch,
            seq: s.seq,
        };
        (rev, s.members.iter().copied().collect())
    }

    /// Fires whenever the revision moves.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Moves to `members` and `relays`; the delta to send every live session, or `None` when
    /// nothing changed.
    pub fn update(&self, members: BTreeSet<NodeId>, relays: Vec<RelayRef>) -> Option<Overlay> {
        let mut s = self.lock();
        let add: Vec<NodeId> = members.difference(&s.members).copied().collect();
        let remove: Vec<NodeId> = s.members.difference(&members).copied().collect();
        if add.is_empty() && remove.is_empty() && relays == s.relays {
            return None;
        }
        s.seq += 1;
        let delta = Overlay {
            revision: OverlayRevision {
                epoch: self.epoch,
                seq: s.seq,
            },
            full: false,
            add: capped(add),
            remove,
            relays: relays.clone(),
        };
        s.members = members;
        s.relays = relays;
        s.log.push_back(delta.clone());
        while s.log.len() > MAX_DELTAS {
            s.log.pop_front();
        }
        self.changes.send_replace(s.seq);
        Some(delta)
    }

    /// What a node holding `held` needs to reach the current set: nothing when it is current,
    /// the deltas it missed when the log still has them, else the full set.
    pub fn catch_up(&self, held: Option<OverlayRevision>) -> Vec<Overlay> {
        let s = self.lock();
        match held {
            Some(h) if h.epoch == self.epoch && h.seq == s.seq => Vec::new(),
            Some(h) if h.epoch == self.epoch && h.seq < s.seq => {
                let first = s.log.front().map_or(s.seq + 1, |d| d.revision.seq);
                if h.seq + 1 >= first {
                    s.log
                        .iter()
                        .filter(|d| d.revision.seq > h.seq)
                        .cloned()
                        .collect()
                } else {
                    vec![full(self.epoch, &s)]
                }
            }
            _ => vec![full(self.epoch, &s)],
        }
    }
}

fn full(epoch: u64, s: &State) -> Overlay {
    Overlay {
        revision: OverlayRevision { epoch, seq: s.seq },
        full: true,
        add: capped(s.members.iter().copied().collect()),
        remove: Vec::new(),
        relays: s.relays.clone(),
    }
}

/// At most [`MAX_MEMBERS`] (the first in id order): a full set must fit one frame (SPEC §12).
fn capped(mut ids: Vec<NodeId>) -> Vec<NodeId> {
    if ids.len() > MAX_MEMBERS {
        tracing::error!(
            members = ids.len(),
            sent = MAX_MEMBERS,
            "the overlay has more members than one message may carry: sending the first {MAX_MEMBERS}"
        );
        ids.truncate(MAX_MEMBERS);
    }
    ids
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use hearth_protocol::SecretKey;

    fn node(i: u8) -> NodeId {
        NodeId::from_key(SecretKey::from_seed(&[i; 32]).public())
    }

    fn set(ids: &[u8]) -> BTreeSet<NodeId> {
        ids.iter().map(|i| node(*i)).collect()
    }

    #[test]
    fn deltas_continue_a_recent_revision_and_nothing_goes_to_a_current_one() {
        let m = Membership::new(7, set(&[1, 2]), Vec::new());
        let start = m.revision();
        assert!(m.update(set(&[1, 2]), Vec::new()).is_none());
        let d1 = m.update(set(&[1, 2, 3]), Vec::new()).unwrap();
        assert_eq!((d1.add.clone(), d1.remove.clone()), (vec![node(3)], vec![]));
        let d2 = m.update(set(&[2, 3]), Vec::new()).unwrap();
        assert_eq!(d2.remove, vec![node(1)]);
        assert_eq!(m.catch_up(Some(start)), vec![d1, d2.clone()]);
        assert_eq!(m.catch_up(Some(d2.revision)), vec![]);
        let fresh = m.catch_up(None);
        assert!(fresh[0].full);
        assert_eq!(
            fresh[0].add,
            vec![node(2), node(3)]
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        // Another epoch (a restarted master) or a revision from the future: the full set.
        assert!(m.catch_up(Some(OverlayRevision { epoch: 8, seq: 2 }))[0].full);
        assert!(m.catch_up(Some(OverlayRevision { epoch: 7, seq: 9 }))[0].full);
    }

    #[test]
    fn a_revision_older_than_the_log_gets_the_full_set() {
        let m = Membership::new(1, set(&[]), Vec::new());
        for i in 0..=MAX_DELTAS {
            let ids: Vec<u8> = if i % 2 == 0 { vec![1] } else { vec![] };
            m.update(set(&ids), Vec::new()).unwrap();
        }
        let out = m.catch_up(Some(OverlayRevision { epoch: 1, seq: 0 }));
        assert_eq!(out.len(), 1);
        assert!(out[0].full);
        let recent = m.catch_up(Some(OverlayRevision { epoch: 1, seq: 2 }));
        assert_eq!(recent.len(), MAX_DELTAS - 1);
    }
}
