//! The gateway as an overlay relay (SPEC §16.3): `hearth-gateway run --overlay-listen ADDR`.
//!
//! A libp2p swarm on QUIC with the allow list, identify, ping, the circuit relay v2 server
//! and the AutoNAT server. It admits only the members the master names in the signed long
//! poll `GET /v1/gateway/members` (same signing, `If-None-Match` and `wait_s` as the routes
//! poll, [`Poller::get_signed`]): nodes reserve circuits here and reach each other through
//! them until hole punching (DCUtR, between the nodes) makes their link direct. The relay's
//! limits are raised well above libp2p's defaults because relayed links carry replica
//! traffic ([`relay_config`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt as _;
use hearth_core::backoff::Backoff;
use hearth_protocol::messages::overlay::{MAX_MEMBERS, peer_id_bytes};
use hearth_protocol::{NodeId, SecretKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, allow_block_list, autonat, identify, ping, relay};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::routes::{Poller, RoutesError};

/// Largest members answer read, bytes.
const MAX_ANSWER: usize = 4 << 20;
/// How long the swarm may take to report its listening address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The key, transport or listening address.
    #[error("overlay relay: {0}")]
    Setup(String),
    /// The members poll.
    #[error(transparent)]
    Poll(#[from] RoutesError),
}

/// The master's answer to `GET /v1/gateway/members`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MembersAnswer {
    /// The member-set epoch.
    pub epoch: u64,
    /// Sequence number in the epoch.
    pub seq: u64,
    /// Every member.
    pub members: Vec<NodeId>,
}

/// The relay's behaviours.
#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    relay: relay::Behaviour,
    autonat: autonat::Behaviour,
}

/// Relay limits for a cooperative relay whose circuits carry replica links: many
/// reservations and circuits, long circuits with a large byte budget (libp2p's defaults, 2
/// minutes and 128 KiB per circuit, suit only a hole-punching rendezvous). Rates: only members
/// are admitted, and many homes may share one address (CGNAT), so the per-address rates are
/// far above libp2p's 60 a minute, which a fan-out to a few dozen homes behind one address
/// exhausts in a second.
pub fn relay_config() -> relay::Config {
    let per = |n: u32| std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
    let minute = Duration::from_secs(60);
    relay::Config {
        max_reservations: 4096,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(3600),
        reservation_rate_limiters: Vec::new(),
        max_circuits: 4096,
        max_circuits_per_peer: 64,
        max_circuit_duration: Duration::from_secs(12 * 3600),
        max_circuit_bytes: 8 << 30,
        circuit_src_rate_limiters: Vec::new(),
    }
    .reservation_rate_per_peer(per(30), Duration::from_secs(120))
    .reservation_rate_per_ip(per(RESERVATIONS_PER_IP_MINUTE), minute)
    .circuit_src_per_peer(per(CIRCUITS_PER_PEER_MINUTE), minute)
    .circuit_src_per_ip(per(CIRCUITS_PER_IP_MINUTE), minute)
}

/// Reservations a minute from one address.
pub const RESERVATIONS_PER_IP_MINUTE: u32 = 1_200;
/// Circuits a minute one member may open.
pub const CIRCUITS_PER_PEER_MINUTE: u32 = 600;
/// Circuits a minute from one address.
pub const CIRCUITS_PER_IP_MINUTE: u32 = 12_000;

/// Starts the relay on `listen` (UDP), admitting the members `poller` reports. Returns the
/// address listened on (for `overlay.addr`).
pub async fn start(
    listen: SocketAddr,
    key: &SecretKey,
    poller: Poller,
) -> Result<SocketAddr, OverlayError> {
    let setup = |e: &dyn std::fmt::Display| OverlayError::Setup(e.to_string());
    let mut seed = key.seed();
    let keypair =
        libp2p::identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|e| setup(&e))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            RelayBehaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new("/hearth/id/1".to_owned(), key.public())
                        .with_agent_version(format!(
                            "hearth-gateway/{}",
                            env!("CARGO_PKG_VERSION")
                        )),
                ),
                ping: ping::Behaviour::default(),
                relay: relay::Behaviour::new(peer, relay_config()),
                autonat: autonat::Behaviour::new(
                    peer,
                    autonat::Config {
                        only_global_ips: false,
                        use_connected: false,
                        ..autonat::Config::default()
                    },
                ),
            }
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
        std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    let addr = Multiaddr::empty()
        .with(ip)
        .with(Protocol::Udp(listen.port()))
        .with(Protocol::QuicV1);
    swarm
        .listen_on(addr)
        .map_err(|e| OverlayError::Setup(format!("listen on {listen}: {e}")))?;
    let bound = tokio::time::timeout(LISTEN_TIMEOUT, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                swarm.add_external_address(address.clone());
                if let Some(a) = socket_of(&address) {
                    return a;
                }
            }
        }
    })
    .await
    .map_err(|_| OverlayError::Setup(format!("no listening address on {listen} in time")))?;
    tracing::info!(addr = %bound, peer_id = %swarm.local_peer_id(), "overlay relay listening");
    let (members_tx, members_rx) = mpsc::channel(4);
    tokio::spawn(poll_members(poller, members_tx));
    tokio::spawn(drive(swarm, members_rx));
    Ok(bound)
}

/// The UDP socket address of a `/ip4|ip6/…/udp/…/quic-v1` multiaddr.
fn socket_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(v4) => ip = Some(std::net::IpAddr::V4(v4)),
            Protocol::Ip6(v6) => ip = Some(std::net::IpAddr::V6(v6)),
            Protocol::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

async fn drive(mut swarm: Swarm<RelayBehaviour>, mut members: mpsc::Receiver<HashSet<PeerId>>) {
    loop {
        tokio::select! {
            event = swarm.select_next_some() => on_event(&mut swarm, event),
            set = members.recv() => match set {
                Some(set) => admit(&mut swarm, set),
                None => return,
            },
        }
    }
}

fn admit(swarm: &mut Swarm<RelayBehaviour>, set: HashSet<PeerId>) {
    let old: Vec<PeerId> = swarm
        .behaviour()
        .allow
        .allowed_peers()
        .iter()
        .copied()
        .collect();
    for p in old {
        if !set.contains(&p) {
            swarm.behaviour_mut().allow.disallow_peer(p);
        }
    }
    for p in &set {
        swarm.behaviour_mut().allow.allow_peer(*p);
    }
    tracing::info!(members = set.len(), "overlay relay admits the member set");
}

fn on_event(swarm: &mut Swarm<RelayBehaviour>, event: SwarmEvent<RelayBehaviourEvent>) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => swarm.add_external_address(address),
        SwarmEvent::Behaviour(RelayBehaviourEvent::Relay(e)) => match e {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "reservation accepted");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "circuit opened"),
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, ?error, "circuit closed"),
            other => tracing::debug!(event = ?other, "relay"),
        },
        SwarmEvent::IncomingConnectionError { error, .. } => {
            tracing::debug!(%error, "overlay connection refused");
        }
        _ => {}
    }
}

/// Long-polls the member set, sending each new one; retries with backoff on failure.
async fn poll_members(poller: Poller, out: mpsc::Sender<HashSet<PeerId>>) {
    let mut tag: Option<String> = None;
    let mut held: Option<(u64, u64)> = None;
    let mut failures: u32 = 0;
    loop {
        match poller
            .get_signed("/v1/gateway/members", tag.as_deref(), MAX_ANSWER)
            .await
        {
            Ok(None) => failures = 0,
            Ok(Some((body, etag))) => match serde_json::from_slice::<MembersAnswer>(&body) {
                Ok(answer) if answer.members.len() <= MAX_MEMBERS => {
                    failures = 0;
                    let revision = (answer.epoch, answer.seq);
                    tag =
                        Some(etag.unwrap_or_else(|| format!("\"{}-{}\"", revision.0, revision.1)));
                    if held == Some(revision) {
                        // Unchanged, yet answered at once: do not spin.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    held = Some(revision);
                    let set = answer
                        .members
                        .iter()
                        .filter_map(|n| PeerId::from_bytes(&peer_id_bytes(n.as_bytes())).ok())
                        .collect();
                    if out.send(set).await.is_err() {
                        return;
                    }
                }
                Ok(answer) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        members = answer.members.len(),
                        "member set larger than {MAX_MEMBERS}: ignored"
                    );
                    wait(failures).await;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "the master's member set is invalid (keeping the last)");
                    wait(failures).await;
                }
            },
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(
                    failures,
                    "member set poll failed (keeping the last set): {e}"
                );
                wait(failures).await;
            }
        }
    }
}

async fn wait(failures: u32) {
    tokio::time::sleep(Backoff::RECONNECT.jittered(failures, rand::random::<f64>())).await;
}
