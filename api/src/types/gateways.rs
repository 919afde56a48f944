//! Gateways: `POST /v1/gateways`, `GET /v1/gateways`, `DELETE /v1/gateways/{name}`, and the
//! routing table each gateway reads, `GET /v1/gateway/routes` (signed by the gateway's key).

use std::net::SocketAddr;

use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::{NodeId, SignerId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::{NodeIdText, SignerIdText, SocketAddrText, UnixMs};

/// Body of `POST /v1/gateways`: register a gateway (idempotent by name with the same key and
/// address; another key or address under a taken name gets 409 `gateway_exists`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// A DNS label naming the gateway.
    pub name: Name,
    /// Its Ed25519 identity (`hearth-gateway init` prints it): nodes pin it, receipts are
    /// signed with it, and it signs its requests for the routing table.
    #[schemars(with = "SignerIdText")]
    pub key: SignerId,
    /// The UDP address nodes dial for their gateway link.
    #[schemars(with = "SocketAddrText")]
    pub tunnel_addr: SocketAddr,
    /// The UDP address of its overlay relay (`hearth-gateway run --overlay-listen`, SPEC §16.3),
    /// if it runs one: nodes reserve circuits there and reach each other through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<SocketAddrText>")]
    pub overlay_addr: Option<SocketAddr>,
}

/// A registered gateway, as `GET /v1/gateways` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayView {
    /// The registration.
    #[serde(flatten)]
    pub spec: GatewaySpec,
    /// When it was registered.
    #[schemars(with = "UnixMs")]
    pub created_ms: u64,
    /// When it last read the routing table (null: never).
    #[schemars(with = "Option<UnixMs>")]
    pub last_seen_ms: Option<u64>,
}

/// One replica a gateway may route to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteReplica {
    /// The instance.
    pub instance: InstanceId,
    /// Its node, which keeps the gateway link the tunnel goes over.
    #[schemars(with = "NodeIdText")]
    pub node: NodeId,
    /// Its current generation.
    pub generation: u64,
    /// True when the master sees it serving: node up, running at this generation, healthy
    /// when the recipe has a check. A gateway routes only to serving replicas.
    pub serving: bool,
}

/// A deployment's public routes and replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentRoutes {
    /// The deployment.
    pub deployment: Name,
    /// Its host names.
    #[serde(default)]
    pub hosts: Vec<HostRoute>,
    /// Its TCP ports.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Its replicas.
    pub replicas: Vec<RouteReplica>,
}

/// Answer of `GET /v1/gateway/routes`: every published deployment, and the nodes that may open
/// a gateway link. Its `version` is also the `ETag`; a request with `If-None-Match` set to it
/// waits up to `wait_s` seconds (default 0, at most 60) for a change and answers 304 if none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RouteTable {
    /// SHA-256 (hex) of the table's content.
    pub version: String,
    /// Published deployments, by name.
    pub deployments: Vec<DeploymentRoutes>,
    /// Nodes the gateway admits on its tunnel endpoint: every node with a published replica.
    #[schemars(with = "Vec<NodeIdText>")]
    pub nodes: Vec<NodeId>,
}

/// Answer of `GET /v1/gateway/members`: the node overlay's members (SPEC §16.2), which a relay
/// admits. `"<epoch>-<seq>"` is also the `ETag`; a request with `If-None-Match` set to it waits
/// up to `wait_s` seconds (default 0, at most 60) for a change and answers 304 if none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberSet {
    /// The master's member-set epoch (new at each start of the master).
    pub epoch: u64,
    /// The revision within the epoch.
    pub seq: u64,
    /// Every member: enrolled nodes neither revoked nor retired, in id order.
    #[schemars(with = "Vec<NodeIdText>")]
    pub members: Vec<NodeId>,
}

/// A deployment's public routes (`DeploymentSpec.hosts`, `.tcp`): `hearth-core`'s types.
pub use hearth_core::ingress::{HostName, HostRoute, IngressError, TcpRoute, default_http_port};
