//! Records the tests write: tokens, enrolled nodes, assignments, deployments, gateways, and a
//! bounded wait.

use std::time::{Duration, Instant};

use hearth_master::store::{GatewayRecord, Store, StoredDeployment, TokenRecord};
use hearth_protocol::messages::state::{Assignment, InstanceId, RecipeRef};
use hearth_protocol::{Arch, Hex, NodeFacts, NodeId, Resources, SecretKey, Sha256, SignerId};

/// An active token with id `id` and secret `secret`, created at `created_at_ms`.
pub(crate) fn token(id: [u8; 4], secret: &[u8], label: &str, created_at_ms: u64) -> TokenRecord {
    TokenRecord {
        id: Hex(id),
        secret_hash: Sha256::digest(secret),
        label: label.into(),
        created_at_ms,
        expires_at_ms: None,
        spent_at_ms: None,
        spent_by: None,
        revoked_at_ms: None,
        volunteer: None,
    }
}

/// The node whose key has seed `seed`.
pub(crate) fn node_id(seed: u8) -> NodeId {
    NodeId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

/// Facts of a node in `home`.
pub(crate) fn facts(home: &str) -> anyhow::Result<NodeFacts> {
    Ok(NodeFacts {
        agent: "hearth-node/test".into(),
        arch: Arch::X86_64,
        capacity: Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 100_000,
            bandwidth_mbps: 100,
        },
        country: "BE".parse()?,
        isp: "isp".into(),
        asn: Some(64_512),
        home: home.parse()?,
        uplink_mbps: 100,
        downlink_mbps: 500,
        cgroups_v2: true,
        labels: [("storage".to_owned(), "ssd".to_owned())].into(),
        power_w: None,
    })
}

/// Enrols the node of seed `seed` in home `h<seed>`, with a token of its own, at time `seed`.
pub(crate) fn enrol(store: &dyn Store, seed: u8) -> anyhow::Result<NodeId> {
    let node = node_id(seed);
    let secret = [seed; 8];
    let id = [seed, 0xee, 0, 1];
    anyhow::ensure!(
        store.create_token(&token(id, &secret, "t", 1))?,
        "token id taken"
    );
    store
        .redeem_and_enrol(
            &Hex(id),
            &Sha256::digest(&secret),
            &node,
            &facts(&format!("h{seed}"))?,
            u64::from(seed),
        )?
        .map_err(|e| anyhow::anyhow!("enrolling node {seed}: {e}"))?;
    Ok(node)
}

/// An instance id.
pub(crate) fn instance(name: &str) -> InstanceId {
    name.parse()
        .unwrap_or_else(|e| panic!("instance id {name}: {e}"))
}

/// An assignment of `instance` in `deployment` (generation 0: the store chooses it).
pub(crate) fn assignment(instance_id: &str, deployment: &str) -> Assignment {
    Assignment {
        instance: instance(instance_id),
        deployment: deployment
            .parse()
            .unwrap_or_else(|e| panic!("{deployment}: {e}")),
        generation: 0,
        recipe: RecipeRef {
            name: "kv".parse().unwrap_or_else(|e| panic!("kv: {e}")),
            version: "1.0.0".into(),
            sha256: Sha256::digest(b"recipe"),
        },
        params: [("mode".to_owned(), "fast".to_owned())].into(),
        ports: [("http".to_owned(), 8080)].into(),
        resources: Resources {
            cpu_millis: 100,
            memory_mib: 64,
            disk_mib: 10,
            bandwidth_mbps: 1,
        },
        lease_ms: None,
        exposed: Vec::new(),
        peers: Vec::new(),
        backup: None,
    }
}

/// A deployment named `name` whose spec is `spec` (the version is the store's).
pub(crate) fn deployment_with(name: &str, spec: serde_json::Value) -> StoredDeployment {
    StoredDeployment {
        name: name.into(),
        version: 0,
        spec,
        rollout: None,
    }
}

/// A deployment named `name` with a plain spec.
pub(crate) fn deployment(name: &str) -> StoredDeployment {
    deployment_with(name, serde_json::json!({ "name": name }))
}

/// A deployment routed through the gateways: host `<name>.example.org` to its port `http`.
pub(crate) fn routed(name: &str) -> StoredDeployment {
    deployment_with(
        name,
        serde_json::json!({
            "name": name,
            "hosts": [{ "host": format!("{name}.example.org"), "port": "http" }],
        }),
    )
}

/// The gateway key of seed `seed`.
pub(crate) fn gateway_key(seed: u8) -> SignerId {
    SignerId::from_key(SecretKey::from_seed(&[seed; 32]).public())
}

/// A gateway registration.
pub(crate) fn gateway(name: &str, seed: u8, addr: &str) -> anyhow::Result<GatewayRecord> {
    Ok(GatewayRecord {
        name: name.parse()?,
        key: gateway_key(seed),
        tunnel_addr: addr.parse()?,
        overlay_addr: None,
        created_ms: 5,
        last_seen_ms: None,
    })
}

/// Polls `f` every 20 ms until it answers `Some`, for at most `limit`.
pub(crate) fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
