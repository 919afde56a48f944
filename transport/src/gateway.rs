//! Endpoints of the gateway link (ALPN `hearth-gateway/1`, SPEC §14): the gateway serves, nodes
//! dial out to it, both sides present their Ed25519 certificates.
//!
//! The gateway admits only node keys its [`Admission`] knows (the nodes the master routes to
//! it); a node accepts only the gateway key its desired state names. The tuning differs from
//! the master's sessions: tunnel streams carry whole responses, so windows are large and the
//! gateway may open many streams at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_protocol::{ALPN_GATEWAY, SignerId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::cert::Identity;
use crate::endpoint::{EndpointError, TransportTuning, bind_udp, provider};
use crate::verify::{Admission, NodeGate, PinnedKey};

/// The server name nodes send to a gateway; informational, never checked.
pub const GATEWAY_SERVER_NAME: &str = "hearth-gateway";

/// Tuning of gateway links: up to 1024 concurrent tunnel streams, 4 MiB stream windows and
/// 32 MiB per connection (many responses share one link), delayed ACKs (no ACK per packet as
/// on master sessions), a keep-alive from the node every 500 ms and a 2 s idle timeout. A
/// home that goes dark takes its link down within 2 s, so its replicas leave every gateway's
/// pool and their waiting requests are retried elsewhere without waiting for the master's
/// liveness verdict (6 s by default); the price is two small packets a second per node and
/// gateway. QUIC takes the smaller of the two sides' idle
/// timeouts, so both sides use this tuning.
pub fn tunnel_tuning() -> TransportTuning {
    TransportTuning {
        idle_timeout: Duration::from_secs(2),
        keep_alive: Duration::from_millis(500),
        max_bidi_streams: 1024,
        stream_window: 4 << 20,
        connection_window: 32 << 20,
        immediate_acks: false,
        server_socket_buffer: 4 << 20,
    }
}

/// The gateway's tunnel endpoint on `addr`: a client must present the certificate of a key
/// `admission` admits.
pub fn gateway_endpoint(
    addr: SocketAddr,
    identity: &Identity,
    admission: Arc<dyn Admission>,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, EndpointError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(NodeGate::mandatory(admission)))
        .with_single_cert(identity.chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN_GATEWAY.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(tuning.config(false));
    config.migration(true);
    let socket = bind_udp(addr, tuning.server_socket_buffer)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr, source })
}

/// A node's client configuration for the gateway `gateway`: presents the node's certificate,
/// accepts only that gateway's key.
pub fn gateway_client_config(
    identity: &Identity,
    gateway: &SignerId,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig, EndpointError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedKey::gateway(gateway)))
        .with_client_auth_cert(identity.chain(), identity.private_key())?;
    tls.alpn_protocols = vec![ALPN_GATEWAY.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(tuning.config(true));
    Ok(config)
}
