//! Enrolment: present the one-time token over a pinned QUIC connection and store the result.
//!
//! With an `ht2` token (and no `--trust-root`) the node first fetches the root metadata the
//! token names over the same pinned connection and accepts it only if its version and SHA-256
//! match; the master is asked to enrol the node only then, and the root becomes the trust
//! anchor (`DATA/tuf/anchor.json`) after `enrol_accepted`, before `enrolment.json`.
//!
//! The master addresses tried are those given (`--master`), then those the token lists, each
//! in turn until one answers; `enrolment.json` keeps them all, starting at the one that did.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_core::link::{Masters, MastersError};
use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::messages::fetch::FetchMetadata;
use hearth_protocol::{
    DEFAULT_MAX_FRAME, EnrolToken, ErrorCode, Hex, Message, NodeId, RootPin, SecretKey, Sha256,
};
use hearth_recipes::repo::trust::{TrustStore, check_root};
use hearth_transport::{
    MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
};

use crate::facts::{Declared, detect};
use crate::state::{Enrolment, NodeDir, StateError};

/// How long the enrolment at one address may take.
const ENROL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the QUIC handshake with one address may take when others are left to try.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why enrolment failed. In every case nothing was written to the data directory.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// Data directory problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// No answer from the address.
    #[error("the master at {0} did not answer in time: check the address and that it runs")]
    Unreachable(SocketAddr),
    /// No address to try: no `--master` and none in the token.
    #[error(
        "no master address: the token lists none (no `@<addr>` suffix), so give one with --master HOST:PORT"
    )]
    NoAddress,
    /// The addresses given and listed cannot be kept (more than 16 in all, once each).
    #[error("master addresses: {0}")]
    Addresses(#[from] MastersError),
    /// Several addresses were tried and none answered; each one's failure, in order.
    #[error("no master answered at any of {} addresses: {}", .0.len(), list(.0))]
    NoneAnswered(Vec<EnrolError>),
    /// TLS failed: the master's key is not the one the token pins.
    #[error(
        "the server at {addr} is not the master this token was issued by (certificate does not match the pin): {detail}"
    )]
    PinMismatch { addr: SocketAddr, detail: String },
    /// The connection failed otherwise.
    #[error("connection to the master at {addr} failed: {detail}")]
    Connection { addr: SocketAddr, detail: String },
    /// The master refused.
    #[error("the master refused the enrolment ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
    /// The master answered something that is not an enrolment answer.
    #[error("unexpected answer from the master: {0}")]
    Protocol(String),
    /// The root the master serves is not the one the token pins.
    #[error(
        "the master's {file} has SHA-256 {got}, but the token pins {expected}: it is not the cooperative's root the token was issued for; nothing was written (ask for a new token, or pass --trust-root)"
    )]
    RootMismatch {
        file: String,
        expected: Sha256,
        got: Sha256,
    },
    /// The pinned root could not be fetched or is not a valid root.
    #[error("the root the token pins could not be used: {0}; nothing was written")]
    Root(String),
    /// A root from an interrupted enrolment is already pinned and differs.
    #[error(
        "{0} already holds another root (from an interrupted enrolment?): remove it and enrol again"
    )]
    StaleAnchor(std::path::PathBuf),
}

/// Where the node's trust anchor came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// `--trust-root`; `differs_from` is the token's pin when it names a different root.
    Given { differs_from: Option<RootPin> },
    /// Fetched from the master and matched the token's pin.
    Token(RootPin),
    /// None: an `ht1` token without `--trust-root`; the agent will trust the master's root on
    /// first use.
    FirstUse,
}

/// A finished enrolment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// What was stored.
    pub enrolment: Enrolment,
    /// The root anchor's origin.
    pub root: RootSource,
}

impl EnrolError {
    /// Whether the address did not get as far as answering for the master (unreachable, not
    /// our master, the connection failed), so that the next address is worth trying. A master's
    /// refusal or a bad root is its answer: every master of the cooperative would give it.
    pub fn try_next(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::PinMismatch { .. } | Self::Connection { .. }
        )
    }
}

fn list(errors: &[EnrolError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Enrols this node with the master at `master_addr`, then those the token lists, and returns
/// the stored enrolment (the root anchor as [`enrol_with_root`] without `--trust-root`).
pub async fn enrol(
    dir: &NodeDir,
    master_addr: SocketAddr,
    token: &EnrolToken,
    declared: Declared,
) -> Result<Enrolment, EnrolError> {
    Ok(enrol_with_root(dir, &[master_addr], token, declared, None)
        .await?
        .enrolment)
}

/// The addresses to try: `given` first, then the token's, each once.
pub fn candidates(given: &[SocketAddr], token: &EnrolToken) -> Result<Masters, EnrolError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in given.iter().chain(&token.masters) {
        if !addrs.contains(addr) {
            addrs.push(*addr);
        }
    }
    if addrs.is_empty() {
        return Err(EnrolError::NoAddress);
    }
    Ok(Masters::new(addrs)?)
}

/// Enrols this node, trying `given` addresses and then the token's in turn until one answers
/// (see [`candidates`]). The trust anchor is `trust_root` when given (it wins over the token's
/// pin), else the root an `ht2` token pins, fetched and checked before the token is presented;
/// an `ht1` token without `trust_root` pins none. On any error nothing is written.
pub async fn enrol_with_root(
    dir: &NodeDir,
    given: &[SocketAddr],
    token: &EnrolToken,
    declared: Declared,
    trust_root: Option<Vec<u8>>,
) -> Result<Enrolled, EnrolError> {
    if let Some(e) = dir.enrolment()? {
        return Err(StateError::AlreadyEnrolled(dir.path().to_owned(), e.master).into());
    }
    let masters = candidates(given, token)?;
    // Nothing is written before the master accepted: a failed enrolment leaves no state.
    let stored = dir.load_key()?;
    let fresh = stored.is_none();
    let key = stored.unwrap_or_else(SecretKey::generate);
    let facts = detect(declared, dir.path());
    let node = NodeId::from_key(key.public());
    let mut request = EnrolRequest {
        token_id: token.id,
        token_secret: token.secret,
        node,
        master: token.master,
        facts: facts.clone(),
        proof: Hex([0; 64]),
    };
    request.proof = key.sign(&request.signing_bytes());
    let (source, fetch) = match (&trust_root, token.root) {
        (Some(bytes), pin) => (
            RootSource::Given {
                differs_from: pin.filter(|p| p.sha256 != Sha256::digest(bytes)),
            },
            None,
        ),
        (None, Some(pin)) => (RootSource::Token(pin), Some(pin)),
        (None, None) => (RootSource::FirstUse, None),
    };
    let ((accepted, fetched), answered) =
        first_answer(masters.addrs(), token, &request, fetch).await?;
    // Stored starting at the address that answered, the others after it in the same turn.
    let mut addrs = masters.addrs().to_vec();
    addrs.rotate_left(answered);
    let enrolment = Enrolment::new(addrs, token.master, node, accepted, facts);
    if fresh {
        dir.save_key(&key)?;
    }
    if let Some(root) = trust_root.or(fetched) {
        pin_anchor(&dir.path().join("tuf"), &root)?;
    }
    dir.save_enrolment(&enrolment)?;
    Ok(Enrolled {
        enrolment,
        root: source,
    })
}

/// Tries `addrs` in turn until one answers; returns its answer and its index, or every failure.
async fn first_answer(
    addrs: &[SocketAddr],
    token: &EnrolToken,
    request: &EnrolRequest,
    fetch: Option<RootPin>,
) -> Result<((u64, Option<Vec<u8>>), usize), EnrolError> {
    let connect = if addrs.len() > 1 {
        CONNECT_TIMEOUT
    } else {
        ENROL_TIMEOUT
    };
    let mut failures = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        let attempt = enrol_over(addr, token, request.clone(), fetch, connect);
        let result = tokio::time::timeout(ENROL_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(EnrolError::Unreachable(addr)));
        match result {
            Ok(answer) => return Ok((answer, i)),
            Err(e) if e.try_next() => {
                tracing::warn!(master = %addr, error = %e, "no answer, trying the next address");
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
    }
    if failures.len() == 1
        && let Some(only) = failures.pop()
    {
        return Err(only);
    }
    Err(EnrolError::NoneAnswered(failures))
}

/// Pins `root` as the anchor; an identical anchor left by an interrupted enrolment is kept.
fn pin_anchor(tuf: &std::path::Path, root: &[u8]) -> Result<(), EnrolError> {
    let store = TrustStore::open(tuf).map_err(|e| EnrolError::Root(e.to_string()))?;
    if store.has_root() {
        let path = tuf.join("anchor.json");
        return match std::fs::read(&path) {
            Ok(existing) if existing == root => Ok(()),
            _ => Err(EnrolError::StaleAnchor(path)),
        };
    }
    store
        .pin_root(root)
        .map(|_| ())
        .map_err(|e| EnrolError::Root(e.to_string()))
}

/// Sends a signed enrolment request and returns the heartbeat interval the master accepted it
/// with. Network only, writes nothing (used by [`enrol`] and by load benchmarks).
pub async fn request_enrolment(
    addr: SocketAddr,
    token: &EnrolToken,
    request: EnrolRequest,
) -> Result<u64, EnrolError> {
    Ok(enrol_over(addr, token, request, None, ENROL_TIMEOUT)
        .await?
        .0)
}

/// One enrolment connection: the pinned root first when `root` is given (checked against the
/// pin before anything else is sent), then the request. Returns the heartbeat interval and
/// the root's bytes. The QUIC handshake may take `connect` at most.
async fn enrol_over(
    addr: SocketAddr,
    token: &EnrolToken,
    request: EnrolRequest,
    root: Option<RootPin>,
    connect: Duration,
) -> Result<(u64, Option<Vec<u8>>), EnrolError> {
    let tuning = TransportTuning::default();
    let conn_err = |detail: String| EnrolError::Connection { addr, detail };
    let bind = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let endpoint = client_endpoint(bind).map_err(|e| conn_err(e.to_string()))?;
    let config = client_config(Purpose::Enrol, None, token.master, &tuning)
        .map_err(|e| conn_err(e.to_string()))?;
    let connecting = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| conn_err(e.to_string()))?;
    let conn = tokio::time::timeout(connect, connecting)
        .await
        .map_err(|_| EnrolError::Unreachable(addr))?
        .map_err(|e| classify(addr, e))?;
    let fetched = match root {
        Some(pin) => match fetch_root(&conn, addr, pin).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                conn.close(hearth_transport::close::NORMAL, b"root refused");
                let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
                return Err(e);
            }
        },
        None => None,
    };
    let (send, recv) = conn.open_bi().await.map_err(|e| classify(addr, e))?;
    let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    let node = request.node;
    stream
        .send(&Message::EnrolRequest(Box::new(request)))
        .await
        .map_err(|e| conn_err(e.to_string()))?;
    let _ = stream.finish();
    let reply = stream.recv().await.map_err(|e| conn_err(e.to_string()))?;
    conn.close(hearth_transport::close::NORMAL, b"enrolment done");
    let result = match reply {
        Some(Message::EnrolAccepted(a)) if a.node == node && a.master == token.master => {
            Ok((a.heartbeat_interval_ms, fetched))
        }
        Some(Message::EnrolAccepted(_)) => Err(EnrolError::Protocol(
            "enrol_accepted names another node or master".into(),
        )),
        Some(Message::Error(e)) => Err(EnrolError::Refused {
            code: e.code,
            message: e.message,
        }),
        Some(other) => Err(EnrolError::Protocol(format!("got {}", other.type_tag()))),
        None => Err(EnrolError::Protocol(
            "the master closed the stream without answering".into(),
        )),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

/// Fetches `pin.file()` on its own stream and checks its SHA-256 and version against `pin`.
async fn fetch_root(
    conn: &quinn::Connection,
    addr: SocketAddr,
    pin: RootPin,
) -> Result<Vec<u8>, EnrolError> {
    let file = pin.file();
    let (send, recv) = conn.open_bi().await.map_err(|e| classify(addr, e))?;
    let mut stream = MessageStream::new(send, recv, DEFAULT_MAX_FRAME);
    let conn_err = |detail: String| EnrolError::Connection { addr, detail };
    stream
        .send(&Message::FetchMetadata(FetchMetadata {
            file: file.clone(),
        }))
        .await
        .map_err(|e| conn_err(e.to_string()))?;
    let _ = stream.finish();
    let bytes = match stream.recv().await.map_err(|e| conn_err(e.to_string()))? {
        Some(Message::Metadata(m)) if m.file == file => m.data.0,
        Some(Message::Error(e)) => {
            return Err(EnrolError::Root(format!(
                "the master did not serve {file} ({}): {}",
                e.code, e.message
            )));
        }
        Some(other) => {
            return Err(EnrolError::Protocol(format!(
                "asked for {file}, got {}",
                other.type_tag()
            )));
        }
        None => {
            return Err(EnrolError::Protocol(format!(
                "the master closed the stream without sending {file}"
            )));
        }
    };
    let got = Sha256::digest(&bytes);
    if got != pin.sha256 {
        return Err(EnrolError::RootMismatch {
            file,
            expected: pin.sha256,
            got,
        });
    }
    let version = check_root(&bytes).map_err(|e| EnrolError::Root(format!("{file}: {e}")))?;
    if version != pin.version {
        return Err(EnrolError::Root(format!(
            "{file} says it is root version {version}"
        )));
    }
    Ok(bytes)
}

fn classify(addr: SocketAddr, e: quinn::ConnectionError) -> EnrolError {
    match &e {
        quinn::ConnectionError::TimedOut => EnrolError::Unreachable(addr),
        quinn::ConnectionError::TransportError(t) if t.reason.contains("certificate") => {
            EnrolError::PinMismatch {
                addr,
                detail: e.to_string(),
            }
        }
        _ => EnrolError::Connection {
            addr,
            detail: e.to_string(),
        },
    }
}
