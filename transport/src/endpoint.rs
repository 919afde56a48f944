//! quinn endpoints for the master (server) and nodes (clients), TLS 1.3 only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{ALPN_ENROL, ALPN_SESSION, DEFAULT_MAX_FRAME, MasterId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{AckFrequencyConfig, IdleTimeout, TransportConfig, VarInt};

use crate::cert::Identity;
use crate::cid::KeyedCidGenerator;
use crate::verify::{NodeGate, PinnedMaster};

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration does not suit QUIC.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
    /// Binding the UDP socket failed.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Transport settings. Defaults suit thousands of mostly idle sessions: small windows, few
/// streams, keep-alives from the node so NAT bindings stay open.
#[derive(Debug, Clone)]
pub struct TransportTuning {
    /// Close a connection silent for this long.
    pub idle_timeout: Duration,
    /// Clients send a keep-alive after this much silence (keeps home NAT mappings alive).
    pub keep_alive: Duration,
    /// Concurrent bidirectional streams a peer may open.
    pub max_bidi_streams: u32,
    /// Per-stream receive window.
    pub stream_window: u32,
    /// Connection-wide receive window, and the send buffer of each side.
    pub connection_window: u32,
    /// Clients ask the server to acknowledge every ack-eliciting packet at once (sessions:
    /// one ACK per heartbeat, sent while it is processed). Bulk links leave delayed ACKs on.
    pub immediate_acks: bool,
    /// UDP receive and send buffer sizes asked of the kernel for the master's socket (the
    /// kernel caps them at `net.core.rmem_max` / `wmem_max`). After a master restart every node
    /// reconnects within one heartbeat interval; the default buffer of about 200 KiB holds only
    /// some 170 handshake packets, and each one dropped costs its node a one-second
    /// retransmission timeout.
    pub server_socket_buffer: usize,
}

impl Default for TransportTuning {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(10),
            max_bidi_streams: 16,
            stream_window: (2 * DEFAULT_MAX_FRAME) as u32,
            connection_window: (4 * DEFAULT_MAX_FRAME) as u32,
            immediate_acks: true,
            server_socket_buffer: 4 << 20,
        }
    }
}

impl TransportTuning {
    /// The transport of a server (`client` false) or of a client: only clients keep the
    /// connection alive and set the peer's acknowledgement frequency.
    pub(crate) fn config(&self, client: bool) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        t.max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(client.then_some(self.keep_alive));
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_bidi_streams));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        t.stream_receive_window(VarInt::from_u32(self.stream_window));
        t.receive_window(VarInt::from_u32(self.connection_window));
        t.send_window(u64::from(self.connection_window));
        t.datagram_receive_buffer_size(None);
        if client && self.immediate_acks {
            // Clients (nodes) ask the master, with an ACK_FREQUENCY frame, to acknowledge every
            // ack-eliciting packet at once. A heartbeat is then answered by one ACK-only packet
            // sent while its packet is processed, rather than by a delayed-ACK timer per
            // heartbeat on the master.
            let mut ack = AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(VarInt::from_u32(0));
            t.ack_frequency_config(Some(ack));
        }
        Arc::new(t)
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The master's endpoint: serves both ALPNs, asks `gate` about node certificates.
pub fn server_endpoint(
    addr: SocketAddr,
    identity: &Identity,
    gate: NodeGate,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, EndpointError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(gate))
        .with_single_cert(identity.chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN_SESSION.to_vec(), ALPN_ENROL.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(tuning.config(false));
    config.migration(true);
    // The stateless-reset key is derived from the master's identity rather than random per
    // process: a master restarted on the same address can then reset the connections of its
    // previous run at their nodes' next packet, so nodes reconnect at once instead of waiting
    // for their idle timeout.
    let reset = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &identity.derived_secret("quic stateless reset"),
    );
    let socket = bind_udp(addr, tuning.server_socket_buffer)?;
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset));
    // After a restart every node's next packet must earn a reset. quinn rate-limits resets by
    // the time its driver read the packets, which is one instant for a whole batch of
    // datagrams: any interval above zero answers only the first packet of each batch, and under
    // a reconnect storm batches are large. Resets are always smaller than the packet that caused
    // them, so answering every one cannot amplify.
    endpoint_config.min_reset_interval(Duration::ZERO);
    // Connection ids carry a keyed check that quinn validates before answering a packet of an
    // unknown connection: the key must survive restarts too, or the reset is never sent.
    let cid_key = identity.derived_secret("quic connection ids");
    endpoint_config.cid_generator(move || Box::new(KeyedCidGenerator::new(&cid_key)));
    quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr, source })
}

/// A UDP socket bound to `addr` whose receive and send buffers were asked to be `buffer` bytes.
/// A kernel that grants less (its `rmem_max`/`wmem_max` are lower) is logged, not refused.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket, EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind_err = |source| EndpointError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_err)?;
    for (what, set, get) in [
        (
            "receive",
            Socket::set_recv_buffer_size as fn(&Socket, usize) -> std::io::Result<()>,
            Socket::recv_buffer_size as fn(&Socket) -> std::io::Result<usize>,
        ),
        (
            "send",
            Socket::set_send_buffer_size,
            Socket::send_buffer_size,
        ),
    ] {
        // Linux reports twice the granted size (it counts its bookkeeping).
        let reported = |n: usize| if cfg!(target_os = "linux") { n / 2 } else { n };
        match set(&socket, buffer)
            .and_then(|()| get(&socket))
            .map(reported)
        {
            Ok(granted) if granted < buffer => tracing::warn!(
                asked = buffer,
                granted,
                "UDP {what} buffer smaller than asked: raise net.core.{}mem_max",
                if what == "receive" { "r" } else { "w" }
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot size the UDP {what} buffer"),
        }
    }
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket.into())
}

/// What a node connects for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Enrolment: no client certificate, ALPN `hearth-enrol/1`.
    Enrol,
    /// A session: the node's certificate, ALPN `hearth/1`.
    Session,
}

/// A client configuration pinned to `master`. `identity` is presented for sessions.
pub fn client_config(
    purpose: Purpose,
    identity: Option<&Identity>,
    master: MasterId,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig, EndpointError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedMaster::new(master)));
    let mut tls = match (purpose, identity) {
        (Purpose::Session, Some(id)) => {
            builder.with_client_auth_cert(id.chain(), id.private_key())?
        }
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![match purpose {
        Purpose::Enrol => ALPN_ENROL.to_vec(),
        Purpose::Session => ALPN_SESSION.to_vec(),
    }];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(tuning.config(true));
    Ok(config)
}

/// A client endpoint bound to `bind` (use port 0).
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, EndpointError> {
    quinn::Endpoint::client(bind).map_err(|source| EndpointError::Bind { addr: bind, source })
}

/// The server name clients send; informational, never checked.
pub const SERVER_NAME: &str = "hearth-master";
