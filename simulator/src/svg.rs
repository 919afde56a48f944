//! The plot of a run, written by hand as SVG: availability of the services over time (top) and
//! the fleet's size (bottom). Numbers are printed with fixed precision, so the same report gives
//! the same bytes.

use std::fmt::Write;

use crate::report::{Report, Sample};

const W: f64 = 960.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// The SVG document.
pub fn plot(r: &Report) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_plot(&mut s, r);
    s
}

struct Panel<'a> {
    top: f64,
    title: String,
    y_min: f64,
    y_max: f64,
    unit: &'a str,
    lines: Vec<(&'a str, &'a str, Vec<f64>)>,
}

fn write_plot(s: &mut String, r: &Report) -> std::fmt::Result {
    let h = TOP + 2.0 * PANEL_H + GAP + 50.0;
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">hearth-sim · {} · seed {} · {} days</text>"#,
        esc(&r.scenario),
        r.seed,
        r.days
    )?;
    let col = |f: fn(&Sample) -> f64| r.series.iter().map(f).collect::<Vec<f64>>();
    let all = col(|x| x.all * 100.0);
    let quorum = col(|x| x.quorum * 100.0);
    let any = col(|x| x.any * 100.0);
    // The first window holds the initial placement: leave it out of the scale (it is clamped).
    let low = all.iter().skip(1).copied().fold(100.0, f64::min);
    let y_min = [99.999, 99.99, 99.9, 99.0, 95.0, 90.0, 75.0, 50.0]
        .into_iter()
        .find(|m| *m <= low)
        .unwrap_or(0.0);
    let avail = Panel {
        top: TOP,
        title: "services available (window mean, %)".into(),
        y_min,
        y_max: 100.0,
        unit: "%",
        lines: vec![
            ("all replicas", "#d62728", all),
            ("quorum", "#ff7f0e", quorum),
            ("at least one", "#2ca02c", any),
        ],
    };
    let members = col(|x| x.members);
    let reachable = col(|x| x.reachable);
    let top = members.iter().copied().fold(1.0, f64::max);
    let fleet = Panel {
        top: TOP + PANEL_H + GAP,
        title: "fleet (homes)".into(),
        y_min: 0.0,
        y_max: nice(top * 1.05),
        unit: "",
        lines: vec![
            ("members", "#1f77b4", members),
            ("reachable", "#9467bd", reachable),
        ],
    };
    let days = r.days.max(1e-9);
    let xs: Vec<f64> = r.series.iter().map(|x| x.day).collect();
    for p in [avail, fleet] {
        panel(s, &p, &xs, days)?;
    }
    let axis_y = TOP + 2.0 * PANEL_H + GAP + 35.0;
    writeln!(
        s,
        r#"<text x="{:.1}" y="{axis_y:.1}" text-anchor="middle">days</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0
    )?;
    writeln!(s, "</svg>")
}

fn panel(s: &mut String, p: &Panel<'_>, xs: &[f64], days: f64) -> std::fmt::Result {
    let pw = W - LEFT - RIGHT;
    let x_of = |d: f64| LEFT + d / days * pw;
    let span = (p.y_max - p.y_min).max(1e-9);
    let y_of = |v: f64| p.top + PANEL_H - (v.clamp(p.y_min, p.y_max) - p.y_min) / span * PANEL_H;
    writeln!(
        s,
        r##"<rect x="{LEFT}" y="{:.1}" width="{pw:.1}" height="{PANEL_H}" fill="none" stroke="#999"/>"##,
        p.top
    )?;
    writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}">{}</text>"#,
        p.top - 6.0,
        esc(&p.title)
    )?;
    for k in 0..=4 {
        let v = p.y_min + span * f64::from(k) / 4.0;
        let y = y_of(v);
        writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label(v),
            p.unit
        )?;
    }
    for k in 0..=5 {
        let d = days * f64::from(k) / 5.0;
        let x = x_of(d);
        writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            p.top + PANEL_H + 16.0,
            label(d)
        )?;
    }
    for (i, (name, color, ys)) in p.lines.iter().enumerate() {
        let mut pts = String::new();
        for (x, y) in xs.iter().zip(ys) {
            let _ = write!(pts, "{:.1},{:.1} ", x_of(*x), y_of(*y));
        }
        writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{}"/>"#,
            pts.trim_end()
        )?;
        let lx = LEFT + pw - 130.0;
        let ly = p.top + 16.0 + 16.0 * i as f64;
        writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
            ly - 4.0,
            lx + 18.0,
            ly - 4.0,
            lx + 24.0,
            esc(name)
        )?;
    }
    Ok(())
}

/// A round upper bound for an axis.
fn nice(v: f64) -> f64 {
    let mag = 10f64.powf(v.max(1.0).log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|x| *x >= v)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_owned()
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
