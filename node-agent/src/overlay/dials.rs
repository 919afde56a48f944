//! How many dials the overlay has in flight, sans-IO. A first link to a peer whose direct
//! address is not known yet goes through a relay, and libp2p's relay client drops outbound
//! circuit requests beyond 10 at a time on one relay connection ("at capacity"). A node that
//! starts a fan-out asks many peers at once, so dials beyond [`MAX_DIALS`] wait here in order and
//! start as earlier ones end (connected, failed, or silent for [`DIAL_EXPIRY`]).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Dials in flight at once (under the relay client's 10 circuit requests per connection).
pub const MAX_DIALS: usize = 8;
/// A dial with no outcome after this long no longer holds its slot.
pub const DIAL_EXPIRY: Duration = Duration::from_secs(20);
/// Dials waiting at most; beyond, the oldest waiting one is dropped (its `open` fails by its
/// own timeout).
pub const MAX_QUEUED: usize = 4096;

/// The dials in flight and those waiting for a slot.
#[derive(Debug)]
pub struct Dials<P> {
    inflight: HashMap<P, Instant>,
    queued: VecDeque<P>,
}

impl<P> Default for Dials<P> {
    fn default() -> Self {
        Self {
            inflight: HashMap::new(),
            queued: VecDeque::new(),
        }
    }
}

impl<P: Copy + Eq + Hash> Dials<P> {
    /// A dial to `peer` is wanted: true if it should start now (a slot is free), false if it
    /// is already in flight or now waits.
    pub fn want(&mut self, peer: P, now: Instant) -> bool {
        if self.inflight.contains_key(&peer) {
            return false;
        }
        if self.inflight.len() < MAX_DIALS {
            self.inflight.insert(peer, now);
            return true;
        }
        if !self.queued.contains(&peer) {
            if self.queued.len() >= MAX_QUEUED {
                self.queued.pop_front();
            }
            self.queued.push_back(peer);
        }
        false
    }

    /// A dial that was counted did not start after all (the swarm refused it, or one was
    /// already under way there): its slot is free.
    pub fn cancel(&mut self, peer: &P) {
        self.inflight.remove(peer);
    }

    /// `peer`'s dial ended (a connection, or an error), or a connection to it came in. Returns
    /// the waiting peers to dial now, which are counted in flight; `skip` says which waiting
    /// peers need no dial any more (already connected).
    pub fn ended(&mut self, peer: &P, now: Instant, skip: impl Fn(&P) -> bool) -> Vec<P> {
        self.inflight.remove(peer);
        self.queued.retain(|p| p != peer);
        self.fill(now, skip)
    }

    /// Frees the slots of dials silent for [`DIAL_EXPIRY`]; returns the waiting peers to dial
    /// now.
    pub fn expire(&mut self, now: Instant, skip: impl Fn(&P) -> bool) -> Vec<P> {
        self.inflight
            .retain(|_, at| now.saturating_duration_since(*at) < DIAL_EXPIRY);
        self.fill(now, skip)
    }

    fn fill(&mut self, now: Instant, skip: impl Fn(&P) -> bool) -> Vec<P> {
        let mut start = Vec::new();
        while self.inflight.len() < MAX_DIALS {
            let Some(p) = self.queued.pop_front() else {
                break;
            };
            if skip(&p) || self.inflight.contains_key(&p) {
                continue;
            }
            self.inflight.insert(p, now);
            start.push(p);
        }
        start
    }

    /// Dials in flight, and waiting.
    pub fn len(&self) -> (usize, usize) {
        (self.inflight.len(), self.queued.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dials_beyond_the_limit_wait_and_start_in_order_as_others_end() {
        let now = Instant::now();
        let mut d = Dials::default();
        for p in 0..MAX_DIALS as u32 {
            assert!(d.want(p, now));
        }
        assert!(!d.want(100, now), "over the limit: waits");
        assert!(!d.want(101, now));
        assert!(!d.want(100, now), "not queued twice");
        assert!(!d.want(0, now), "already in flight");
        assert_eq!(d.len(), (MAX_DIALS, 2));
        assert_eq!(d.ended(&0, now, |_| false), vec![100]);
        // 101 got connected meanwhile (an inbound link): skipped.
        assert_eq!(d.ended(&1, now, |p| *p == 101), Vec::<u32>::new());
        assert_eq!(d.len(), (MAX_DIALS - 1, 0));
    }

    #[test]
    fn silent_dials_lose_their_slot() {
        let now = Instant::now();
        let mut d = Dials::default();
        for p in 0..MAX_DIALS as u32 {
            d.want(p, now);
        }
        d.want(100, now);
        assert!(d.expire(now + Duration::from_secs(1), |_| false).is_empty());
        assert_eq!(d.expire(now + DIAL_EXPIRY, |_| false), vec![100]);
        assert_eq!(d.len(), (1, 0));
        d.cancel(&100);
        assert_eq!(d.len(), (0, 0));
    }
}
