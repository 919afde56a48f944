//! Statements as people and programs read them: a table, JSON (an array, pretty-printed, one
//! trailing newline) or CSV (a header row, then one row per node). `hearth credits`, `hearth
//! ledger verify --statements` and `hearth-node credits` all print through [`render`], so equal
//! statements print as equal bytes.

use std::fmt::Write;

use crate::statement::Statement;

/// How to print statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// A JSON array of statements.
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

const CSV_HEADER: &str = "month,node,class,country,fleet_windows,node_windows,probes_passed,\
probes_failed,uptime_ppm,receipts,bytes_served,fibre_credit_cents,bandwidth_credit_cents,\
credits_cents,power_w,energy_wh";

/// Cents as euros, `12.34`.
pub fn eur(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Prints `statements` in `format`.
pub fn render(statements: &[Statement], format: Format) -> String {
    match format {
        Format::Json => {
            let mut out = serde_json::to_string_pretty(statements).unwrap_or_default();
            out.push('\n');
            out
        }
        Format::Csv => {
            let mut out = format!("{CSV_HEADER}\n");
            for s in statements {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    s.month,
                    s.node,
                    s.class.as_str(),
                    s.country.map(|c| c.to_string()).unwrap_or_default(),
                    s.fleet_windows,
                    s.node_windows,
                    s.probes_passed,
                    s.probes_failed,
                    s.uptime_ppm,
                    s.receipts,
                    s.bytes_served,
                    s.fibre_credit_cents,
                    s.bandwidth_credit_cents,
                    s.credits_cents,
                    s.power_w,
                    s.energy_wh
                );
            }
            out
        }
        Format::Table => {
            if statements.is_empty() {
                return "no statements: no node was probed and no receipt credited in that month\n"
                    .into();
            }
            let mut out = format!(
                "{:<7}  {:<55}  {:<7}  {:>7}  {:>13}  {:>12}  {:>10}  {:>9}\n",
                "MONTH",
                "NODE",
                "CLASS",
                "UPTIME",
                "PROBES OK/ALL",
                "SERVED",
                "CREDIT EUR",
                "ENERGY"
            );
            let (mut cents, mut wh) = (0u64, 0u64);
            for s in statements {
                cents = cents.saturating_add(s.credits_cents);
                wh = wh.saturating_add(s.energy_wh);
                let _ = writeln!(
                    out,
                    "{:<7}  {:<55}  {:<7}  {:>6.2}%  {:>13}  {:>12}  {:>10}  {:>6.1}kWh",
                    s.month.to_string(),
                    s.node.to_string(),
                    s.class.as_str(),
                    f64::from(s.uptime_ppm) / 10_000.0,
                    format!("{}/{}", s.probes_passed, s.probes_passed + s.probes_failed),
                    bytes(s.bytes_served),
                    eur(s.credits_cents),
                    s.energy_wh as f64 / 1000.0,
                );
            }
            let _ = writeln!(
                out,
                "{} node(s): {} EUR credited, {:.1} kWh used",
                statements.len(),
                eur(cents),
                wh as f64 / 1000.0
            );
            out
        }
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("B")),
    }
}
