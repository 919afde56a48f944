//! The routing table as the gateway uses it: built from the master's [`RouteTable`], indexed by
//! host name and by public TCP port, with each route's candidate replicas.

use std::collections::{BTreeMap, HashMap, HashSet};

use hearth_api::RouteTable;
use hearth_core::ingress::HostName;
use hearth_protocol::NodeId;
use hearth_protocol::messages::state::{InstanceId, Name};

/// A replica a route may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The instance.
    pub instance: InstanceId,
    /// Its node.
    pub node: NodeId,
    /// Serving as the master sees it (node up, running, healthy when checked).
    pub serving: bool,
}

/// Where one public name or port leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The deployment.
    pub deployment: Name,
    /// The recipe's port, by name, that the tunnel reaches.
    pub port: Name,
    /// Its replicas, serving or not.
    pub replicas: Vec<Replica>,
}

/// An HTTP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Where it leads.
    pub target: Target,
    /// Served over plain HTTP too (else plain HTTP is redirected to HTTPS).
    pub plain_http: bool,
}

/// A TCP route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRoute {
    /// Where it leads.
    pub target: Target,
    /// Prefix each connection with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
}

/// The gateway's routing table.
#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// The master's version of the table (its `ETag`); empty before the first read.
    pub version: String,
    hosts: HashMap<HostName, HttpRoute>,
    tcp: BTreeMap<u16, TcpRoute>,
    nodes: HashSet<NodeId>,
}

impl Routing {
    /// Indexes the master's table.
    pub fn from_table(table: &RouteTable) -> Self {
        let mut routing = Self {
            version: table.version.clone(),
            nodes: table.nodes.iter().copied().collect(),
            ..Self::default()
        };
        for d in &table.deployments {
            let replicas: Vec<Replica> = d
                .replicas
                .iter()
                .map(|r| Replica {
                    instance: r.instance.clone(),
                    node: r.node,
                    serving: r.serving,
                })
                .collect();
            let target = |port: &Name| Target {
                deployment: d.deployment.clone(),
                port: port.clone(),
                replicas: replicas.clone(),
            };
            for h in &d.hosts {
                routing.hosts.insert(
                    h.host.clone(),
                    HttpRoute {
                        target: target(&h.port),
                        plain_http: h.plain_http,
                    },
                );
            }
            for t in &d.tcp {
                routing.tcp.insert(
                    t.public_port,
                    TcpRoute {
                        target: target(&t.port),
                        proxy_protocol: t.proxy_protocol,
                    },
                );
            }
        }
        routing
    }

    /// The route of a host name (from `Host`, `:authority` or SNI; a port suffix is ignored).
    pub fn http(&self, host: &str) -> Option<&HttpRoute> {
        let name = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let name = name.strip_suffix('.').unwrap_or(name);
        HostName::parse(name).ok().and_then(|h| self.hosts.get(&h))
    }

    /// Every host name routed.
    pub fn host_names(&self) -> impl Iterator<Item = &HostName> {
        self.hosts.keys()
    }

    /// The route of a public TCP port.
    pub fn tcp(&self, port: u16) -> Option<&TcpRoute> {
        self.tcp.get(&port)
    }

    /// Every public TCP port routed, ascending.
    pub fn tcp_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.tcp.keys().copied()
    }

    /// True when `node` may open a gateway link.
    pub fn admits(&self, node: &NodeId) -> bool {
        self.nodes.contains(node)
    }
}
