//! The readable summary of a report, as `hearth-sim run` prints it.

use std::fmt::Write;

use crate::report::{Report, ServiceReport, Stats};

/// Services listed one by one; beyond that, only the least available ones.
const LISTED: usize = 12;

/// The summary text.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut s, r);
    s
}

fn write_summary(s: &mut String, r: &Report) -> std::fmt::Result {
    let f = &r.failures;
    writeln!(
        s,
        "scenario {} · seed {} · {} days · {} homes at start, {} at end, {} countries, {} ISPs",
        r.scenario, r.seed, r.days, r.homes_start, r.homes_end, r.countries, r.isps
    )?;
    writeln!(
        s,
        "failures: {} power cuts, {} reboots, {} ISP outages, {} country links lost, {} volunteers left, {} joined",
        f.power_cuts, f.reboots, f.isp_outages, f.country_outages, f.left, f.joined
    )?;
    writeln!(
        s,
        "liveness: {} → suspect, {} → down",
        f.transitions.suspect, f.transitions.down
    )?;
    writeln!(s)?;
    writeln!(
        s,
        "availability (mean of {} services): all replicas {}, quorum {}, at least one {}",
        r.services.len(),
        pct(r.availability_all),
        pct(r.availability_quorum),
        pct(r.availability_any)
    )?;
    writeln!(s, "time to heal (back to all replicas): {}", stats(&r.heal))?;
    let mut listed: Vec<&ServiceReport> = r.services.iter().collect();
    if listed.len() > LISTED {
        listed.sort_by(|a, b| a.all.total_cmp(&b.all).then(a.name.cmp(&b.name)));
        listed.truncate(LISTED);
        writeln!(s, "least available {LISTED} services:")?;
    }
    writeln!(
        s,
        "  {:<24} {:>4} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9}",
        "service", "repl", "all", "quorum", "any", "moved", "heal p50", "heal max"
    )?;
    for v in listed {
        writeln!(
            s,
            "  {:<24} {:>4} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9}{}",
            v.name,
            v.replicas,
            pct(v.all),
            pct(v.quorum),
            pct(v.any),
            v.re_placements,
            secs(v.heal.p50_s),
            secs(v.heal.max_s),
            if v.degraded_at_end {
                "  (degraded at end)"
            } else {
                ""
            }
        )?;
    }
    let p = &r.scheduler;
    writeln!(s)?;
    writeln!(
        s,
        "scheduler: {} passes planned ({} with changes, {} skipped as no-ops), {} placed, {} re-placed, {} removed",
        p.planned, p.with_changes, p.skipped, p.placed, p.re_placed, p.removed
    )?;
    for (dep, notes) in &p.notes {
        for n in notes {
            writeln!(s, "  note {dep}: {n}")?;
        }
    }
    let m = &r.master;
    writeln!(
        s,
        "master: {:.1} msg/s mean, {:.1} msg/s busiest window, {:.0} msg in the busiest second (day {:.2}); {} heartbeats, {} reports, {} desired-state pushes, {} sessions opened",
        m.mean_msgs_per_s,
        m.peak_window_msgs_per_s,
        m.peak_second_msgs,
        m.peak_second_day,
        m.heartbeats,
        m.reports,
        m.desired_pushes,
        m.sessions_opened
    )?;
    let c = &r.credits;
    writeln!(
        s,
        "credits (1/hour reachable, {} homes): Gini {:.3}, p10 {:.0}, p50 {:.0}, p90 {:.0}, max {:.0}; uptime p10 {}, p50 {}",
        c.homes,
        c.gini,
        c.p10,
        c.p50,
        c.p90,
        c.max,
        pct(c.uptime_p10),
        pct(c.uptime_p50)
    )?;
    let f = &c.formula;
    writeln!(
        s,
        "credits (the cooperative's formula, {} monthly statements): {:.2} EUR in all; a home's month p10 {:.2}, p50 {:.2}, p90 {:.2} EUR; {} of {} homes earned the whole fibre credit every month; {:.1} kWh used while up",
        f.statements,
        f.total_eur,
        f.month_eur[0],
        f.month_eur[1],
        f.month_eur[2],
        f.homes_full_credit,
        f.homes.len(),
        f.energy_kwh
    )?;
    writeln!(s, "engine: {} events", r.events)
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

fn secs(x: f64) -> String {
    if x >= 3600.0 {
        format!("{:.1}h", x / 3600.0)
    } else if x >= 120.0 {
        format!("{:.1}m", x / 60.0)
    } else {
        format!("{x:.1}s")
    }
}

fn stats(st: &Stats) -> String {
    if st.count == 0 {
        return "no episodes".into();
    }
    format!(
        "{} episodes, mean {}, p50 {}, p99 {}, max {}",
        st.count,
        secs(st.mean_s),
        secs(st.p50_s),
        secs(st.p99_s),
        secs(st.max_s)
    )
}
