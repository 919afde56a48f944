//! Tests of the settlement core: in-report duplicates and overlaps, re-sent reports, limits.

use hearth_protocol::messages::usage::BandwidthReceipt;
use hearth_protocol::{Hex, NodeId, SecretKey, SignerId};

use super::*;

fn node(seed: u8) -> NodeId {
    NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

fn receipt(id: u8, node: NodeId, start: u64, end: u64) -> BandwidthReceipt {
    let gateway = SecretKey::from_seed(&[0x33; 32]);
    let mut r = BandwidthReceipt {
        receipt: Hex([id; 32]),
        gateway: SignerId::from_key(gateway.public()),
        node,
        instance: "web-0".parse().expect("label"),
        window_start_ms: start,
        window_end_ms: end,
        bytes_from_node: 1000 + u64::from(id),
        bytes_to_node: 10,
        signature: Hex([0; 64]),
    };
    r.signature = gateway.sign(&r.signing_bytes());
    r
}

fn report(number: u64, receipts: Vec<BandwidthReceipt>) -> UsageReport {
    UsageReport {
        report: number,
        receipts,
    }
}

#[test]
fn accepted_receipts_are_credited_and_refused_ones_listed_with_the_ledger_code() {
    let n = node(1);
    let (a, b) = (receipt(1, n, 0, 100), receipt(2, n, 100, 200));
    let rep = report(7, vec![a.clone(), b.clone()]);
    let plan = plan(
        &rep,
        &n,
        |r| {
            if r.receipt == b.receipt {
                Err(ErrorCode::UnknownSigner)
            } else {
                Ok(())
            }
        },
        |_| false,
    )
    .expect("planned");
    assert_eq!(plan.settlement.credited_bytes, bytes(&a));
    assert_eq!(
        plan.settlement.rejected,
        vec![RejectedReceipt {
            receipt: b.receipt,
            code: ErrorCode::UnknownSigner
        }]
    );
    assert_eq!(
        plan.credit,
        vec![Body::Receipt(ReceiptEntry {
            report: 7,
            receipt: a
        })]
    );
}

#[test]
fn a_receipt_repeated_or_overlapping_inside_one_report_is_refused() {
    let n = node(1);
    let a = receipt(1, n, 0, 100);
    let overlapping = receipt(2, n, 50, 150);
    let elsewhere = BandwidthReceipt {
        instance: "web-1".parse().expect("label"),
        ..receipt(3, n, 50, 150)
    };
    let rep = report(
        1,
        vec![a.clone(), a.clone(), overlapping.clone(), elsewhere.clone()],
    );
    let plan = plan(&rep, &n, |_| Ok(()), |_| false).expect("planned");
    let codes: Vec<_> = plan.settlement.rejected.iter().map(|r| r.code).collect();
    assert_eq!(codes, vec![ErrorCode::Duplicate, ErrorCode::Overlapping]);
    assert_eq!(
        plan.credit.len(),
        2,
        "the first copy and the other instance's receipt"
    );
    assert_eq!(
        plan.settlement.credited_bytes,
        bytes(&a) + bytes(&elsewhere)
    );
}

#[test]
fn a_re_sent_report_counts_what_it_credited_and_credits_nothing_again() {
    let n = node(1);
    let (a, b) = (receipt(1, n, 0, 100), receipt(2, n, 100, 200));
    let rep = report(4, vec![a.clone(), b.clone()]);
    // `a` went in with the first copy; the ledger refuses it as used, but it counts.
    let plan = plan(
        &rep,
        &n,
        |r| {
            if r.receipt == a.receipt {
                Err(ErrorCode::Duplicate)
            } else {
                Ok(())
            }
        },
        |r| r.receipt == a.receipt,
    )
    .expect("planned");
    assert!(plan.settlement.rejected.is_empty());
    assert_eq!(plan.settlement.credited_bytes, bytes(&a) + bytes(&b));
    assert_eq!(plan.credit.len(), 1, "only b is new");
}

#[test]
fn another_nodes_receipt_never_counts_as_credited_here() {
    let (n, other) = (node(1), node(2));
    let foreign = receipt(1, other, 0, 100);
    let plan = plan(
        &report(1, vec![foreign.clone()]),
        &n,
        |_| Err(ErrorCode::NotYours),
        |_| true,
    )
    .expect("planned");
    assert_eq!(plan.settlement.credited_bytes, 0);
    assert_eq!(plan.settlement.rejected[0].code, ErrorCode::NotYours);
}

#[test]
fn a_report_over_the_limit_is_refused_whole() {
    let n = node(1);
    let many = vec![receipt(1, n, 0, 100); MAX_REPORT_RECEIPTS + 1];
    let err = plan(&report(9, many), &n, |_| Ok(()), |_| false).expect_err("too large");
    assert!(matches!(err, ReportRefusal::TooLarge { report: 9, count } if count == 1001));
    let at_limit = vec![receipt(1, n, 0, 100); MAX_REPORT_RECEIPTS];
    assert!(plan(&report(9, at_limit), &n, |_| Ok(()), |_| false).is_ok());
}
