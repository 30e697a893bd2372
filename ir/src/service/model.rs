//! The Service model: a Service's addresses, ports and backends, as the
//! front end read them and the EndpointSlice controller would derive them.

use crate::cidr::Cidr;
use crate::ids::EndpointId;
use crate::protocol::Protocol;
use std::fmt;
use std::net::IpAddr;

/// `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    ClusterIp,
    /// `NodePort`: a cluster IP and a port on every node.
    NodePort,
    /// `LoadBalancer`: a node port and the load balancer's addresses.
    LoadBalancer,
    /// `ExternalName`: a DNS alias, with no frontend.
    ExternalName,
}

impl ServiceType {
    /// Every type, with its API name.
    pub const NAMES: [(&'static str, ServiceType); 4] = [
        ("ClusterIP", ServiceType::ClusterIp),
        ("NodePort", ServiceType::NodePort),
        ("LoadBalancer", ServiceType::LoadBalancer),
        ("ExternalName", ServiceType::ExternalName),
    ];

    /// The API name (`ClusterIP`).
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, t)| *t == self).map_or("", |(n, _)| n)
    }

    /// Whether the type allocates node ports (`NodePort` and
    /// `LoadBalancer`, as the API server does).
    pub fn has_node_ports(self) -> bool {
        matches!(self, ServiceType::NodePort | ServiceType::LoadBalancer)
    }
}

/// `spec.internalTrafficPolicy` / `spec.externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TrafficPolicy {
    /// Every endpoint of the cluster (the default).
    #[default]
    Cluster,
    /// Only the endpoints on the node that received the traffic.
    Local,
}

impl TrafficPolicy {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            TrafficPolicy::Cluster => "Cluster",
            TrafficPolicy::Local => "Local",
        }
    }
}

/// An endpoint's conditions, as kube-proxy reads them from an
/// EndpointSlice: an unset `ready` or `serving` is true, an unset
/// `terminating` false (`pkg/proxy/endpointslicecache.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Conditions {
    /// `ready`: serving and not terminating.
    pub ready: bool,
    /// `serving`: passes its readiness probe, terminating or not.
    pub serving: bool,
    /// `terminating`.
    pub terminating: bool,
}

impl Conditions {
    /// A ready endpoint.
    pub const READY: Conditions = Conditions { ready: true, serving: true, terminating: false };
}

/// One backend of one Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Backend {
    /// The address (none for a workload standing for its pods).
    pub address: Option<IpAddr>,
    /// The target port on this backend (a named `targetPort` resolved
    /// against this backend's pod).
    pub port: u16,
    /// The endpoint of the cluster behind it, if it is one.
    pub endpoint: Option<EndpointId>,
    /// `nodeName`.
    pub node: Option<String>,
    /// `zone`.
    pub zone: Option<String>,
    /// Ready, serving, terminating.
    pub conditions: Conditions,
}

/// One port of a Service with its backends.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServicePort {
    /// `name` (empty when unnamed, as the API stores it).
    pub name: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// `port`.
    pub port: u16,
    /// `nodePort`, for `NodePort` and `LoadBalancer` Services.
    pub node_port: Option<u16>,
    /// The backends, sorted.
    pub backends: Vec<Backend>,
}

/// A Service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (none for a headless Service).
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `ClientIP` session affinity: its timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `spec.loadBalancerSourceRanges` (empty: every source).
    pub source_ranges: Vec<Cidr>,
}

impl Service {
    /// Whether `address` is one of the Service's cluster IPs.
    pub fn has_cluster_ip(&self, address: IpAddr) -> bool {
        self.cluster_ips.contains(&address)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How traffic reaches a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum FrontendKind {
    /// A cluster IP.
    ClusterIp,
    /// A node's address and a node port.
    NodePort,
    /// A load balancer's address.
    LoadBalancer,
    /// An external IP.
    ExternalIp,
}

impl FrontendKind {
    /// The name in map dumps and reports.
    pub fn name(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIp => "ExternalIP",
        }
    }

    /// Whether the external traffic policy governs it (the API reference:
    /// it applies to "externally-facing" addresses: node ports, external
    /// and load-balancer IPs).
    pub fn is_external(self) -> bool {
        self != FrontendKind::ClusterIp
    }
}

/// An address and port of a Service, on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Frontend {
    /// The address.
    pub address: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
    /// How traffic reaches it.
    pub kind: FrontendKind,
    /// Position of the Service port in [`Service::ports`].
    pub port_index: usize,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol.name()),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol.name()),
        }
    }
}

impl Service {
    /// The frontends of the Service on a node with addresses `node_ips`:
    /// every cluster IP, external IP and load-balancer IP with each port,
    /// and each of the node's addresses with each node port. Headless and
    /// `ExternalName` Services have none (kube-proxy skips them).
    pub fn frontends(&self, node_ips: &[IpAddr]) -> Vec<Frontend> {
        if self.service_type == ServiceType::ExternalName {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (port_index, p) in self.ports.iter().enumerate() {
            let mut add = |address: IpAddr, port: u16, kind| {
                out.push(Frontend { address, protocol: p.protocol, port, kind, port_index });
            };
            for &ip in &self.cluster_ips {
                add(ip, p.port, FrontendKind::ClusterIp);
            }
            for &ip in &self.external_ips {
                add(ip, p.port, FrontendKind::ExternalIp);
            }
            if self.service_type == ServiceType::LoadBalancer {
                for &ip in &self.load_balancer_ips {
                    add(ip, p.port, FrontendKind::LoadBalancer);
                }
            }
            if let (true, Some(node_port)) = (self.service_type.has_node_ports(), p.node_port) {
                for &ip in node_ips {
                    add(ip, node_port, FrontendKind::NodePort);
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
