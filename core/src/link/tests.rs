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
    assert!(matches!(
        l.step(5_000, tick(6)).as_slice(),
        [Action::Send(_)]
    ));
    let out = l.step(5_001, tick(6));
    assert!(matches!(out.as_slice(), [Action::Close(_)]), "{out:?}");
    // Losing an established session backs off from the first step again.
    assert!(matches!(
        l.step(5_001, lost(1.0)).as_slice(),
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
