//! Tests of the master's rationing of chunk requests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use hearth_protocol::SecretKey;

fn node(i: u8) -> NodeId {
    static NODES: std::sync::OnceLock<Vec<NodeId>> = std::sync::OnceLock::new();
    NODES.get_or_init(|| {
        (0..=255u8)
            .map(|i| NodeId::from_key(SecretKey::from_seed(&[i; 32]).public()))
            .collect()
    })[usize::from(i)]
}

fn req(asker: u8, offset: u64) -> Request {
    Request {
        asker: node(asker),
        sha256: Sha256::digest(b"artifact"),
        offset,
        ranged: true,
        asker_in_overlay: true,
    }
}

const ALL_LIVE: fn(&NodeId) -> bool = |_| true;

#[test]
fn each_chunk_goes_out_once_while_its_first_receiver_is_live() {
    let mut r = Ration::default();
    assert_eq!(r.decide(0, req(1, 0), None, ALL_LIVE), Verdict::Serve);
    assert_eq!(r.decide(5, req(2, 1 << 20), None, ALL_LIVE), Verdict::Serve);
    assert_eq!(
        r.decide(10, req(2, 0), None, ALL_LIVE),
        Verdict::Busy {
            peer: node(1),
            retry_ms: PATIENCE_MS
        }
    );
    // The same asker again, later: the wait counts from its first refusal.
    assert_eq!(
        r.decide(4_010, req(2, 0), None, ALL_LIVE),
        Verdict::Busy {
            peer: node(1),
            retry_ms: PATIENCE_MS - 4_000
        }
    );
    // The receiver itself asking again (a transfer cut short) is served.
    assert_eq!(r.decide(20, req(1, 0), None, ALL_LIVE), Verdict::Serve);
}

#[test]
fn patience_ends_and_the_asker_is_served() {
    let mut r = Ration::default();
    assert_eq!(r.decide(0, req(1, 0), None, ALL_LIVE), Verdict::Serve);
    assert!(matches!(
        r.decide(100, req(2, 0), None, ALL_LIVE),
        Verdict::Busy { .. }
    ));
    assert_eq!(
        r.decide(100 + PATIENCE_MS, req(2, 0), None, ALL_LIVE),
        Verdict::Serve
    );
    // The record moved to the last receiver; a third asker waits for it.
    assert_eq!(
        r.decide(200 + PATIENCE_MS, req(3, 0), None, ALL_LIVE),
        Verdict::Busy {
            peer: node(2),
            retry_ms: PATIENCE_MS
        }
    );
}

#[test]
fn a_receiver_that_left_or_an_old_record_does_not_hold_the_chunk_back() {
    let mut r = Ration::default();
    assert_eq!(r.decide(0, req(1, 0), None, ALL_LIVE), Verdict::Serve);
    let gone = |n: &NodeId| *n != node(1);
    assert_eq!(r.decide(10, req(2, 0), None, gone), Verdict::Serve);
    assert_eq!(r.decide(20, req(3, 4096), None, ALL_LIVE), Verdict::Serve);
    assert_eq!(
        r.decide(20 + KEEP_MS, req(4, 4096), None, ALL_LIVE),
        Verdict::Serve
    );
}

#[test]
fn a_whole_holder_makes_every_chunk_wait_but_only_for_overlay_chunk_requests() {
    let mut r = Ration::default();
    let holder = Some(node(9));
    assert_eq!(
        r.decide(0, req(1, 0), holder, ALL_LIVE),
        Verdict::Busy {
            peer: node(9),
            retry_ms: PATIENCE_MS
        }
    );
    let whole = Request {
        ranged: false,
        ..req(1, 0)
    };
    assert_eq!(r.decide(0, whole, holder, ALL_LIVE), Verdict::Serve);
    let no_overlay = Request {
        asker_in_overlay: false,
        ..req(1, 0)
    };
    assert_eq!(r.decide(0, no_overlay, holder, ALL_LIVE), Verdict::Serve);
}

#[test]
fn memory_stays_bounded() {
    let mut r = Ration::default();
    for i in 0..(MAX_ENTRIES as u64 + 10) {
        r.decide(i, req(1, i), None, ALL_LIVE);
    }
    let (sent, _) = r.len();
    assert!(sent <= MAX_ENTRIES, "{sent}");
    for i in 0..(MAX_ENTRIES as u64 + 10) {
        let asker = (i % 200) as u8 + 10;
        r.decide(1_000_000 + i, req(asker, i), Some(node(9)), ALL_LIVE);
    }
    let (_, refused) = r.len();
    assert!(refused <= MAX_ENTRIES, "{refused}");
}
