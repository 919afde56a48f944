//! Protocol errors with stable codes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `error` (either direction): a request failed, or the session is about to close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ErrorMessage {
    /// Stable, machine-readable code.
    pub code: ErrorCode,
    /// Human-readable sentence saying what was wrong and what to do.
    pub message: String,
    /// When true the sender closes the connection after this message.
    #[serde(default)]
    pub fatal: bool,
}

/// Stable error codes. New codes may be added in a minor revision: a receiver treats a code it
/// does not know as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A frame's declared length exceeds the receiver's limit.
    FrameTooLarge,
    /// The stream ended inside a frame.
    TruncatedFrame,
    /// A frame's payload is not valid UTF-8 JSON of the envelope shape.
    InvalidJson,
    /// The envelope's `type` is not a message of this version.
    UnknownMessageType,
    /// The envelope's `v`, or the hello's range, has no version in common.
    UnsupportedVersion,
    /// The body does not match the message type's fields.
    InvalidMessage,
    /// A valid message that is not allowed in the current session state.
    UnexpectedMessage,
    /// The token is unknown, or its secret does not match.
    TokenInvalid,
    /// The token's lifetime is over.
    TokenExpired,
    /// The token was already used.
    TokenSpent,
    /// The token was revoked.
    TokenRevoked,
    /// The node's key is not enrolled.
    UnknownNode,
    /// The node was revoked.
    NodeRevoked,
    /// The node is already enrolled.
    AlreadyEnrolled,
    /// A signature does not verify.
    BadSignature,
    /// A signer is not known for its role.
    UnknownSigner,
    /// The request repeats one already handled.
    Duplicate,
    /// The item concerns another node.
    NotYours,
    /// The requested item does not exist.
    NotFound,
    /// Slow down.
    RateLimited,
    /// The identity in a message differs from the TLS peer's identity.
    IdentityMismatch,
    /// Gateway link: the node does not run this instance (or not at its current generation).
    UnknownInstance,
    /// Gateway link: the port is not one the master published for this instance.
    PortNotPublished,
    /// Gateway link: the instance is about to stop and takes no new tunnels.
    Draining,
    /// Gateway link: the node could not connect to the instance's port.
    ConnectFailed,
    /// Settlement: the receipt's window overlaps one already credited for the same gateway,
    /// node and instance.
    Overlapping,
    /// Settlement: the receipt's window is empty, longer than 24 h, in the future or too old.
    BadWindow,
    /// Overlay: the peer serves too many requests now or its upload budget is spent; ask
    /// another peer or the master.
    Busy,
    /// Something failed on the sender's side.
    Internal,
    /// A code this implementation does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code's wire text.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::FrameTooLarge => "frame_too_large",
            Self::TruncatedFrame => "truncated_frame",
            Self::InvalidJson => "invalid_json",
            Self::UnknownMessageType => "unknown_message_type",
            Self::UnsupportedVersion => "unsupported_version",
            Self::InvalidMessage => "invalid_message",
            Self::UnexpectedMessage => "unexpected_message",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenSpent => "token_spent",
            Self::TokenRevoked => "token_revoked",
            Self::UnknownNode => "unknown_node",
            Self::NodeRevoked => "node_revoked",
            Self::AlreadyEnrolled => "already_enrolled",
            Self::BadSignature => "bad_signature",
            Self::UnknownSigner => "unknown_signer",
            Self::Duplicate => "duplicate",
            Self::NotYours => "not_yours",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::IdentityMismatch => "identity_mismatch",
            Self::UnknownInstance => "unknown_instance",
            Self::PortNotPublished => "port_not_published",
            Self::Draining => "draining",
            Self::ConnectFailed => "connect_failed",
            Self::Overlapping => "overlapping",
            Self::BadWindow => "bad_window",
            Self::Busy => "busy",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
