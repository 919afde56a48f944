use hearth_protocol::SecretKey;

use super::*;

fn node(seed: u8) -> NodeId {
    NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

fn fetches(actions: &[Action]) -> Vec<(Source, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Fetch { source, index } => Some((*source, *index)),
            _ => None,
        })
        .collect()
}

fn plan(n: usize) -> Plan {
    Plan::new(Config::default(), Bitmap::new(n), 0)
}

/// Feeds `first` and every follow-up a fetch causes (answered by `answer`) until quiet;
/// returns every action seen.
fn drive(
    p: &mut Plan,
    now: u64,
    first: Event,
    answer: &mut dyn FnMut(Source, usize) -> Option<Event>,
) -> Vec<Action> {
    let mut seen = Vec::new();
    let mut queue = vec![first];
    while let Some(ev) = queue.pop() {
        for a in p.step(now, ev) {
            if let Action::Fetch { source, index } = a
                && let Some(e) = answer(source, index)
            {
                queue.push(e);
            }
            seen.push(a);
        }
    }
    seen
}

fn ok(source: Source, index: usize) -> Option<Event> {
    Some(Event::ChunkOk { source, index })
}

#[test]
fn master_only_waits_for_providers_then_fetches_in_parallel() {
    let mut p = plan(10);
    let first = p.step(0, Event::Tick);
    assert_eq!(first, vec![Action::AskProviders]);
    let a = p.step(1, Event::Providers(vec![]));
    let f = fetches(&a);
    assert_eq!(f.len(), Config::default().master_alone);
    assert!(f.iter().all(|(s, _)| *s == Source::Master));
    let mut seen = Vec::new();
    for (s, i) in f {
        seen.extend(drive(
            &mut p,
            2,
            Event::ChunkOk {
                source: s,
                index: i,
            },
            &mut ok,
        ));
    }
    assert!(p.complete());
    assert!(seen.contains(&Action::Done));
}

#[test]
fn rarest_chunk_first_and_bounded_per_peer() {
    let (a, b) = (node(1), node(2));
    let mut p = plan(6);
    p.step(0, Event::Tick);
    let asks = p.step(0, Event::Providers(vec![a, b]));
    assert!(asks.contains(&Action::AskHave(a)) && asks.contains(&Action::AskHave(b)));
    assert!(
        fetches(&asks).is_empty(),
        "no master while haves are pending"
    );
    let got = fetches(&p.step(
        1,
        Event::Have {
            peer: b,
            chunks: vec![0b00_1111],
        },
    ));
    // Only b has answered: the master waits for a's answer; b gets 2 chunks, no more.
    assert_eq!(got, vec![(Source::Peer(b), 0), (Source::Peer(b), 1)]);
    let got = fetches(&p.step(
        1,
        Event::Have {
            peer: a,
            chunks: vec![0b11_1111],
        },
    ));
    // Of 2..5, chunks 4 and 5 are held by a only: rarest, asked first.
    assert_eq!(got, vec![(Source::Peer(a), 4), (Source::Peer(a), 5)]);
}

#[test]
fn a_bad_chunk_is_fetched_elsewhere_and_two_ban_the_peer() {
    let (bad, good) = (node(1), node(2));
    let mut p = plan(4);
    p.step(0, Event::Tick);
    p.step(0, Event::Providers(vec![bad]));
    let got = fetches(&p.step(
        0,
        Event::Have {
            peer: bad,
            chunks: vec![0b1111],
        },
    ));
    assert_eq!(got.len(), 2);
    let (_, first) = got[0];
    let again = p.step(
        1,
        Event::ChunkBad {
            source: Source::Peer(bad),
            index: first,
        },
    );
    // Chunk `first` is not asked of `bad` again: the master serves it.
    assert!(
        fetches(&again).contains(&(Source::Master, first)),
        "{again:?}"
    );
    assert!(!fetches(&again).contains(&(Source::Peer(bad), first)));
    assert_eq!(p.bad_chunks(&bad), 1);
    let mut again = again;
    again.extend(p.step(2, Event::Providers(vec![good])));
    again.extend(p.step(
        2,
        Event::Have {
            peer: good,
            chunks: vec![0b1111],
        },
    ));
    let (_, second) = got[1];
    again.extend(p.step(
        3,
        Event::ChunkBad {
            source: Source::Peer(bad),
            index: second,
        },
    ));
    assert_eq!(p.bad_chunks(&bad), 2);
    let mut answer = |s: Source, i: usize| {
        assert_ne!(
            s,
            Source::Peer(bad),
            "a peer with 2 bad chunks was asked again"
        );
        ok(s, i)
    };
    // Whatever is in flight now completes, and the rest follows.
    for (s, i) in fetches(&again) {
        drive(
            &mut p,
            4,
            Event::ChunkOk {
                source: s,
                index: i,
            },
            &mut answer,
        );
    }
    drive(&mut p, 5_000, Event::Tick, &mut answer);
    assert!(p.complete());
}

#[test]
fn a_failing_peer_rests_and_others_serve() {
    let (slow, other) = (node(1), node(2));
    let mut p = plan(2);
    p.step(0, Event::Tick);
    p.step(0, Event::Providers(vec![slow, other]));
    let mut got = fetches(&p.step(
        0,
        Event::Have {
            peer: slow,
            chunks: vec![0b11],
        },
    ));
    got.extend(fetches(&p.step(
        0,
        Event::Have {
            peer: other,
            chunks: vec![0b11],
        },
    )));
    let on_slow: Vec<_> = got
        .iter()
        .filter(|(s, _)| *s == Source::Peer(slow))
        .collect();
    assert!(!on_slow.is_empty(), "{got:?}");
    for &&(s, i) in &on_slow {
        let again = fetches(&p.step(
            1,
            Event::ChunkFailed {
                source: s,
                index: i,
            },
        ));
        assert!(
            again.iter().all(|(s, _)| *s == Source::Peer(other)),
            "{again:?}"
        );
    }
}

#[test]
fn the_master_giving_up_ends_the_fetch() {
    let mut p = plan(1);
    p.step(0, Event::Tick);
    let mut fail = |s: Source, i: usize| {
        Some(Event::ChunkFailed {
            source: s,
            index: i,
        })
    };
    let mut seen = drive(&mut p, 0, Event::Providers(vec![]), &mut fail);
    for round in 1..10 {
        seen.extend(drive(&mut p, round * 5_000, Event::Tick, &mut fail));
    }
    let fetched = fetches(&seen).len();
    assert_eq!(fetched, Config::default().max_master_failures as usize);
    assert_eq!(seen.last(), Some(&Action::GiveUp));
}

#[test]
fn bad_have_bitmaps_count_as_failures_and_done_is_said_once() {
    let a = node(1);
    let mut p = Plan::new(Config::default(), Bitmap::full(3), 7);
    assert_eq!(p.step(0, Event::Tick), vec![Action::Done]);
    assert!(p.step(1, Event::Tick).is_empty());
    let mut q = plan(3);
    q.step(0, Event::Tick);
    q.step(0, Event::Providers(vec![a]));
    let out = q.step(
        0,
        Event::Have {
            peer: a,
            chunks: vec![0xff, 0xff],
        },
    );
    assert!(fetches(&out).iter().all(|(s, _)| *s == Source::Master));
}

#[test]
fn a_busy_peer_rests_but_is_not_dropped() {
    let a = node(1);
    let mut p = plan(1);
    p.step(0, Event::Tick);
    p.step(0, Event::Providers(vec![a]));
    let mut busy = |s: Source, i: usize| match s {
        Source::Peer(peer) => Some(Event::ChunkBusy { peer, index: i }),
        Source::Master => None,
    };
    let mut seen = drive(
        &mut p,
        0,
        Event::Have {
            peer: a,
            chunks: vec![1],
        },
        &mut busy,
    );
    for round in 1..10 {
        seen.extend(drive(&mut p, round * 1_000, Event::Tick, &mut busy));
    }
    let got = fetches(&seen);
    assert!(got.len() >= 5, "{got:?}");
    assert!(got.iter().all(|(s, _)| *s == Source::Peer(a)), "{got:?}");
}

#[test]
fn a_busy_master_defers_the_chunk_asks_providers_soon_and_is_no_failure() {
    let c = Config::default();
    let a = node(1);
    let mut p = plan(4);
    p.step(0, Event::Tick);
    let first = fetches(&p.step(1, Event::Providers(vec![])));
    assert_eq!(first.len(), c.master_alone);
    // The master answers busy for all four, more times than it may fail: no give-up.
    let mut again = Vec::new();
    for round in 0..(c.max_master_failures + 2) {
        let now = 10 + u64::from(round);
        for &(_, index) in &first {
            again.extend(p.step(now, Event::MasterBusy { index }));
        }
    }
    assert!(!again.contains(&Action::GiveUp), "{again:?}");
    assert!(
        fetches(&again).is_empty(),
        "deferred chunks are not asked again at once: {again:?}"
    );
    // Providers are asked again sooner than the usual period.
    let soon = p.step(1 + c.providers_soon_ms, Event::Tick);
    assert!(soon.contains(&Action::AskProviders), "{soon:?}");
    // A peer that now holds chunk 2 serves it; the master gets the rest once the deferral ends.
    p.step(600, Event::Providers(vec![a]));
    let have = p.step(
        601,
        Event::Have {
            peer: a,
            chunks: {
                let mut b = Bitmap::new(4);
                b.set(2);
                b.as_bytes().to_vec()
            },
        },
    );
    assert_eq!(fetches(&have), vec![(Source::Peer(a), 2)]);
    let later = fetches(&p.step(20 + c.master_defer_ms, Event::Tick));
    assert_eq!(later.len(), c.master_with_peers, "{later:?}");
    assert!(later.iter().all(|(s, i)| *s == Source::Master && *i != 2));
}
