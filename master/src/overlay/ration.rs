//! Rationing the master's uplink during a fan-out (SPEC §16.4), sans-IO: whether a chunk
//! request (`fetch_blob` of one chunk's range) from an overlay node is served now or answered
//! `busy` because a peer can serve it.
//!
//! The master is the seed of every artifact and its uplink the scarcest in the fleet, so it
//! sends each chunk into the overlay about once and lets the homes pass it on (as a BitTorrent
//! "super-seeder" does). A chunk request from an overlay node (one whose session reported
//! `holdings`) is answered `busy` while another live overlay node holds the whole artifact, or
//! was sent that chunk by the master; but never for longer than [`PATIENCE_MS`] for one asker
//! and chunk, so a node that cannot reach those peers (a NAT with no relay, a peer that went
//! quiet) still gets every chunk, only later. Whole-blob requests, and requests from nodes
//! without the overlay, are always served: they have nowhere else to go.
//!
//! Memory is bounded: at most [`MAX_ENTRIES`] records of each kind, older ones dropped first
//! (a dropped record can only make the master serve a chunk once more).

use std::collections::HashMap;

use hearth_protocol::{NodeId, Sha256};

/// How long one asker is refused one chunk at most, ms.
pub const PATIENCE_MS: u64 = 10_000;
/// How long the master remembers whom it sent a chunk, ms.
pub const KEEP_MS: u64 = 120_000;
/// Records of each kind kept at most.
pub const MAX_ENTRIES: usize = 262_144;

/// One chunk request, as the fetch stream saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Who asks.
    pub asker: NodeId,
    /// The artifact.
    pub sha256: Sha256,
    /// Where the range starts.
    pub offset: u64,
    /// Whether the range is less than the whole blob (a chunk fetch).
    pub ranged: bool,
    /// Whether the asker takes part in the overlay (its session reported `holdings`).
    pub asker_in_overlay: bool,
}

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the bytes.
    Serve,
    /// Answer `busy`: `peer` can serve it; ask the master again after `retry_ms` at the latest.
    Busy {
        /// A node that holds the chunk (or was sent it).
        peer: NodeId,
        /// How long until this asker is served this chunk whatever peers hold, ms.
        retry_ms: u64,
    },
}

/// What the master sent and refused lately.
#[derive(Debug, Default)]
pub struct Ration {
    /// Per chunk, the overlay node last sent it, and when.
    sent: HashMap<(Sha256, u64), (NodeId, u64)>,
    /// Per asker and chunk, when it was first refused.
    refused: HashMap<(NodeId, Sha256, u64), u64>,
}

impl Ration {
    /// Decides `req` at `now` (ms, monotonic). `whole_holder` is a live overlay node other than
    /// the asker that holds the whole artifact, if any; `live` says whether a node still has a
    /// session in the overlay.
    pub fn decide(
        &mut self,
        now: u64,
        req: Request,
        whole_holder: Option<NodeId>,
        live: impl Fn(&NodeId) -> bool,
    ) -> Verdict {
        if !req.ranged || !req.asker_in_overlay {
            return Verdict::Serve;
        }
        let chunk = (req.sha256, req.offset);
        let sent_to = self
            .sent
            .get(&chunk)
            .filter(|(n, at)| *n != req.asker && now.saturating_sub(*at) < KEEP_MS && live(n))
            .map(|(n, _)| *n);
        let Some(peer) = whole_holder.or(sent_to) else {
            self.record_sent(now, chunk, req.asker);
            return Verdict::Serve;
        };
        let key = (req.asker, req.sha256, req.offset);
        let first = match self.refused.get(&key) {
            Some(t) => *t,
            None => {
                prune(&mut self.refused, now, PATIENCE_MS);
                self.refused.insert(key, now);
                now
            }
        };
        let waited = now.saturating_sub(first);
        if waited >= PATIENCE_MS {
            self.refused.remove(&key);
            self.record_sent(now, chunk, req.asker);
            return Verdict::Serve;
        }
        Verdict::Busy {
            peer,
            retry_ms: PATIENCE_MS - waited,
        }
    }

    fn record_sent(&mut self, now: u64, chunk: (Sha256, u64), to: NodeId) {
        if !self.sent.contains_key(&chunk) {
            prune(&mut self.sent, now, KEEP_MS);
        }
        self.sent.insert(chunk, (to, now));
    }

    /// Records kept (sent, refused).
    pub fn len(&self) -> (usize, usize) {
        (self.sent.len(), self.refused.len())
    }
}

/// Something with a time, ms.
trait Stamped {
    fn at(&self) -> u64;
}
impl Stamped for u64 {
    fn at(&self) -> u64 {
        *self
    }
}
impl Stamped for (NodeId, u64) {
    fn at(&self) -> u64 {
        self.1
    }
}

/// Makes room for one more record: drops those older than `keep`, and if that is not enough,
/// the older half.
fn prune<K: Eq + std::hash::Hash, V: Stamped>(map: &mut HashMap<K, V>, now: u64, keep: u64) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    map.retain(|_, v| now.saturating_sub(v.at()) < keep);
    if map.len() >= MAX_ENTRIES {
        let mut times: Vec<u64> = map.values().map(Stamped::at).collect();
        let mid = times.len() / 2;
        let (_, median, _) = times.select_nth_unstable(mid);
        let median = *median;
        map.retain(|_, v| v.at() > median);
    }
}

#[cfg(test)]
#[path = "ration_tests.rs"]
mod tests;
