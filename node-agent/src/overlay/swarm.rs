//! The node's libp2p swarm (SPEC §16.3), run in its own task.
//!
//! Transport: QUIC plus the relay client (circuits upgraded with noise and yamux). Behaviours:
//! the allow list (members and relays only), identify, ping, the relay client (a circuit
//! reservation on every relay, re-reserved with backoff when lost), DCUtR (hole punching
//! over a relayed link), the AutoNAT client (the relays are its servers) and libp2p-stream
//! for `/hearth/overlay/1`. Commands come from the [`Overlay`](super::Overlay) handle; what
//! the task knows is published in [`Shared`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use hearth_core::backoff::Backoff;
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, allow_block_list, autonat, dcutr, identify, noise, ping, relay, yamux,
};
use tokio::sync::{mpsc, oneshot};

use super::{LinkKind, OverlayConfig, OverlayError, Shared, admission};

/// The identify protocol version of Hearth peers.
pub const IDENTIFY_PROTOCOL: &str = "/hearth/id/1";
/// How long a connection with no open stream stays up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long an `open` over a fresh relayed link waits for hole punching to make it direct.
pub const PUNCH_GRACE: Duration = Duration::from_secs(5);
/// Housekeeping period (relay reservations, wanted links, waiters).
const TICK: Duration = Duration::from_millis(500);
/// Most direct addresses kept per peer.
const MAX_ADDRS: usize = 8;

/// The behaviours of a node.
#[derive(NetworkBehaviour)]
pub(crate) struct NodeBehaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    relay: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    autonat: autonat::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// What the handle asks of the swarm task.
pub(crate) enum Command {
    /// Connect to a peer (if not connected); answer when a link is usable.
    Connect {
        /// The peer.
        peer: PeerId,
        /// `Err(reason)` when every address failed.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The admitted peers: members and relays (with their addresses).
    Admit {
        /// Members (not this node).
        members: HashSet<PeerId>,
        /// Relays.
        relays: Vec<(PeerId, Multiaddr)>,
    },
    /// Keep links to these peers open.
    WantLinks(HashSet<PeerId>),
    /// Direct addresses where a peer may be reached (besides those identify learns).
    Addresses(PeerId, Vec<Multiaddr>),
}

/// The started swarm.
pub(crate) struct Started {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The stream control.
    pub control: libp2p_stream::Control,
}

/// The QUIC multiaddr of a socket address.
pub fn quic_addr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
        std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

/// The libp2p keypair of an Hearth key.
pub fn keypair(
    key: &hearth_protocol::SecretKey,
) -> Result<libp2p::identity::Keypair, OverlayError> {
    let mut seed = key.seed();
    libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
        .map_err(|e| OverlayError::Setup(format!("node key: {e}")))
}

/// Builds the swarm, listens, and spawns its task.
pub(crate) fn spawn(
    config: &OverlayConfig,
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::UnboundedReceiver<Command>,
) -> Result<Started, OverlayError> {
    let keypair = keypair(&config.key)?;
    let setup = |e: &dyn std::fmt::Display| OverlayError::Setup(e.to_string());
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|key, relay| {
            let peer = key.public().to_peer_id();
            NodeBehaviour {
                allow: allow_block_list::Behaviour::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                        .with_agent_version(format!("hearth-node/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                relay,
                dcutr: dcutr::Behaviour::new(peer),
                autonat: autonat::Behaviour::new(
                    peer,
                    autonat::Config {
                        only_global_ips: false,
                        ..autonat::Config::default()
                    },
                ),
                stream: libp2p_stream::Behaviour::new(),
            }
        })
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    swarm
        .listen_on(quic_addr(config.listen))
        .map_err(|e| OverlayError::Setup(format!("listen on {}: {e}", config.listen)))?;
    let started = Started {
        peer_id: *swarm.local_peer_id(),
        control: swarm.behaviour().stream.new_control(),
    };
    let task = Task {
        swarm,
        shared,
        members: HashSet::new(),
        relays: HashMap::new(),
        addrs: HashMap::new(),
        conns: HashMap::new(),
        waiters: HashMap::new(),
        punching: HashMap::new(),
        wanted: HashMap::new(),
        dials: Default::default(),
    };
    tokio::spawn(task.run(commands));
    Ok(started)
}

/// A relay and our reservation on it.
struct RelayState {
    addr: Multiaddr,
    listener: Option<ListenerId>,
    reserved: bool,
    failures: u32,
    retry_at: Instant,
}

/// A wanted link's redial schedule.
#[derive(Default)]
struct Want {
    failures: u32,
    retry_at: Option<Instant>,
}

struct Conn {
    relayed: bool,
    at: Instant,
}

type Reply = oneshot::Sender<Result<(), String>>;

struct Task {
    swarm: Swarm<NodeBehaviour>,
    shared: Arc<Mutex<Shared>>,
    members: HashSet<PeerId>,
    relays: HashMap<PeerId, RelayState>,
    /// Direct addresses learnt by identify.
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    conns: HashMap<PeerId, HashMap<ConnectionId, Conn>>,
    /// `open`s waiting for a connection.
    waiters: HashMap<PeerId, Vec<Reply>>,
    /// `open`s waiting for hole punching on a fresh relayed link, until the deadline.
    punching: HashMap<PeerId, (Instant, Vec<Reply>)>,
    wanted: HashMap<PeerId, Want>,
    /// Dials in flight and waiting (at most [`super::dials::MAX_DIALS`] at once).
    dials: super::dials::Dials<PeerId>,
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::debug!("overlay swarm stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Connect { peer, reply } => self.connect(peer, reply),
            Command::Admit { members, relays } => self.admit(members, relays),
            Command::Addresses(peer, addrs) => {
                let known = self.addrs.entry(peer).or_default();
                for a in addrs {
                    if !known.contains(&a) && known.len() < MAX_ADDRS {
                        known.push(a);
                    }
                }
            }
            Command::WantLinks(peers) => {
                self.wanted.retain(|p, _| peers.contains(p));
                for p in peers {
                    self.wanted.entry(p).or_default();
                }
            }
        }
    }

    fn connect(&mut self, peer: PeerId, reply: Reply) {
        if let Some(conns) = self.conns.get(&peer).filter(|c| !c.is_empty()) {
            let direct = conns.values().any(|c| !c.relayed);
            let fresh = conns.values().all(|c| c.at.elapsed() < PUNCH_GRACE);
            if direct || !fresh {
                let _ = reply.send(Ok(()));
            } else {
                let deadline = conns
                    .values()
                    .map(|c| c.at + PUNCH_GRACE)
                    .min()
                    .unwrap_or_else(Instant::now);
                self.punching
                    .entry(peer)
                    .or_insert_with(|| (deadline, Vec::new()))
                    .1
                    .push(reply);
            }
            return;
        }
        match self.dial(peer) {
            Ok(()) => self.waiters.entry(peer).or_default().push(reply),
            Err(reason) => {
                let _ = reply.send(Err(reason));
            }
        }
    }

    /// Dials a peer on its direct addresses and through every relay, when a dial slot is free;
    /// otherwise the dial waits its turn (`dials`), and its `open`s keep waiting.
    fn dial(&mut self, peer: PeerId) -> Result<(), String> {
        if self.addrs.get(&peer).is_none_or(Vec::is_empty) && self.relays.is_empty() {
            return Err("no known address and no relay".to_owned());
        }
        if !self.dials.want(peer, Instant::now()) {
            return Ok(());
        }
        let result = self.start_dial(peer);
        if result.is_err() {
            self.dials.cancel(&peer);
        }
        result
    }

    /// Starts the dials that waited for a slot, now that `peer`'s ended.
    fn dial_ended(&mut self, peer: &PeerId) {
        let swarm = &self.swarm;
        let next = self
            .dials
            .ended(peer, Instant::now(), |p| swarm.is_connected(p));
        self.start_waiting(next);
    }

    fn start_waiting(&mut self, peers: Vec<PeerId>) {
        for p in peers {
            if let Err(e) = self.start_dial(p) {
                self.dials.cancel(&p);
                if let Some(replies) = self.waiters.remove(&p) {
                    for r in replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn start_dial(&mut self, peer: PeerId) -> Result<(), String> {
        let mut addrs = self.addrs.get(&peer).cloned().unwrap_or_default();
        for (relay, state) in &self.relays {
            addrs.push(
                state
                    .addr
                    .clone()
                    .with(Protocol::P2p(*relay))
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer)),
            );
        }
        if addrs.is_empty() {
            return Err("no known address and no relay".to_owned());
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => Ok(()),
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Connected or being dialled already: that dial's outcome answers the waiters.
                self.dials.cancel(&peer);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn admit(&mut self, members: HashSet<PeerId>, relays: Vec<(PeerId, Multiaddr)>) {
        let relay_ids: HashSet<PeerId> = relays.iter().map(|(p, _)| *p).collect();
        let old: Vec<PeerId> = self
            .swarm
            .behaviour()
            .allow
            .allowed_peers()
            .iter()
            .copied()
            .collect();
        for p in old {
            if !members.contains(&p) && !relay_ids.contains(&p) {
                tracing::info!(peer = %p, "no longer a member or relay: links closed");
                self.swarm.behaviour_mut().allow.disallow_peer(p);
                self.addrs.remove(&p);
            }
        }
        for p in members.iter().chain(relay_ids.iter()) {
            self.swarm.behaviour_mut().allow.allow_peer(*p);
        }
        self.members = members;
        let gone: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(p, s)| !relays.iter().any(|(q, a)| q == *p && *a == s.addr))
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            if let Some(listener) = self.relays.remove(&p).and_then(|s| s.listener) {
                self.swarm.remove_listener(listener);
            }
        }
        for (p, addr) in relays {
            if self.relays.contains_key(&p) {
                continue;
            }
            self.swarm
                .behaviour_mut()
                .autonat
                .add_server(p, Some(addr.clone()));
            self.relays.insert(
                p,
                RelayState {
                    addr,
                    listener: None,
                    reserved: false,
                    failures: 0,
                    retry_at: Instant::now(),
                },
            );
        }
        self.publish();
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(_, s)| s.listener.is_none() && s.retry_at <= now)
            .map(|(p, _)| *p)
            .collect();
        for relay in due {
            let Some(state) = self.relays.get_mut(&relay) else {
                continue;
            };
            let circuit = state
                .addr
                .clone()
                .with(Protocol::P2p(relay))
                .with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit) {
                Ok(id) => state.listener = Some(id),
                Err(e) => {
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = now + backoff(state.failures);
                    tracing::warn!(%relay, error = %e, "cannot listen through the relay");
                }
            }
        }
        let swarm = &self.swarm;
        let next = self.dials.expire(now, |p| swarm.is_connected(p));
        self.start_waiting(next);
        let redial: Vec<PeerId> = self
            .wanted
            .iter()
            .filter(|(p, w)| {
                self.members.contains(*p)
                    && self.conns.get(*p).is_none_or(|c| c.is_empty())
                    && !self.swarm.is_connected(p)
                    && w.retry_at.is_none_or(|t| t <= now)
            })
            .map(|(p, _)| *p)
            .collect();
        for p in redial {
            let result = self.dial(p);
            if let Some(w) = self.wanted.get_mut(&p) {
                w.failures = w.failures.saturating_add(1);
                w.retry_at = Some(now + backoff(w.failures));
                if let Err(e) = result {
                    tracing::debug!(peer = %p, error = %e, "cannot dial a wanted peer yet");
                }
            }
        }
        let expired: Vec<PeerId> = self
            .punching
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.release_punching(p);
        }
    }

    fn release_punching(&mut self, peer: PeerId) {
        if let Some((_, replies)) = self.punching.remove(&peer) {
            let up = self.swarm.is_connected(&peer);
            for r in replies {
                let _ = r.send(if up {
                    Ok(())
                } else {
                    Err("the relayed link closed".to_owned())
                });
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.established(peer_id, connection_id, &endpoint);
                self.dial_ended(&peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                if let Some(conns) = self.conns.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        self.conns.remove(&peer_id);
                        self.release_punching(peer_id);
                    }
                }
                tracing::debug!(peer = %peer_id, cause = ?cause, "overlay connection closed");
                self.publish();
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "overlay dial failed");
                if let Some(replies) = self.waiters.remove(&peer) {
                    for r in replies {
                        let _ = r.send(Err(error.to_string()));
                    }
                }
                self.dial_ended(&peer);
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "overlay listening");
                self.publish();
            }
            SwarmEvent::ExpiredListenAddr { .. } => self.publish(),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.listener_closed(listener_id, reason.err().map(|e| e.to_string())),
            SwarmEvent::Behaviour(b) => self.on_behaviour(b),
            _ => {}
        }
    }

    fn established(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        if !self.members.contains(&peer) {
            return;
        }
        let relayed = endpoint.is_relayed();
        tracing::info!(%peer, relayed, "overlay link up");
        let conns = self.conns.entry(peer).or_default();
        conns.insert(
            id,
            Conn {
                relayed,
                at: Instant::now(),
            },
        );
        if !relayed {
            // A direct link replaces the relayed ones (hole punching succeeded).
            let relayed_ids: Vec<ConnectionId> = conns
                .iter()
                .filter(|(_, c)| c.relayed)
                .map(|(i, _)| *i)
                .collect();
            for r in relayed_ids {
                self.swarm.close_connection(r);
            }
        }
        if let Some(w) = self.wanted.get_mut(&peer) {
            *w = Want::default();
        }
        let replies = self.waiters.remove(&peer).unwrap_or_default();
        if relayed {
            let entry = self
                .punching
                .entry(peer)
                .or_insert_with(|| (Instant::now() + PUNCH_GRACE, Vec::new()));
            entry.1.extend(replies);
        } else {
            for r in replies {
                let _ = r.send(Ok(()));
            }
            self.release_punching(peer);
        }
        self.publish();
    }

    fn listener_closed(&mut self, id: ListenerId, error: Option<String>) {
        for (relay, state) in &mut self.relays {
            if state.listener == Some(id) {
                state.listener = None;
                state.reserved = false;
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Instant::now() + backoff(state.failures);
                tracing::warn!(%relay, error = ?error, retry_in = ?state.retry_at.saturating_duration_since(Instant::now()), "relay reservation lost");
            }
        }
        self.publish();
    }

    fn on_behaviour(&mut self, event: NodeBehaviourEvent) {
        match event {
            NodeBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if self.members.contains(&peer_id) =>
            {
                let direct: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| !a.iter().any(|p| p == Protocol::P2pCircuit))
                    .take(MAX_ADDRS)
                    .collect();
                self.addrs.insert(peer_id, direct);
            }
            NodeBehaviourEvent::Relay(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if let Some(state) = self.relays.get_mut(&relay_peer_id) {
                    if !renewal {
                        tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                    }
                    state.reserved = true;
                    state.failures = 0;
                }
                self.publish();
            }
            NodeBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punch succeeded"),
                Err(e) => {
                    tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed: link stays relayed");
                    self.release_punching(remote_peer_id);
                }
            },
            NodeBehaviourEvent::Autonat(autonat::Event::StatusChanged { old, new }) => {
                tracing::info!(?old, ?new, "NAT status");
            }
            _ => {}
        }
    }

    /// Publishes listen addresses, relays and links.
    fn publish(&mut self) {
        let listen: Vec<String> = self.swarm.listeners().map(|a| a.to_string()).collect();
        let relay_view: Vec<(String, bool)> = self
            .relays
            .iter()
            .map(|(p, s)| (p.to_string(), s.reserved))
            .collect();
        let Ok(mut shared) = self.shared.lock() else {
            return;
        };
        shared.listen = listen;
        shared.relays = relay_view;
        let now = crate::now_ms();
        let mut links = HashMap::new();
        for (peer, conns) in &self.conns {
            let Some(node) = admission::node_of(peer) else {
                continue;
            };
            let kind = if conns.values().any(|c| !c.relayed) {
                LinkKind::Direct
            } else {
                LinkKind::Relayed
            };
            let since = match shared.links.get(&node) {
                Some((k, since)) if *k == kind => *since,
                _ => now,
            };
            links.insert(node, (kind, since));
        }
        shared.links = links;
    }
}

fn backoff(failures: u32) -> Duration {
    Backoff::RECONNECT.jittered(failures, rand::random::<f64>())
}
