//! Replica links (SPEC §16.5): the replicas of a `[peers]` deployment reach each other through
//! the overlay, across home NATs.
//!
//! For every instance the master gave peers (`Assignment.peers`), [`ReplicaLinks`] keeps one
//! `127.0.0.1:0` listener per peer replica and writes the addresses to the instance's
//! `peers.json` ([`peers_file`]). Each connection accepted there becomes an overlay stream to
//! the peer's node opened with `replica_open {instance: peer, from: mine}`; after `tunnel_ready`
//! the bytes are copied both ways ([`pipe`]). The other side of the same exchange, for streams
//! other nodes open to this one, is [`serve`]. Listeners follow the desired state: a peer that
//! moves gets a new listener and its old one is closed.

pub mod peers_file;
pub mod pipe;
pub mod serve;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_protocol::Message;
use hearth_protocol::messages::overlay::{ReplicaOpen, ReplicaPeer};
use hearth_protocol::messages::state::InstanceId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{Incoming, Overlay, OverlayError};
use peers_file::PeerEntry;
use pipe::LogGate;

/// How long the peer's node may take to answer `replica_open`.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replica link failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The overlay could not carry the stream.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
    /// The peer's node refused the link (`unknown_instance`, `not_yours`, `connect_failed`).
    #[error("refused by the peer's node: {code}: {message}")]
    Refused {
        /// The error code.
        code: String,
        /// Its sentence.
        message: String,
    },
    /// The peer's node answered something else, or nothing.
    #[error("unexpected answer to replica_open: {0}")]
    Unexpected(String),
    /// A socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// What this node serves to its peers' replicas: an instance that runs now, the port its
/// `[peers]` names, and the replicas allowed to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// The instance's peer port on 127.0.0.1.
    pub port: u16,
    /// Its peers (from the latest desired state).
    pub peers: Vec<ReplicaPeer>,
}

/// The replica links of this node. Clone is cheap.
#[derive(Clone, Debug)]
pub struct ReplicaLinks {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    overlay: Overlay,
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Latest peers per local instance (desired state), and their listeners.
    links: BTreeMap<InstanceId, Links>,
    /// Local instances running now, with their peer port.
    running: HashMap<InstanceId, u16>,
}

#[derive(Debug, Default)]
struct Links {
    peers: Vec<ReplicaPeer>,
    listeners: BTreeMap<ReplicaPeer, Listener>,
}

#[derive(Debug)]
struct Listener {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplicaLinks {
    /// Starts serving the replica streams other nodes open (`incoming`: the replica receiver
    /// of [`Overlay::start`]). Instance directories are `root/instances/<id>`. Needs a Tokio
    /// runtime.
    pub fn start(root: &Path, overlay: Overlay, incoming: mpsc::Receiver<Incoming>) -> Self {
        let links = Self {
            inner: Arc::new(Inner {
                overlay,
                root: root.to_owned(),
                state: Mutex::new(State::default()),
            }),
        };
        tokio::spawn(serve::run(links.clone(), incoming));
        links
    }

    /// The overlay the links ride on.
    pub fn overlay(&self) -> &Overlay {
        &self.inner.overlay
    }

    /// Applies the peers of every local instance from a desired state (instances absent or
    /// without peers lose their listeners). Opens a listener per new peer replica, closes the
    /// listeners of peers gone or moved, and rewrites the `peers.json` of each instance whose
    /// peers changed. (The link keeps the overlay links to the peers' nodes open.)
    pub fn set_desired(&self, wanted: &[(InstanceId, Vec<ReplicaPeer>)]) {
        let Ok(mut state) = self.inner.state.lock() else {
            return;
        };
        let wanted: BTreeMap<_, _> = wanted
            .iter()
            .filter(|(_, peers)| !peers.is_empty())
            .cloned()
            .collect();
        state.links.retain(|id, _| wanted.contains_key(id));
        for (id, mut peers) in wanted {
            peers.sort();
            peers.dedup();
            let links = state.links.entry(id.clone()).or_default();
            if links.peers == peers && links.listeners.len() == peers.len() {
                continue;
            }
            let dir = self.inner.root.join("instances").join(id.as_str());
            let previous = peers_file::read(&dir);
            links.listeners.retain(|p, _| peers.contains(p));
            for peer in &peers {
                if links.listeners.contains_key(peer) {
                    continue;
                }
                let port = previous
                    .iter()
                    .find(|e| e.instance == peer.instance && e.node == peer.node)
                    .map_or(0, |e| e.addr.port());
                match self.listen(&id, peer, port) {
                    Ok(l) => {
                        links.listeners.insert(peer.clone(), l);
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, peer = %peer.instance, error = %e, "cannot open a replica listener");
                    }
                }
            }
            links.peers = peers;
            let entries = entries(links);
            if entries != previous
                && let Err(e) = peers_file::write(&dir, &entries)
            {
                tracing::warn!(instance = %id, error = %e, "cannot write peers.json");
            }
        }
    }

    /// The local instances running now and their peer ports (after every step of the
    /// supervisor); only these are served.
    pub fn set_running(&self, running: HashMap<InstanceId, u16>) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.running = running;
        }
    }

    /// The addresses an instance reaches its peers on (`HEARTH_PEERS`), in `peers.json` order.
    pub fn addresses(&self, instance: &InstanceId) -> Vec<PeerEntry> {
        self.inner
            .state
            .lock()
            .ok()
            .and_then(|s| s.links.get(instance).map(entries))
            .unwrap_or_default()
    }

    /// What an incoming `replica_open` for `instance` may reach, if it runs here.
    pub fn serving(&self, instance: &InstanceId) -> Option<Serving> {
        let state = self.inner.state.lock().ok()?;
        let port = *state.running.get(instance)?;
        let peers = state
            .links
            .get(instance)
            .map(|l| l.peers.clone())
            .unwrap_or_default();
        Some(Serving { port, peers })
    }

    fn listen(
        &self,
        mine: &InstanceId,
        peer: &ReplicaPeer,
        port: u16,
    ) -> Result<Listener, ReplicaError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| ReplicaError::Io { what, source }
        };
        let bind = |port| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let std = bind(port)
            .or_else(|_| bind(0))
            .map_err(io("binding a replica listener"))?;
        std.set_nonblocking(true)
            .map_err(io("binding a replica listener"))?;
        let addr = std.local_addr().map_err(io("binding a replica listener"))?;
        let listener = TcpListener::from_std(std).map_err(io("binding a replica listener"))?;
        let span = tracing::info_span!("replica_link", instance = %mine, peer = %peer.instance, node = %peer.node);
        let task = tokio::spawn(
            accept_loop(self.clone(), listener, mine.clone(), peer.clone()).instrument(span),
        );
        tracing::info!(instance = %mine, peer = %peer.instance, node = %peer.node, %addr, "replica listener open");
        Ok(Listener { addr, task })
    }
}

fn entries(links: &Links) -> Vec<PeerEntry> {
    links
        .peers
        .iter()
        .filter_map(|p| {
            links.listeners.get(p).map(|l| PeerEntry {
                instance: p.instance.clone(),
                node: p.node,
                addr: l.addr,
            })
        })
        .collect()
}

async fn accept_loop(
    links: ReplicaLinks,
    listener: TcpListener,
    mine: InstanceId,
    peer: ReplicaPeer,
) {
    let gate = Arc::new(LogGate::default());
    loop {
        let local = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                gate.warn(|| tracing::warn!(error = %e, "accept failed"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (links, mine, peer, gate) = (links.clone(), mine.clone(), peer.clone(), gate.clone());
        tokio::spawn(
            async move {
                if let Err(e) = forward(&links, local, &mine, &peer).await {
                    gate.warn(|| tracing::warn!(error = %e, "replica link closed"));
                }
            }
            .in_current_span(),
        );
    }
}

/// One accepted connection: an overlay stream to the peer's node, `replica_open`, then copy.
async fn forward(
    links: &ReplicaLinks,
    local: TcpStream,
    mine: &InstanceId,
    peer: &ReplicaPeer,
) -> Result<(), ReplicaError> {
    let overlay = links.overlay();
    let mut stream = overlay.open(peer.node).await?;
    stream
        .send(&Message::ReplicaOpen(ReplicaOpen {
            instance: peer.instance.clone(),
            from: mine.clone(),
        }))
        .await?;
    match tokio::time::timeout(ANSWER_TIMEOUT, stream.recv()).await {
        Err(_) => return Err(ReplicaError::Unexpected("no answer in time".into())),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(None)) => return Err(ReplicaError::Unexpected("end of stream".into())),
        Ok(Ok(Some(Message::TunnelReady(_)))) => {}
        Ok(Ok(Some(Message::Error(e)))) => {
            return Err(ReplicaError::Refused {
                code: e.code.to_string(),
                message: e.message,
            });
        }
        Ok(Ok(Some(other))) => return Err(ReplicaError::Unexpected(other.type_tag().to_owned())),
    }
    pipe::copy_both(local, stream.into_io(), overlay.stats())
        .await
        .map_err(|source| ReplicaError::Io {
            what: "copying".into(),
            source,
        })
}
