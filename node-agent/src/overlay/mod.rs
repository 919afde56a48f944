//! The node overlay (SPEC §16): libp2p links between members, for artifact chunks and replica
//! links.
//!
//! [`Overlay`] is the handle the rest of the agent uses: [`Overlay::open`] a
//! `/hearth/overlay/1` stream to a member (dialling it directly or through a relay), and the
//! two receivers [`Overlay::start`] returns yield incoming streams by their first frame
//! (artifact requests, replica links). The swarm itself runs in its own task ([`swarm`]); the
//! member set the master sends is kept and persisted by [`admission`]; [`status`] writes
//! `overlay.json` and [`metrics`] serves Prometheus text.

pub mod admission;
pub mod dials;
pub mod metrics;
pub mod replica;
pub mod status;
pub mod stream;
pub mod swarm;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_protocol::messages::overlay::{Overlay as OverlayMessage, OverlayRevision};
use hearth_protocol::{Message, NodeId, SecretKey};
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

pub use admission::{Membership, node_of, peer_of};
pub use stream::PeerStream;

/// How long [`Overlay::open`] waits for a connection to a peer.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`Overlay::open`] waits for the stream once connected.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an incoming stream may take to send its first frame.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Incoming streams queued per receiver before new ones get `error busy`.
pub const INCOMING_QUEUE: usize = 64;

/// Why an overlay operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Local setup failed (key, listen address, transport).
    #[error("cannot start the overlay: {0}")]
    Setup(String),
    /// The peer is not in the member set this node holds.
    #[error("{0} is not a member of the overlay")]
    NotMember(NodeId),
    /// No connection to the peer could be made.
    #[error("cannot reach {peer}: {reason}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// What failed.
        reason: String,
    },
    /// The peer did not answer in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// After how long.
        after: Duration,
    },
    /// Opening the stream failed.
    #[error("cannot open a stream to {peer}: {reason}")]
    Stream {
        /// The peer.
        peer: NodeId,
        /// What failed.
        reason: String,
    },
    /// A frame was invalid.
    #[error(transparent)]
    Frame(#[from] hearth_protocol::frame::FrameError),
    /// Reading or writing the stream failed.
    #[error("overlay stream: {0}")]
    Io(#[from] std::io::Error),
    /// The swarm task is gone (the agent is shutting down).
    #[error("the overlay is shut down")]
    Closed,
    /// An `overlay` message does not continue the set held.
    #[error("overlay revision {got:?} does not follow the held revision {held:?}")]
    OutOfSequence {
        /// The revision held.
        held: Option<OverlayRevision>,
        /// The message's revision.
        got: OverlayRevision,
    },
    /// An `overlay` message is malformed.
    #[error("invalid overlay message: {0}")]
    Invalid(String),
    /// Persisting the member set failed.
    #[error("cannot persist the member set at {path}: {reason}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// The nodes running the replica peers of this node's instances (`Assignment.peers`), the
/// links [`Overlay::want_links`] keeps open.
pub fn replica_peers(ds: &hearth_protocol::messages::state::DesiredState) -> BTreeSet<NodeId> {
    ds.instances
        .iter()
        .flat_map(|a| a.peers.iter().map(|p| p.node))
        .collect()
}

/// Answers every incoming stream with an error (for a consumer not running: the artifact
/// server with budget 0, for instance).
pub async fn refuse_all(
    mut incoming: mpsc::Receiver<Incoming>,
    code: hearth_protocol::ErrorCode,
    why: &'static str,
) {
    while let Some(mut i) = incoming.recv().await {
        tokio::spawn(async move {
            let _ = i.stream.send_error(code, why).await;
            let _ = i.stream.finish().await;
        });
    }
}

/// How the link to a peer is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A direct QUIC connection.
    Direct,
    /// Only a circuit through a relay.
    Relayed,
}

impl LinkKind {
    /// `direct` or `relayed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Relayed => "relayed",
        }
    }
}

/// Counters shared with status and metrics (bytes of overlay stream payload).
#[derive(Debug, Default)]
pub struct OverlayStats {
    /// Artifact bytes served to peers.
    pub artifact_up: AtomicU64,
    /// Artifact bytes fetched from peers.
    pub artifact_down: AtomicU64,
    /// Replica-link bytes sent to peers.
    pub replica_up: AtomicU64,
    /// Replica-link bytes received from peers.
    pub replica_down: AtomicU64,
    /// Chunks received from peers and refused: they failed their hash against the signed
    /// manifest (the peer is scored down, the chunk fetched again elsewhere).
    pub chunks_refused: AtomicU64,
    /// Artifact bytes counted against the upload budget so far.
    pub budget_used: AtomicU64,
    /// The upload budget, Mbit/s (0: no artifact chunks served).
    pub budget_mbps: AtomicU64,
}

impl OverlayStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// An incoming stream, by its first frame: the accept loop read it and hands the stream over.
#[derive(Debug)]
pub struct Incoming {
    /// The member that opened it.
    pub from: NodeId,
    /// Its first frame.
    pub first: Message,
    /// The rest of the stream.
    pub stream: PeerStream,
}

/// How to start the overlay.
#[derive(Debug)]
pub struct OverlayConfig {
    /// The node key (the overlay identity is derived from it).
    pub key: SecretKey,
    /// Where to listen for QUIC (`0.0.0.0:0` by default).
    pub listen: SocketAddr,
    /// Where to persist the member set (`overlay-members.json`); `None` keeps it in memory.
    pub dir: Option<PathBuf>,
}

/// What the swarm task publishes for status, metrics and [`Overlay::link`].
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Addresses listened on (QUIC and circuits).
    pub listen: Vec<String>,
    /// Relays (peer ids), and whether a reservation is held on each.
    pub relays: Vec<(String, bool)>,
    /// Connected members and how, with when the link became that way (Unix ms).
    pub links: HashMap<NodeId, (LinkKind, u64)>,
}

/// The overlay handle. Clone is cheap.
#[derive(Clone)]
pub struct Overlay {
    inner: Arc<Inner>,
}

struct Inner {
    local: NodeId,
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<swarm::Command>,
    control: Mutex<libp2p_stream::Control>,
    stats: OverlayStats,
    shared: Arc<Mutex<Shared>>,
    membership: Mutex<Membership>,
    /// Backup streams (`backup_offer`, `backup_get`) until [`Overlay::take_backups`] takes
    /// them; queued until then, and `busy` once the queue is full.
    backups: Mutex<Option<mpsc::Receiver<Incoming>>>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("local", &self.inner.local)
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

/// The receivers of incoming streams: artifact requests (`have_request`, `fetch_blob`) and
/// replica links (`replica_open`).
pub type Receivers = (mpsc::Receiver<Incoming>, mpsc::Receiver<Incoming>);

impl Overlay {
    /// Starts the swarm (listening on `config.listen`, admitting the persisted member set, if
    /// any) and the accept loop. Needs a Tokio runtime. The swarm stops when the last handle
    /// is dropped.
    pub fn start(
        config: OverlayConfig,
    ) -> Result<(Overlay, mpsc::Receiver<Incoming>, mpsc::Receiver<Incoming>), OverlayError> {
        let local = NodeId::from_key(config.key.public());
        let membership = match &config.dir {
            Some(dir) => Membership::load(dir)?,
            None => Membership::default(),
        }
        .with_dir(config.dir.clone());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (commands, rx) = mpsc::unbounded_channel();
        let started = swarm::spawn(&config, shared.clone(), rx)?;
        let (artifacts_tx, artifacts) = mpsc::channel(INCOMING_QUEUE);
        let (replicas_tx, replicas) = mpsc::channel(INCOMING_QUEUE);
        let (backups_tx, backups) = mpsc::channel(INCOMING_QUEUE);
        let mut control = started.control.clone();
        let incoming = control
            .accept(libp2p::StreamProtocol::new(
                hearth_protocol::messages::overlay::OVERLAY_PROTOCOL,
            ))
            .map_err(|e| OverlayError::Setup(e.to_string()))?;
        tokio::spawn(stream::accept_loop(
            incoming,
            artifacts_tx,
            replicas_tx,
            backups_tx,
        ));
        let overlay = Overlay {
            inner: Arc::new(Inner {
                local,
                peer_id: started.peer_id,
                commands,
                control: Mutex::new(started.control),
                stats: OverlayStats::default(),
                shared,
                membership: Mutex::new(membership),
                backups: Mutex::new(Some(backups)),
            }),
        };
        overlay.push_admission();
        Ok((overlay, artifacts, replicas))
    }

    /// The receiver of backup streams (`backup_offer`, `backup_get`); `None` after the first
    /// call.
    pub fn take_backups(&self) -> Option<mpsc::Receiver<Incoming>> {
        self.inner
            .backups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Opens a `/hearth/overlay/1` stream to a member, dialling it (direct, then through each
    /// relay) if needed.
    pub async fn open(&self, peer: NodeId) -> Result<PeerStream, OverlayError> {
        if !self.is_member(&peer) {
            return Err(OverlayError::NotMember(peer));
        }
        let peer_id = peer_of(&peer);
        let (reply, answer) = oneshot::channel();
        self.command(swarm::Command::Connect {
            peer: peer_id,
            reply,
        })?;
        match tokio::time::timeout(DIAL_TIMEOUT, answer).await {
            Err(_) => {
                return Err(OverlayError::Timeout {
                    what: "dialling the peer",
                    after: DIAL_TIMEOUT,
                });
            }
            Ok(Err(_)) => return Err(OverlayError::Closed),
            Ok(Ok(Err(reason))) => return Err(OverlayError::Unreachable { peer, reason }),
            Ok(Ok(Ok(()))) => {}
        }
        let mut control = self
            .inner
            .control
            .lock()
            .map_err(|_| OverlayError::Closed)?
            .clone();
        let protocol =
            libp2p::StreamProtocol::new(hearth_protocol::messages::overlay::OVERLAY_PROTOCOL);
        match tokio::time::timeout(STREAM_TIMEOUT, control.open_stream(peer_id, protocol)).await {
            Err(_) => Err(OverlayError::Timeout {
                what: "opening the stream",
                after: STREAM_TIMEOUT,
            }),
            Ok(Err(e)) => Err(OverlayError::Stream {
                peer,
                reason: e.to_string(),
            }),
            Ok(Ok(s)) => Ok(PeerStream::new(s)),
        }
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.inner.local
    }

    /// This node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// Counters shared with status and metrics.
    pub fn stats(&self) -> &OverlayStats {
        &self.inner.stats
    }

    /// How the link to a peer is right now (`None`: not connected).
    pub fn link(&self, peer: &NodeId) -> Option<LinkKind> {
        self.shared().links.get(peer).map(|(kind, _)| *kind)
    }

    /// What the swarm publishes (listen addresses, relays, links).
    pub fn shared(&self) -> Shared {
        self.inner
            .shared
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Whether `peer` is in the member set held.
    pub fn is_member(&self, peer: &NodeId) -> bool {
        self.inner
            .membership
            .lock()
            .is_ok_and(|m| m.members.contains(peer))
    }

    /// The member-set revision held (announced in `hello.overlay`).
    pub fn revision(&self) -> Option<OverlayRevision> {
        self.inner.membership.lock().ok().and_then(|m| m.revision)
    }

    /// Applies an `overlay` message from the master: the member set and relays change, removed
    /// members' connections are closed, and the set is persisted. Returns the revision now
    /// held. On [`OverlayError::OutOfSequence`] the held revision is forgotten (the master
    /// sends the full set at the next session).
    pub fn apply(&self, message: &OverlayMessage) -> Result<OverlayRevision, OverlayError> {
        let result = {
            let mut membership = self
                .inner
                .membership
                .lock()
                .map_err(|_| OverlayError::Closed)?;
            let result = membership.apply(message);
            if matches!(result, Err(OverlayError::OutOfSequence { .. })) {
                membership.revision = None;
            }
            result.and_then(|rev| membership.save().map(|()| rev))
        };
        self.push_admission();
        result
    }

    /// Keeps links to these peers open (redialled with backoff while they are members), so
    /// hole punching happens before an instance needs the link.
    pub fn want_links(&self, peers: BTreeSet<NodeId>) {
        let peers = peers
            .into_iter()
            .filter(|p| *p != self.inner.local)
            .map(|p| peer_of(&p))
            .collect();
        let _ = self.command(swarm::Command::WantLinks(peers));
    }

    /// Direct addresses (`/ip4/…/udp/…/quic-v1`) where a member may be reached, besides those
    /// identify learns on a link to it.
    pub fn add_addresses(&self, peer: NodeId, addrs: Vec<libp2p::Multiaddr>) {
        let _ = self.command(swarm::Command::Addresses(peer_of(&peer), addrs));
    }

    fn push_admission(&self) {
        let Ok(m) = self.inner.membership.lock() else {
            return;
        };
        let members = m
            .members
            .iter()
            .filter(|n| **n != self.inner.local)
            .map(peer_of)
            .collect();
        let relays = m
            .relays
            .iter()
            .filter_map(|r| {
                let addr = r.addr.as_str().parse().ok()?;
                Some((admission::relay_peer_of(&r.relay), addr))
            })
            .collect();
        drop(m);
        let _ = self.command(swarm::Command::Admit { members, relays });
    }

    fn command(&self, command: swarm::Command) -> Result<(), OverlayError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| OverlayError::Closed)
    }
}
