//! Simulated nodes for load benchmarks: the live agents of `hearth-sim`
//! (`hearth_simulator::live`), real enrolments and real QUIC sessions that heartbeat like the
//! agent's link, many per process, without running instances.

use std::net::SocketAddr;

use hearth_protocol::{MasterId, SecretKey};
use hearth_simulator::live::{self, AgentsConfig, MasterApi};

pub use hearth_simulator::live::{AgentCounters, Agents};

/// Enrolments in flight at once.
const ENROL_CONCURRENCY: usize = 64;
/// Handshakes in flight at once.
const MAX_HANDSHAKES: usize = 256;

/// Creates `n` tokens through the API at `http` and enrols a fresh key with each.
pub async fn enrol_all(
    n: usize,
    quic: SocketAddr,
    http: SocketAddr,
    admin: &str,
) -> anyhow::Result<Vec<SecretKey>> {
    let api = MasterApi::new(http, admin.to_owned());
    Ok(live::enrol_all(&api, quic, n, ENROL_CONCURRENCY).await?)
}

/// Starts one agent per key that keeps a session (reconnecting like the agent) and heartbeats at
/// the interval the master's `welcome` gives, over `endpoints` shared UDP endpoints.
pub fn spawn_sessions(
    keys: Vec<SecretKey>,
    quic: SocketAddr,
    master_id: MasterId,
    endpoints: usize,
) -> anyhow::Result<Agents> {
    let config = AgentsConfig {
        endpoints,
        max_handshakes: MAX_HANDSHAKES,
        silence_checks: false,
    };
    let keys = keys.into_iter().map(|k| (k, 0)).collect();
    Ok(Agents::spawn(keys, &[quic], master_id, &config)?)
}
