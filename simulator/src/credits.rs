//! Each home's credits from the cooperative's formula (`hearth_ledger::statement::formula`,
//! SPEC.md §15.4), the one the master and the verifier use. Instead of sampling probes, the
//! simulator meters each home's exact reachable time per scoring window: a probe at a uniformly
//! random instant passes with probability equal to that share, so the meter gives the expected
//! uptime the probes would measure, without their sampling noise (and deterministically).

use std::collections::BTreeMap;

use hearth_ledger::entry::NodeClass;
use hearth_ledger::statement::{Usage, formula};
use hearth_ledger::{Month, Policy};
use hearth_protocol::{CountryCode, NodeId};
use serde::Serialize;

/// A home's reachable time per scoring window, folded into months as windows close.
#[derive(Debug, Clone)]
pub struct Meter {
    last_ms: u64,
    up: bool,
    member: bool,
    window: u64,
    member_ms: u64,
    up_ms: u64,
    /// Per month: windows in which the home was a member, and the sum of their up shares (ppm).
    months: BTreeMap<Month, (u64, u64)>,
}

impl Meter {
    /// A home that joins at `now`, not yet reachable.
    pub fn new(now: u64, policy: &Policy) -> Self {
        Self {
            last_ms: now,
            up: false,
            member: true,
            window: policy.window_of(now),
            member_ms: 0,
            up_ms: 0,
            months: BTreeMap::new(),
        }
    }

    fn advance(&mut self, now: u64, policy: &Policy) {
        while self.last_ms < now {
            let window_end = self.window + policy.window_ms;
            let t = now.min(window_end);
            if self.member {
                self.member_ms += t - self.last_ms;
                if self.up {
                    self.up_ms += t - self.last_ms;
                }
            }
            self.last_ms = t;
            if t == window_end {
                self.close();
                self.window = window_end;
            }
        }
    }

    fn close(&mut self) {
        if let Some(share) = (self.up_ms * 1_000_000).checked_div(self.member_ms) {
            let month = self.months.entry(Month::of(self.window)).or_default();
            month.0 += 1;
            month.1 += share;
        }
        self.member_ms = 0;
        self.up_ms = 0;
    }

    /// The home became reachable (or not) at `now`.
    pub fn set_up(&mut self, now: u64, up: bool, policy: &Policy) {
        self.advance(now, policy);
        self.up = up;
    }

    /// The volunteer left at `now`.
    pub fn leave(&mut self, now: u64, policy: &Policy) {
        self.advance(now, policy);
        self.member = false;
    }

    /// Closes the books at `end` (the window in progress counts for what it saw).
    pub fn finish(&mut self, end: u64, policy: &Policy) {
        self.advance(end, policy);
        self.close();
    }
}

/// One home's credits over the run.
#[derive(Debug, Clone, Serialize)]
pub struct HomeCredits {
    /// The home's name.
    pub home: String,
    /// Its country.
    pub country: CountryCode,
    /// Months with a statement.
    pub months: usize,
    /// Mean monthly uptime, ppm.
    pub uptime_ppm: u64,
    /// Credits over the run, cents.
    pub credits_cents: u64,
    /// Energy used while up, Wh.
    pub energy_wh: u64,
}

/// The fleet's credits from the formula.
#[derive(Debug, Clone, Serialize)]
pub struct FormulaCredits {
    /// Monthly statements computed.
    pub statements: usize,
    /// Credits of every home over the run, EUR.
    pub total_eur: f64,
    /// Monthly credit per home (statements), EUR: p10, p50, p90.
    pub month_eur: [f64; 3],
    /// Homes whose every month earned the whole fibre credit.
    pub homes_full_credit: usize,
    /// Energy used by all homes while up, kWh.
    pub energy_kwh: f64,
    /// Every home.
    pub homes: Vec<HomeCredits>,
}

/// Statements for every home's months, and the fleet's totals. `fleet_windows` of a month are
/// its windows before `end` (the simulated master probes every window).
pub fn statements(
    policy: &Policy,
    end: u64,
    homes: impl Iterator<Item = (NodeId, String, CountryCode, Meter)>,
) -> FormulaCredits {
    let mut all = Vec::new();
    let mut out = Vec::new();
    let mut full = 0;
    for (id, name, country, meter) in homes {
        let mut credits = 0u64;
        let mut energy = 0u64;
        let mut uptime = 0u64;
        let mut whole = true;
        for (month, (windows, shares)) in &meter.months {
            let fleet_end = end.min(month.end_ms());
            let fleet_windows = fleet_end
                .saturating_sub(month.start_ms())
                .div_ceil(policy.window_ms.max(1));
            let usage = Usage {
                class: NodeClass::Serving,
                country: Some(country),
                power_w: None,
                fleet_windows,
                node_windows: *windows,
                probes_passed: 0,
                probes_failed: 0,
                share_sum_ppm: *shares,
                receipts: 0,
                bytes_served: 0,
            };
            let s = formula(policy, *month, id, &usage);
            credits += s.credits_cents;
            energy += s.energy_wh;
            uptime += u64::from(s.uptime_ppm);
            whole &= s.fibre_credit_cents == policy.fibre_credit_cents;
            all.push(s.credits_cents);
        }
        let months = meter.months.len();
        full += usize::from(whole && months > 0);
        out.push(HomeCredits {
            home: name,
            country,
            months,
            uptime_ppm: uptime.checked_div(months as u64).unwrap_or(0),
            credits_cents: credits,
            energy_wh: energy,
        });
    }
    all.sort_unstable();
    let pick = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len().max(1)) - 1;
        all.get(i).copied().unwrap_or(0) as f64 / 100.0
    };
    FormulaCredits {
        statements: all.len(),
        total_eur: out.iter().map(|h| h.credits_cents).sum::<u64>() as f64 / 100.0,
        month_eur: [pick(0.1), pick(0.5), pick(0.9)],
        homes_full_credit: full,
        energy_kwh: out.iter().map(|h| h.energy_wh).sum::<u64>() as f64 / 1000.0,
        homes: out,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::expect_used)] // test code: a panic is a failure report
mod tests {
    use hearth_protocol::SecretKey;

    use super::*;

    #[test]
    fn a_home_up_half_of_every_window_earns_the_formulas_pro_rata_credit() {
        let policy = Policy::default();
        let w = policy.window_ms;
        let jan = Month::of(0);
        let mut meter = Meter::new(0, &policy);
        let mut t = 0;
        while t < jan.end_ms() {
            meter.set_up(t, true, &policy);
            meter.set_up(t + w / 2, false, &policy);
            t += w;
        }
        meter.finish(jan.end_ms(), &policy);
        let id = NodeId::from_key(SecretKey::from_seed(&[3; 32]).public());
        let country: CountryCode = "BE".parse().expect("country");
        let credits = statements(
            &policy,
            jan.end_ms(),
            [(id, "home-0".into(), country, meter)].into_iter(),
        );
        assert_eq!(credits.statements, 1);
        let home = &credits.homes[0];
        assert_eq!(home.uptime_ppm, 500_000);
        // 30 EUR × 0.5 / 0.95, as SPEC §15.4's example; 30 W for half of 31 days.
        assert_eq!(home.credits_cents, 1_578);
        assert_eq!(home.energy_wh, 30 * 31 * 12);
        assert_eq!(credits.homes_full_credit, 0);
    }
}
