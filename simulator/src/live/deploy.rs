//! Work for the live agents: a small recipe uploaded to the master and K deployments of R
//! replicas, spread over ISPs and countries. The master's real scheduler places them and sends
//! each chosen node its `desired_state` over its session, as in production; the agents
//! acknowledge it (they run nothing, so each replica stays `pending`).

use hearth_protocol::Sha256;
use reqwest::Method;
use serde_json::json;

use crate::live::master::{MasterApi, MasterError};

/// The recipe deployed: it is parsed and placed by the master, never fetched by a live agent.
pub const RECIPE: &str = r#"name = "live-load"
version = "1.0.0"
description = "Placeholder service of hearth-sim live: placed by the master, run by nobody"

[[artifacts]]
name = "server"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 0
executable = true

[run]
command = "{artifact:server}"
args = ["--port", "{port:http}"]

[[ports]]
name = "http"
protocol = "tcp"

[resources]
cpu_millis = 50
memory_mib = 16
disk_mib = 16
bandwidth_mbps = 1
"#;

/// Uploads [`RECIPE`] and creates deployments `live-0` … `live-{n-1}` of `replicas` each.
/// Returns the number of replicas asked for.
pub async fn deploy(api: &MasterApi, n: usize, replicas: u32) -> Result<u64, MasterError> {
    let sha = upload_recipe(api).await?;
    for i in 0..n {
        create(api, &format!("live-{i}"), sha, replicas).await?;
    }
    Ok(n as u64 * u64::from(replicas))
}

/// Uploads [`RECIPE`] (`PUT /v1/blobs/{sha256}`); its hash.
pub async fn upload_recipe(api: &MasterApi) -> Result<Sha256, MasterError> {
    let sha = Sha256::digest(RECIPE.as_bytes());
    const BLOB: &str = "PUT /v1/blobs/{sha256}";
    MasterApi::send(
        BLOB,
        api.authed(Method::PUT, &format!("/v1/blobs/{sha}"))
            .body(RECIPE),
    )
    .await?;
    Ok(sha)
}

/// Creates the deployment `name` of [`RECIPE`] (uploaded, hash `sha`), `replicas` replicas
/// spread over ISPs and countries; `Ok` once the master acknowledged it.
pub async fn create(
    api: &MasterApi,
    name: &str,
    sha: Sha256,
    replicas: u32,
) -> Result<(), MasterError> {
    const DEPLOY: &str = "POST /v1/deployments";
    let body = json!({
        "name": name,
        "recipe": { "name": "live-load", "version": "1.0.0", "sha256": sha },
        "replicas": replicas,
        "spread": ["isp", "country"],
    });
    MasterApi::send(
        DEPLOY,
        api.authed(Method::POST, "/v1/deployments").json(&body),
    )
    .await?;
    Ok(())
}

/// Replicas placed for each deployment (`GET /v1/deployments`), by name.
pub async fn placed(
    api: &MasterApi,
) -> Result<std::collections::BTreeMap<String, usize>, MasterError> {
    const WHAT: &str = "GET /v1/deployments";
    #[derive(serde::Deserialize)]
    struct View {
        name: String,
        replicas: Vec<serde::de::IgnoredAny>,
    }
    let views: Vec<View> =
        MasterApi::json(WHAT, api.authed(Method::GET, "/v1/deployments")).await?;
    Ok(views
        .into_iter()
        .map(|v| (v.name, v.replicas.len()))
        .collect())
}
