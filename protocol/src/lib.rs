//! Hearth's machine-to-machine protocol, version 1: the language nodes and masters speak.
//!
//! This crate has no I/O. It defines identities ([`identity`]), every message ([`messages`]),
//! their framing on QUIC streams ([`frame`]), the canonical encoding of signed payloads
//! ([`canonical`]) and the generated JSON Schema ([`schema`]). `SPEC.md` beside this crate is the
//! published description; `vectors/` holds golden test vectors another implementation can run.

pub mod canonical;
pub mod codec;
pub mod facts;
pub mod frame;
pub mod identity;
pub mod messages;
pub mod schema;
pub mod token;

pub use codec::{Blob, Hex, Nonce, Sha256, ValueError};
pub use facts::{Arch, CountryCode, HomeId, NodeFacts, Resources};
pub use frame::{DEFAULT_MAX_FRAME, FrameDecoder, FrameError, PROTOCOL_VERSION};
pub use identity::{IdentityError, MasterId, NodeId, PublicKey, SecretKey, Signature, SignerId};
pub use messages::error::{ErrorCode, ErrorMessage};
pub use messages::{Envelope, Message};
pub use token::{EnrolToken, MAX_MASTER_ADDRS, RootPin, TokenError};

/// ALPN protocol id of node sessions (QUIC, TLS 1.3, mutual authentication).
pub const ALPN_SESSION: &[u8] = b"hearth/1";
/// ALPN protocol id of enrolment connections (the client certificate is not yet known).
pub const ALPN_ENROL: &[u8] = b"hearth-enrol/1";
/// ALPN protocol id of a node's link to a gateway (SPEC §14).
pub const ALPN_GATEWAY: &[u8] = b"hearth-gateway/1";
