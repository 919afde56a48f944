//! Monthly statements: what each node gave and earned in a calendar month (UTC), computed from
//! ledger entries alone by [`compute`], the same function the master, `hearth ledger verify`
//! and the simulator use, so that a statement recomputed from an export matches the master's
//! byte for byte.

use hearth_protocol::{CountryCode, NodeId};
use serde::{Deserialize, Serialize};

use crate::entry::NodeClass;
use crate::policy::Policy;

/// A calendar month, `YYYY-MM` (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year.
    pub year: i32,
    /// 1–12.
    pub month: u32,
}

/// One node's statement for one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The month, `YYYY-MM`.
    pub month: Month,
    /// The node.
    pub node: NodeId,
    /// Its class at the month's end (or when it left).
    pub class: NodeClass,
    /// Its country (from its node entry; absent if the ledger has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<CountryCode>,
    /// Windows of the month in which the master probed anyone.
    pub fleet_windows: u32,
    /// Of those, windows in which this node was probed.
    pub node_windows: u32,
    /// Probes passed in the month.
    pub probes_passed: u64,
    /// Probes failed in the month.
    pub probes_failed: u64,
    /// Uptime: the mean of its windows' pass shares, ppm.
    pub uptime_ppm: u32,
    /// Receipts credited whose window ended in the month.
    pub receipts: u64,
    /// Bytes of those receipts (both directions).
    pub bytes_served: u64,
    /// Fibre credit, cents.
    pub fibre_credit_cents: u64,
    /// Bandwidth credit, cents.
    pub bandwidth_credit_cents: u64,
    /// Total credit, cents.
    pub credits_cents: u64,
    /// Power draw used for the estimate, watts.
    pub power_w: u32,
    /// Estimated energy used while up, Wh.
    pub energy_wh: u64,
}

/// What a month's statement is computed from (the books' counts, or a simulator's model).
#[derive(Debug, Clone)]
pub struct Usage {
    /// The node's class in the month.
    pub class: NodeClass,
    /// Its country.
    pub country: Option<CountryCode>,
    /// Declared power, watts (`None`: the policy's default).
    pub power_w: Option<u32>,
    /// Windows of the month in which any node was probed.
    pub fleet_windows: u64,
    /// Of those, windows in which this node was probed.
    pub node_windows: u64,
    /// Probes passed.
    pub probes_passed: u64,
    /// Probes failed.
    pub probes_failed: u64,
    /// Sum of its windows' pass shares, ppm (the uptime is their mean).
    pub share_sum_ppm: u64,
    /// Receipts credited in the month.
    pub receipts: u64,
    /// Their bytes.
    pub bytes_served: u64,
}

/// The credits formula (SPEC.md §15.4): a month's statement from its usage under `policy`.
pub fn formula(policy: &Policy, month: Month, node: NodeId, u: &Usage) -> Statement {
    let node_windows = u.node_windows;
    let uptime_ppm = u.share_sum_ppm.checked_div(node_windows).unwrap_or(0);
    let power_w = u.power_w.unwrap_or(policy.default_power_w);
    let credited = matches!(u.class, NodeClass::Serving | NodeClass::Reserve);
    let wide = |v: u64| u128::from(v);
    let factor_ppm = (wide(uptime_ppm) * 1_000_000
        / wide(u64::from(policy.uptime_threshold_ppm.max(1))))
    .min(1_000_000);
    let fibre_credit_cents = match u.fleet_windows {
        0 => 0,
        _ if !credited => 0,
        fleet => {
            wide(policy.fibre_credit_cents) * wide(node_windows) * factor_ppm
                / (wide(fleet) * 1_000_000)
        }
    };
    let bandwidth_credit_cents = if credited {
        wide(u.bytes_served) * wide(policy.bandwidth_millicents_per_gib) / (1u128 << 30) / 1000
    } else {
        0
    };
    let energy_wh =
        wide(u64::from(power_w)) * wide(node_windows) * wide(policy.window_ms) * wide(uptime_ppm)
            / (3_600_000 * 1_000_000);
    let narrow = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    Statement {
        month,
        node,
        class: u.class,
        country: u.country,
        fleet_windows: u32::try_from(u.fleet_windows).unwrap_or(u32::MAX),
        node_windows: u32::try_from(node_windows).unwrap_or(u32::MAX),
        probes_passed: u.probes_passed,
        probes_failed: u.probes_failed,
        uptime_ppm: u32::try_from(uptime_ppm).unwrap_or(u32::MAX),
        receipts: u.receipts,
        bytes_served: u.bytes_served,
        fibre_credit_cents: narrow(fibre_credit_cents),
        bandwidth_credit_cents: narrow(bandwidth_credit_cents),
        credits_cents: narrow(fibre_credit_cents + bandwidth_credit_cents),
        power_w,
        energy_wh: narrow(energy_wh),
    }
}

/// One node's statement for `month` from `books` as they stand (SPEC.md §15.4).
pub(crate) fn compute(books: &crate::books::Books, node: &NodeId, month: Month) -> Statement {
    let (start, end) = (month.start_ms(), month.end_ms());
    let default_book = crate::books::NodeBook::default();
    let book = books.nodes.get(node).unwrap_or(&default_book);
    let (receipts, bytes_served) = book.receipts.get(&month).copied().unwrap_or((0, 0));
    let mut usage = Usage {
        class: book.month_class.get(&month).copied().unwrap_or(book.class),
        country: book.country,
        power_w: book.power_w,
        fleet_windows: books.fleet.range(start..end).count() as u64,
        node_windows: 0,
        probes_passed: 0,
        probes_failed: 0,
        share_sum_ppm: 0,
        receipts,
        bytes_served,
    };
    for counts in book.windows.range(start..end).map(|(_, c)| *c) {
        if counts.total() == 0 {
            continue;
        }
        usage.node_windows += 1;
        usage.probes_passed += u64::from(counts.passed);
        usage.probes_failed += u64::from(counts.failed);
        usage.share_sum_ppm += counts.share_ppm();
    }
    formula(&books.policy, month, *node, &usage)
}
