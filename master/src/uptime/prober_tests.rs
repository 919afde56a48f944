//! Tests of the prober's core on a virtual clock with seeded randomness.

use hearth_protocol::SecretKey;
use rand::SeedableRng as _;

use super::*;

const S: u64 = 1_000_000;

struct Bench {
    prober: Prober,
    now: u64,
    next_number: u64,
}

impl Bench {
    fn new(seed: u64, cfg: ProberConfig) -> Self {
        Self {
            prober: Prober::new(cfg, StdRng::seed_from_u64(seed)),
            now: 1_700_000_000 * S,
            next_number: 100,
        }
    }

    fn step(&mut self, event: Event) -> Vec<Action> {
        let next = &mut self.next_number;
        self.prober.step(self.now, event, &mut || {
            *next += 1;
            *next
        })
    }

    /// Advances to the next timer (at most `limit` µs ahead) and fires it.
    fn advance(&mut self, limit: u64) -> Vec<Action> {
        let until = self.now + limit;
        self.now = self.prober.next_wakeup().map_or(until, |t| t.min(until));
        self.step(Event::Tick)
    }
}

fn key(seed: u8) -> (SecretKey, NodeId) {
    let k = SecretKey::from_seed(&[seed; 32]);
    let id = NodeId::from_key(k.public());
    (k, id)
}

fn sends(actions: &[Action]) -> Vec<(NodeId, AuditProbe, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                node,
                probe,
                attempt,
            } => Some((*node, probe.clone(), *attempt)),
            Action::Record(_) => None,
        })
        .collect()
}

fn records(actions: &[Action]) -> Vec<ProbeEntry> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(e) => Some(e.clone()),
            Action::Send { .. } => None,
        })
        .collect()
}

fn fast() -> ProberConfig {
    ProberConfig {
        mean_us: 60 * S,
        ..ProberConfig::default()
    }
}

/// Runs until the first send to the one member.
fn first_send(b: &mut Bench) -> (NodeId, AuditProbe) {
    for _ in 0..100 {
        if let Some((node, probe, attempt)) = sends(&b.advance(3600 * S)).pop() {
            assert_eq!(attempt, 1);
            return (node, probe);
        }
    }
    panic!("no probe sent");
}

#[test]
fn answered_probes_pass_at_exponential_random_intervals() {
    let (k, node) = key(1);
    let mut b = Bench::new(7, fast());
    assert!(b.step(Event::Members(vec![node])).is_empty());
    let mut starts = Vec::new();
    let mut passed = 0;
    while starts.len() < 400 {
        for (n, probe, attempt) in sends(&b.advance(3600 * S)) {
            assert_eq!((n, attempt), (node, 1), "every probe answered at once");
            starts.push(b.now);
            b.now += 2_000; // 2 ms round trip
            let answer = AuditAnswer::signed(&probe, &k);
            let done = records(&b.step(Event::Answer { node, answer }));
            assert_eq!(done.len(), 1);
            assert!(done[0].passed());
            if passed < 3 {
                assert_eq!(done[0].verify(), Ok(()));
            }
            assert_eq!(
                done[0].outcome,
                ProbeOutcome::Passed {
                    rtt_us: 2_000,
                    signature: signature_of(&done[0])
                }
            );
            passed += 1;
        }
    }
    assert_eq!(passed, 400);
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / S as f64)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    // Exponential: the mean is the configured 60 s and the standard deviation equals it
    // (bounds of about three standard errors for 400 gaps).
    assert!((mean - 60.0).abs() < 9.0, "mean gap {mean}");
    assert!(
        (var.sqrt() / mean - 1.0).abs() < 0.25,
        "sd/mean {}",
        var.sqrt() / mean
    );
}

#[test]
fn a_dropped_probe_comes_back_identical_and_a_late_answer_to_any_copy_passes() {
    let (k, node) = key(2);
    let mut b = Bench::new(8, fast());
    b.step(Event::Members(vec![node]));
    let (_, probe) = first_send(&mut b);
    // The node ignores the first copy: after 10 s the same probe is sent again.
    b.now += 10 * S;
    let again = sends(&b.step(Event::Tick));
    assert_eq!(again, vec![(node, probe.clone(), 2)]);
    // It answers the second copy (the same signature answers either).
    b.now += 3 * S;
    let answer = AuditAnswer::signed(&probe, &k);
    let done = records(&b.step(Event::Answer { node, answer }));
    assert_eq!(done.len(), 1);
    assert_eq!(
        (done[0].probe, done[0].nonce, done[0].attempts),
        (probe.probe, probe.nonce, 2)
    );
    assert_eq!(done[0].issued_at_ms, probe.issued_at_ms);
    assert!(matches!(done[0].outcome, ProbeOutcome::Passed { rtt_us, .. } if rtt_us == 3 * S));
}

#[test]
fn a_node_that_drops_every_copy_fails_that_very_probe_and_gets_no_fresh_one_meanwhile() {
    let (_, node) = key(3);
    let mut b = Bench::new(
        9,
        ProberConfig {
            mean_us: S, // a fresh probe would be due long before the containment ends
            ..fast()
        },
    );
    b.step(Event::Members(vec![node]));
    let (_, probe) = first_send(&mut b);
    let mut copies = vec![probe.clone()];
    let mut failed = Vec::new();
    while failed.is_empty() {
        let actions = b.advance(60 * S);
        for (_, p, attempt) in sends(&actions) {
            assert_eq!(p, probe, "only copies of the outstanding probe");
            assert_eq!(attempt as usize, copies.len() + 1);
            copies.push(p);
        }
        failed = records(&actions);
    }
    assert_eq!(copies.len(), 3);
    assert_eq!(failed.len(), 1);
    let f = &failed[0];
    assert_eq!(
        (f.node, f.probe, f.nonce, f.attempts),
        (node, probe.probe, probe.nonce, 3)
    );
    assert_eq!(
        f.outcome,
        ProbeOutcome::Failed {
            reason: "no answer to 3 sends within 10 s each".into()
        }
    );
    // Only now does a new probe come, with a new number and nonce.
    let (_, next) = first_send(&mut b);
    assert_ne!((next.probe, next.nonce), (probe.probe, probe.nonce));
}

#[test]
fn a_wrong_answer_fails_at_once_and_one_to_another_probe_is_no_answer() {
    let (k, node) = key(4);
    let (stranger, _) = key(5);
    let mut b = Bench::new(10, fast());
    b.step(Event::Members(vec![node]));
    let (_, probe) = first_send(&mut b);
    // An answer to some other probe number is ignored: still outstanding.
    let mut other = probe.clone();
    other.probe += 1;
    let stray = AuditAnswer::signed(&other, &k);
    assert!(
        b.step(Event::Answer {
            node,
            answer: stray
        })
        .is_empty()
    );
    assert!(b.prober.outstanding(&node).is_some());
    // Signed by another key: failed now, not re-sent.
    let forged = AuditAnswer::signed(&probe, &stranger);
    let done = records(&b.step(Event::Answer {
        node,
        answer: forged,
    }));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].attempts, 1);
    assert_eq!(
        done[0].outcome,
        ProbeOutcome::Failed {
            reason: "the answer names another node".into()
        }
    );
    assert!(b.prober.outstanding(&node).is_none());
    // A changed nonce, and a flipped signature bit, fail the same way.
    for tamper in [
        |a: &mut AuditAnswer| a.nonce.0[0] ^= 1,
        |a: &mut AuditAnswer| a.signature.0[0] ^= 1,
    ] {
        let (_, probe) = first_send(&mut b);
        let mut answer = AuditAnswer::signed(&probe, &k);
        tamper(&mut answer);
        let done = records(&b.step(Event::Answer { node, answer }));
        assert!(
            matches!(&done[..], [e] if !e.passed() && e.attempts == 1),
            "{done:?}"
        );
    }
}

#[test]
fn sends_without_a_session_time_out_and_say_so() {
    let (k, node) = key(6);
    let mut b = Bench::new(11, fast());
    b.step(Event::Members(vec![node]));
    let (_, probe) = first_send(&mut b);
    b.step(Event::NoSession {
        node,
        probe: probe.probe,
    });
    let mut done = Vec::new();
    while done.is_empty() {
        let actions = b.advance(60 * S);
        for (_, p, _) in sends(&actions) {
            b.step(Event::NoSession {
                node,
                probe: p.probe,
            });
        }
        done = records(&actions);
    }
    assert_eq!(
        done[0].outcome,
        ProbeOutcome::Failed {
            reason: "no session at any of 3 sends".into()
        }
    );
    // The node reconnects and answers the second copy of its next probe.
    let (_, probe) = first_send(&mut b);
    b.step(Event::NoSession {
        node,
        probe: probe.probe,
    });
    b.now += 10 * S;
    assert_eq!(sends(&b.step(Event::Tick)).len(), 1);
    let answer = AuditAnswer::signed(&probe, &k);
    let done = records(&b.step(Event::Answer { node, answer }));
    assert!(done[0].passed() && done[0].attempts == 2);
}

#[test]
fn in_flight_probes_are_capped_and_due_nodes_wait_their_turn() {
    let nodes: Vec<(SecretKey, NodeId)> = (10..30).map(key).collect();
    let mut b = Bench::new(
        12,
        ProberConfig {
            mean_us: S,
            max_in_flight: 3,
            ..fast()
        },
    );
    b.step(Event::Members(nodes.iter().map(|(_, n)| *n).collect()));
    let mut sent = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let actions = b.advance(S);
        assert!(b.prober.in_flight() <= 3);
        for (node, _, attempt) in sends(&actions) {
            if attempt == 1 {
                sent.insert(node);
            }
        }
        if sent.len() == nodes.len() {
            break;
        }
    }
    assert_eq!(sent.len(), nodes.len(), "every node gets its turn");
}

#[test]
fn a_node_that_leaves_is_forgotten_with_its_outstanding_probe() {
    let (_, node) = key(40);
    let (_, other) = key(41);
    let mut b = Bench::new(13, fast());
    b.step(Event::Members(vec![node, other]));
    while b.prober.in_flight() == 0 {
        b.advance(3600 * S);
    }
    b.step(Event::Members(vec![]));
    assert_eq!((b.prober.members(), b.prober.in_flight()), (0, 0));
    // Its old timers fire into nothing.
    for _ in 0..5 {
        assert!(b.advance(3600 * S).is_empty());
    }
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let run = |seed| {
        let mut b = Bench::new(seed, fast());
        b.step(Event::Members((50..60).map(|s| key(s).1).collect()));
        (0..200)
            .flat_map(|_| b.advance(3600 * S))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

fn signature_of(e: &ProbeEntry) -> hearth_protocol::Signature {
    match &e.outcome {
        ProbeOutcome::Passed { signature, .. } => *signature,
        ProbeOutcome::Failed { .. } => Hex([0; 64]),
    }
}
