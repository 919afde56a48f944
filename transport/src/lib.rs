//! QUIC transport shared by the master and the node agent.
//!
//! Certificates are self-signed X.509 carrying the party's Ed25519 key, so that the TLS identity
//! *is* the protocol identity ([`cert`]). The master accepts enrolled nodes' certificates (or none,
//! on enrolment connections) and nodes pin the master's key ([`verify`]). [`endpoint`] builds
//! quinn endpoints with a transport configuration tuned for many idle sessions, and [`stream`]
//! reads and writes framed protocol messages on QUIC streams.

pub mod cert;
pub mod cid;
pub mod endpoint;
pub mod gateway;
pub mod stream;
pub mod verify;

pub use cert::{CertError, Identity};
pub use endpoint::{
    EndpointError, Purpose, SERVER_NAME, TransportTuning, client_config, client_endpoint,
    server_endpoint,
};
pub use gateway::{GATEWAY_SERVER_NAME, gateway_client_config, gateway_endpoint, tunnel_tuning};
pub use stream::{MessageStream, StreamError};
pub use verify::{Admission, NodeGate, PinnedKey, PinnedMaster};

/// QUIC application close codes (SPEC.md, "Close codes").
pub mod close {
    use quinn::VarInt;

    /// Normal close.
    pub const NORMAL: VarInt = VarInt::from_u32(0);
    /// The peer sent frames that cannot be decoded.
    pub const PROTOCOL_ERROR: VarInt = VarInt::from_u32(1);
    /// The node is not enrolled.
    pub const UNKNOWN_NODE: VarInt = VarInt::from_u32(2);
    /// The node was revoked.
    pub const REVOKED: VarInt = VarInt::from_u32(3);
    /// No protocol version in common.
    pub const UNSUPPORTED_VERSION: VarInt = VarInt::from_u32(4);
    /// A newer session of the same node replaced this one.
    pub const SUPERSEDED: VarInt = VarInt::from_u32(5);
    /// The master is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(6);
}

/// Logs of the Hearth daemons: `tracing` to stderr, filtered by `RUST_LOG` (default `info`,
/// quinn at `warn`), colours only on a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
