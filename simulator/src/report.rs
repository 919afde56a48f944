//! The outputs of a run: the report (serialized as JSON), its time series, and the end-of-run
//! accounting that builds it. The readable summary is in [`crate::summary`].
//!
//! Everything in a report is a function of the scenario and the seed (no wall-clock time, no
//! hash-map order), so the same seed gives the same JSON bytes.

use serde::Serialize;

use crate::engine::{DAY_MS, Sim};
use crate::failures::FailureCounts;
use crate::master::PassCounts;

/// A point of the time series: means over the window that ends at `day`.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// End of the window, days.
    pub day: f64,
    /// Members (joined, not left).
    pub members: f64,
    /// Reachable homes.
    pub reachable: f64,
    /// Share of services with all replicas serving.
    pub all: f64,
    /// Share of services with a majority serving.
    pub quorum: f64,
    /// Share of services with at least one replica serving.
    pub any: f64,
    /// Messages the master handled per second (heartbeats included).
    pub msgs_per_s: f64,
}

/// A distribution of durations, seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// How many.
    pub count: usize,
    /// Mean.
    pub mean_s: f64,
    /// Median.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Maximum.
    pub max_s: f64,
}

impl Stats {
    /// From durations in ms.
    pub fn of(ms: &[u64]) -> Self {
        let mut v: Vec<u64> = ms.to_vec();
        v.sort_unstable();
        let Some(&max) = v.last() else {
            return Self::default();
        };
        let sum: u128 = v.iter().map(|&x| u128::from(x)).sum();
        Self {
            count: v.len(),
            mean_s: round3(sum as f64 / v.len() as f64 / 1000.0),
            p50_s: round3(percentile(&v, 0.50) as f64 / 1000.0),
            p99_s: round3(percentile(&v, 0.99) as f64 / 1000.0),
            max_s: round3(max as f64 / 1000.0),
        }
    }
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// Name.
    pub name: String,
    /// Replicas.
    pub replicas: u32,
    /// Share of the measured time with all replicas serving.
    pub all: f64,
    /// … with a majority serving.
    pub quorum: f64,
    /// … with at least one serving.
    pub any: f64,
    /// Episodes below all replicas, until all serve again.
    pub heal: Stats,
    /// Episodes with none serving.
    pub outages: Stats,
    /// Lost replicas re-placed.
    pub re_placements: u64,
    /// Still below all replicas at the end.
    pub degraded_at_end: bool,
}

/// The master's load.
#[derive(Debug, Clone, Serialize)]
pub struct MasterLoad {
    /// Heartbeats received (one per open session per interval).
    pub heartbeats: u64,
    /// `instance_status` reports received.
    pub reports: u64,
    /// `desired_state` pushes sent.
    pub desired_pushes: u64,
    /// Sessions opened (`hello` received, `welcome` sent).
    pub sessions_opened: u64,
    /// Mean messages per second, in and out.
    pub mean_msgs_per_s: f64,
    /// Highest mean over one sample window.
    pub peak_window_msgs_per_s: f64,
    /// Busiest second (reconnect storms): messages in it, heartbeats included.
    pub peak_second_msgs: f64,
    /// When the busiest second was, days.
    pub peak_second_day: f64,
}

/// Uptime credits: one credit per hour a home was reachable.
#[derive(Debug, Clone, Serialize)]
pub struct Credits {
    /// Homes that were members at some point.
    pub homes: usize,
    /// Gini coefficient of credits (0: equal).
    pub gini: f64,
    /// Percentiles of credits: p10, p50, p90, max.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Most.
    pub max: f64,
    /// Median uptime share while a member.
    pub uptime_p50: f64,
    /// 10th percentile of uptime share.
    pub uptime_p10: f64,
    /// Each home's credits from the cooperative's formula (SPEC.md §15.4).
    pub formula: crate::credits::FormulaCredits,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Simulated days.
    pub days: f64,
    /// Homes at the start.
    pub homes_start: usize,
    /// Members at the end.
    pub homes_end: i64,
    /// Countries.
    pub countries: usize,
    /// ISPs.
    pub isps: usize,
    /// What happened.
    pub failures: FailureCounts,
    /// Scheduler passes and changes.
    pub scheduler: PassCounts,
    /// Mean over services of their availability (all replicas).
    pub availability_all: f64,
    /// … majority.
    pub availability_quorum: f64,
    /// … at least one.
    pub availability_any: f64,
    /// Healing episodes of all services.
    pub heal: Stats,
    /// Services.
    pub services: Vec<ServiceReport>,
    /// Master load.
    pub master: MasterLoad,
    /// Credits.
    pub credits: Credits,
    /// Events handled by the engine.
    pub events: u64,
    /// Time series.
    pub series: Vec<Sample>,
}

impl Sim {
    /// Records a time-series point and schedules the next.
    pub(crate) fn on_sample(&mut self) {
        let now = self.q.now();
        let dt = self.sample_ms;
        let n = self.deps.len().max(1) as f64;
        let g = &mut self.gauges;
        let iv = self.cfg.heartbeat_interval.as_millis().max(1) as f64;
        let online = g.online.window_mean(now, dt);
        let total = self.msgs.total();
        let msgs = (total - self.msgs_mark) as f64 / (dt as f64 / 1000.0);
        self.msgs_mark = total;
        self.series.push(Sample {
            day: round3(now as f64 / DAY_MS as f64),
            members: round3(g.members.window_mean(now, dt)),
            reachable: round3(g.reachable.window_mean(now, dt)),
            all: round6(g.full.window_mean(now, dt) / n),
            quorum: round6(g.quorum.window_mean(now, dt) / n),
            any: round6(g.any.window_mean(now, dt) / n),
            msgs_per_s: round3(msgs + online * 1000.0 / iv),
        });
        if now + dt <= self.end_ms {
            self.q.after(dt, crate::queue::Event::Sample);
        }
    }

    /// Closes the books at the end of the run.
    pub(crate) fn finish(mut self) -> Report {
        let end = self.end_ms;
        let warmup = self.warmup_ms.min(end);
        let measured = end.saturating_sub(warmup).max(1) as f64;
        let mut services = Vec::new();
        let mut all_heal = Vec::new();
        for d in &mut self.deps {
            d.account(end, warmup);
            all_heal.extend_from_slice(&d.heal_ms);
            services.push(ServiceReport {
                name: d.name.clone(),
                replicas: d.replicas,
                all: round6(d.full_ms as f64 / measured),
                quorum: round6(d.quorum_ms as f64 / measured),
                any: round6(d.any_ms as f64 / measured),
                heal: Stats::of(&d.heal_ms),
                outages: Stats::of(&d.outage_ms),
                re_placements: d.re_placements,
                degraded_at_end: d.degraded_since.is_some(),
            });
        }
        let n = services.len().max(1) as f64;
        let mean = |f: fn(&ServiceReport) -> f64| round6(services.iter().map(f).sum::<f64>() / n);
        let iv = self.cfg.heartbeat_interval.as_millis().max(1);
        let heartbeats =
            u64::try_from(self.gauges.online.integral(end).max(0) as u128 / iv).unwrap_or(u64::MAX);
        let msgs = heartbeats + self.msgs.total();
        let master = MasterLoad {
            heartbeats,
            reports: self.msgs.reports,
            desired_pushes: self.msgs.desired,
            sessions_opened: self.msgs.hello,
            mean_msgs_per_s: round3(msgs as f64 / (end.max(1) as f64 / 1000.0)),
            peak_window_msgs_per_s: self.series.iter().map(|s| s.msgs_per_s).fold(0.0, f64::max),
            peak_second_msgs: round3(self.peak.peak),
            peak_second_day: round6(self.peak.at_ms as f64 / DAY_MS as f64),
        };
        let credits = self.credits(end);
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            days: round3(end as f64 / DAY_MS as f64),
            homes_start: usize::try_from(self.scenario.homes()).unwrap_or(usize::MAX),
            homes_end: self.gauges.members.value(),
            countries: self.countries.len(),
            isps: self.isps.len(),
            failures: self.counts.clone(),
            scheduler: self.passes.clone(),
            availability_all: mean(|s| s.all),
            availability_quorum: mean(|s| s.quorum),
            availability_any: mean(|s| s.any),
            heal: Stats::of(&all_heal),
            master,
            credits,
            events: self.q.handled(),
            series: std::mem::take(&mut self.series),
            services,
        }
    }

    fn credits(&mut self, end: u64) -> Credits {
        let mut credits = Vec::with_capacity(self.homes.len());
        let mut uptime = Vec::with_capacity(self.homes.len());
        for h in &mut self.homes {
            if let Some(since) = h.up_since.take() {
                h.up_ms += end.saturating_sub(since);
            }
            let member = h.left_ms.unwrap_or(end).saturating_sub(h.joined_ms);
            credits.push(h.up_ms as f64 / 3_600_000.0);
            if member > 0 {
                uptime.push(h.up_ms as f64 / member as f64);
            }
        }
        credits.sort_by(f64::total_cmp);
        uptime.sort_by(f64::total_cmp);
        let policy = hearth_ledger::Policy::default();
        let formula = crate::credits::statements(
            &policy,
            end,
            self.homes.iter_mut().map(|h| {
                h.meter.finish(end, &policy);
                (
                    h.id,
                    h.facts.home.to_string(),
                    h.facts.country,
                    h.meter.clone(),
                )
            }),
        );
        Credits {
            formula,
            homes: credits.len(),
            gini: round6(gini(&credits)),
            p10: round3(percentile(&credits, 0.10)),
            p50: round3(percentile(&credits, 0.50)),
            p90: round3(percentile(&credits, 0.90)),
            max: round3(credits.last().copied().unwrap_or(0.0)),
            uptime_p50: round6(percentile(&uptime, 0.50)),
            uptime_p10: round6(percentile(&uptime, 0.10)),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or_default()
}

/// Gini coefficient of sorted non-negative values.
fn gini(sorted: &[f64]) -> f64 {
    let n = sorted.len() as f64;
    let sum: f64 = sorted.iter().sum();
    if sorted.is_empty() || sum <= 0.0 {
        return 0.0;
    }
    let weighted: f64 = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64 + 1.0) * x)
        .sum();
    (2.0 * weighted) / (n * sum) - (n + 1.0) / n
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gini_and_percentiles() {
        assert!(gini(&[1.0, 1.0, 1.0]).abs() < 1e-9);
        assert!((gini(&[0.0, 0.0, 0.0, 4.0]) - 0.75).abs() < 1e-9);
        let s = Stats::of(&[1000, 2000, 3000, 4000]);
        assert_eq!((s.count, s.p50_s, s.max_s, s.mean_s), (4, 2.0, 4.0, 2.5));
    }
}
