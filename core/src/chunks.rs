//! The chunk planner, sans-IO: `(plan, now, event) -> actions` — which chunk of an artifact to
//! fetch from which peer, or from the master (SPEC §16.4).
//!
//! The driver (the agent's fetch path) learns candidate peers from the master (`providers`),
//! what each holds (`have`), and how every chunk request ended; the planner answers with the
//! requests to make. Rules: rarest chunk first among the peers' holdings (ties broken by a
//! per-node seed, so a fleet does not all start on chunk 0); at most [`Config::max_peers`] peers
//! in use at once and [`Config::per_peer`] chunks in flight from each; a chunk that fails its
//! hash is dropped, asked of someone else, and counts against its sender (a peer with
//! [`Config::max_bad`] bad chunks is not asked again for this artifact); a peer that errs, times
//! out or is busy rests for a while and others are asked (`busy` is not held against it); a peer failing
//! [`Config::max_failures`] times in a row is dropped; the master serves the chunks that no
//! peer still in play holds (one at a time), and with no such peer at all, everything. `have` and `providers` are
//! refreshed periodically while the fetch lasts, so partial holders are found during a fan-out.
//! A master that answers `busy` for a chunk (it sent that chunk to a peer already, SPEC §16.4)
//! is not asked for it again for [`Config::master_defer_ms`], and providers are asked again
//! soon, since some peer now has it; `busy` is not a master failure.
//! Times are a monotonic clock in ms.

use std::collections::BTreeMap;

use hearth_protocol::NodeId;

mod bitmap;
pub use bitmap::{Bitmap, BitmapError};

/// Where a chunk comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A member of the overlay.
    Peer(NodeId),
    /// The master, over the session.
    Master,
}

/// The planner's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Peers fetched from at once.
    pub max_peers: usize,
    /// Chunks in flight from one peer.
    pub per_peer: usize,
    /// Chunks in flight from the master while some peer is usable (it then serves only what
    /// no peer holds).
    pub master_with_peers: usize,
    /// Chunks in flight from the master when no peer is usable.
    pub master_alone: usize,
    /// Bad chunks after which a peer is not asked again.
    pub max_bad: u32,
    /// Failures in a row after which a peer is dropped.
    pub max_failures: u32,
    /// Master failures in a row after which the fetch gives up (the driver retries later).
    pub max_master_failures: u32,
    /// How long a peer that failed or was busy rests, ms.
    pub rest_ms: u64,
    /// How often a partial holder's `have` is asked again, ms.
    pub have_every_ms: u64,
    /// How often the master is asked for providers again, ms.
    pub providers_every_ms: u64,
    /// After the master answered `busy` for a chunk: how long before it is asked for that
    /// chunk again, ms; and how soon providers are asked again, ms.
    pub master_defer_ms: u64,
    /// Shortest time between two `providers` asks after a `busy`, ms.
    pub providers_soon_ms: u64,
    /// Most candidate peers kept.
    pub max_candidates: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_peers: 4,
            per_peer: 2,
            master_with_peers: 1,
            master_alone: 4,
            max_bad: 2,
            max_failures: 3,
            max_master_failures: 3,
            rest_ms: 1_000,
            have_every_ms: 1_000,
            providers_every_ms: 2_000,
            master_defer_ms: 2_000,
            providers_soon_ms: 500,
            max_candidates: hearth_protocol::messages::overlay::MAX_PROVIDERS,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start, or time passed: plan what can be planned.
    Tick,
    /// The master's `providers` answer (may be empty).
    Providers(Vec<NodeId>),
    /// A peer's `have` answer, as its bitmap bytes.
    Have {
        /// The peer.
        peer: NodeId,
        /// Bitmap bytes as sent.
        chunks: Vec<u8>,
    },
    /// A `have_request` failed (`not_found`, unreachable, bad answer).
    HaveFailed {
        /// The peer.
        peer: NodeId,
    },
    /// A chunk arrived, matched its hash and is written.
    ChunkOk {
        /// From where.
        source: Source,
        /// Which chunk.
        index: usize,
    },
    /// A chunk arrived that does not match its hash: dropped.
    ChunkBad {
        /// From where.
        source: Source,
        /// Which chunk.
        index: usize,
    },
    /// The peer answered `busy` (over its upload budget, or serving too many): it rests, and
    /// this is not held against it.
    ChunkBusy {
        /// The peer.
        peer: NodeId,
        /// Which chunk.
        index: usize,
    },
    /// The master answered `busy`: a peer was sent this chunk or holds the whole artifact.
    MasterBusy {
        /// Which chunk.
        index: usize,
    },
    /// A chunk request failed (error, timeout, stream lost).
    ChunkFailed {
        /// From where.
        source: Source,
        /// Which chunk.
        index: usize,
    },
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the master for providers.
    AskProviders,
    /// Ask a peer which chunks it holds.
    AskHave(NodeId),
    /// Fetch one chunk.
    Fetch {
        /// From where.
        source: Source,
        /// Which chunk.
        index: usize,
    },
    /// Every chunk is held.
    Done,
    /// The master failed too often and no peer can help: stop (resumable later).
    GiveUp,
}

#[derive(Debug, Clone, Default)]
struct Peer {
    have: Option<Bitmap>,
    have_at: Option<u64>,
    asking: bool,
    inflight: usize,
    bad: u32,
    failures: u32,
    rest_until: u64,
}

impl Peer {
    fn banned(&self, c: &Config) -> bool {
        self.bad >= c.max_bad || self.failures >= c.max_failures
    }
    fn usable(&self, c: &Config, now: u64) -> bool {
        !self.banned(c) && self.rest_until <= now && self.have.is_some()
    }
    fn holds(&self, index: usize) -> bool {
        self.have.as_ref().is_some_and(|h| h.get(index))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Missing,
    InFlight(Source),
    Held,
}

/// One artifact's fetch.
#[derive(Debug, Clone)]
pub struct Plan {
    config: Config,
    chunks: Vec<Chunk>,
    /// Per chunk, the peers whose copy failed its hash (never asked for it again).
    refused: BTreeMap<usize, Vec<NodeId>>,
    peers: BTreeMap<NodeId, Peer>,
    order: Vec<usize>,
    providers_at: Option<u64>,
    asking_providers: bool,
    master_inflight: usize,
    master_failures: u32,
    master_rest_until: u64,
    /// Per chunk, when the master may be asked for it again after a `busy`.
    master_not_before: Vec<u64>,
    /// A `busy` from the master asks for an early `providers`.
    providers_soon: bool,
    finished: bool,
}

impl Plan {
    /// A fetch of `held.len()` chunks of which `held` are already here; `seed` spreads where
    /// different nodes start.
    pub fn new(config: Config, held: Bitmap, seed: u64) -> Self {
        let n = held.len();
        let chunks = (0..n)
            .map(|i| {
                if held.get(i) {
                    Chunk::Held
                } else {
                    Chunk::Missing
                }
            })
            .collect();
        let start = if n == 0 {
            0
        } else {
            (seed % n as u64) as usize
        };
        let order = (0..n).map(|i| (i + start) % n).collect();
        Self {
            config,
            chunks,
            refused: BTreeMap::new(),
            peers: BTreeMap::new(),
            order,
            providers_at: None,
            asking_providers: false,
            master_inflight: 0,
            master_failures: 0,
            master_rest_until: 0,
            master_not_before: vec![0; n],
            providers_soon: false,
            finished: false,
        }
    }

    /// The chunks held.
    pub fn held(&self) -> Bitmap {
        let mut b = Bitmap::new(self.chunks.len());
        for (i, c) in self.chunks.iter().enumerate() {
            if *c == Chunk::Held {
                b.set(i);
            }
        }
        b
    }

    /// Whether every chunk is held.
    pub fn complete(&self) -> bool {
        self.chunks.iter().all(|c| *c == Chunk::Held)
    }

    /// Bad chunks a peer sent so far.
    pub fn bad_chunks(&self, peer: &NodeId) -> u32 {
        self.peers.get(peer).map_or(0, |p| p.bad)
    }

    /// Takes one event, returns what to do now.
    pub fn step(&mut self, now: u64, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.apply(now, event);
        if self.finished {
            return out;
        }
        if self.complete() {
            self.finished = true;
            out.push(Action::Done);
            return out;
        }
        if self.master_failures >= self.config.max_master_failures && !self.peers_can_help(now) {
            self.finished = true;
            out.push(Action::GiveUp);
            return out;
        }
        self.refresh(now, &mut out);
        self.assign(now, &mut out);
        out
    }

    fn apply(&mut self, now: u64, event: Event) {
        let c = self.config;
        match event {
            Event::Tick => {}
            Event::Providers(list) => {
                self.asking_providers = false;
                self.providers_at = Some(now);
                for p in list {
                    if self.peers.len() >= c.max_candidates {
                        break;
                    }
                    self.peers.entry(p).or_default();
                }
            }
            Event::Have { peer, chunks } => {
                let n = self.chunks.len();
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.asking = false;
                    p.have_at = Some(now);
                    match Bitmap::from_bytes(n, &chunks) {
                        Ok(b) => p.have = Some(b),
                        Err(_) => fail(p, now, &c),
                    }
                }
            }
            Event::HaveFailed { peer } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.asking = false;
                    p.have_at = Some(now);
                    fail(p, now, &c);
                }
            }
            Event::ChunkOk { source, index } => {
                if self.release(source, index) {
                    if let Some(ch) = self.chunks.get_mut(index) {
                        *ch = Chunk::Held;
                    }
                    match source {
                        Source::Master => self.master_failures = 0,
                        Source::Peer(id) => {
                            if let Some(p) = self.peers.get_mut(&id) {
                                p.failures = 0;
                            }
                        }
                    }
                }
            }
            Event::ChunkBad { source, index } => {
                if self.release(source, index) {
                    match source {
                        Source::Master => self.master_failure(now),
                        Source::Peer(id) => {
                            self.refused.entry(index).or_default().push(id);
                            if let Some(p) = self.peers.get_mut(&id) {
                                p.bad += 1;
                            }
                        }
                    }
                }
            }
            Event::ChunkBusy { peer, index } => {
                if self.release(Source::Peer(peer), index)
                    && let Some(p) = self.peers.get_mut(&peer)
                {
                    p.rest_until = now + c.rest_ms;
                }
            }
            Event::MasterBusy { index } => {
                if self.release(Source::Master, index)
                    && let Some(t) = self.master_not_before.get_mut(index)
                {
                    *t = now + c.master_defer_ms;
                    self.providers_soon = true;
                }
            }
            Event::ChunkFailed { source, index } => {
                if self.release(source, index) {
                    match source {
                        Source::Master => self.master_failure(now),
                        Source::Peer(id) => {
                            if let Some(p) = self.peers.get_mut(&id) {
                                fail(p, now, &c);
                            }
                        }
                    }
                }
            }
        }
    }

    fn master_failure(&mut self, now: u64) {
        self.master_failures += 1;
        self.master_rest_until = now + self.config.rest_ms;
    }

    /// Ends the request for `index` from `source`; false if there was none.
    fn release(&mut self, source: Source, index: usize) -> bool {
        let Some(ch) = self.chunks.get_mut(index) else {
            return false;
        };
        if *ch != Chunk::InFlight(source) {
            return false;
        }
        *ch = Chunk::Missing;
        match source {
            Source::Master => self.master_inflight = self.master_inflight.saturating_sub(1),
            Source::Peer(id) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.inflight = p.inflight.saturating_sub(1);
                }
            }
        }
        true
    }

    fn peers_can_help(&self, now: u64) -> bool {
        self.order.iter().any(|&i| {
            self.chunks.get(i) == Some(&Chunk::Missing)
                && self.peers.iter().any(|(id, p)| self.may_ask(id, p, i, now))
        })
    }

    fn may_ask(&self, id: &NodeId, p: &Peer, index: usize, now: u64) -> bool {
        p.usable(&self.config, now)
            && p.holds(index)
            && !self.refused.get(&index).is_some_and(|r| r.contains(id))
    }

    fn refresh(&mut self, now: u64, out: &mut Vec<Action>) {
        let c = self.config;
        let every = if self.providers_soon {
            c.providers_soon_ms
        } else {
            c.providers_every_ms
        };
        let due = self.providers_at.is_none_or(|t| now >= t + every);
        if !self.asking_providers && due {
            self.asking_providers = true;
            self.providers_soon = false;
            out.push(Action::AskProviders);
        }
        let n = self.chunks.len();
        for (id, p) in &mut self.peers {
            let whole = p.have.as_ref().is_some_and(|h| h.count() == n);
            let stale = p.have_at.is_none_or(|t| now >= t + c.have_every_ms);
            if !p.asking && !p.banned(&c) && p.rest_until <= now && !whole && stale {
                p.asking = true;
                out.push(Action::AskHave(*id));
            }
        }
    }

    fn assign(&mut self, now: u64, out: &mut Vec<Action>) {
        let c = self.config;
        // Rarest first among the chunks some usable peer holds.
        let mut wanted: Vec<(usize, usize, usize)> = Vec::new(); // (holders, rank, index)
        for (rank, &i) in self.order.iter().enumerate() {
            if self.chunks.get(i) != Some(&Chunk::Missing) {
                continue;
            }
            let holders = self
                .peers
                .iter()
                .filter(|(id, p)| self.may_ask(id, p, i, now))
                .count();
            // Held by a peer that only rests (failed or busy a moment ago): wait for it rather
            // than load the master.
            let resting = holders == 0
                && self.peers.iter().any(|(id, p)| {
                    !p.banned(&c)
                        && p.holds(i)
                        && !self.refused.get(&i).is_some_and(|r| r.contains(id))
                });
            if !resting {
                wanted.push((holders, rank, i));
            }
        }
        wanted.sort_unstable();
        if self.providers_at.is_none() {
            return; // the first `providers` answer decides whether peers can help
        }
        // A candidate whose first `have` is still awaited may hold everything: wait for it.
        let pending = self
            .peers
            .values()
            .any(|p| p.asking && p.have.is_none() && !p.banned(&c));
        let master_cap = if pending {
            0
        } else if self
            .peers
            .values()
            .any(|p| !p.banned(&c) && p.have.is_some())
        {
            c.master_with_peers
        } else {
            c.master_alone
        };
        for (holders, _, i) in wanted {
            if holders > 0 {
                let active = self.peers.values().filter(|p| p.inflight > 0).count();
                let best = self
                    .peers
                    .iter()
                    .filter(|(id, p)| {
                        self.may_ask(id, p, i, now)
                            && p.inflight < c.per_peer
                            && (p.inflight > 0 || active < c.max_peers)
                    })
                    .min_by_key(|(_, p)| (p.inflight, p.bad, p.failures))
                    .map(|(id, _)| *id);
                if let Some(id) = best {
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.inflight += 1;
                    }
                    self.send(Source::Peer(id), i, out);
                }
                // Held by a peer but none free now: wait for one rather than load the master.
            } else if self.master_inflight < master_cap
                && self.master_rest_until <= now
                && self.master_not_before.get(i).is_some_and(|t| *t <= now)
            {
                self.master_inflight += 1;
                self.send(Source::Master, i, out);
            }
        }
    }

    fn send(&mut self, source: Source, index: usize, out: &mut Vec<Action>) {
        if let Some(ch) = self.chunks.get_mut(index) {
            *ch = Chunk::InFlight(source);
        }
        out.push(Action::Fetch { source, index });
    }
}

fn fail(p: &mut Peer, now: u64, c: &Config) {
    p.failures += 1;
    p.rest_until = now + c.rest_ms;
}

#[cfg(test)]
mod tests;
