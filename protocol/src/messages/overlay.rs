//! The node overlay (SPEC §16): who may join it, where artifacts can be found, and the messages
//! peers exchange on overlay streams.
//!
//! The overlay is libp2p. A party's peer id is derived from its Ed25519 key ([`peer_id_bytes`]),
//! so the master, which knows every node's key, also knows every node's peer id. The master
//! sends each node the member set (`overlay`, full or as a delta) and the relays to use; a node
//! admits only members and relays. On the overlay, one stream protocol (`/hearth/overlay/1`)
//! carries framed messages exactly like the master's streams (§3): a request frame first, then
//! its answer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::codec::{Blob, Sha256, ValueError};
use crate::identity::{NodeId, SignerId};
use crate::messages::state::InstanceId;

/// The libp2p stream protocol of overlay streams.
pub const OVERLAY_PROTOCOL: &str = "/hearth/overlay/1";

/// Most members an `overlay` message may add (a full set must fit one frame).
pub const MAX_MEMBERS: usize = 16_000;

/// Most artifacts a `holdings` message may list (complete and partial together).
pub const MAX_HOLDINGS: usize = 4_096;

/// Most peers a `providers` answer names.
pub const MAX_PROVIDERS: usize = 32;

/// The libp2p peer id of an Ed25519 key, as bytes: the identity multihash (`0x00`, length
/// `0x24`) of the protobuf `PublicKey { Type: Ed25519 (1), Data: key }` (`08 01 12 20` ‖ key).
/// Its text form is base58btc (`12D3KooW…`).
pub fn peer_id_bytes(key: &[u8; 32]) -> [u8; 38] {
    const HEADER: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    let mut out = [0u8; 38];
    for (o, b) in out.iter_mut().zip(HEADER.iter().chain(key.iter())) {
        *o = *b;
    }
    out
}

/// Which member set a node holds: the master's `epoch` (new at each start of the master) and
/// the sequence number of the last `overlay` message applied in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct OverlayRevision {
    /// The master's member-set epoch.
    pub epoch: u64,
    /// Sequence number within the epoch.
    pub seq: u64,
}

/// A libp2p multiaddr in its text form (e.g. `/ip4/203.0.113.5/udp/7443/quic-v1`): 2 to 256
/// printable ASCII characters starting with `/`. Receivers parse it fully and ignore an address
/// they cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct OverlayAddr(#[schemars(regex(pattern = r"^/[\x21-\x7e]{1,255}$"))] String);

impl OverlayAddr {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OverlayAddr {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() >= 2
            && s.len() <= 256
            && s.starts_with('/')
            && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ValueError::Invalid {
                what: "overlay address",
                got: s.chars().take(80).collect(),
            })
        }
    }
}

impl std::fmt::Display for OverlayAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OverlayAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for OverlayAddr {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let port = u.int_in_range(1..=65535u16)?;
        Ok(Self(format!("/ip4/127.0.0.1/udp/{port}/quic-v1")))
    }
}

/// A relay (a gateway, SPEC §14) that nodes reserve circuits on and bootstrap from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct RelayRef {
    /// The relay's key; its peer id is derived from it.
    pub relay: SignerId,
    /// Where it listens (without `/p2p/…`).
    pub addr: OverlayAddr,
}

/// `overlay` (master → node, control stream): the overlay's member set and relays.
///
/// `full`: `add` is the whole member set, replacing the node's. Otherwise a delta on the set at
/// `(epoch, seq - 1)`. Sent after `welcome` (a delta when the node's `hello.overlay` names a
/// revision the master can continue from, else the full set; nothing when it is current) and
/// whenever the set or the relays change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Overlay {
    /// The revision this message brings the node to.
    pub revision: OverlayRevision,
    /// Whether `add` is the whole set.
    pub full: bool,
    /// Members added (or, when `full`, every member). At most [`MAX_MEMBERS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<NodeId>,
    /// Members removed (revoked or retired). Empty when `full`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<NodeId>,
    /// Every relay, always the whole list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RelayRef>,
}

/// `holdings` (node → master, control stream): every artifact the node can serve to peers,
/// whole (verified) or in part (some chunks verified). Replaces the previous report. At most
/// [`MAX_HOLDINGS`] entries in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Holdings {
    /// Artifacts held whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub complete: Vec<Sha256>,
    /// Artifacts being fetched, of which some chunks are held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial: Vec<Sha256>,
}

/// `providers_request` (node → master, own stream): which members may hold this artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ProvidersRequest {
    /// The artifact.
    pub sha256: Sha256,
}

/// `providers` (master → node): members with a live session that reported holding the artifact
/// (whole ones first), at most [`MAX_PROVIDERS`], never the asker. A hint: every chunk is still
/// checked against the signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Providers {
    /// The artifact asked about.
    pub sha256: Sha256,
    /// Candidate peers.
    #[serde(default)]
    pub peers: Vec<NodeId>,
}

/// `have_request` (peer → peer, overlay stream): which chunks of an artifact do you hold?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct HaveRequest {
    /// The artifact.
    pub sha256: Sha256,
}

/// `have` (peer → peer): the chunks held, as a bitmap (bit `i % 8` of byte `i / 8`, least
/// significant first, is chunk `i`), `ceil(chunks / 8)` bytes. Or `error not_found`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Have {
    /// The artifact.
    pub sha256: Sha256,
    /// Chunks held.
    pub chunks: Blob,
}

/// `replica_open` (peer → peer, overlay stream): connect this stream to `instance`'s peer port.
/// The receiving node must run `instance`, and its desired state must name `from` on the
/// asking node among that instance's peers; then `tunnel_ready` and raw bytes both ways, or an
/// `error` (`unknown_instance`, `not_yours`, `connect_failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ReplicaOpen {
    /// The instance to reach, on the receiving node.
    pub instance: InstanceId,
    /// The asking instance, on the asking node.
    pub from: InstanceId,
}

/// One other replica of the same deployment (`Assignment.peers`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct ReplicaPeer {
    /// The peer replica.
    pub instance: InstanceId,
    /// The node that runs it.
    pub node: NodeId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_addr_is_checked_at_the_boundary() {
        assert!(
            "/ip4/127.0.0.1/udp/1/quic-v1"
                .parse::<OverlayAddr>()
                .is_ok()
        );
        for bad in ["", "/", "ip4/1.2.3.4", "/ip4/1.2.3.4 /udp/1", "/é"] {
            assert!(bad.parse::<OverlayAddr>().is_err(), "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(256));
        assert!(long.parse::<OverlayAddr>().is_err());
    }

    #[test]
    fn peer_id_bytes_prefix_the_key_with_the_protobuf_header() {
        let key = [7u8; 32];
        let id = peer_id_bytes(&key);
        assert_eq!(id.get(..6), Some(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20][..]));
        assert_eq!(id.get(6..), Some(&key[..]));
    }
}
