//! Human-readable listings of the `hearth` CLI (`--json` prints the API's JSON instead).

use serde_json::Value;

use super::{NodeView, print_node, relative};

pub(super) fn tokens(v: &Value) -> anyhow::Result<()> {
    println!("{:<10} {:<8} {:<20} LABEL", "ID", "STATUS", "EXPIRES");
    for t in v.as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<8} {:<20} {}",
            t.get("id").and_then(Value::as_str).unwrap_or("?"),
            t.get("status").and_then(Value::as_str).unwrap_or("?"),
            t["expires_at_ms"].as_u64().map_or("never".into(), relative),
            t.get("label").and_then(Value::as_str).unwrap_or(""),
        );
    }
    Ok(())
}

pub(super) fn nodes(v: &Value) -> anyhow::Result<()> {
    let nodes: Vec<NodeView> = serde_json::from_value(v.clone())?;
    println!(
        "{:<56} {:<9} {:<3} {:<12} {:<16} HOME",
        "ID", "STATE", "CC", "ISP", "LAST HEARTBEAT"
    );
    for n in nodes {
        println!(
            "{:<56} {:<9} {:<3} {:<12} {:<16} {}",
            n.id,
            n.state,
            n.facts
                .get("country")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            n.facts.get("isp").and_then(Value::as_str).unwrap_or("?"),
            n.last_heartbeat_ms.map_or("never".into(), relative),
            n.facts.get("home").and_then(Value::as_str).unwrap_or("?"),
        );
    }
    Ok(())
}

pub(super) fn deployments(v: &Value) -> anyhow::Result<()> {
    println!("{:<20} {:<8} {:<8} NOTES", "NAME", "WANTED", "RUNNING");
    for d in v.as_array().into_iter().flatten() {
        let running = d.get("replicas").and_then(Value::as_array).map_or(0, |r| {
            r.iter()
                .filter(|x| x.get("state").and_then(Value::as_str) == Some("running"))
                .count()
        });
        let notes = d
            .get("notes")
            .and_then(Value::as_array)
            .map(|n| {
                n.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        println!(
            "{:<20} {:<8} {:<8} {}",
            d.get("name").and_then(Value::as_str).unwrap_or("?"),
            d.pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            running,
            notes
        );
    }
    Ok(())
}

pub(super) fn deployment(name: &str, v: &Value) -> anyhow::Result<()> {
    println!(
        "deployment {name}: {} replicas wanted",
        v.pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    );
    if v.get("rollout").is_some_and(|r| !r.is_null()) {
        println!("update: {}", super::deploy::describe(v));
    }
    for n in v
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        println!("note: {}", n.as_str().unwrap_or_default());
    }
    for r in v
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
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
        println!(
            "{:<20} {:<22} {:<10} {:<10} {:<22} {}",
            text("instance"),
            text("recipe"),
            text("state"),
            text("health"),
            endpoint,
            text("node")
        );
    }
    Ok(())
}

pub(super) fn instances(v: &Value) -> anyhow::Result<()> {
    println!(
        "{:<20} {:<10} {:<10} {:<10} {:<22} NODE",
        "INSTANCE", "STATE", "HEALTH", "GEN", "ENDPOINT"
    );
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
        println!(
            "{:<20} {:<10} {:<10} {:<10} {:<22} {}",
            text("instance"),
            text("state"),
            text("health"),
            generation,
            endpoint,
            text("node")
        );
    }
    Ok(())
}

pub(super) fn node(v: &Value) -> anyhow::Result<()> {
    print_node(&serde_json::from_value(v.clone())?);
    Ok(())
}
