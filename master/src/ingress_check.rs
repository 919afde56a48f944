//! What the deployments API refuses in a deployment's public routes (`hosts`, `tcp`): a route to
//! a port the recipe does not declare (400 `bad_request`, naming it), a host name or public TCP
//! port given twice in one spec (400), and one already routed to another deployment (409
//! `host_taken`, `port_taken`). A gateway therefore never sees two deployments for one name or
//! port, and a node is never asked to publish a port its instance does not have. The deployments
//! API holds `GatewayState::claims` from this check to its write, so two requests cannot both
//! take one host.

use std::collections::BTreeSet;

use crate::api::{ApiError, HttpError, bad_request};
use crate::scheduler::{DeploymentSpec, RecipeInfo};
use crate::store::StoredDeployment;

/// Checks `spec`'s routes against its recipe's ports (`info`) and every other deployment.
pub fn check(
    spec: &DeploymentSpec,
    info: &RecipeInfo,
    deployments: &[StoredDeployment],
) -> Result<(), HttpError> {
    if spec.hosts.is_empty() && spec.tcp.is_empty() {
        return Ok(());
    }
    ports_declared(spec, info)?;
    let mut hosts = BTreeSet::new();
    for h in &spec.hosts {
        if !hosts.insert(h.host.as_str()) {
            return Err(bad_request(format!("host {} is given twice", h.host)));
        }
    }
    let mut public = BTreeSet::new();
    for t in &spec.tcp {
        if !public.insert(t.public_port) {
            return Err(bad_request(format!(
                "public TCP port {} is given twice",
                t.public_port
            )));
        }
    }
    for other in deployments.iter().filter(|d| d.name != spec.name.as_str()) {
        let Ok(o) = serde_json::from_value::<DeploymentSpec>(other.spec.clone()) else {
            continue;
        };
        if let Some(h) = o.hosts.iter().find(|h| hosts.contains(h.host.as_str())) {
            return Err(ApiError::HostTaken(format!(
                "host {} is routed to deployment {}; unexpose it there first",
                h.host, other.name
            ))
            .into());
        }
        if let Some(t) = o.tcp.iter().find(|t| public.contains(&t.public_port)) {
            return Err(ApiError::PortTaken(format!(
                "public TCP port {} is routed to deployment {}; unexpose it there first",
                t.public_port, other.name
            ))
            .into());
        }
    }
    Ok(())
}

/// Every routed port is one the recipe declares (also checked when an update changes the recipe).
pub fn ports_declared(spec: &DeploymentSpec, info: &RecipeInfo) -> Result<(), HttpError> {
    let routed = spec
        .hosts
        .iter()
        .map(|h| (&h.port, format!("host {}", h.host)))
        .chain(
            spec.tcp
                .iter()
                .map(|t| (&t.port, format!("public TCP port {}", t.public_port))),
        );
    for (port, route) in routed {
        if !info.ports.iter().any(|p| p == port.as_str()) {
            let declared = if info.ports.is_empty() {
                "none".to_owned()
            } else {
                info.ports.join(", ")
            };
            return Err(bad_request(format!(
                "{route} routes to port `{port}`, which recipe {}@{} does not declare (its ports: {declared}); name one with --port",
                spec.recipe.name, spec.recipe.version
            )));
        }
    }
    Ok(())
}
