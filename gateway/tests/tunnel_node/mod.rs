//! Test support: a gateway tunnel endpoint on 127.0.0.1:0 and hand-driven nodes that dial it
//! the way an agent does (`gateway_client_config`, their own identity) and answer the
//! gateway's streams by hand.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hearth_api::{DeploymentRoutes, RouteReplica, RouteTable};
use hearth_gateway::meter::Meter;
use hearth_gateway::table::{Replica, Routing};
use hearth_gateway::tunnel::{Links, RoutingAdmission, read_frame};
use hearth_protocol::frame;
use hearth_protocol::messages::state::{InstanceId, Name};
use hearth_protocol::{DEFAULT_MAX_FRAME, Message, NodeId, SecretKey, SignerId};
use hearth_transport::{GATEWAY_SERVER_NAME, Identity, tunnel_tuning};
use tokio::sync::watch;

/// Bounds every wait of a test.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running tunnel endpoint.
pub struct Gateway {
    pub key: SecretKey,
    pub id: SignerId,
    pub links: Links,
    pub addr: SocketAddr,
    pub routing: watch::Sender<Arc<Routing>>,
    pub endpoint: quinn::Endpoint,
}

/// A routing table with one deployment `web` whose replicas are `(instance, node)`.
pub fn table(replicas: &[(&str, NodeId)], tcp: Vec<hearth_core::ingress::TcpRoute>) -> RouteTable {
    RouteTable {
        version: format!("v{}", replicas.len()),
        deployments: vec![DeploymentRoutes {
            deployment: name("web"),
            hosts: vec![],
            tcp,
            replicas: replicas
                .iter()
                .map(|(i, n)| RouteReplica {
                    instance: i.parse().unwrap(),
                    node: *n,
                    generation: 1,
                    serving: true,
                })
                .collect(),
        }],
        nodes: replicas.iter().map(|(_, n)| *n).collect(),
    }
}

pub fn name(s: &str) -> Name {
    s.parse().unwrap()
}

pub fn replica(instance: &str, node: NodeId) -> Replica {
    Replica {
        instance: instance.parse().unwrap(),
        node,
        serving: true,
    }
}

/// Starts an endpoint admitting the nodes of `table`, with the gateway key `key`.
pub fn start_gateway_with(key: SecretKey, table: &RouteTable) -> Gateway {
    let id = SignerId::from_key(key.public());
    let identity = Identity::new(&key, "gateway").unwrap();
    let (routing, rx) = watch::channel(Arc::new(Routing::from_table(table)));
    let endpoint = hearth_transport::gateway_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        Arc::new(RoutingAdmission(rx)),
        &tunnel_tuning(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let links = Links::new(Meter::new());
    tokio::spawn(links.clone().serve(endpoint.clone()));
    Gateway {
        key,
        id,
        links,
        addr,
        routing,
        endpoint,
    }
}

pub fn start_gateway(table: &RouteTable) -> Gateway {
    start_gateway_with(SecretKey::generate(), table)
}

/// A hand-driven node.
pub struct Node {
    pub key: SecretKey,
    pub id: NodeId,
    endpoint: quinn::Endpoint,
}

impl Node {
    pub fn new() -> Self {
        let key = SecretKey::generate();
        let id = NodeId::from_key(key.public());
        let endpoint = hearth_transport::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
        Self { key, id, endpoint }
    }

    /// Dials the gateway: the connection, or the handshake error.
    pub async fn connect(&self, gateway: &Gateway) -> Result<quinn::Connection, String> {
        self.connect_to(gateway.addr, &gateway.id).await
    }

    /// Dials the gateway `id` at `addr`.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        id: &SignerId,
    ) -> Result<quinn::Connection, String> {
        let identity = Identity::new(&self.key, "node").unwrap();
        let config =
            hearth_transport::gateway_client_config(&identity, id, &tunnel_tuning()).unwrap();
        let connecting = self
            .endpoint
            .connect_with(config, addr, GATEWAY_SERVER_NAME)
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(WAIT, connecting)
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| e.to_string())
    }
}

/// Waits until `check` holds, polling every 10 ms, at most [`WAIT`].
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts the gateway's next stream on `conn` and reads its first frame exactly.
pub async fn accept(conn: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream, Message) {
    let (send, mut recv) = tokio::time::timeout(WAIT, conn.accept_bi())
        .await
        .expect("no stream from the gateway")
        .unwrap();
    let first = read_frame(&mut recv).await.unwrap();
    (send, recv, first)
}

/// Writes one frame.
pub async fn send_frame(send: &mut quinn::SendStream, message: &Message) {
    send.write_all(&frame::encode(message, DEFAULT_MAX_FRAME).unwrap())
        .await
        .unwrap();
}

pub fn instance(s: &str) -> InstanceId {
    s.parse().unwrap()
}
