//! The service maps of a node's bundle: `services.txt`, `backends.txt`
//! and `revnat.txt` ([`policyc_bundle::services`]), emitted when the input
//! has Services.
//!
//! Each node gets the frontends it translates (every cluster, external
//! and load-balancer IP, and its own addresses with the node ports) and,
//! per frontend, the backends [`policyc_ir::service::select`] picks there,
//! so `Local` traffic policies make the tables differ per node. Backend
//! and reverse-NAT ids are the cluster's ([`policyc_ir::service::ids`]):
//! the same backend or frontend has the same id on every node and, short
//! of a hash collision, across compiles; with `--previous`, the previous
//! bundle's ids are kept for what is still there, collisions or not.
//!
//! Frontends whose lines are the same on every node (no node port, no
//! `Local` policy) are rendered once per emission; each node renders only
//! its own (a cluster of thousands of nodes and Services would otherwise
//! repeat the same work on every node).
//!
//! A backend without an address (a workload standing for pods the input
//! does not list) has no entry: a frontend with only such backends is
//! written `reject`, though the reference evaluator answers with the
//! workload (there is no address to translate to).

use policyc_bundle::backends::BackendLine;
use policyc_bundle::l3n4::L3n4;
use policyc_bundle::revnat::RevNatLine;
use policyc_bundle::services::{Action, Scope, ServiceLine};
use policyc_ir::cluster::Cluster;
use policyc_ir::service::connect::same_family;
use policyc_ir::service::ids::{IdTable, BACKEND_ID_MAX, REV_NAT_ID_MAX};
use policyc_ir::service::model::{Frontend, FrontendKind};
use policyc_ir::service::select::{select, Selection};
use policyc_ir::service::{Backend, Service, TrafficPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Capacity of the service and backend maps: Cilium's default
/// (`bpf-lb-map-max`, 65536).
pub const SERVICE_MAP_CAPACITY: usize = 65536;

/// The service tables of an emission: the cluster's backend and
/// reverse-NAT ids, and the lines every node shares, prepared once.
pub struct ServicePlan {
    backends: IdTable<L3n4>,
    rev_nat: IdTable<L3n4>,
    shared: Vec<Entry>,
    /// The Services with lines that depend on the node.
    per_node: Vec<usize>,
    /// The three texts of a node with no lines of its own: one allocation
    /// every such node's bundle shares (written once, hard-linked).
    shared_texts: [(Arc<str>, usize); 3],
}

/// Why service ids cannot be allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIdsError {
    /// `backend` or `reverse-NAT`.
    pub what: &'static str,
    /// How many were needed.
    pub needed: usize,
}

impl std::fmt::Display for ServiceIdsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the input needs {} {} ids, more than there are", self.needed, self.what)
    }
}

/// One rendered services line with the backends and reverse-NAT entry it
/// names.
#[derive(Clone, Debug)]
struct Entry {
    key: (L3n4, Scope),
    line: String,
    backends: Vec<BackendLine>,
    rev_nat: RevNatLine,
}

fn backend_key(b: &Backend, f: &Frontend) -> Option<L3n4> {
    Some(L3n4 { addr: b.address?, port: b.port, protocol: f.protocol })
}

fn frontend_key(f: &Frontend) -> L3n4 {
    L3n4 { addr: f.address, port: f.port, protocol: f.protocol }
}

/// The scopes of frontend `f` of `s` and the traffic policy of each.
fn scopes(s: &Service, f: &Frontend) -> Vec<(Scope, TrafficPolicy)> {
    if f.kind.is_external() {
        let mut out = vec![(Scope::Ext, s.external_traffic_policy)];
        if s.external_traffic_policy == TrafficPolicy::Local {
            out.push((Scope::Int, TrafficPolicy::Cluster));
        }
        out
    } else {
        vec![(Scope::Ext, s.internal_traffic_policy)]
    }
}

/// Whether `f`'s lines depend on the node.
fn per_node(s: &Service, f: &Frontend) -> bool {
    f.kind == FrontendKind::NodePort || scopes(s, f).iter().any(|(_, p)| *p == TrafficPolicy::Local)
}

/// The backend and reverse-NAT ids of a previous bundle
/// (`maps/backends.txt`, `maps/revnat.txt`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreviousIds {
    backends: IdTable<L3n4>,
    rev_nat: IdTable<L3n4>,
}

impl PreviousIds {
    /// Reads the texts of a previous bundle's `backends.txt` and
    /// `revnat.txt`; the message names the file and line of a bad one.
    pub fn parse(backends: &str, rev_nat: &str) -> Result<PreviousIds, String> {
        let backends = BackendLine::parse_all(policyc_bundle::BACKENDS_FILE, 1, backends).map_err(|e| e.to_string())?;
        let rev_nat = RevNatLine::parse_all(policyc_bundle::REVNAT_FILE, 1, rev_nat).map_err(|e| e.to_string())?;
        Ok(PreviousIds {
            backends: IdTable::from_assignments(backends.iter().map(|b| (b.address, b.id))),
            rev_nat: IdTable::from_assignments(rev_nat.iter().map(|r| (r.frontend, u32::from(r.id)))),
        })
    }
}

impl ServicePlan {
    /// Ids for every backend and every frontend of every node (those of
    /// `previous` kept where still there), and the lines every node
    /// shares.
    pub fn new(cluster: &Cluster, previous: Option<&PreviousIds>) -> Result<ServicePlan, ServiceIdsError> {
        let all_node_ips: Vec<_> = cluster.nodes.iter().flat_map(|n| n.ips.iter().copied()).collect();
        let mut backends = Vec::new();
        let mut frontends = Vec::new();
        for s in &cluster.services {
            for f in s.frontends(&all_node_ips) {
                frontends.push(frontend_key(&f));
                backends.extend(s.ports[f.port_index].backends.iter().filter_map(|b| backend_key(b, &f)));
            }
        }
        let (nb, nf) = (backends.len(), frontends.len());
        let mut plan = ServicePlan {
            backends: IdTable::allocate(backends, BACKEND_ID_MAX, previous.map(|p| &p.backends))
                .ok_or(ServiceIdsError { what: "backend", needed: nb })?,
            rev_nat: IdTable::allocate(frontends, REV_NAT_ID_MAX, previous.map(|p| &p.rev_nat))
                .ok_or(ServiceIdsError { what: "reverse-NAT", needed: nf })?,
            shared: Vec::new(),
            per_node: Vec::new(),
            shared_texts: Default::default(),
        };
        let mut shared = Vec::new();
        for (i, s) in cluster.services.iter().enumerate() {
            for f in s.frontends(&[]).iter().filter(|f| !per_node(s, f)) {
                shared.extend(plan.entries(s, f, None));
            }
            // Node ports have no frontend without a node address: ask with one.
            let probe = s.frontends(&[std::net::IpAddr::from([0, 0, 0, 0])]);
            if probe.iter().any(|f| per_node(s, f)) {
                plan.per_node.push(i);
            }
        }
        plan.shared = shared;
        plan.shared_texts = texts(plan.shared.iter().collect());
        Ok(plan)
    }

    /// The texts every node with no lines of its own shares.
    pub fn shared_texts(&self) -> impl Iterator<Item = &Arc<str>> {
        self.shared_texts.iter().map(|(t, _)| t)
    }

    /// The lines of frontend `f` of `s` on `node`.
    fn entries(&self, s: &Service, f: &Frontend, node: Option<&str>) -> Vec<Entry> {
        let key = frontend_key(f);
        // Every frontend has an id: `ServicePlan::new` saw them all.
        let Some(rev) = self.rev_nat.get(&key).and_then(|id| u16::try_from(id).ok()) else { return Vec::new() };
        let rev_nat = RevNatLine { id: rev, frontend: key };
        let family = same_family(&s.ports[f.port_index].backends, f.address);
        let name = s.to_string();
        let mut out = Vec::new();
        for (scope, policy) in scopes(s, f) {
            let mut backends = Vec::new();
            let action = match select(&family, policy, node) {
                Selection::NoEndpoints => Action::Reject,
                Selection::NoLocalEndpoints => Action::Drop,
                Selection::Backends(chosen) => {
                    let mut list = Vec::new();
                    for b in chosen {
                        let Some(bkey) = backend_key(b, f) else { continue };
                        let Some(id) = self.backends.get(&bkey) else { continue };
                        if !list.contains(&id) {
                            list.push(id);
                            backends.push(BackendLine { id, address: bkey, terminating: b.conditions.terminating });
                        }
                    }
                    if list.is_empty() {
                        Action::Reject
                    } else {
                        Action::Backends(list)
                    }
                }
            };
            let sources = if f.kind == FrontendKind::LoadBalancer { s.source_ranges.clone() } else { Vec::new() };
            let line = ServiceLine {
                frontend: key,
                scope,
                kind: f.kind,
                service: &name,
                rev_nat: rev,
                action,
                affinity: s.affinity_timeout,
                sources,
            };
            out.push(Entry { key: (key, scope), line: line.to_string(), backends, rev_nat });
        }
        out
    }

    /// The three files of `node`: `(services, backends, revnat)` texts with
    /// their line counts.
    pub fn node_files(&self, cluster: &Cluster, node: &str) -> [(Arc<str>, usize); 3] {
        let node_ips = cluster.nodes.iter().find(|n| n.name == node).map(|n| n.ips.clone()).unwrap_or_default();
        let mut own = Vec::new();
        for s in self.per_node.iter().map(|&i| &cluster.services[i]) {
            for f in s.frontends(&node_ips).iter().filter(|f| per_node(s, f)) {
                own.extend(self.entries(s, f, Some(node)));
            }
        }
        if own.is_empty() {
            return self.shared_texts.clone();
        }
        texts(self.shared.iter().chain(&own).collect())
    }
}

/// The three texts of `entries`, sorted by key; two Services claiming one
/// frontend, the first by name keeps it (the parser refuses a key twice).
fn texts(mut entries: Vec<&Entry>) -> [(Arc<str>, usize); 3] {
    entries.sort_by_key(|e| e.key);
    entries.dedup_by_key(|e| e.key);
    let mut backends: BTreeMap<u32, &BackendLine> = BTreeMap::new();
    let mut rev_nat: BTreeMap<u16, &RevNatLine> = BTreeMap::new();
    for e in &entries {
        backends.extend(e.backends.iter().map(|b| (b.id, b)));
        rev_nat.insert(e.rev_nat.id, &e.rev_nat);
    }
    let text = |lines: Vec<String>| (Arc::from(policyc_bundle::join(&lines)), lines.len());
    [
        text(entries.iter().map(|e| e.line.clone()).collect()),
        text(backends.values().map(ToString::to_string).collect()),
        text(rev_nat.values().map(ToString::to_string).collect()),
    ]
}
