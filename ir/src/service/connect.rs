//! The reference answer to a connection to a Service address: which
//! backends, refused or dropped, and policy judged after translation.
//!
//! - The address is a cluster IP on a port the Service does not define:
//!   dropped (kube-proxy's `KUBE-SERVICES` has no rule for it and cluster
//!   IPs answer nothing else; policyc drops rather than routing the packet
//!   on). Another address and port that is no frontend is no Service
//!   traffic ([`Outcome::NotService`]): ordinary policy decides.
//! - `loadBalancerSourceRanges`: a source outside them is dropped at a
//!   load-balancer IP (kube-proxy's firewall chain, "Virtual IPs and
//!   Service Proxies").
//! - Backends per [`super::select`]: none at all refuses (ICMP port
//!   unreachable; Kubernetes' e2e "should be rejected when no endpoints
//!   exist"), none on the node under `Local` drops.
//! - Policy applies after translation (Cilium, Calico and kube-proxy with
//!   NetworkPolicy all do): the client's egress and the backend's ingress
//!   are judged on the backend and its target port. The backend sees the
//!   source as the node that translated when kube-proxy masquerades:
//!   external traffic under `externalTrafficPolicy: Cluster` ("the client
//!   source IP is masqueraded") and hairpin traffic (a pod reaching itself
//!   through its Service: kube-proxy's per-endpoint chain masquerades
//!   traffic from the endpoint itself).

use super::model::{Backend, Frontend, FrontendKind, Service};
use super::select::{select, Selection};
use crate::cluster::Cluster;
use crate::eval::{eval, Party, Query, Verdict};
use crate::protocol::Protocol;
use std::net::IpAddr;

/// A connection to a Service address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceQuery {
    /// The client.
    pub src: Party,
    /// The node that receives and translates the connection (an index
    /// into [`Cluster::nodes`]); `None`: the client's node for an endpoint
    /// or a node, the node owning `address` for a node port.
    pub via: Option<usize>,
    /// Destination address.
    pub address: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
}

/// Why a Service connection is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DropReason {
    /// A cluster IP on a port the Service does not define.
    UnknownPort,
    /// `Local` traffic policy and no usable endpoint on the node.
    NoLocalEndpoint,
    /// The source is outside `loadBalancerSourceRanges`.
    SourceRange,
}

impl DropReason {
    /// A short explanation.
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::UnknownPort => "the Service defines no such port on its cluster IP",
            DropReason::NoLocalEndpoint => "the traffic policy is Local and the node has no usable endpoint",
            DropReason::SourceRange => "the source is outside the Service's loadBalancerSourceRanges",
        }
    }
}

/// One backend a connection may reach, with the policy verdict on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendVerdict {
    /// The backend.
    pub backend: Backend,
    /// The backend as a party of the cluster.
    pub party: Party,
    /// The source as the backend sees it (the translating node when
    /// masqueraded).
    pub seen_source: Party,
    /// The client's egress and the backend's ingress, on the backend and
    /// its port.
    pub verdict: Verdict,
}

/// What happens to a connection to a Service address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The address and port are no Service frontend.
    NotService,
    /// Dropped before any backend.
    Dropped {
        /// The Service.
        service: usize,
        /// Why.
        reason: DropReason,
    },
    /// Refused: the Service port has no endpoints.
    Refused {
        /// The Service.
        service: usize,
        /// The frontend.
        frontend: Frontend,
    },
    /// Load-balanced over these backends (each with its policy verdict).
    Backends {
        /// The Service (an index into [`Cluster::services`]).
        service: usize,
        /// The frontend.
        frontend: Frontend,
        /// The backends, in order.
        backends: Vec<BackendVerdict>,
    },
}

/// The addresses of `party`, for source ranges.
fn addresses(cluster: &Cluster, party: Party) -> Vec<IpAddr> {
    match party {
        Party::Endpoint(e) => cluster.endpoint(e).ips.clone(),
        Party::External(ip) => vec![ip],
        Party::Node(n) => cluster.nodes.get(n).map(|n| n.ips.clone()).unwrap_or_default(),
        Party::Reserved(_) => Vec::new(),
    }
}

/// The node that translates `query`.
fn translating_node(cluster: &Cluster, query: &ServiceQuery) -> Option<usize> {
    query.via.or_else(|| match query.src {
        Party::Endpoint(e) => {
            let node = cluster.endpoint(e).node.as_deref()?;
            cluster.nodes.iter().position(|n| n.name == node)
        }
        Party::Node(n) => Some(n),
        _ => cluster.node_by_ip(query.address),
    })
}

/// The party a backend is: its endpoint, else whatever owns its address
/// (`None` for a backend with neither, which lowering never makes).
pub fn backend_party(cluster: &Cluster, backend: &Backend) -> Option<Party> {
    if let Some(e) = backend.endpoint {
        return Some(Party::Endpoint(e));
    }
    let ip = backend.address?;
    Some(
        cluster
            .endpoint_by_ip(ip)
            .map(Party::Endpoint)
            .or_else(|| cluster.node_by_ip(ip).map(Party::Node))
            .unwrap_or(Party::External(ip)),
    )
}

/// The Service frontend `query` goes to, on node `via`, and its Service.
fn frontend(cluster: &Cluster, query: &ServiceQuery, via: Option<usize>) -> Option<(usize, Frontend)> {
    let node_ips = via.and_then(|n| cluster.nodes.get(n)).map(|n| n.ips.as_slice()).unwrap_or(&[]);
    let a = query.address;
    // Listing a Service's frontends allocates: skip the Services that
    // cannot have one at `a` first (a cluster asks this for every pair).
    let may_have = |s: &Service| {
        s.cluster_ips.contains(&a)
            || s.external_ips.contains(&a)
            || s.load_balancer_ips.contains(&a)
            || node_ips.contains(&a)
    };
    cluster.services.iter().enumerate().filter(|(_, s)| may_have(s)).find_map(|(i, s)| {
        s.frontends(node_ips)
            .into_iter()
            .find(|f| f.address == query.address && f.protocol == query.protocol && f.port == query.port)
            .map(|f| (i, f))
    })
}

/// The Service whose cluster IP is `address`, if any.
fn cluster_ip_owner(cluster: &Cluster, address: IpAddr) -> Option<usize> {
    cluster.services.iter().position(|s: &Service| s.has_cluster_ip(address))
}

/// The backends of `backends` in the address family of `address` (and
/// those without an address): kube-proxy programs each family from the
/// EndpointSlices of that family.
pub fn same_family(backends: &[Backend], address: IpAddr) -> Vec<Backend> {
    backends.iter().filter(|b| b.address.is_none_or(|a| a.is_ipv4() == address.is_ipv4())).cloned().collect()
}

/// What happens to `query`.
pub fn connect(cluster: &Cluster, query: &ServiceQuery) -> Outcome {
    let via = translating_node(cluster, query);
    let Some((service, frontend)) = frontend(cluster, query, via) else {
        return match cluster_ip_owner(cluster, query.address) {
            Some(service) => Outcome::Dropped { service, reason: DropReason::UnknownPort },
            None => Outcome::NotService,
        };
    };
    let s = &cluster.services[service];
    if frontend.kind == FrontendKind::LoadBalancer
        && !s.source_ranges.is_empty()
        && !addresses(cluster, query.src).iter().any(|&ip| s.source_ranges.iter().any(|r| r.contains(ip)))
    {
        return Outcome::Dropped { service, reason: DropReason::SourceRange };
    }
    let external_source = matches!(query.src, Party::External(_));
    let policy = if frontend.kind.is_external() {
        if external_source {
            s.external_traffic_policy
        } else {
            super::model::TrafficPolicy::Cluster
        }
    } else {
        s.internal_traffic_policy
    };
    let node_name = via.and_then(|n| cluster.nodes.get(n)).map(|n| n.name.as_str());
    let port = &s.ports[frontend.port_index];
    let family = same_family(&port.backends, query.address);
    let chosen = match select(&family, policy, node_name) {
        Selection::NoEndpoints => return Outcome::Refused { service, frontend },
        Selection::NoLocalEndpoints => return Outcome::Dropped { service, reason: DropReason::NoLocalEndpoint },
        Selection::Backends(b) => b,
    };
    let masquerade_external = external_source && policy == super::model::TrafficPolicy::Cluster;
    let backends = chosen
        .into_iter()
        .filter_map(|backend| {
            let party = backend_party(cluster, backend)?;
            let hairpin = party == query.src && matches!(party, Party::Endpoint(_));
            let seen_source = match via {
                Some(n) if masquerade_external || hairpin => Party::Node(n),
                _ => query.src,
            };
            let judge = |src| eval(cluster, &Query { src, dst: party, protocol: query.protocol, port: backend.port });
            let direct = judge(query.src);
            let ingress = if seen_source == query.src { direct.ingress } else { judge(seen_source).ingress };
            let verdict = Verdict { egress: direct.egress, ingress };
            Some(BackendVerdict { backend: backend.clone(), party, seen_source, verdict })
        })
        .collect();
    Outcome::Backends { service, frontend, backends }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Endpoint, EndpointKind, Node};
    use crate::ids::EndpointId;
    use crate::labels::Labels;
    use crate::policy::{Policy, PolicyKind, PolicyOrigin, Subject};
    use crate::selector::{LabelSelector, Requirement};
    use crate::service::model::{Conditions, ServicePort, ServiceType, TrafficPolicy};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(name: &str, address: &str, node: &str) -> Endpoint {
        Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            kind: EndpointKind::Pod,
            labels: Labels::from_pairs([("app".to_string(), name.to_string())]),
            ips: vec![ip(address)],
            node: Some(node.into()),
            named_ports: vec![],
        }
    }

    fn backend(cluster: &Cluster, e: usize) -> Backend {
        let endpoint = &cluster.endpoints[e];
        Backend {
            address: Some(endpoint.ips[0]),
            port: 8080,
            endpoint: Some(EndpointId::new(e)),
            node: endpoint.node.clone(),
            zone: None,
            conditions: Conditions::READY,
        }
    }

    /// Client `a` on n1, backends `b1` on n1 and `b2` on n2 of `ns/web`
    /// (10.200.96.1:80 → 8080, node port 30080, LB 10.200.50.1).
    fn cluster() -> Cluster {
        let mut c = Cluster {
            endpoints: vec![pod("a", "10.200.0.1", "n1"), pod("b1", "10.200.0.2", "n1"), pod("b2", "10.200.1.2", "n2")],
            nodes: ["n1", "n2"]
                .iter()
                .enumerate()
                .map(|(i, n)| Node {
                    name: n.to_string(),
                    labels: Labels::new(),
                    ips: vec![ip(&format!("10.200.100.{}", i + 1))],
                })
                .collect(),
            ..Default::default()
        };
        let backends = vec![backend(&c, 1), backend(&c, 2)];
        c.services.push(Service {
            namespace: "ns".into(),
            name: "web".into(),
            service_type: ServiceType::LoadBalancer,
            cluster_ips: vec![ip("10.200.96.1")],
            external_ips: vec![],
            load_balancer_ips: vec![ip("10.200.50.1")],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080),
                backends,
            }],
            internal_traffic_policy: TrafficPolicy::Cluster,
            external_traffic_policy: TrafficPolicy::Cluster,
            affinity_timeout: None,
            source_ranges: vec![],
        });
        c
    }

    fn query(src: Party, address: &str, port: u16) -> ServiceQuery {
        ServiceQuery { src, via: None, address: ip(address), protocol: Protocol::Tcp, port }
    }

    /// `(backend name, allowed, source seen)` per backend, or the outcome.
    fn summary(c: &Cluster, q: ServiceQuery) -> Vec<String> {
        match connect(c, &q) {
            Outcome::Backends { backends, .. } => backends
                .iter()
                .map(|b| {
                    let name = match b.party {
                        Party::Endpoint(e) => c.endpoint(e).name.clone(),
                        other => format!("{other:?}"),
                    };
                    format!("{name} {} {:?}", b.verdict.allowed(), b.seen_source)
                })
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    const A: Party = Party::Endpoint(EndpointId::new(0));

    #[test]
    fn cluster_ip_balances_over_every_ready_backend() {
        let c = cluster();
        assert_eq!(
            summary(&c, query(A, "10.200.96.1", 80)),
            ["b1 true Endpoint(EndpointId(0))", "b2 true Endpoint(EndpointId(0))"]
        );
        // A port the Service does not define: dropped; another address: not a Service.
        assert_eq!(summary(&c, query(A, "10.200.96.1", 81)), ["Dropped { service: 0, reason: UnknownPort }"]);
        assert_eq!(summary(&c, query(A, "10.200.0.2", 8080)), ["NotService"]);
    }

    #[test]
    fn no_endpoints_refuse_and_local_without_local_endpoint_drops() {
        let mut c = cluster();
        c.services[0].internal_traffic_policy = TrafficPolicy::Local;
        assert_eq!(summary(&c, query(A, "10.200.96.1", 80)), ["b1 true Endpoint(EndpointId(0))"]);
        c.services[0].ports[0].backends.remove(0);
        assert_eq!(summary(&c, query(A, "10.200.96.1", 80)), ["Dropped { service: 0, reason: NoLocalEndpoint }"]);
        c.services[0].ports[0].backends.clear();
        assert!(summary(&c, query(A, "10.200.96.1", 80))[0].starts_with("Refused"));
    }

    #[test]
    fn external_traffic_policy_and_masquerade() {
        let mut c = cluster();
        let outside = Party::External(ip("192.0.2.1"));
        // Node port on n2 from outside, Cluster: both backends, source masqueraded to n2.
        assert_eq!(summary(&c, query(outside, "10.200.100.2", 30080)), ["b1 true Node(1)", "b2 true Node(1)"]);
        c.services[0].external_traffic_policy = TrafficPolicy::Local;
        // Local: n2's own backend, client address kept.
        assert_eq!(summary(&c, query(outside, "10.200.100.2", 30080)), ["b2 true External(192.0.2.1)"]);
        // The LB address from inside the cluster always gets Cluster semantics.
        let mut q = query(A, "10.200.50.1", 80);
        assert_eq!(summary(&c, q).len(), 2);
        // From outside it needs the receiving node; n1 has b1.
        q.src = outside;
        q.via = Some(0);
        assert_eq!(summary(&c, q), ["b1 true External(192.0.2.1)"]);
        c.services[0].source_ranges = vec![crate::cidr::Cidr::parse_strict("198.51.100.0/24").unwrap()];
        assert_eq!(summary(&c, q), ["Dropped { service: 0, reason: SourceRange }"]);
    }

    #[test]
    fn policy_is_judged_on_the_backend_after_translation() {
        let mut c = cluster();
        // b2 isolated for ingress with no rule: nothing reaches it, not even through the Service.
        c.policies.push(Policy {
            origin: PolicyOrigin {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some("ns".into()),
                name: "deny-b2".into(),
                spec_path: "spec".into(),
            },
            subject: Subject::Endpoints(LabelSelector::everything().with(Requirement::equals("app", "b2"))),
            default_deny: [true, false],
            requires: Default::default(),
            deny_requires: Default::default(),
            rules: vec![],
        });
        assert_eq!(
            summary(&c, query(A, "10.200.96.1", 80)),
            ["b1 true Endpoint(EndpointId(0))", "b2 false Endpoint(EndpointId(0))"]
        );
        // Hairpin: b1 through its own Service is seen as coming from its node.
        let b1 = Party::Endpoint(EndpointId::new(1));
        assert_eq!(summary(&c, query(b1, "10.200.96.1", 80)), ["b1 true Node(0)", "b2 false Endpoint(EndpointId(1))"]);
    }
}
