//! The gateway link (ALPN `hearth-gateway/1`, SPEC §14): a node's outbound connection to a
//! gateway of the cooperative, on which the gateway opens one tunnel stream per public
//! connection or request, and delivers signed bandwidth receipts.
//!
//! Roles on that connection: the node is the QUIC client (it dials out from behind its NAT and
//! pins the gateway's key), the gateway is the server and opens the tunnel and receipt streams;
//! the node opens one stream only, to announce which of its instances are draining.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::canonical::Canonical;
use crate::codec::Nonce;
use crate::identity::{IdentityError, Signature, SignerId};
use crate::messages::state::{InstanceId, Name};

/// An IP socket address, as text: `192.0.2.1:443` or `[2001:db8::1]:443` (IPv6 flow
/// information and scope are not carried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "SocketAddr", into = "SocketAddr")]
pub struct Addr(SocketAddr);

impl Addr {
    /// The address.
    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl From<SocketAddr> for Addr {
    fn from(addr: SocketAddr) -> Self {
        Self(match addr {
            SocketAddr::V6(v6) => SocketAddr::new(std::net::IpAddr::V6(*v6.ip()), v6.port()),
            v4 => v4,
        })
    }
}

impl From<Addr> for SocketAddr {
    fn from(addr: Addr) -> Self {
        addr.0
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl JsonSchema for Addr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SocketAddr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An IP socket address: `192.0.2.1:443` or `[2001:db8::1]:443`.",
            "maxLength": 47
        })
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Addr {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(SocketAddr::arbitrary(u)?.into())
    }
}

/// A gateway named in a node's desired state: the key to pin and the address to dial.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GatewayRef {
    /// The gateway's identity; its TLS certificate must carry this key.
    pub gateway: SignerId,
    /// The UDP address of its tunnel endpoint.
    pub addr: Addr,
}

/// `tunnel_open` (gateway → node): the first message of a tunnel stream. The gateway may send
/// the client's first bytes right after it, before `tunnel_ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TunnelOpen {
    /// The instance to reach; the node must run it.
    pub instance: InstanceId,
    /// The instance's port, by name; the master must have published it (`Assignment.exposed`).
    pub port: Name,
    /// The public client's address as the gateway sees it (informative).
    pub client: Addr,
}

/// `tunnel_ready` (node → gateway): connected to the instance's port; raw bytes follow in both
/// directions until either side finishes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TunnelReady {}

/// `drain` (node → gateway): the full set of the node's instances that take no new tunnels
/// (about to stop). Level-triggered: each message replaces the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Drain {
    /// Instances draining now; an instance not listed takes tunnels again.
    pub instances: Vec<InstanceId>,
}

/// `receipt_ack` (node → gateway): the node verified and stored this receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ReceiptAck {
    /// The receipt id.
    pub receipt: Nonce,
}

/// How a gateway signs its requests to the master's HTTP API (SPEC §14.6): header
/// `Authorization: Hearth-Gateway <gateway> <unix_ms> <signature>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRequest<'a> {
    /// The signing gateway.
    pub gateway: &'a SignerId,
    /// When the request was signed, Unix milliseconds.
    pub unix_ms: u64,
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path and query, as sent.
    pub path: &'a str,
}

impl GatewayRequest<'_> {
    /// Domain separation tag.
    pub const DOMAIN: &'static str = "hearth/v1/gateway-request";
    /// The `Authorization` scheme.
    pub const SCHEME: &'static str = "Hearth-Gateway";

    /// The canonical bytes the gateway signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        Canonical::new(Self::DOMAIN)
            .key(self.gateway.as_bytes())
            .u64(self.unix_ms)
            .text(self.method)
            .text(self.path)
            .finish()
    }

    /// Checks `signature` against the gateway's key.
    pub fn verify(&self, signature: &Signature) -> Result<(), IdentityError> {
        self.gateway.verify(&self.signing_bytes(), signature)
    }
}
