//! Human-readable listings of the `hearth` CLI (`--json` prints the API's JSON instead).

use serde_json::Value;

use super::{NodeView, print_node, relative};

pub(super) fn tokens(v: &Value) -> anyhow::Result<()> {
    outln!("{:<10} {:<8} {:<20} LABEL", "ID", "STATUS", "EXPIRES")?;
    for t in v.as_array().into_iter().flatten() {
        outln!(
            "{:<10} {:<8} {:<20} {}",
            t.get("id").and_then(Value::as_str).unwrap_or("?"),
            t.get("status").and_then(Value::as_str).unwrap_or("?"),
            t["expires_at_ms"].as_u64().map_or("never".into(), relative),
            t.get("label").and_then(Value::as_str).unwrap_or(""),
        )?;
    }
    Ok(())
}

pub(super) fn nodes(v: &Value) -> anyhow::Result<()> {
    let nodes: Vec<NodeView> = serde_json::from_value(v.clone())?;
    outln!(
        "{:<56} {:<9} {:<3} {:<12} {:<16} {:<18} HOME",
        "ID",
        "STATE",
        "CC",
        "ISP",
        "LAST HEARTBEAT",
        "STANDING"
    )?;
    for n in nodes {
        outln!(
            "{:<56} {:<9} {:<3} {:<12} {:<16} {:<18} {}",
            n.id,
            n.state,
            n.facts.country.to_string(),
            n.facts.isp,
            n.last_heartbeat_ms.map_or("never".into(), relative),
            n.standing.as_ref().map_or("-".into(), |s| format!(
                "{} {}",
                s.standing.as_str(),
                percent(s.score_ppm)
            )),
            n.facts.home.as_str(),
        )?;
    }
    Ok(())
}

pub(super) fn deployments(v: &Value) -> anyhow::Result<()> {
    outln!("{:<20} {:<7} {:<8} NOTES", "NAME", "WANTED", "RUNNING")?;
    for d in v.as_array().into_iter().flatten() {
        let notes: Vec<String> = strings(d, "/notes");
        outln!(
            "{:<20} {:<7} {:<8} {}",
            d.get("name").and_then(Value::as_str).unwrap_or("?"),
            d.pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            d.get("running").and_then(Value::as_u64).unwrap_or(0),
            notes.join("; ")
        )?;
    }
    Ok(())
}

/// The strings of the array at `pointer` (none if absent).
/// Parts per million as a percentage with two decimals (`91.25%`).
pub(super) fn percent(ppm: u32) -> String {
    format!("{}.{:02}%", ppm / 10_000, ppm % 10_000 / 100)
}

pub(super) fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// `1 replica`, `3 replicas`.
pub(super) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `06:01:02 UTC (3m ago)`.
fn at(ms: u64) -> String {
    let clock = i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "?".to_owned(), |t| t.format("%H:%M:%S UTC").to_string());
    format!("{clock} ({})", relative(ms))
}

pub(super) fn deployment(name: &str, v: &Value) -> anyhow::Result<()> {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    outln!(
        "deployment {name}: {} wanted, {} running",
        count(n("/spec/replicas"), "replica", "replicas"),
        n("/running")
    )?;
    let asked = strings(v, "/spec/countries");
    if !asked.is_empty() {
        outln!("countries: {}", asked.join(", "))?;
    }
    for route in super::ingress::route_lines(v.get("spec").unwrap_or(&Value::Null)) {
        outln!("public:    {route}")?;
    }
    let conditions: Vec<&Value> = v
        .get("conditions")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let since = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.get("kind").and_then(Value::as_str) == Some(kind))
            .and_then(|c| c.get("since_ms").and_then(Value::as_u64))
    };
    let mut spread = vec![
        count(n("/spread/homes"), "home", "homes"),
        count(n("/spread/countries"), "country", "countries"),
        count(n("/spread/isps"), "ISP", "ISPs"),
    ];
    let asked_spread = strings(v, "/spec/spread");
    if asked_spread.is_empty() {
        spread.push("no spread asked beyond homes".into());
    }
    let degraded = since("countries").into_iter().chain(since("isps")).min();
    outln!(
        "spread:    {}{}",
        spread.join(", "),
        degraded.map_or(String::new(), |t| format!(": degraded since {}", at(t)))
    )?;
    if v.get("rollout").is_some_and(|r| !r.is_null()) {
        outln!("update:    {}", super::deploy::describe(v))?;
    }
    if let Some(m) = v.get("moving").filter(|m| !m.is_null()) {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        outln!(
            "moving:    {} replaces {} once ready ({}, since {})",
            s("to"),
            s("from"),
            s("reason"),
            at(m.get("started_ms").and_then(Value::as_u64).unwrap_or(0))
        )?;
    }
    for c in &conditions {
        outln!(
            "note:      {}; since {}",
            c.get("detail").and_then(Value::as_str).unwrap_or("?"),
            at(c.get("since_ms").and_then(Value::as_u64).unwrap_or(0))
        )?;
    }
    outln!(
        "{:<20} {:<14} {:<14} {:<12} {:<3} {:<9} {:<9} {:<22} {:<18} DETAIL",
        "INSTANCE",
        "NODE",
        "HOME",
        "ISP",
        "CC",
        "STATE",
        "HEALTH",
        "ENDPOINT",
        "RECIPE"
    )?;
    for r in v
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let endpoint = r
            .pointer("/endpoints/0/port")
            .and_then(Value::as_u64)
            .map_or("-".into(), |p| {
                format!(
                    "{}:{p}",
                    r.pointer("/endpoints/0/host")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                )
            });
        let node = text("node");
        let mut detail = text("detail");
        if let Some(role) = r.get("role").and_then(Value::as_str) {
            detail = format!("{role} (move) {}", if detail == "-" { "" } else { &detail });
        }
        outln!(
            "{:<20} {:<14} {:<14} {:<12} {:<3} {:<9} {:<9} {:<22} {:<18} {}",
            text("instance"),
            node.get(..11).unwrap_or(&node),
            text("home"),
            text("isp"),
            text("country"),
            text("state"),
            text("health"),
            endpoint,
            text("recipe"),
            detail.trim_end()
        )?;
    }
    let events: Vec<&Value> = v
        .get("events")
        .and_then(Value::as_array)
        .map(|e| e.iter().collect())
        .unwrap_or_default();
    if !events.is_empty() {
        outln!("events:")?;
    }
    for e in events {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        outln!(
            "  {:<26} {:<14} {}",
            at(e.get("at_ms").and_then(Value::as_u64).unwrap_or(0)),
            s("kind"),
            s("text")
        )?;
    }
    Ok(())
}

pub(super) fn instances(v: &Value) -> anyhow::Result<()> {
    outln!(
        "{:<20} {:<10} {:<10} {:<10} {:<22} NODE",
        "INSTANCE",
        "STATE",
        "HEALTH",
        "GEN",
        "ENDPOINT"
    )?;
    for i in v.as_array().into_iter().flatten() {
        let text = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
        let endpoint = i
            .pointer("/endpoints/0")
            .map(|e| {
                format!(
                    "{}:{}",
                    e.get("host").and_then(Value::as_str).unwrap_or("?"),
                    e.get("port").and_then(Value::as_u64).unwrap_or(0)
                )
            })
            .unwrap_or_else(|| "-".into());
        let generation = i.get("generation").and_then(Value::as_u64).unwrap_or(0);
        outln!(
            "{:<20} {:<10} {:<10} {:<10} {:<22} {}",
            text("instance"),
            text("state"),
            text("health"),
            generation,
            endpoint,
            text("node")
        )?;
    }
    Ok(())
}

pub(super) fn node(v: &Value) -> anyhow::Result<()> {
    print_node(&serde_json::from_value(v.clone())?)
}
