//! The books through their public interface: probes become scores and standings, months become
//! statements, receipts are credited once, and a logged entry that does not match what the
//! entries before it imply is pinpointed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use hearth_ledger::books::{Books, CLOSE_GRACE_MS};
use hearth_ledger::entry::{
    GatewayEntry, NodeEntry, ProbeEntry, ProbeOutcome, ReceiptEntry, ScoreEntry,
};
use hearth_ledger::receipts::ReceiptRefusal;
use hearth_ledger::{Body, Entry, Month, NodeClass, Policy, Standing, leaf_hash};
use hearth_protocol::messages::audit::{AuditAnswer, AuditProbe};
use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{Hex, NodeId, SecretKey, SignerId};

const HOUR: u64 = 3_600_000;

/// Appends bodies as the master would (seq, time, prev) and feeds them to the books.
struct Log {
    books: Books,
    prev: Hex<32>,
    entries: Vec<Entry>,
}

impl Log {
    fn new() -> Self {
        Self {
            books: Books::new(),
            prev: Hex([0; 32]),
            entries: Vec::new(),
        }
    }

    fn entry(&self, at_ms: u64, body: Body) -> Entry {
        Entry {
            v: 1,
            seq: self.entries.len() as u64,
            at_ms,
            prev: self.prev,
            body,
        }
    }

    fn push(&mut self, at_ms: u64, body: Body) -> Result<(), String> {
        let entry = self.entry(at_ms, body);
        self.prev = leaf_hash(&entry.to_line());
        let seen = self.books.observe(&entry).map_err(|e| e.to_string());
        self.entries.push(entry);
        seen
    }
}

fn policy() -> Policy {
    Policy {
        window_ms: HOUR,
        score_windows: 3,
        min_probes: 4,
        ..Policy::default()
    }
}

fn node(log: &mut Log, key: &SecretKey, at: u64) -> NodeId {
    let id = NodeId::from_key(key.public());
    let body = Body::Node(NodeEntry {
        node: id,
        class: NodeClass::Serving,
        country: "BE".parse().unwrap(),
        power_w: Some(20),
    });
    log.push(at, body).unwrap();
    id
}

fn probe(key: &SecretKey, number: u64, at: u64, answered: bool) -> Body {
    let p = AuditProbe {
        probe: number,
        nonce: Hex([number as u8; 32]),
        issued_at_ms: at,
    };
    let outcome = if answered {
        ProbeOutcome::Passed {
            rtt_us: 900,
            signature: AuditAnswer::signed(&p, key).signature,
        }
    } else {
        ProbeOutcome::Failed {
            reason: "no answer to 3 sends".into(),
        }
    };
    Body::Probe(ProbeEntry {
        node: NodeId::from_key(key.public()),
        probe: number,
        nonce: p.nonce,
        issued_at_ms: at,
        attempts: if answered { 1 } else { 3 },
        outcome,
    })
}

#[test]
fn probes_become_scores_standings_and_statements() {
    let nov: Month = "2026-11".parse().unwrap();
    let t0 = nov.start_ms();
    let mut log = Log::new();
    log.push(t0, Body::Policy(policy())).unwrap();
    let (always, half, silent) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    let ids = [
        node(&mut log, &always, t0),
        node(&mut log, &half, t0),
        node(&mut log, &silent, t0),
    ];
    // Six probes an hour each for four hours: `half` answers every other one, `silent`
    // heartbeats (say) but never answers.
    let mut number = 0;
    for i in 0..24u64 {
        let at = t0 + i * 10 * 60_000;
        for (key, answered) in [(&always, true), (&half, i % 2 == 0), (&silent, false)] {
            number += 1;
            log.push(at + 5_000, probe(key, number, at, answered))
                .unwrap();
        }
    }
    assert_eq!(log.books.probes_counted(), 72);

    // Nothing is due before a window's end plus the grace; then one entry per node and window.
    assert!(
        log.books
            .due_scores(t0 + HOUR + CLOSE_GRACE_MS - 1)
            .is_empty()
    );
    let due = log.books.due_scores(t0 + 4 * HOUR + CLOSE_GRACE_MS);
    assert_eq!(due.len(), 12);
    for body in due {
        log.push(t0 + 4 * HOUR + CLOSE_GRACE_MS, body).unwrap();
    }
    assert!(
        log.books
            .due_scores(t0 + 4 * HOUR + CLOSE_GRACE_MS)
            .is_empty()
    );
    let scores: Vec<_> = ids.iter().map(|n| log.books.score(n).unwrap()).collect();
    assert_eq!(
        (scores[0].score_ppm, scores[0].standing),
        (1_000_000, Standing::Good)
    );
    assert_eq!(
        (scores[1].score_ppm, scores[1].standing),
        (500_000, Standing::Suspended)
    );
    assert_eq!(
        (scores[2].score_ppm, scores[2].standing),
        (0, Standing::Suspended)
    );
    assert!(
        scores[2].reason.contains("suspension"),
        "{}",
        scores[2].reason
    );
    // Three windows scored (score_windows), 6 probes each.
    assert_eq!(scores[1].probes_passed + scores[1].probes_failed, 18);

    // A probe logged after its window closed is recorded but not counted.
    let late = t0 + HOUR + CLOSE_GRACE_MS + 1;
    log.push(late + 4 * HOUR, probe(&always, 999, t0, true))
        .unwrap();
    assert_eq!(log.books.probes_counted(), 72);

    // The month closes: statements for the three nodes.
    let closing = nov.end_ms() + CLOSE_GRACE_MS;
    assert!(log.books.due_statements(closing - 1).is_empty());
    let due = log.books.due_statements(closing);
    assert_eq!(due.len(), 3);
    let statements: Vec<_> = due
        .iter()
        .map(|b| match b {
            Body::Statement(s) => s.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let of = |id: &NodeId| statements.iter().find(|s| s.node == *id).unwrap();
    let full = of(&ids[0]);
    assert_eq!(
        (full.fleet_windows, full.node_windows, full.uptime_ppm),
        (4, 4, 1_000_000)
    );
    assert_eq!(full.fibre_credit_cents, 3_000);
    assert_eq!(full.energy_wh, 20 * 4, "20 W for four hours");
    let halfway = of(&ids[1]);
    // 50% uptime against a 95% threshold: 30 EUR × 0.5 / 0.95.
    assert_eq!(halfway.fibre_credit_cents, 1_578);
    assert_eq!(
        of(&ids[2]).credits_cents,
        0,
        "a node that never answers earns nothing"
    );

    // A tampered statement is pinpointed; the true ones pass.
    let mut forged = statements[0].clone();
    forged.credits_cents += 100;
    let mut copy = Log {
        books: log.books.clone(),
        prev: log.prev,
        entries: log.entries.clone(),
    };
    let err = copy.push(closing, Body::Statement(forged)).unwrap_err();
    assert!(
        err.starts_with(&format!("entry {}", log.entries.len())),
        "{err}"
    );
    for body in due {
        log.push(closing, body).unwrap();
    }
    assert_eq!(log.books.statements(nov), statements);
    assert!(log.books.is_stated(nov));
    assert!(log.books.due_statements(closing + HOUR).is_empty());
}

#[test]
fn a_forged_score_and_a_misnumbered_entry_are_pinpointed() {
    let t0 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR;
    let mut log = Log::new();
    log.push(t0, Body::Policy(policy())).unwrap();
    let key = SecretKey::generate();
    let id = node(&mut log, &key, t0);
    log.push(t0 + 1, probe(&key, 1, t0, false)).unwrap();
    let forged = ScoreEntry {
        node: id,
        class: NodeClass::Serving,
        window_start_ms: t0,
        passed: 1,
        failed: 0,
        score_ppm: 1_000_000,
        standing: Standing::Good,
    };
    let err = log.push(t0 + 2 * HOUR, Body::Score(forged)).unwrap_err();
    assert!(
        err.starts_with("entry 3: score entry does not match"),
        "{err}"
    );
    let mut entry = log.entry(t0 + 2 * HOUR, Body::Policy(policy()));
    entry.seq = 7;
    let err = log.books.observe(&entry).unwrap_err();
    assert_eq!(err.seq, 7);
    assert!(err.reason.contains("expected 4"), "{err}");
}

fn receipt(gateway: &SecretKey, node: NodeId, id: u8, start: u64, end: u64) -> BandwidthReceipt {
    let mut r = BandwidthReceipt {
        receipt: Hex([id; 32]),
        gateway: SignerId::from_key(gateway.public()),
        node,
        instance: "web-0".parse().unwrap(),
        window_start_ms: start,
        window_end_ms: end,
        bytes_from_node: 1 << 30,
        bytes_to_node: 1 << 20,
        signature: Hex([0; 64]),
    };
    r.signature = gateway.sign(&r.signing_bytes());
    r
}

#[test]
fn receipts_are_credited_once_from_registered_gateways_only() {
    let t0 = 1_790_000_000_000u64;
    let mut log = Log::new();
    log.push(t0, Body::Policy(policy())).unwrap();
    let gateway = SecretKey::generate();
    let gw = SignerId::from_key(gateway.public());
    let name = "gw-1".to_owned();
    log.push(
        t0,
        Body::Gateway(GatewayEntry {
            key: gw,
            name,
            registered: true,
        }),
    )
    .unwrap();
    let (key, other) = (SecretKey::generate(), SecretKey::generate());
    let id = node(&mut log, &key, t0);
    let stranger = NodeId::from_key(other.public());
    let now = t0 + 10 * 60_000;
    let good = receipt(&gateway, id, 1, t0, t0 + 300_000);
    assert_eq!(log.books.check_receipt(&good, &id, now), Ok(()));
    log.push(
        now,
        Body::Receipt(ReceiptEntry {
            report: 1,
            receipt: good.clone(),
        }),
    )
    .unwrap();

    let overlapping = receipt(&gateway, id, 2, t0 + 200_000, t0 + 500_000);
    let adjacent = receipt(&gateway, id, 3, t0 + 300_000, t0 + 600_000);
    let mut forged = receipt(&gateway, id, 4, t0 + 600_000, t0 + 900_000);
    forged.bytes_from_node *= 10;
    let unknown = receipt(&SecretKey::generate(), id, 5, t0, t0 + 300_000);
    let empty = receipt(&gateway, id, 6, t0 + 300_000, t0 + 300_000);
    let future = receipt(&gateway, id, 7, now + HOUR, now + 2 * HOUR);
    let cases = [
        (&good, id, ReceiptRefusal::Duplicate),
        (&good, stranger, ReceiptRefusal::NotYours(id)),
        (&overlapping, id, ReceiptRefusal::Overlapping),
        (&forged, id, ReceiptRefusal::BadSignature),
        (&unknown, id, ReceiptRefusal::UnknownSigner(unknown.gateway)),
    ];
    for (r, sender, refusal) in cases {
        assert_eq!(log.books.check_receipt(r, &sender, now), Err(refusal));
    }
    for r in [&empty, &future] {
        assert!(matches!(
            log.books.check_receipt(r, &id, now),
            Err(ReceiptRefusal::BadWindow(_))
        ));
    }
    assert_eq!(log.books.check_receipt(&adjacent, &id, now), Ok(()));
    // Too old to settle: 36 days later.
    let late = now + 36 * 24 * HOUR;
    assert!(matches!(
        log.books.check_receipt(&adjacent, &id, late),
        Err(ReceiptRefusal::BadWindow(_))
    ));

    // A credited receipt that should have been refused is pinpointed; after the gateway is
    // removed its new receipts are refused.
    let seq = log.entries.len();
    let err = log
        .push(
            now,
            Body::Receipt(ReceiptEntry {
                report: 2,
                receipt: good,
            }),
        )
        .unwrap_err();
    assert!(
        err.starts_with(&format!("entry {seq}: credits a receipt")),
        "{err}"
    );
    let name = "gw-1".to_owned();
    log.push(
        now + 1,
        Body::Gateway(GatewayEntry {
            key: gw,
            name,
            registered: false,
        }),
    )
    .unwrap();
    let after = receipt(&gateway, id, 8, now + 2, now + 3);
    assert_eq!(
        log.books.check_receipt(&after, &id, now + 10),
        Err(ReceiptRefusal::UnknownSigner(gw))
    );
    // The month's statement counts the credited bytes (and the one wrongly credited too: the
    // books apply what the log says, the verifier reports it).
    let month = Month::of(now);
    let s = &log.books.statements(month)[0];
    assert_eq!(s.receipts, 2);
    assert_eq!(s.bytes_served, 2 * ((1 << 30) + (1 << 20)));
    assert_eq!(s.bandwidth_credit_cents, 2, "1 cent per GiB, floored");
}
