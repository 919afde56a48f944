//! Properties of the chunk planner, with the test as its driver over random fleets: peers
//! holding random chunks, some of which send bad bytes or fail; the fetch always completes
//! (the master holds everything), no chunk is asked of a peer that does not claim it, no peer
//! with [`Config::max_bad`] bad chunks is asked again, a peer that sent a bad copy of a chunk is
//! never asked for that chunk again, and the bounds on parallelism hold at every step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::collections::{BTreeMap, BTreeSet};

use hearth_core::chunks::{Action, Bitmap, Config, Event, Plan, Source};
use hearth_protocol::{NodeId, SecretKey};
use proptest::prelude::*;

mod common;

#[derive(Debug, Clone)]
struct PeerModel {
    holds: Vec<bool>,
    /// 0 = honest, 1 = always corrupts, 2 = fails half the time.
    kind: u8,
}

fn fleet() -> impl Strategy<Value = (usize, Vec<PeerModel>, u64)> {
    (1usize..40).prop_flat_map(|n| {
        let peer = (proptest::collection::vec(any::<bool>(), n), 0u8..3)
            .prop_map(|(holds, kind)| PeerModel { holds, kind });
        (Just(n), proptest::collection::vec(peer, 0..8), any::<u64>())
    })
}

fn bitmap(holds: &[bool]) -> Vec<u8> {
    let mut b = Bitmap::new(holds.len());
    for (i, h) in holds.iter().enumerate() {
        if *h {
            b.set(i);
        }
    }
    b.as_bytes().to_vec()
}

proptest! {
    #![proptest_config(common::config())]

    #[test]
    fn every_fetch_completes_within_the_rules((n, models, seed) in fleet(), coin in any::<u64>()) {
        let config = Config::default();
        let ids: Vec<NodeId> = (0..models.len())
            .map(|i| NodeId::from_key(SecretKey::from_seed(&[i as u8 + 1; 32]).public()))
            .collect();
        let model: BTreeMap<NodeId, PeerModel> = ids.iter().copied().zip(models).collect();
        let mut plan = Plan::new(config, Bitmap::new(n), seed);
        let mut queue: Vec<Event> = vec![Event::Tick];
        let mut inflight: BTreeMap<usize, Source> = BTreeMap::new();
        let mut bad_sent: BTreeMap<NodeId, u32> = BTreeMap::new();
        let mut refused: BTreeSet<(NodeId, usize)> = BTreeSet::new();
        let mut rng = coin;
        let mut next = || { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; rng };
        let mut now = 0u64;
        let mut done = false;
        for _ in 0..20_000 {
            let event = if queue.is_empty() { now += 500; Event::Tick } else { queue.remove(next() as usize % queue.len()) };
            if let Event::ChunkOk { index, .. } | Event::ChunkBad { index, .. } | Event::ChunkFailed { index, .. } = &event {
                inflight.remove(index);
            }
            if let Event::ChunkBad { source: Source::Peer(p), index } = &event {
                *bad_sent.entry(*p).or_default() += 1; // the planner learns it now
                refused.insert((*p, *index));
            }
            for action in plan.step(now, event) {
                match action {
                    Action::Done => { done = true; }
                    Action::GiveUp => prop_assert!(false, "the master never fails here"),
                    Action::AskProviders => queue.push(Event::Providers(ids.clone())),
                    Action::AskHave(peer) => {
                        let m = &model[&peer];
                        queue.push(Event::Have { peer, chunks: bitmap(&m.holds) });
                    }
                    Action::Fetch { source, index } => {
                        prop_assert!(index < n);
                        prop_assert!(inflight.insert(index, source).is_none(), "chunk {} asked twice", index);
                        match source {
                            Source::Master => queue.push(Event::ChunkOk { source, index }),
                            Source::Peer(p) => {
                                let m = &model[&p];
                                prop_assert!(m.holds[index], "asked a peer for a chunk it lacks");
                                prop_assert!(bad_sent.get(&p).copied().unwrap_or(0) < config.max_bad);
                                prop_assert!(!refused.contains(&(p, index)));
                                let ev = match m.kind {
                                    1 => Event::ChunkBad { source, index },
                                    2 if next() % 2 == 0 => Event::ChunkFailed { source, index },
                                    _ => Event::ChunkOk { source, index },
                                };
                                queue.push(ev);
                            }
                        }
                    }
                }
            }
            let mut per_peer: BTreeMap<NodeId, usize> = BTreeMap::new();
            let mut master = 0;
            for s in inflight.values() {
                match s {
                    Source::Peer(p) => *per_peer.entry(*p).or_default() += 1,
                    Source::Master => master += 1,
                }
            }
            prop_assert!(per_peer.len() <= config.max_peers);
            prop_assert!(per_peer.values().all(|&c| c <= config.per_peer));
            prop_assert!(master <= config.master_alone);
            if done { break; }
        }
        prop_assert!(done, "fetch did not complete");
        prop_assert!(plan.held().is_full());
    }

    #[test]
    fn with_an_honest_complete_peer_the_master_serves_nothing(n in 1usize..60, seed in any::<u64>()) {
        let peer = NodeId::from_key(SecretKey::from_seed(&[9; 32]).public());
        let mut plan = Plan::new(Config::default(), Bitmap::new(n), seed);
        let mut queue = vec![Event::Tick];
        let mut done = false;
        let mut now = 0;
        for _ in 0..10_000 {
            let ev = if queue.is_empty() { now += 500; Event::Tick } else { queue.remove(0) };
            for a in plan.step(now, ev) {
                match a {
                    Action::AskProviders => queue.push(Event::Providers(vec![peer])),
                    Action::AskHave(p) => queue.push(Event::Have { peer: p, chunks: Bitmap::full(n).as_bytes().to_vec() }),
                    Action::Fetch { source, index } => {
                        prop_assert_eq!(source, Source::Peer(peer));
                        queue.push(Event::ChunkOk { source, index });
                    }
                    Action::Done => done = true,
                    Action::GiveUp => prop_assert!(false),
                }
            }
            if done { break; }
        }
        prop_assert!(done);
    }
}
