//! `hearth update`: a rolling update, optionally followed until it completes or rolls back.

use std::time::Duration;

use anyhow::{anyhow, bail};
use hearth_api::{ListedRecipe, UpdateRequest};
use hearth_protocol::Sha256;
use hearth_protocol::messages::state::{Name, RecipeRef};
use serde_json::Value;

use super::Client;

/// Parses `NAME@VERSION[:SHA256]` into the API's recipe reference; without the hash, the
/// master's published signed targets give it.
pub(super) async fn recipe_ref(client: &Client, recipe: &str) -> anyhow::Result<RecipeRef> {
    let bad =
        || anyhow!("--recipe must be NAME@VERSION or NAME@VERSION:SHA256, e.g. static-site@1.1.0");
    let (name_version, sha) = match recipe.rsplit_once(':') {
        Some((nv, sha)) => (nv, Some(sha)),
        None => (recipe, None),
    };
    let (name, version) = name_version.split_once('@').ok_or_else(bad)?;
    if name.is_empty() || version.is_empty() || sha.is_some_and(str::is_empty) {
        return Err(bad());
    }
    let name: Name = name
        .parse()
        .map_err(|e| anyhow!("--recipe {recipe}: `{name}` is not a recipe name: {e}"))?;
    let sha256: Sha256 = match sha {
        Some(sha) => sha
            .parse()
            .map_err(|e| anyhow!("--recipe {recipe}: `{sha}` is not a SHA-256: {e}"))?,
        None => {
            let (listed, _) = client
                .read::<ListedRecipe>(&format!("/v1/recipes/{name}/{version}"))
                .await?;
            listed.sha256
        }
    };
    Ok(RecipeRef {
        name,
        version: version.to_owned(),
        sha256,
    })
}

/// Starts a rolling update; with `wait`, follows it and fails if it rolls back.
pub(super) async fn update(
    client: &Client,
    name: &str,
    recipe: &str,
    deadline: Option<Duration>,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let body = UpdateRequest {
        recipe: recipe_ref(client, recipe).await?,
        deadline_s: deadline.map(|d| d.as_secs().max(1)),
    };
    let path = format!("/v1/deployments/{name}/update");
    let (v, _) = client
        .send(reqwest::Method::POST, &path, Some(&body), None)
        .await?;
    outln!("deployment {name}: {}", describe(&v))?;
    let Some(wait) = wait else {
        return Ok(());
    };
    let until = tokio::time::Instant::now() + wait;
    let mut last = String::new();
    loop {
        let v = client.get(&format!("/v1/deployments/{name}")).await?;
        let now = describe(&v);
        if now != last {
            outln!("deployment {name}: {now}")?;
            last = now;
        }
        match v.pointer("/rollout/state/state").and_then(Value::as_str) {
            Some("complete") | None => return Ok(()),
            Some("rolled_back") => bail!(
                "the update of {name} was rolled back: {}",
                v.pointer("/rollout/state/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            ),
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            bail!("the update of {name} is still in progress after {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Reports a `POST /v1/deployments` answer: its warnings (what cannot be placed now, and why)
/// at once; with `wait`, follows the deployment until every replica serves, failing if it does
/// not in time.
pub(super) async fn requested(
    client: &Client,
    name: &str,
    v: &Value,
    json: bool,
    wait: Option<Duration>,
) -> anyhow::Result<()> {
    let wanted = v.get("replicas").and_then(Value::as_u64).unwrap_or(0);
    if json {
        outln!("{}", serde_json::to_string_pretty(v)?)?;
    } else {
        outln!(
            "deployment {name} requested: {}",
            super::show::count(wanted, "replica", "replicas")
        )?;
        for w in super::show::strings(v, "/warnings") {
            eprintln!("warning: {w}");
        }
    }
    let Some(wait) = wait else {
        return Ok(());
    };
    let until = tokio::time::Instant::now() + wait;
    loop {
        let d = client.get(&format!("/v1/deployments/{name}")).await?;
        let running = d.get("running").and_then(Value::as_u64).unwrap_or(0);
        if running >= wanted {
            if !json {
                outln!("deployment {name}: {running} of {wanted} running")?;
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            let notes = super::show::strings(&d, "/notes");
            bail!(
                "deployment {name}: {running} of {wanted} running after {}{}",
                humantime::format_duration(wait),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", notes.join("; "))
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One line on a deployment's rollout.
pub(super) fn describe(v: &Value) -> String {
    let text = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let to = format!(
        "{}@{}",
        text("/rollout/to/name"),
        text("/rollout/to/version")
    );
    let from = format!(
        "{}@{}",
        text("/rollout/from/name"),
        text("/rollout/from/version")
    );
    let updated = v
        .pointer("/rollout/updated")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match v.pointer("/rollout/state/state").and_then(Value::as_str) {
        None => "no rolling update".into(),
        Some("rolling") => format!(
            "rolling {from} → {to} ({updated} replica updates so far{})",
            v.pointer("/rollout/state/step/instance")
                .and_then(Value::as_str)
                .map_or(String::new(), |i| format!(", now {i}"))
        ),
        Some("rolling_back") => {
            format!("rolling back to {from}: {}", text("/rollout/state/reason"))
        }
        Some("complete") => format!("now on {to} (rolled from {from})"),
        Some("rolled_back") => format!("rolled back to {from}: {}", text("/rollout/state/reason")),
        Some(other) => format!("rollout {other}"),
    }
}
