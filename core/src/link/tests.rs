use hearth_protocol::messages::session::{HeartbeatAck, Welcome};
use hearth_protocol::{MasterId, SecretKey};

use super::*;

fn link() -> Link {
    let node = NodeId::from_key(SecretKey::from_seed(&[1; 32]).public());
    Link::new(node, "test".into())
}

fn welcome(interval: u64) -> Event {
    Event::Received(Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        master: MasterId::from_key(SecretKey::from_seed(&[2; 32]).public()),
        heartbeat_interval_ms: interval,
        server_time_ms: 0,
    }))
}

fn lost(jitter: f64) -> Event {
    Event::Lost {
        reason: "gone".into(),
        refused: false,
        jitter,
    }
}

/// Connects `l` at `now` with a welcome of `interval`.
fn open(l: &mut Link, now: u64, interval: u64) {
    assert_eq!(l.step(now, Event::Start), vec![Action::Connect]);
    let hello = l.step(now, Event::Opened { rx: 5 });
    assert!(
        matches!(hello.as_slice(), [Action::Send(Message::Hello(h))] if h.applied_revision == l.revision())
    );
    assert_eq!(
        l.step(now, welcome(interval)),
        vec![Action::Up {
            interval_ms: interval.max(MIN_INTERVAL_MS)
        }]
    );
}

#[test]
fn heartbeats_count_and_silence_closes() {
    let mut l = link();
    open(&mut l, 0, 1_000);
    assert_eq!(l.state(), "connected");
    let tick = |rx| Event::Tick {
        rx,
        instances: vec![],
    };
    let out = l.step(1_000, tick(5));
    assert!(
        matches!(out.as_slice(), [Action::Send(Message::Heartbeat(h))] if h.seq == 1 && h.counters.sessions == 1)
    );
    // A packet since the last tick is the master's answer.
    let out = l.step(2_000, tick(6));
    assert!(
        matches!(out.as_slice(), [Action::Acked, Action::Send(Message::Heartbeat(h))] if h.seq == 2)
    );
    // Silent for 4/3 of an interval: still heartbeating; a millisecond more and it is given up.
    assert!(matches!(
        l.step(3_333, tick(6)).as_slice(),
        [Action::Send(_)]
    ));
    let out = l.step(3_334, tick(6));
    assert!(matches!(out.as_slice(), [Action::Close(_)]), "{out:?}");
    // Losing an established session backs off from the first step again.
    assert!(matches!(
        l.step(3_334, lost(1.0)).as_slice(),
        [Action::Retry { delay_ms: 500, .. }]
    ));
    assert_eq!(l.state(), "backoff");
}

#[test]
fn failed_attempts_back_off_further_and_refusal_is_final() {
    let mut l = link();
    let mut delays = Vec::new();
    for _ in 0..4 {
        assert_eq!(l.step(0, Event::Start), vec![Action::Connect]);
        match l.step(0, lost(1.0)).as_slice() {
            [Action::Retry { delay_ms, .. }] => delays.push(*delay_ms),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(delays, [500, 1_000, 2_000, 4_000]);
    l.step(0, Event::Start);
    let out = l.step(
        0,
        Event::Lost {
            reason: "revoked".into(),
            refused: true,
            jitter: 0.0,
        },
    );
    assert_eq!(out, vec![Action::Refused("revoked".into())]);
    assert!(l.step(0, Event::Start).is_empty());
    assert_eq!(l.state(), "refused");
}

#[test]
fn desired_states_are_acked_and_raise_the_revision() {
    let mut l = link();
    open(&mut l, 0, 50);
    let ds = DesiredState {
        holds: Vec::new(),
        masters: Vec::new(),
        gateways: Vec::new(),
        revision: 7,
        instances: vec![],
    };
    let out = l.step(10, Event::Received(Message::DesiredState(ds.clone())));
    assert_eq!(
        out,
        vec![
            Action::Desired(ds),
            Action::Send(Message::DesiredStateAck(DesiredStateAck { revision: 7 }))
        ]
    );
    assert_eq!(l.revision(), 7);
    assert_eq!(
        l.step(
            11,
            Event::Received(Message::HeartbeatAck(HeartbeatAck { seq: 1 }))
        ),
        vec![Action::Acked]
    );
    // The next session's hello carries the revision.
    l.step(20, lost(0.0));
    l.step(20, Event::Start);
    let hello = l.step(20, Event::Opened { rx: 0 });
    assert!(
        matches!(hello.as_slice(), [Action::Send(Message::Hello(h))] if h.applied_revision == 7)
    );
}

#[test]
fn a_refusal_instead_of_a_welcome_stops_the_link() {
    let mut l = link();
    l.step(0, Event::Start);
    l.step(0, Event::Opened { rx: 0 });
    let refusal = Message::error(ErrorCode::NodeRevoked, "revoked", true);
    let out = l.step(0, Event::Received(refusal));
    assert!(matches!(out.as_slice(), [Action::Refused(_)]), "{out:?}");
}

#[test]
fn checks_between_heartbeats_see_silence_early() {
    let mut l = link();
    open(&mut l, 0, 3_000);
    assert_eq!((silence_ms(3_000), check_ms(3_000)), (4_000, 400));
    assert_eq!(silence_ms(200), MIN_SILENCE_MS);
    // The heartbeat at 3 s is acknowledged (rx moves), seen by the check at 3.4 s.
    assert!(matches!(
        l.step(
            3_000,
            Event::Tick {
                rx: 5,
                instances: vec![]
            }
        )
        .as_slice(),
        [Action::Send(Message::Heartbeat(_))]
    ));
    assert_eq!(l.step(3_400, Event::Check { rx: 6 }), vec![Action::Acked]);
    // The master dies: the heartbeat at 6 s goes unanswered; checks see nothing new.
    assert!(matches!(
        l.step(
            6_000,
            Event::Tick {
                rx: 6,
                instances: vec![]
            }
        )
        .as_slice(),
        [Action::Send(Message::Heartbeat(_))]
    ));
    assert!(l.step(7_400, Event::Check { rx: 6 }).is_empty());
    let out = l.step(7_401, Event::Check { rx: 6 });
    assert!(matches!(out.as_slice(), [Action::Close(_)]), "{out:?}");
    // Given up 4 s after the last packet seen (ticks alone would have noticed at 9 s). A
    // check outside a session does nothing.
    l.step(7_401, lost(0.0));
    assert!(l.step(8_000, Event::Check { rx: 0 }).is_empty());
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

fn rotating(ports: &[u16]) -> Link {
    let node = NodeId::from_key(SecretKey::from_seed(&[1; 32]).public());
    let masters = Masters::new(ports.iter().map(|p| addr(*p)).collect()).unwrap();
    Link::with_masters(node, "test".into(), masters)
}

/// One failed attempt: the address it was for, and the delay before the next.
fn fail(l: &mut Link, now: u64) -> (u16, u64) {
    assert_eq!(l.step(now, Event::Start), vec![Action::Connect]);
    let port = l.master().unwrap().port();
    match l.step(now, lost(1.0)).as_slice() {
        [Action::Retry { delay_ms, .. }] => (port, *delay_ms),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failed_attempts_rotate_and_back_off_only_after_a_round() {
    let mut l = rotating(&[1, 2, 3]);
    let tries: Vec<(u16, u64)> = (0..9).map(|_| fail(&mut l, 0)).collect();
    assert_eq!(
        tries,
        [
            (1, 0),
            (2, 0),
            (3, 500),
            (1, 0),
            (2, 0),
            (3, 1_000),
            (1, 0),
            (2, 0),
            (3, 2_000)
        ]
    );
    assert_eq!(l.failures(), 3);
    // A session at the next address resets the round and the backoff.
    open(&mut l, 0, 1_000);
    assert_eq!(l.master(), Some(addr(1)));
    assert_eq!(l.failures(), 3);
}

#[test]
fn a_lost_session_goes_to_the_next_address_soon() {
    let mut l = rotating(&[1, 2, 3]);
    assert_eq!(fail(&mut l, 0), (1, 0));
    open(&mut l, 0, 1_000);
    assert_eq!(l.master(), Some(addr(2)));
    // The session at 2 is lost: the next address after the quick first step of the backoff.
    assert!(matches!(
        l.step(10, lost(1.0)).as_slice(),
        [Action::Retry { delay_ms: 500, .. }]
    ));
    assert_eq!(l.failures(), 1);
    assert_eq!(l.master(), Some(addr(3)));
    // 3 and 1 are dead too, and 2 is still down: a whole round, then the backoff grows.
    assert_eq!(fail(&mut l, 20), (3, 0));
    assert_eq!(fail(&mut l, 20), (1, 0));
    assert_eq!(fail(&mut l, 20), (2, 1_000));
    assert_eq!(l.master(), Some(addr(3)));
}

#[test]
fn one_address_backs_off_as_before() {
    let mut l = rotating(&[1]);
    let tries: Vec<(u16, u64)> = (0..3).map(|_| fail(&mut l, 0)).collect();
    assert_eq!(tries, [(1, 500), (1, 1_000), (1, 2_000)]);
}

#[test]
fn a_new_list_from_the_master_is_used_from_the_next_attempt() {
    let mut l = rotating(&[1, 2]);
    open(&mut l, 0, 1_000);
    assert_eq!(l.set_masters(vec![addr(1), addr(2)]), Ok(false));
    assert_eq!(
        l.set_masters(vec![addr(2), addr(1), addr(1)]),
        Err(MastersError::Duplicate(addr(1)))
    );
    assert_eq!(l.set_masters(vec![addr(7), addr(8)]), Ok(true));
    // The open session stays on 1; once it is lost, the new list from its first address.
    assert_eq!(l.master(), Some(addr(1)));
    l.step(10, lost(0.0));
    assert_eq!(l.master(), Some(addr(7)));
    assert_eq!(fail(&mut l, 20), (7, 0));
    assert_eq!(fail(&mut l, 20), (8, 1_000));
    assert_eq!(l.masters().unwrap().addrs(), [addr(7), addr(8)]);
}
