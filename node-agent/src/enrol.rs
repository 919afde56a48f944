//! Enrolment: present the one-time token over a pinned QUIC connection and store the result.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_protocol::messages::enrol::EnrolRequest;
use hearth_protocol::{DEFAULT_MAX_FRAME, EnrolToken, ErrorCode, Hex, Message, NodeId, SecretKey};
use hearth_transport::{
    MessageStream, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
};

use crate::facts::{Declared, detect};
use crate::state::{Enrolment, NodeDir, StateError};

/// How long the whole enrolment may take.
const ENROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why enrolment failed. In every case nothing was written to the data directory.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// Data directory problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// No answer from the address.
    #[error(
        "the master at {0} did not answer within {ENROL_TIMEOUT:?}: check the address and that it runs"
    )]
    Unreachable(SocketAddr),
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
}

/// Enrols this node and returns the stored enrolment.
pub async fn enrol(
    dir: &NodeDir,
    master_addr: SocketAddr,
    token: &EnrolToken,
    declared: Declared,
) -> Result<Enrolment, EnrolError> {
    if let Some(e) = dir.enrolment()? {
        return Err(StateError::AlreadyEnrolled(dir.path().to_owned(), e.master).into());
    }
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
    let accepted = tokio::time::timeout(
        ENROL_TIMEOUT,
        request_enrolment(master_addr, token, request),
    )
    .await
    .map_err(|_| EnrolError::Unreachable(master_addr))??;
    let enrolment = Enrolment::new(master_addr, token.master, node, accepted, facts);
    if fresh {
        dir.save_key(&key)?;
    }
    dir.save_enrolment(&enrolment)?;
    Ok(enrolment)
}

/// Sends a signed enrolment request and returns the heartbeat interval the master accepted it
/// with. Network only, writes nothing (used by [`enrol`] and by load benchmarks).
pub async fn request_enrolment(
    addr: SocketAddr,
    token: &EnrolToken,
    request: EnrolRequest,
) -> Result<u64, EnrolError> {
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
    let conn = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| conn_err(e.to_string()))?
        .await
        .map_err(|e| classify(addr, e))?;
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
            Ok(a.heartbeat_interval_ms)
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
