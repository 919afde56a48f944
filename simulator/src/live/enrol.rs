//! Enrolling live agents through the real protocol: one token per agent created through the
//! master's API, one fresh Ed25519 key per agent, a signed `enrol_request` on the enrolment ALPN.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hearth_node_agent::enrol::{EnrolError, request_enrolment};
use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::{Arch, CountryCode, Hex, NodeFacts, NodeId, Resources, SecretKey};
use tokio::sync::Semaphore;

use crate::live::master::{MasterApi, MasterError};

/// Countries the agents claim, in turn.
const COUNTRIES: [&str; 5] = ["BE", "FR", "DE", "NL", "ES"];
/// ISPs the agents claim, in turn.
const ISPS: usize = 50;

/// Why an agent could not be enrolled.
#[derive(Debug, thiserror::Error)]
pub enum EnrolAllError {
    /// The master's API refused or failed.
    #[error(transparent)]
    Master(#[from] MasterError),
    /// The enrolment protocol failed.
    #[error("enrolling agent {agent}: {source}")]
    Enrol {
        /// Index of the agent.
        agent: usize,
        /// The agent's error.
        source: EnrolError,
    },
    /// The facts of an agent are invalid (a bug of this module).
    #[error("facts of agent {agent}: {detail}")]
    Facts {
        /// Index of the agent.
        agent: usize,
        /// What was wrong.
        detail: String,
    },
    /// An enrolment task panicked or was cancelled.
    #[error("an enrolment task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The concurrency gate was closed.
    #[error("enrolment gate closed")]
    Gate(#[from] tokio::sync::AcquireError),
}

/// Creates `n` tokens through `api` and enrols a fresh key with each at the master's `quic`
/// address, `concurrency` at a time. Returns the keys in agent order.
pub async fn enrol_all(
    api: &MasterApi,
    quic: SocketAddr,
    n: usize,
    concurrency: usize,
) -> Result<Vec<SecretKey>, EnrolAllError> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for agent in 0..n {
        let (api, gate) = (api.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            enrol_one(&api, quic, agent).await
        }));
    }
    let mut keys = Vec::with_capacity(n);
    for task in tasks {
        keys.push(task.await??);
    }
    Ok(keys)
}

async fn enrol_one(
    api: &MasterApi,
    quic: SocketAddr,
    agent: usize,
) -> Result<SecretKey, EnrolAllError> {
    let token = api.create_token(&format!("live-{agent}")).await?;
    let key = SecretKey::generate();
    let mut request = EnrolRequest {
        token_id: token.id,
        token_secret: token.secret,
        node: NodeId::from_key(key.public()),
        master: token.master,
        facts: facts(agent)?,
        proof: Hex([0; 64]),
    };
    request.proof = key.sign(&request.signing_bytes());
    request_enrolment(quic, &token, request)
        .await
        .map_err(|source| EnrolAllError::Enrol { agent, source })?;
    Ok(key)
}

/// Facts of agent `i`: a home of its own, countries and ISPs in turn, a modest machine.
fn facts(agent: usize) -> Result<NodeFacts, EnrolAllError> {
    let bad = |detail: String| EnrolAllError::Facts { agent, detail };
    let country: CountryCode = COUNTRIES
        .get(agent % COUNTRIES.len())
        .unwrap_or(&"BE")
        .parse()
        .map_err(|e| bad(format!("country: {e}")))?;
    Ok(NodeFacts {
        agent: concat!("hearth-sim-live/", env!("CARGO_PKG_VERSION")).into(),
        arch: Arch::X86_64,
        capacity: Resources {
            cpu_millis: 4000,
            memory_mib: 8192,
            disk_mib: 100_000,
            bandwidth_mbps: 500,
        },
        country,
        isp: format!("isp-{}", agent % ISPS),
        asn: None,
        home: format!("home-{agent}")
            .parse()
            .map_err(|e| bad(format!("home: {e}")))?,
        uplink_mbps: 500,
        downlink_mbps: 1000,
        cgroups_v2: false,
        labels: BTreeMap::new(),
        power_w: None,
    })
}
