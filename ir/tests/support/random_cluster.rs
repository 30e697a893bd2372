//! Random clusters, policies and packets for differential tests: shared
//! by `ir/tests/compiled_vs_eval.rs` (compiled maps against `eval`) and
//! `runtime-loader/tests/datapath_proptest.rs` (the BPF programs against
//! `eval`) and `compiler/tests/lint.rs` (lint W0207 against `eval`), which
//! include this file by path.
//!
//! A pod's named ports are a function of its `app` label, except that
//! `web` pods on the second node number `http` differently: pods of one
//! label set that an egress named port tells apart, which get identities
//! of their own (`policyc_ir::identity_split`). Admin `networks` include
//! prefixes that hold some pods of a label set and not others.
#![allow(dead_code)] // each including test uses its own part

use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, NamedPort, Node};
use policyc_ir::eval::Party;
use policyc_ir::ids::EndpointId;
use policyc_ir::labels::{Labels, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, NAMESPACE_NAME_LABEL};
use policyc_ir::localhost::allow_localhost_policy;
use policyc_ir::policy::{
    Action, Entity, L7Rules, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject,
};
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use policyc_ir::tier::{Tier, TierAction, TierKind, TierPeer, TierPolicy, TierRule};
use proptest::prelude::*;
use std::net::IpAddr;

pub const NAMESPACES: [&str; 3] = ["alpha", "beta", "gamma"];
pub const APPS: [&str; 3] = ["web", "db", "api"];
pub const NODES: [(&str, &str, &str); 2] = [("n1", "10.100.0.1", "fd00:100::1"), ("n2", "10.100.0.2", "fd00:100::2")];
pub const EXTERNAL_V4: [&str; 10] = [
    "192.0.2.1",
    "192.0.2.5",
    "192.0.2.130",
    "192.0.3.1",
    "198.51.100.7",
    "203.0.113.1",
    "203.0.113.70",
    "8.8.8.8",
    "10.200.99.99",
    "10.1.2.3",
];
pub const EXTERNAL_V6: [&str; 5] = ["2001:db8::1", "2001:db8:1::1", "2001:db8:2::9", "2606:4700::1", "fd00:200::ff"];
pub const PORTS: [u16; 10] = [0, 8, 53, 80, 443, 1000, 8080, 8443, 9000, 65535];

pub fn cidr(s: &str) -> Cidr {
    Cidr::parse_strict(s).unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A pod: namespace index, app index (or none), tier (or none), node index.
pub type PodSpec = (usize, Option<usize>, Option<bool>, usize);

pub fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (0usize..3, proptest::option::weighted(0.8, 0usize..3), proptest::option::of(any::<bool>()), 0usize..2)
}

/// Per app: the number of its `http` (TCP) port and its `dns` (UDP) port.
pub fn app_ports() -> impl Strategy<Value = [(u16, u16); 3]> {
    let port = || (prop_oneof![Just(80u16), Just(8080), Just(8443)], prop_oneof![Just(53u16), Just(1000)]);
    [port(), port(), port()]
}

pub fn build_cluster(ns_count: usize, team_of: &[bool], pods: &[PodSpec], ports: &[(u16, u16); 3]) -> Cluster {
    let mut cluster = Cluster::default();
    for (n, ns) in NAMESPACES.iter().enumerate().take(ns_count) {
        let team = if team_of[n] { "x" } else { "y" };
        cluster.namespaces.insert(ns.to_string(), Labels::from_pairs([(NAMESPACE_NAME_LABEL, *ns), ("team", team)]));
    }
    for (i, &(ns, app, tier, node)) in pods.iter().enumerate() {
        let ns = ns % ns_count;
        let namespace = NAMESPACES[ns];
        let mut labels = Labels::new();
        labels.insert(NAMESPACE_LABEL, namespace);
        for (k, v) in cluster.namespaces[namespace].iter() {
            labels.insert(format!("{NAMESPACE_LABELS_PREFIX}{k}"), v);
        }
        let mut named_ports = Vec::new();
        if let Some(app) = app {
            labels.insert("app", APPS[app]);
            let (mut http, dns) = ports[app];
            if app == 0 && node == 1 {
                http = if http == 80 { 8080 } else { 80 };
            }
            named_ports.push(NamedPort { name: "http".into(), protocol: Protocol::Tcp, port: http });
            named_ports.push(NamedPort { name: "dns".into(), protocol: Protocol::Udp, port: dns });
            named_ports.push(NamedPort { name: "dns".into(), protocol: Protocol::Tcp, port: dns });
        }
        if let Some(tier) = tier {
            labels.insert("tier", if tier { "fe" } else { "be" });
        }
        let n = i + 1;
        cluster.endpoints.push(Endpoint {
            namespace: namespace.into(),
            name: format!("pod{n}"),
            kind: EndpointKind::Pod,
            labels,
            ips: vec![ip(&format!("10.200.0.{n}")), ip(&format!("fd00:200::{n}"))],
            node: Some(NODES[node].0.into()),
            named_ports,
        });
    }
    // A workload with no IPs: it has an identity peers can select, but no
    // traffic.
    cluster.endpoints.push(Endpoint {
        namespace: NAMESPACES[0].into(),
        name: "deploy".into(),
        kind: EndpointKind::Workload("Deployment".into()),
        labels: Labels::from_pairs([(NAMESPACE_LABEL, NAMESPACES[0]), ("app", "batch")]),
        ips: vec![],
        node: None,
        named_ports: vec![],
    });
    for (name, v4, v6) in NODES {
        cluster.nodes.push(Node { name: name.into(), labels: Labels::new(), ips: vec![ip(v4), ip(v6)] });
    }
    cluster
}

pub fn requirement() -> impl Strategy<Value = Requirement> {
    let ns_team = format!("{NAMESPACE_LABELS_PREFIX}team");
    prop_oneof![
        (0usize..3).prop_map(|a| Requirement::equals("app", APPS[a])),
        Just(Requirement { key: "app".into(), operator: Operator::In, values: vec!["web".into(), "db".into()] }),
        Just(Requirement { key: "app".into(), operator: Operator::NotIn, values: vec!["db".into()] }),
        Just(Requirement { key: "tier".into(), operator: Operator::Exists, values: vec![] }),
        Just(Requirement { key: "tier".into(), operator: Operator::DoesNotExist, values: vec![] }),
        (0usize..3).prop_map(|n| Requirement::equals(NAMESPACE_LABEL, NAMESPACES[n])),
        Just(Requirement::equals(ns_team, "x")),
    ]
}

pub fn selector() -> impl Strategy<Value = LabelSelector> {
    proptest::collection::vec(requirement(), 0..3).prop_map(|requirements| LabelSelector { requirements })
}

/// Selectors for `fromRequires`: also reserved labels, which only
/// non-endpoint peers carry.
pub fn requires_selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        3 => selector(),
        1 => Just(LabelSelector::everything().with(Requirement {
            key: "reserved:world".into(),
            operator: Operator::DoesNotExist,
            values: vec![],
        })),
        1 => Just(LabelSelector::everything().with(Requirement {
            key: "reserved:remote-node".into(),
            operator: Operator::Exists,
            values: vec![],
        })),
        1 => Just(LabelSelector::everything().with(Requirement {
            key: "reserved:kube-apiserver".into(),
            operator: Operator::DoesNotExist,
            values: vec![],
        })),
    ]
}

pub fn cidr_peer() -> impl Strategy<Value = Peer> {
    let options: Vec<(&str, Vec<&str>)> = vec![
        ("192.0.2.0/24", vec![]),
        ("192.0.2.0/24", vec!["192.0.2.128/25"]),
        ("192.0.2.0/24", vec!["192.0.2.0/29", "192.0.2.128/25"]),
        ("192.0.0.0/8", vec!["192.0.2.0/24"]),
        ("192.0.0.0/8", vec![]),
        ("198.51.100.0/24", vec![]),
        ("203.0.113.0/24", vec!["203.0.113.64/26"]),
        ("203.0.113.64/26", vec![]),
        ("10.0.0.0/8", vec![]),
        ("0.0.0.0/0", vec!["10.0.0.0/8"]),
        ("0.0.0.0/0", vec![]),
        ("2001:db8::/32", vec![]),
        ("2001:db8::/32", vec!["2001:db8:1::/48"]),
        ("::/0", vec!["2001:db8::/32"]),
    ];
    proptest::sample::select(options)
        .prop_map(|(c, except)| Peer::Cidr { cidr: cidr(c), except: except.into_iter().map(cidr).collect() })
}

pub fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        3 => selector().prop_map(Peer::Endpoints),
        2 => cidr_peer(),
        2 => proptest::sample::select(Entity::ALL.to_vec()).prop_map(Peer::Entity),
    ]
}

pub fn protocol() -> impl Strategy<Value = Option<Protocol>> {
    prop_oneof![
        Just(None),
        Just(Some(Protocol::Tcp)),
        Just(Some(Protocol::Udp)),
        Just(Some(Protocol::Sctp)),
        Just(Some(Protocol::Icmp)),
        Just(Some(Protocol::Icmpv6)),
    ]
}

pub fn port_spec() -> impl Strategy<Value = PortSpec> {
    prop_oneof![
        1 => Just(PortSpec::All),
        3 => proptest::sample::select(PORTS.to_vec()).prop_map(|p| PortSpec::Range(PortRange::single(p))),
        2 => (proptest::sample::select(PORTS.to_vec()), proptest::sample::select(PORTS.to_vec()))
            .prop_map(|(a, b)| PortSpec::Range(PortRange { lo: a.min(b), hi: a.max(b) })),
        1 => (0u16..100, 0u16..20).prop_map(|(lo, n)| PortSpec::Range(PortRange { lo, hi: lo + n })),
        2 => proptest::sample::select(vec!["http", "dns", "nope"]).prop_map(|n| PortSpec::Named(n.into())),
    ]
}

pub fn port_match() -> impl Strategy<Value = PortMatch> {
    (protocol(), port_spec()).prop_map(|(protocol, ports)| PortMatch { protocol, ports })
}

pub fn rule() -> impl Strategy<Value = Rule> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        prop_oneof![3 => Just(Action::Allow), 1 => Just(Action::Deny)],
        prop_oneof![1 => Just(Peers::Any), 4 => proptest::collection::vec(peer(), 0..3).prop_map(Peers::Only)],
        proptest::option::weighted(0.7, proptest::collection::vec(port_match(), 1..3)),
        proptest::option::weighted(0.15, prop_oneof![Just("http"), Just("dns")]),
    )
        .prop_map(|(direction, action, peers, ports, l7)| Rule {
            path: String::new(),
            direction,
            action,
            peers,
            ports,
            l7: l7.filter(|_| action == Action::Allow).map(|p| L7Rules { parser: p.into(), rules: "[]".into() }),
        })
}

pub fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(PolicyKind::NetworkPolicy), Just(PolicyKind::CiliumNetworkPolicy)],
        selector(),
        [any::<bool>(), any::<bool>()],
        [proptest::collection::vec(requires_selector(), 0..2), proptest::collection::vec(requires_selector(), 0..2)],
        [proptest::collection::vec(requires_selector(), 0..2), proptest::collection::vec(requires_selector(), 0..2)],
        proptest::collection::vec(rule(), 0..5),
    )
        .prop_map(|(kind, subject, default_deny, requires, deny_requires, mut rules)| {
            if kind == PolicyKind::NetworkPolicy {
                // Kubernetes has no deny rules, no L7 and no requirements.
                rules.retain(|r| r.action == Action::Allow);
                for r in &mut rules {
                    r.l7 = None;
                }
            }
            for (i, r) in rules.iter_mut().enumerate() {
                r.path = format!("spec.{}[{i}]", r.direction);
            }
            Policy {
                origin: PolicyOrigin {
                    kind,
                    namespace: Some("alpha".into()),
                    name: "p".into(),
                    spec_path: "spec".into(),
                },
                subject: Subject::Endpoints(subject),
                default_deny,
                requires: if kind == PolicyKind::NetworkPolicy { [vec![], vec![]] } else { requires },
                deny_requires: if kind == PolicyKind::NetworkPolicy { [vec![], vec![]] } else { deny_requires },
                rules,
            }
        })
}

#[derive(Clone, Copy, Debug)]
pub enum Side {
    Pod(usize),
    External(usize),
    Node(usize),
}

pub fn side() -> impl Strategy<Value = Side> {
    prop_oneof![
        4 => (0usize..8).prop_map(Side::Pod),
        3 => (0usize..10).prop_map(Side::External),
        1 => (0usize..2).prop_map(Side::Node),
    ]
}

/// A packet to judge: IPv6?, source, destination, protocol, port.
pub type PacketSpec = (bool, Side, Side, Protocol, u16);

pub fn packet() -> impl Strategy<Value = PacketSpec> {
    (
        any::<bool>(),
        side(),
        side(),
        proptest::sample::select(Protocol::ALL.to_vec()),
        prop_oneof![3 => proptest::sample::select(PORTS.to_vec()), 1 => any::<u16>()],
    )
}

/// The address of a side, and the eval party it stands for (a node is
/// `host` or `remote-node` depending on the endpoint that judges it, which
/// `eval` works out itself).
pub fn address(cluster: &Cluster, pods: usize, v6: bool, side: Side) -> (IpAddr, Party) {
    match side {
        Side::Pod(i) => {
            let i = i % pods;
            (cluster.endpoints[i].ips[usize::from(v6)], Party::Endpoint(EndpointId::new(i)))
        }
        Side::External(i) => {
            let ip = if v6 { ip(EXTERNAL_V6[i % EXTERNAL_V6.len()]) } else { ip(EXTERNAL_V4[i]) };
            (ip, Party::External(ip))
        }
        Side::Node(n) => {
            let (_, v4, v6addr) = NODES[n];
            (ip(if v6 { v6addr } else { v4 }), Party::Node(n))
        }
    }
}

/// The addresses behind Service `default/kubernetes`: none, a node's (one
/// or both of its addresses: the node runs the API server), outside the
/// cluster (a managed control plane: addresses some packets use, inside
/// some CIDR rules' prefixes), or both, sorted as lowering sorts them.
pub fn apiserver() -> impl Strategy<Value = Vec<IpAddr>> {
    let (_, n1_v4, _) = NODES[0];
    let (_, n2_v4, n2_v6) = NODES[1];
    prop_oneof![
        2 => Just(vec![]),
        1 => Just(vec![ip(n1_v4)]),
        1 => Just(vec![ip(n2_v4), ip(n2_v6)]),
        1 => Just(vec![ip(EXTERNAL_V4[1]), ip(EXTERNAL_V6[0])]),
        1 => Just(vec![ip(n1_v4), ip(EXTERNAL_V4[2])]),
    ]
    .prop_map(|mut ips| {
        ips.sort();
        ips
    })
}

pub fn node_of(cluster: &Cluster, pods: usize, side: Side) -> Option<&str> {
    match side {
        Side::Pod(i) => cluster.endpoints[i % pods].node.as_deref(),
        _ => None,
    }
}

pub fn scenario() -> impl Strategy<Value = (Cluster, usize, Vec<PacketSpec>)> {
    (
        2usize..=3,
        [any::<bool>(), any::<bool>(), any::<bool>()],
        proptest::collection::vec(pod_spec(), 2..=8),
        app_ports(),
        proptest::collection::vec(policy(), 0..5),
        proptest::collection::vec(packet(), 48),
        any::<bool>(),
        apiserver(),
    )
        .prop_map(|(ns_count, teams, pods, ports, policies, packets, allow_localhost, apiserver)| {
            let mut cluster = build_cluster(ns_count, &teams, &pods, &ports);
            cluster.policies = policies;
            cluster.apiserver = apiserver;
            // `--allow-localhost` on or off (`policyc_ir::localhost`).
            if allow_localhost {
                cluster.policies.push(allow_localhost_policy());
            }
            (cluster, pods.len(), packets)
        })
}

/// Admin and baseline policies (Allow, Deny, Pass; pod selectors,
/// `networks` that hold every pod, some pods, one node or outside
/// addresses, `nodes`;
/// numbered and named ports; priorities 0-3, so ties are common).
pub fn tier_peer() -> impl Strategy<Value = TierPeer> {
    let networks = [
        "192.0.2.0/24",
        "10.200.0.0/16",
        "0.0.0.0/0",
        "10.100.0.1/32",
        "2001:db8::/32",
        "::/0",
        // Pods 1-3, and pod 4 alone: they split label sets.
        "10.200.0.0/30",
        "fd00:200::4/128",
    ];
    prop_oneof![
        3 => selector().prop_map(TierPeer::Endpoints),
        2 => proptest::collection::vec(proptest::sample::select(networks.to_vec()), 1..3)
            .prop_map(|cs| TierPeer::Networks(cs.into_iter().map(cidr).collect())),
        1 => Just(TierPeer::Nodes(LabelSelector::everything())),
    ]
}

pub fn tier_rule(actions: &'static [TierAction]) -> impl Strategy<Value = TierRule> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        proptest::sample::select(actions),
        proptest::collection::vec(tier_peer(), 1..3),
        proptest::option::weighted(0.6, proptest::collection::vec(port_match(), 1..3)),
    )
        .prop_map(|(direction, action, peers, ports)| {
            // Ingress peers are pods only (`AdminNetworkPolicyIngressPeer`).
            let peers: Vec<TierPeer> = match direction {
                Direction::Ingress => peers.into_iter().filter(|p| matches!(p, TierPeer::Endpoints(_))).collect(),
                Direction::Egress => peers,
            };
            let ports: Option<Vec<PortMatch>> = ports;
            TierRule { path: String::new(), name: None, direction, action, peers, ports }
        })
}

pub const ALL_ACTIONS: &[TierAction] = &[TierAction::Allow, TierAction::Deny, TierAction::Pass];

pub fn tier_policy(tier: Tier, actions: &'static [TierAction]) -> impl Strategy<Value = TierPolicy> {
    (0u16..4, selector(), proptest::collection::vec(tier_rule(actions), 0..4)).prop_map(
        move |(priority, subject, rules)| TierPolicy {
            kind: TierKind::ClusterNetworkPolicy,
            name: String::new(),
            tier,
            priority,
            subject,
            rules,
        },
    )
}

pub fn tiers(actions: &'static [TierAction]) -> impl Strategy<Value = Vec<TierPolicy>> {
    (
        proptest::collection::vec(tier_policy(Tier::Admin, actions), 0..4),
        proptest::collection::vec(tier_policy(Tier::Baseline, ALL_ACTIONS), 0..3),
    )
        .prop_map(|(admin, baseline)| {
            let mut all: Vec<TierPolicy> = admin.into_iter().chain(baseline).collect();
            for (i, p) in all.iter_mut().enumerate() {
                p.name = format!("p{i}");
            }
            all
        })
}

/// [`scenario`] with admin and baseline policies.
pub fn scenario_with_tiers() -> impl Strategy<Value = (Cluster, usize, Vec<PacketSpec>)> {
    (scenario(), tiers(ALL_ACTIONS)).prop_map(|((mut cluster, pods, packets), tiers)| {
        cluster.tier_policies = tiers;
        (cluster, pods, packets)
    })
}

/// A Service port's `targetPort`: a number, or a container port name
/// resolved per backend pod (as the EndpointSlice controller does).
#[derive(Clone, Copy, Debug)]
pub enum TargetSpec {
    /// A number.
    Number(u16),
    /// `http` or `dns`.
    Named(&'static str),
}

/// A random Service: namespace index; the `app` its selector picks (none:
/// no selector, so no backends); type (0 ClusterIP, 1 NodePort, 2
/// LoadBalancer, 3 headless, 4 ExternalName); ports `(udp, port, target)`;
/// internal and external traffic policy `Local`; `ClientIP` affinity;
/// `loadBalancerSourceRanges` (0 none, 1 outside only, 2 every pod and
/// node); an external IP; dual-stack cluster IPs.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub namespace: usize,
    pub app: Option<usize>,
    pub kind: u8,
    pub ports: Vec<(bool, u16, TargetSpec)>,
    pub internal_local: bool,
    pub external_local: bool,
    pub affinity: Option<u32>,
    pub source_ranges: u8,
    pub external_ip: bool,
    pub dual_stack: bool,
}

pub fn service_spec() -> impl Strategy<Value = ServiceSpec> {
    let target = prop_oneof![
        prop_oneof![Just(80u16), Just(8080), Just(53)].prop_map(TargetSpec::Number),
        prop_oneof![Just("http"), Just("dns"), Just("metrics")].prop_map(TargetSpec::Named),
    ];
    let port = (any::<bool>(), prop_oneof![Just(80u16), Just(53), Just(443)], target);
    (
        (0usize..3, proptest::option::weighted(0.85, 0usize..3), prop_oneof![3 => 0u8..3, 1 => 3u8..5]),
        proptest::collection::vec(port, 1..=2),
        (any::<bool>(), any::<bool>(), proptest::option::of(prop_oneof![Just(60u32), Just(10800)])),
        (0u8..3, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (namespace, app, kind),
                ports,
                (internal_local, external_local, affinity),
                (source_ranges, external_ip, dual_stack),
            )| ServiceSpec {
                namespace,
                app,
                kind,
                ports,
                internal_local,
                external_local,
                affinity,
                source_ranges,
                external_ip,
                dual_stack,
            },
        )
}

/// An endpoint's conditions in an EndpointSlice: 0 ready (most), 1
/// serving and terminating, 2 neither ready nor serving.
pub fn endpoint_condition() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)]
}

/// Adds Services built from `specs` to a cluster of `build_cluster`
/// (whose first `pods` endpoints are pods), with the backends the
/// EndpointSlice controller would derive: every pod of the Service's
/// namespace carrying its `app`, one backend per pod address (each
/// family), the target port resolved per pod (a pod without the named
/// port is no backend of that port), the pod's conditions from
/// `conditions[pod]`. Cluster IPs, node ports, external and load-balancer
/// IPs are unique per Service.
pub fn add_services(cluster: &mut Cluster, pods: usize, conditions: &[u8], specs: &[ServiceSpec]) {
    use policyc_ir::service::{Backend, Conditions, Service, ServicePort, ServiceType, TrafficPolicy};
    let ns_count = cluster.namespaces.len();
    for (i, spec) in specs.iter().enumerate() {
        let namespace = NAMESPACES[spec.namespace % ns_count];
        let service_type = match spec.kind {
            1 => ServiceType::NodePort,
            2 => ServiceType::LoadBalancer,
            4 => ServiceType::ExternalName,
            _ => ServiceType::ClusterIp,
        };
        let n = i + 1;
        let cluster_ips = match (spec.kind, spec.dual_stack) {
            (3 | 4, _) => vec![],
            (_, true) => vec![ip(&format!("10.96.0.{n}")), ip(&format!("fd00:96::{n}"))],
            (_, false) => vec![ip(&format!("10.96.0.{n}"))],
        };
        let mut ports = Vec::new();
        for (k, &(udp, port, target)) in spec.ports.iter().enumerate() {
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            // The API refuses two ports with the same port and protocol.
            if ports.iter().any(|p: &ServicePort| p.port == port && p.protocol == protocol) {
                continue;
            }
            let mut backends = Vec::new();
            for (e, endpoint) in cluster.endpoints.iter().enumerate().take(pods) {
                let Some(app) = spec.app else { break };
                if endpoint.namespace != namespace || endpoint.labels.get("app") != Some(APPS[app]) {
                    continue;
                }
                let target = match target {
                    TargetSpec::Number(p) => Some(p),
                    TargetSpec::Named(name) => endpoint.named_port(name, protocol),
                };
                let Some(target) = target else { continue };
                let conditions = match conditions.get(e).copied().unwrap_or(0) {
                    0 => Conditions::READY,
                    1 => Conditions { ready: false, serving: true, terminating: true },
                    _ => Conditions { ready: false, serving: false, terminating: false },
                };
                for &address in &endpoint.ips {
                    backends.push(Backend {
                        address: Some(address),
                        port: target,
                        endpoint: Some(EndpointId::new(e)),
                        node: endpoint.node.clone(),
                        zone: None,
                        conditions,
                    });
                }
            }
            backends.sort();
            let node_port = service_type.has_node_ports().then_some(30000 + (n * 10 + k) as u16);
            ports.push(ServicePort { name: format!("p{k}"), protocol, port, node_port, backends });
        }
        let source_ranges = match (service_type, spec.source_ranges) {
            (ServiceType::LoadBalancer, 1) => vec![cidr("198.51.100.0/24")],
            (ServiceType::LoadBalancer, 2) => {
                vec![cidr("10.200.0.0/24"), cidr("10.100.0.0/24"), cidr("fd00:200::/64"), cidr("fd00:100::/64")]
            }
            _ => vec![],
        };
        let local = |b| if b { TrafficPolicy::Local } else { TrafficPolicy::Cluster };
        cluster.services.push(Service {
            namespace: namespace.into(),
            name: format!("svc{n}"),
            service_type,
            cluster_ips,
            external_ips: if spec.external_ip { vec![ip(&format!("192.0.2.{}", 200 + n))] } else { vec![] },
            load_balancer_ips: if service_type == ServiceType::LoadBalancer {
                vec![ip(&format!("203.0.113.{}", 200 + n))]
            } else {
                vec![]
            },
            ports,
            internal_traffic_policy: local(spec.internal_local),
            external_traffic_policy: local(spec.external_local),
            affinity_timeout: spec.affinity,
            source_ranges,
        });
    }
    cluster.services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
}
