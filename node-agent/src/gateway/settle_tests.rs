//! Tests of the usage reporter's core and its state file.

use hearth_protocol::Hex;
use hearth_protocol::messages::usage::RejectedReceipt;

use super::*;

fn ids(n: u8) -> Vec<Nonce> {
    (0..n).map(|i| Hex([i; 32])).collect()
}

#[test]
fn reports_number_upwards_repeat_until_settled_and_record_each_outcome() {
    let held = ids(3);
    let mut l = Ledger::default();
    let (first, new) = l.next(&held).expect("a report");
    assert!(new);
    assert_eq!((first.report, first.receipts.len()), (1, 3));
    let (again, new) = l.next(&held).expect("the same report");
    assert!(!new, "an unanswered report is sent again as it was");
    assert_eq!(again, first);
    assert!(!l.settle(&Settlement {
        report: 9,
        credited_bytes: 5,
        rejected: vec![]
    }));
    assert!(l.settle(&Settlement {
        report: 1,
        credited_bytes: 100,
        rejected: vec![RejectedReceipt {
            receipt: held[1],
            code: ErrorCode::Overlapping
        }],
    }));
    let s = l.summary(held.len());
    assert_eq!((s.credited_bytes, s.pending, s.credited), (100, 0, 2));
    assert_eq!(s.rejected.get("overlapping"), Some(&1));
    assert!(l.next(&held).is_none(), "nothing left to send");
    let more = ids(5);
    let (second, _) = l.next(&more).expect("the new receipts");
    assert_eq!(second.report, 2);
    assert_eq!(second.receipts, more[3..].to_vec());
}

#[test]
fn a_report_carries_at_most_500_receipts_oldest_first() {
    let held: Vec<Nonce> = (0..1200u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Hex(b)
        })
        .collect();
    let mut l = Ledger::default();
    let (open, _) = l.next(&held).expect("a report");
    assert_eq!(open.receipts, held[..REPORT_RECEIPTS].to_vec());
}

#[test]
fn the_state_survives_a_restart_and_the_open_report_keeps_its_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = ids(2);
    let mut l = Ledger::default();
    l.next(&held).expect("a report");
    l.save(dir.path()).expect("saved");
    let mut back = Ledger::load(dir.path()).expect("loaded");
    assert_eq!(back, l);
    let (open, new) = back.next(&held).expect("the open report");
    assert!(!new);
    assert_eq!(open.report, 1);
    std::fs::write(dir.path().join(SETTLEMENT_FILE), b"{not json").expect("write");
    let err = Ledger::load(dir.path()).expect_err("damaged");
    assert!(err.to_string().contains("damaged"), "{err}");
}

#[test]
fn outcomes_of_receipts_no_longer_held_are_forgotten() {
    let held = ids(3);
    let mut l = Ledger::default();
    l.next(&held);
    l.settle(&Settlement {
        report: 1,
        credited_bytes: 3,
        rejected: vec![],
    });
    l.prune(&held[2..]);
    assert_eq!(l.outcomes.len(), 1);
    assert_eq!(l.credited_bytes, 3, "credited bytes are kept");
}
