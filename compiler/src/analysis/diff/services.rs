//! Services in a diff: frontends added, removed or changed, backends added
//! and removed per Service port and per node, and the connections to
//! `svc:NS/NAME` that open or close.
//!
//! - A Service is matched by `namespace/name`. Its frontend fields (type,
//!   cluster, external and load-balancer IPs, ports with their node ports,
//!   the traffic policies, `ClientIP` affinity, `loadBalancerSourceRanges`)
//!   are compared as written; its backends per port (`TCP/80`) as
//!   `address:port`, with the endpoint behind it, its node and its
//!   conditions when not ready.
//! - Per node: which backends a node picks ([`select`], the same choice
//!   the bundle's `services.txt` records) differs from the cluster's list
//!   only under a `Local` traffic policy, so nodes are compared only for a
//!   Service with one in either tree.
//! - Connections to a Service are judged as `connectivity` judges its
//!   `svc:` rows: each endpoint to the Service's first cluster IP on each
//!   port, translated first, then policy on every backend
//!   ([`connect`]; Cilium, Calico and kube-proxy with NetworkPolicy all
//!   judge policy after translation). A Service is judged again only where
//!   an answer can differ: its own description changed, or a connection to
//!   one of its backends opened or closed (the [`super::connectivity`]
//!   changes, which cover every source and port).

use super::connectivity::{Change, ConnectivityChange, Peer};
use crate::analysis::services::SERVICE_PREFIX;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::Party;
use policyc_ir::service::connect::{connect, Outcome, ServiceQuery};
use policyc_ir::service::select::{select, Selection};
use policyc_ir::service::{Backend, Service, ServiceType, TrafficPolicy};
use std::collections::{BTreeMap, BTreeSet};

/// Added, removed or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceChangeKind {
    /// Only in the new tree.
    Added,
    /// Only in the old tree.
    Removed,
    /// In both, described differently.
    Changed,
}

impl ServiceChangeKind {
    /// `added`, `removed` or `changed`.
    pub fn name(self) -> &'static str {
        match self {
            ServiceChangeKind::Added => "added",
            ServiceChangeKind::Removed => "removed",
            ServiceChangeKind::Changed => "changed",
        }
    }
}

/// A frontend field whose value differs (`None`: the side lacks the
/// Service).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldChange {
    /// The field, as the API names it (`externalTrafficPolicy`).
    pub field: &'static str,
    /// Its value in the old tree.
    pub was: Option<String>,
    /// Its value in the new tree.
    pub now: Option<String>,
}

/// Backends added and removed on one Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackendChange {
    /// `TCP/80`.
    pub port: String,
    /// Backends only in the old tree (`10.0.1.5:8080 shop/api-0 on node-a`).
    pub removed: Vec<String>,
    /// Backends only in the new tree.
    pub added: Vec<String>,
}

/// A node whose choice of backends for a Service port changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeChange {
    /// The node.
    pub node: String,
    /// `TCP/80`.
    pub port: String,
    /// `internal` (cluster IPs, `internalTrafficPolicy`) or `external`
    /// (node ports, external and load-balancer IPs from outside the
    /// cluster, `externalTrafficPolicy`).
    pub traffic: &'static str,
    /// The old choice (`backends: ...`, `refused: no endpoints`,
    /// `dropped: no endpoint on this node`), `None` without such a
    /// frontend.
    pub was: Option<String>,
    /// The new choice.
    pub now: Option<String>,
}

/// One Service that differs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceChange {
    /// `svc:NS/NAME`.
    pub service: String,
    /// Added, removed or changed.
    pub kind: ServiceChangeKind,
    /// Frontend fields that differ (every field of an added or removed
    /// Service).
    pub fields: Vec<FieldChange>,
    /// Backends per port.
    pub backends: Vec<BackendChange>,
    /// Per node choices that differ (Services with a `Local` policy).
    pub nodes: Vec<NodeChange>,
}

/// How many backends of a Service port a source reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// None (or the port refuses or drops).
    None,
    /// Some backends; policy stops the others.
    Some,
    /// Every backend.
    All,
}

impl Reach {
    /// `no backend`, `some backends`, `every backend`.
    pub fn name(self) -> &'static str {
        match self {
            Reach::None => "no backend",
            Reach::Some => "some backends",
            Reach::All => "every backend",
        }
    }
}

/// A connection to a Service port that opened (reaches more backends) or
/// closed (fewer).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceConnectionChange {
    /// Opened or closed.
    pub change: Change,
    /// The source endpoint (`ns/pod`).
    pub src: String,
    /// `svc:NS/NAME`.
    pub dst: String,
    /// `TCP/80`.
    pub port: String,
    /// What the new tree reaches.
    pub now: Reach,
    /// What the old tree reached.
    pub was: Reach,
}

/// What a diff says about Services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDiff {
    /// Services that differ, by name.
    pub services: Vec<ServiceChange>,
    /// Connections to Services opened or closed.
    pub connections: Vec<ServiceConnectionChange>,
}

/// A Service as the diff compares it.
#[derive(Default, PartialEq, Eq)]
struct Description {
    fields: BTreeMap<&'static str, String>,
    backends: BTreeMap<String, BTreeSet<String>>,
    /// `(node, port, traffic)` → choice; only for a Service with a `Local`
    /// policy.
    nodes: BTreeMap<(String, String, &'static str), String>,
    /// Display names of the endpoints behind its backends.
    backend_endpoints: BTreeSet<String>,
    /// Whether the internal and the external traffic policy are `Local`.
    local: [bool; 2],
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn port_name(s: &Service, index: usize) -> String {
    let p = &s.ports[index];
    format!("{}/{}", p.protocol.name(), p.port)
}

fn backend_text(cluster: &Cluster, b: &Backend) -> String {
    let mut out = match b.address {
        Some(a) if a.is_ipv6() => format!("[{a}]:{}", b.port),
        Some(a) => format!("{a}:{}", b.port),
        None => format!(":{}", b.port),
    };
    if let Some(e) = b.endpoint {
        out.push(' ');
        out.push_str(&cluster.endpoint(e).display_name());
    }
    if let Some(node) = &b.node {
        out.push_str(&format!(" on {node}"));
    }
    let c = b.conditions;
    if !c.ready {
        let mut flags = vec![if c.serving { "serving" } else { "not serving" }];
        if c.terminating {
            flags.push("terminating");
        }
        out.push_str(&format!(" ({})", flags.join(", ")));
    }
    out
}

fn choice(cluster: &Cluster, backends: &[Backend], policy: TrafficPolicy, node: &str) -> String {
    match select(backends, policy, Some(node)) {
        Selection::Backends(b) => {
            format!("backends: {}", list(b.iter().map(|b| backend_text(cluster, b))))
        }
        Selection::NoEndpoints => "refused: no endpoints".to_string(),
        Selection::NoLocalEndpoints => "dropped: no endpoint on this node".to_string(),
    }
}

fn describe(cluster: &Cluster, s: &Service) -> Description {
    let ips = |v: &[std::net::IpAddr]| list(v.iter().map(ToString::to_string));
    let mut fields = BTreeMap::new();
    fields.insert("type", s.service_type.name().to_string());
    fields.insert("clusterIPs", ips(&s.cluster_ips));
    fields.insert("externalIPs", ips(&s.external_ips));
    fields.insert("loadBalancerIPs", ips(&s.load_balancer_ips));
    let ports = s.ports.iter().map(|p| {
        let name = if p.name.is_empty() { String::new() } else { format!("{} ", p.name) };
        let node_port = p.node_port.map(|n| format!(" nodePort {n}")).unwrap_or_default();
        format!("{name}{}/{}{node_port}", p.protocol.name(), p.port)
    });
    fields.insert("ports", list(ports));
    fields.insert("internalTrafficPolicy", s.internal_traffic_policy.name().to_string());
    fields.insert("externalTrafficPolicy", s.external_traffic_policy.name().to_string());
    let affinity = s.affinity_timeout.map_or("None".to_string(), |t| format!("ClientIP {t}s"));
    fields.insert("sessionAffinity", affinity);
    fields.insert("loadBalancerSourceRanges", list(s.source_ranges.iter().map(ToString::to_string)));
    let mut backends = BTreeMap::new();
    let mut backend_endpoints = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let texts = p.backends.iter().map(|b| backend_text(cluster, b)).collect();
        backends.insert(port_name(s, i), texts);
        backend_endpoints
            .extend(p.backends.iter().filter_map(|b| b.endpoint).map(|e| cluster.endpoint(e).display_name()));
    }
    let local = [s.internal_traffic_policy, s.external_traffic_policy].map(|p| p == TrafficPolicy::Local);
    Description { fields, backends, nodes: BTreeMap::new(), backend_endpoints, local }
}

/// Each node's choice of backends per port and traffic: `internal`
/// (cluster IPs) when `local[0]`, `external` (for a Service with external
/// frontends) when `local[1]`. Under `Cluster` every node's choice is the
/// Service's list, which the backends already show.
fn node_choices(cluster: &Cluster, s: &Service, local: [bool; 2]) -> BTreeMap<(String, String, &'static str), String> {
    let external = local[1]
        && (!s.external_ips.is_empty()
            || !s.load_balancer_ips.is_empty()
            || (s.service_type.has_node_ports() && s.ports.iter().any(|p| p.node_port.is_some())));
    let internal = local[0] && !s.cluster_ips.is_empty();
    let mut nodes = BTreeMap::new();
    if s.service_type == ServiceType::ExternalName {
        return nodes;
    }
    for n in &cluster.nodes {
        for (i, p) in s.ports.iter().enumerate() {
            let key = |traffic| (n.name.clone(), port_name(s, i), traffic);
            if internal {
                nodes.insert(key("internal"), choice(cluster, &p.backends, s.internal_traffic_policy, &n.name));
            }
            if external {
                nodes.insert(key("external"), choice(cluster, &p.backends, s.external_traffic_policy, &n.name));
            }
        }
    }
    nodes
}

fn descriptions(cluster: &Cluster) -> BTreeMap<String, (usize, Description)> {
    cluster
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{SERVICE_PREFIX}{s}"), (i, describe(cluster, s))))
        .collect()
}

/// The change from `was` to `now` (either may be absent), if any.
fn service_change(name: &str, was: Option<&Description>, now: Option<&Description>) -> Option<ServiceChange> {
    let kind = match (was, now) {
        (None, Some(_)) => ServiceChangeKind::Added,
        (Some(_), None) => ServiceChangeKind::Removed,
        (Some(a), Some(b)) if a != b => ServiceChangeKind::Changed,
        _ => return None,
    };
    let empty = Description::default();
    let (a, b) = (was.unwrap_or(&empty), now.unwrap_or(&empty));
    let keys = |x: &Description, y: &Description| -> BTreeSet<&'static str> {
        x.fields.keys().chain(y.fields.keys()).copied().collect()
    };
    // An added or removed Service lists the fields it sets, not the empty
    // ones.
    let set = |v: Option<&String>| v.is_some_and(|v| kind == ServiceChangeKind::Changed || v.as_str() != "none");
    let fields = keys(a, b)
        .into_iter()
        .filter(|k| set(a.fields.get(k)) || set(b.fields.get(k)))
        .filter(|k| a.fields.get(k) != b.fields.get(k))
        .map(|field| FieldChange { field, was: a.fields.get(field).cloned(), now: b.fields.get(field).cloned() })
        .collect();
    let ports: BTreeSet<&String> = a.backends.keys().chain(b.backends.keys()).collect();
    let none = BTreeSet::new();
    let backends = ports
        .into_iter()
        .filter_map(|port| {
            let (x, y) = (a.backends.get(port).unwrap_or(&none), b.backends.get(port).unwrap_or(&none));
            let removed: Vec<String> = x.difference(y).cloned().collect();
            let added: Vec<String> = y.difference(x).cloned().collect();
            (!removed.is_empty() || !added.is_empty()).then(|| BackendChange { port: port.clone(), removed, added })
        })
        .collect();
    // An added or removed Service's choices per node are its backends:
    // listed once above.
    let nodes = if kind == ServiceChangeKind::Changed {
        let keys: BTreeSet<&(String, String, &'static str)> = a.nodes.keys().chain(b.nodes.keys()).collect();
        keys.into_iter()
            .filter(|k| a.nodes.get(*k) != b.nodes.get(*k))
            .map(|(node, port, traffic)| {
                let key = (node.clone(), port.clone(), *traffic);
                NodeChange {
                    node: node.clone(),
                    port: port.clone(),
                    traffic,
                    was: a.nodes.get(&key).cloned(),
                    now: b.nodes.get(&key).cloned(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(ServiceChange { service: name.to_string(), kind, fields, backends, nodes })
}

/// `(src, svc:NS/NAME, port)` → reach, for the Services of `cluster`
/// named in `services`, from every endpoint through the first cluster IP
/// (as the `connectivity` rows).
///
/// Sources with the same labels on the same node get the same answer
/// (policy selects a source by its labels; a CIDR never selects a pod;
/// the node is the one that translates, which a `Local` policy reads), so
/// each such group is asked once, except a source that is a backend of
/// the Service itself (hairpin: its node masquerades it).
fn reach(cluster: &Cluster, services: &BTreeSet<&str>) -> BTreeMap<(String, String, String), Reach> {
    let mut out = BTreeMap::new();
    let chosen: Vec<(usize, String)> = cluster
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (i, format!("{SERVICE_PREFIX}{s}")))
        .filter(|(_, name)| services.contains(name.as_str()))
        .collect();
    for (i, name) in &chosen {
        let s = &cluster.services[*i];
        let Some(&address) = s.cluster_ips.first() else { continue };
        let backends: BTreeSet<_> = s.ports.iter().flat_map(|p| &p.backends).filter_map(|b| b.endpoint).collect();
        let mut groups: BTreeMap<(&policyc_ir::labels::Labels, Option<&str>), Vec<Option<Reach>>> = BTreeMap::new();
        for (id, e) in cluster.endpoints_with_ids() {
            let src = Party::Endpoint(id);
            let ask = || -> Vec<Option<Reach>> {
                s.ports
                    .iter()
                    .map(|p| {
                        let q = ServiceQuery { src, via: None, address, protocol: p.protocol, port: p.port };
                        let Outcome::Backends { backends, .. } = connect(cluster, &q) else { return None };
                        match backends.iter().filter(|b| b.verdict.allowed()).count() {
                            0 => None,
                            n if n == backends.len() => Some(Reach::All),
                            _ => Some(Reach::Some),
                        }
                    })
                    .collect()
            };
            let answers = if backends.contains(&id) {
                ask()
            } else {
                groups.entry((&e.labels, e.node.as_deref())).or_insert_with(ask).clone()
            };
            for (k, r) in answers.into_iter().enumerate() {
                if let Some(r) = r {
                    out.insert((e.display_name(), name.clone(), port_name(s, k)), r);
                }
            }
        }
    }
    out
}

/// The Service changes from `old` to `new`; `connectivity` is the diff's
/// connection changes, which say where policy moved.
pub fn changes(old: &Cluster, new: &Cluster, connectivity: &[ConnectivityChange]) -> ServiceDiff {
    if old.services.is_empty() && new.services.is_empty() {
        return ServiceDiff::default();
    }
    let (mut od, mut nd) = (descriptions(old), descriptions(new));
    // Per node choices only where a `Local` policy (on either side) makes
    // them differ from the cluster's list; both sides then, so a policy
    // turning `Local` shows what each node picked before.
    let either = |a: [bool; 2], b: Option<[bool; 2]>| {
        let b = b.unwrap_or_default();
        [a[0] || b[0], a[1] || b[1]]
    };
    for (name, (i, d)) in od.iter_mut() {
        let local = either(d.local, nd.get(name).map(|(_, n)| n.local));
        if local != [false, false] {
            d.nodes = node_choices(old, &old.services[*i], local);
        }
    }
    for (name, (i, d)) in nd.iter_mut() {
        let local = either(d.local, od.get(name).map(|(_, o)| o.local));
        if local != [false, false] {
            d.nodes = node_choices(new, &new.services[*i], local);
        }
    }
    let (od, nd): (BTreeMap<_, _>, BTreeMap<_, _>) =
        (od.into_iter().map(|(k, (_, d))| (k, d)).collect(), nd.into_iter().map(|(k, (_, d))| (k, d)).collect());
    let names: BTreeSet<&String> = od.keys().chain(nd.keys()).collect();
    let services: Vec<ServiceChange> =
        names.iter().filter_map(|name| service_change(name, od.get(*name), nd.get(*name))).collect();
    // Destinations whose connections moved: a Service with a backend among
    // them may now be reached differently.
    let moved: BTreeSet<&str> = connectivity
        .iter()
        .filter_map(|c| match &c.dst {
            Peer::Endpoint(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut dirty: BTreeSet<&str> = services.iter().map(|c| c.service.as_str()).collect();
    for (name, d) in od.iter().chain(&nd) {
        if d.backend_endpoints.iter().any(|e| moved.contains(e.as_str())) {
            dirty.insert(name);
        }
    }
    let (was, now) = (reach(old, &dirty), reach(new, &dirty));
    let keys: BTreeSet<&(String, String, String)> = was.keys().chain(now.keys()).collect();
    let connections = keys
        .into_iter()
        .filter_map(|key| {
            let (w, n) = (was.get(key).copied().unwrap_or(Reach::None), now.get(key).copied().unwrap_or(Reach::None));
            let change = match n.cmp(&w) {
                std::cmp::Ordering::Greater => Change::Opened,
                std::cmp::Ordering::Less => Change::Closed,
                std::cmp::Ordering::Equal => return None,
            };
            let (src, dst, port) = key.clone();
            Some(ServiceConnectionChange { change, src, dst, port, now: n, was: w })
        })
        .collect();
    ServiceDiff { services, connections }
}
