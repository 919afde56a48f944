//! Bandwidth settlement: the master's answer to a node's `usage_report` (SPEC.md §9.16/§9.17).
//!
//! The core ([`plan`]) is sans-IO: given a report, the sender, the ledger's receipt rules
//! (`Books::check_receipt`) and what the ledger already credited to the sender in a report of
//! this number, it decides which receipts to credit and what the `settlement` says. It adds the
//! two rules the ledger cannot know: a receipt id repeated *inside* the report is `duplicate`,
//! and a receipt whose window overlaps one accepted earlier in the same report (same gateway,
//! node and instance) is `overlapping`.
//!
//! A repeated report number needs no memory of past settlements: a receipt already credited to
//! this node in a report with this number counts as credited (no new entry), every other one is
//! checked as new. The same report therefore gets the same settlement again, across master
//! restarts too, since the ledger is the memory.
//!
//! The driver ([`Settler`]) runs check-then-append under one `tokio::sync::Mutex`, so two
//! reports (of one node or of two) can never both credit the same receipt.

use std::collections::{HashMap, HashSet};

use hearth_ledger::entry::{Body, Entry, ReceiptEntry};
use hearth_protocol::messages::error::ErrorCode;
use hearth_protocol::messages::usage::{
    BandwidthReceipt, MAX_REPORT_RECEIPTS, RejectedReceipt, Settlement, UsageReport,
};
use hearth_protocol::{Message, NodeId, Nonce};

use crate::clock::now_ms;
use crate::ledger::Ledger;

/// What settling a report decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Entries to append (one receipt entry per newly credited receipt), in report order.
    pub credit: Vec<Body>,
    /// The answer, to send once `credit` is durably appended.
    pub settlement: Settlement,
}

/// A report refused whole (nothing of it is looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefusal {
    /// More receipts than [`MAX_REPORT_RECEIPTS`].
    #[error(
        "usage_report {report} carries {count} receipts, more than the {MAX_REPORT_RECEIPTS} a \
         report may carry: split it into several reports"
    )]
    TooLarge {
        /// The report number.
        report: u64,
        /// Receipts it carries.
        count: usize,
    },
}

impl ReportRefusal {
    /// The non-fatal `error` the node gets instead of a settlement.
    pub fn to_message(&self) -> Message {
        Message::error(ErrorCode::InvalidMessage, self.to_string(), false)
    }
}

/// Decides the settlement of `report` from `sender`.
///
/// `check` applies the ledger's receipt rules (signature, owner, window, registered gateway,
/// id already used, overlap with a credited window) and returns the refusal code; `credited_here`
/// says whether the receipt id is already credited to `sender` in a report numbered
/// `report.report` (a re-sent report).
pub fn plan(
    report: &UsageReport,
    sender: &NodeId,
    mut check: impl FnMut(&BandwidthReceipt) -> Result<(), ErrorCode>,
    mut credited_here: impl FnMut(&BandwidthReceipt) -> bool,
) -> Result<Plan, ReportRefusal> {
    if report.receipts.len() > MAX_REPORT_RECEIPTS {
        return Err(ReportRefusal::TooLarge {
            report: report.report,
            count: report.receipts.len(),
        });
    }
    let mut seen = HashSet::new();
    let mut accepted: Vec<&BandwidthReceipt> = Vec::new();
    let mut credit = Vec::new();
    let mut credited_bytes = 0u64;
    let mut rejected = Vec::new();
    for r in &report.receipts {
        let refused = if !seen.insert(r.receipt) {
            Some(ErrorCode::Duplicate)
        } else if r.node == *sender && credited_here(r) {
            // Credited by an earlier copy of this very report: counts, is not credited again.
            credited_bytes = credited_bytes.saturating_add(bytes(r));
            continue;
        } else if let Err(code) = check(r) {
            Some(code)
        } else if accepted.iter().any(|a| overlaps(a, r)) {
            Some(ErrorCode::Overlapping)
        } else {
            None
        };
        match refused {
            Some(code) => rejected.push(RejectedReceipt {
                receipt: r.receipt,
                code,
            }),
            None => {
                accepted.push(r);
                credited_bytes = credited_bytes.saturating_add(bytes(r));
                credit.push(Body::Receipt(ReceiptEntry {
                    report: report.report,
                    receipt: r.clone(),
                }));
            }
        }
    }
    Ok(Plan {
        credit,
        settlement: Settlement {
            report: report.report,
            credited_bytes,
            rejected,
        },
    })
}

/// Bytes a receipt credits.
pub fn bytes(r: &BandwidthReceipt) -> u64 {
    r.bytes_from_node.saturating_add(r.bytes_to_node)
}

/// Whether two receipts are for the same gateway, node and instance and their windows
/// (`[start, end)`) overlap.
pub fn overlaps(a: &BandwidthReceipt, b: &BandwidthReceipt) -> bool {
    a.gateway == b.gateway
        && a.node == b.node
        && a.instance == b.instance
        && a.window_start_ms < b.window_end_ms
        && b.window_start_ms < a.window_end_ms
}

/// Entries read at a time when the credited receipts are first indexed.
const SCAN_CHUNK: u64 = 10_000;

/// Settles reports one at a time against the ledger (one per master, in `Context`).
#[derive(Debug, Default)]
pub struct Settler {
    /// Who each credited receipt was credited to, and in which report: read from the ledger on
    /// first use, then kept up to date by the settlements (all appends of receipt entries go
    /// through here).
    credited: tokio::sync::Mutex<Option<HashMap<Nonce, (NodeId, u64)>>>,
}

impl Settler {
    /// The answer to `report` from `sender`: a `settlement` once the credited receipts are
    /// durably in the ledger, or a non-fatal `error` (report too large, ledger failure: nothing
    /// was credited, the node keeps the report open and sends it again).
    pub async fn settle(&self, ledger: &Ledger, sender: NodeId, report: UsageReport) -> Message {
        let mut guard = self.credited.lock().await;
        if guard.is_none() {
            match index(ledger) {
                Ok(index) => *guard = Some(index),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the ledger's receipts");
                    return ledger_failed(&report);
                }
            }
        }
        let Some(credited) = guard.as_mut() else {
            return ledger_failed(&report);
        };
        let now = now_ms();
        let planned = {
            let books = ledger.books();
            plan(
                &report,
                &sender,
                |r| books.check_receipt(r, &sender, now).map_err(|e| e.code()),
                |r| credited.get(&r.receipt) == Some(&(sender, report.report)),
            )
        };
        let planned = match planned {
            Ok(p) => p,
            Err(refusal) => {
                tracing::warn!(report = report.report, "{refusal}");
                return refusal.to_message();
            }
        };
        if !planned.credit.is_empty() {
            if let Err(e) = ledger.append(planned.credit.clone()).await {
                tracing::error!(report = report.report, error = %e, "cannot record credited receipts");
                return ledger_failed(&report);
            }
            for body in &planned.credit {
                if let Body::Receipt(r) = body {
                    credited.insert(r.receipt.receipt, (r.receipt.node, r.report));
                }
            }
        }
        let s = &planned.settlement;
        tracing::info!(
            report = s.report,
            receipts = report.receipts.len(),
            credited = planned.credit.len(),
            credited_bytes = s.credited_bytes,
            rejected = s.rejected.len(),
            "usage report settled"
        );
        Message::Settlement(planned.settlement)
    }
}

fn ledger_failed(report: &UsageReport) -> Message {
    Message::error(
        ErrorCode::Internal,
        format!(
            "usage_report {} could not be recorded in the credits ledger; nothing was credited: \
             send it again later",
            report.report
        ),
        false,
    )
}

/// Who each receipt in the ledger was credited to, and in which report.
fn index(ledger: &Ledger) -> Result<HashMap<Nonce, (NodeId, u64)>, crate::ledger::LedgerError> {
    let mut out = HashMap::new();
    let size = ledger.size();
    let mut start = 0;
    while start < size {
        let chunk = ledger.entries(start, SCAN_CHUNK)?;
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(Entry {
                body: Body::Receipt(r),
                ..
            }) = Entry::parse(line)
            {
                out.insert(r.receipt.receipt, (r.receipt.node, r.report));
            }
        }
        start += SCAN_CHUNK;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "settlement_tests.rs"]
mod tests;
