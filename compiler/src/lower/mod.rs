//! Lowering: decoded objects → the IR's cluster model.
//!
//! - Namespaces get their `kubernetes.io/metadata.name` label (the API server
//!   sets it); namespaces that only appear as `metadata.namespace` of other
//!   objects are created with that label alone.
//! - Every pod, and every workload whose pods are not in the input, becomes
//!   an endpoint with Cilium's identity labels: the identity-relevant pod
//!   labels, `io.kubernetes.pod.namespace`, the namespace's labels under
//!   `io.cilium.k8s.namespace.labels.`, and the service account.
//! - A workload is left out when an object it owns is in the input (a
//!   `kubectl get -o yaml` dump holds the Deployment, its ReplicaSet and
//!   its Pods: only the Pods are real endpoints).
//! - Host-network pods (and workloads whose template has `hostNetwork`)
//!   are not endpoints: their traffic is their node's (`host` on it,
//!   `remote-node` elsewhere) and policies selecting them by pod labels do
//!   not apply to them, as in Cilium ("pods with host networking enabled
//!   are unaffected by network policy rules", and Cilium's host
//!   firewall: <https://docs.cilium.io/en/stable/security/policy/host/>).
//!   They are kept apart ([`Lowered::host_network`]) for lint.
//! - The addresses behind Service `default/kubernetes` (its EndpointSlices
//!   or its legacy Endpoints) are the API server's, which Cilium's
//!   `kube-apiserver` entity selects ([`policyc_ir::reserved`]).
//! - `toServices` entries become the peers of the Services they name
//!   ([`services`]).
//! - Services get their backends from their EndpointSlices, or from their
//!   selector as the EndpointSlice controller would ([`service_table`]).
//! - The same object twice is an error.
//! - Under `--allow-localhost=always` (the default) the built-in policy
//!   letting the local node reach its endpoints comes last
//!   ([`policyc_ir::localhost`]).

mod service_table;
mod services;

use crate::diag::{codes, Diagnostic, Location};
use crate::front::cilium::services::ServiceRef;
use crate::front::spans::PolicySpans;
use crate::front::yaml::Pos;
use crate::front::{Body, Input, Meta, Object, PodTemplate};
use crate::semantics::{AllowLocalhost, Semantics};
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, Node};
use policyc_ir::labels::{
    is_identity_relevant, Labels, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, NAMESPACE_NAME_LABEL, SERVICE_ACCOUNT_LABEL,
};
use policyc_ir::localhost::allow_localhost_policy;
use policyc_ir::policy::Policy;
use policyc_ir::tier::TierPolicy;
use std::collections::{BTreeMap, BTreeSet};

/// The lowered cluster, with where each policy came from.
#[derive(Debug, Default)]
pub struct Lowered {
    /// The cluster model.
    pub cluster: Cluster,
    /// Per policy of `cluster.policies`: the location of its object.
    pub policy_locations: Vec<Location>,
    /// Per policy of `cluster.policies`: where its parts are written.
    pub policy_spans: Vec<PolicySpans>,
    /// Per endpoint of `cluster.endpoints`: the location of its object.
    pub endpoint_locations: Vec<Location>,
    /// Per endpoint of `cluster.endpoints`: where its object's
    /// `metadata.name` is written.
    pub endpoint_name_positions: Vec<Pos>,
    /// Host-network pods and workloads, which are not endpoints, with the
    /// identity labels they would have (what a policy's selector meant
    /// for them is matched against), sorted by name.
    pub host_network: Vec<Endpoint>,
    /// Per policy of `cluster.tier_policies`: the location of its object.
    pub tier_locations: Vec<Location>,
    /// Per policy of `cluster.tier_policies`: where each rule is written.
    pub tier_rule_positions: Vec<Vec<Pos>>,
}

/// Lowers the objects of `input` under `semantics`, appending diagnostics
/// to `diags`.
pub fn lower(input: &Input, semantics: Semantics, diags: &mut Vec<Diagnostic>) -> Lowered {
    let mut seen: BTreeMap<(String, Option<String>, String), &Location> = BTreeMap::new();
    let mut owners: BTreeSet<(Option<String>, String, String)> = BTreeSet::new();
    let mut namespaces: BTreeMap<String, Labels> = BTreeMap::new();
    let mut duplicate = vec![false; input.objects.len()];

    for (i, object) in input.objects.iter().enumerate() {
        let meta = &object.meta;
        let key = (meta.kind.clone(), meta.namespace.clone(), meta.name.clone());
        if let Some(first) = seen.get(&key) {
            let first_at = describe(first);
            diags.push(
                Diagnostic::new(
                    codes::DUPLICATE_OBJECT,
                    meta.location.clone().with_object(meta),
                    format!("`{}` is defined twice", meta.display()),
                )
                .with_help(format!("the first definition is at {first_at}; this one is ignored")),
            );
            duplicate[i] = true;
            continue;
        }
        seen.insert(key, &meta.location);
        if let Some((kind, name)) = &meta.owner {
            owners.insert((meta.namespace.clone(), kind.clone(), name.clone()));
        }
        if let Body::Namespace = object.body {
            let mut labels = meta.labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL, meta.name.clone());
            namespaces.insert(meta.name.clone(), labels);
        }
    }
    for object in &input.objects {
        if let Some(ns) = &object.meta.namespace {
            namespaces
                .entry(ns.clone())
                .or_insert_with(|| Labels::from_pairs([(NAMESPACE_NAME_LABEL.to_string(), ns.clone())]));
        }
    }

    let services = services::Services::of(input, &duplicate);
    // Each object lowers on its own (endpoints' identity labels are most of
    // the work), on every core; the results are gathered in input order.
    let objects: Vec<(&Object, bool)> = input.objects.iter().zip(duplicate.iter().copied()).collect();
    let parts = policyc_ir::parallel::map(&objects, |&(object, duplicate)| {
        if duplicate {
            return Part::Nothing;
        }
        lower_object(object, &owners, &namespaces)
    });
    let mut lowered = Lowered::default();
    let mut endpoints: Vec<Box<(EndpointKey, Endpoint, Location, Pos)>> = Vec::new();
    let mut policies = Vec::new();
    let mut nodes = Vec::new();
    for part in parts {
        match part {
            Part::Endpoint(endpoint) => endpoints.push(endpoint),
            Part::HostNetwork(e) => lowered.host_network.push(*e),
            Part::Policies(ps) => policies.extend(ps),
            Part::Node(n) => nodes.push(n),
            Part::Tier(policy, location, positions) => {
                lowered.cluster.tier_policies.push(*policy);
                lowered.tier_locations.push(location);
                lowered.tier_rule_positions.push(positions);
            }
            Part::ApiServer(ips) => lowered.cluster.apiserver.extend(ips),
            Part::Nothing => {}
        }
    }
    // Stable: endpoints of one name and addresses keep their input order.
    endpoints.sort_by(|a, b| a.0.cmp(&b.0));

    nodes.sort();
    lowered.cluster.apiserver.sort();
    lowered.cluster.apiserver.dedup();
    lowered.host_network.sort_by_key(Endpoint::display_name);
    lowered.cluster.namespaces = namespaces;
    for endpoint in endpoints {
        let (_, endpoint, location, name_pos) = *endpoint;
        lowered.cluster.endpoints.push(endpoint);
        lowered.endpoint_locations.push(location);
        lowered.endpoint_name_positions.push(name_pos);
    }
    for (mut policy, location, spans, refs) in policies {
        services::resolve(&services, &mut policy, &refs, &location, diags);
        lowered.cluster.policies.push(policy);
        lowered.policy_locations.push(location);
        lowered.policy_spans.push(spans);
    }
    if semantics.allow_localhost == AllowLocalhost::Always {
        // Last, so that the manifests' policies keep their numbers.
        lowered.cluster.policies.push(allow_localhost_policy());
        lowered.policy_locations.push(Location::default());
        lowered.policy_spans.push(PolicySpans::default());
    }
    lowered.cluster.nodes = nodes;
    lowered.cluster.services = service_table::services(input, &duplicate, &lowered.cluster);
    lowered
}

/// The order of endpoints in the cluster: display name, then addresses.
type EndpointKey = (String, Vec<std::net::IpAddr>);

/// What one object adds to the cluster.
enum Part {
    /// Boxed: an endpoint is several times larger than the other parts.
    Endpoint(Box<(EndpointKey, Endpoint, Location, Pos)>),
    /// A host-network pod or workload: not an endpoint.
    HostNetwork(Box<Endpoint>),
    Policies(Vec<(Policy, Location, PolicySpans, Vec<ServiceRef>)>),
    Node(Node),
    Tier(Box<TierPolicy>, Location, Vec<Pos>),
    /// Addresses behind Service `default/kubernetes`.
    ApiServer(Vec<std::net::IpAddr>),
    Nothing,
}

/// What `object` (not a duplicate) adds to the cluster; `owners` are the
/// owners of objects in the input, `namespaces` every namespace's labels.
fn lower_object(
    object: &Object,
    owners: &BTreeSet<(Option<String>, String, String)>,
    namespaces: &BTreeMap<String, Labels>,
) -> Part {
    let meta = &object.meta;
    let located = || meta.location.clone().with_object(meta);
    let endpoint_part =
        |e: Endpoint| Part::Endpoint(Box::new(((e.display_name(), e.ips.clone()), e, located(), meta.name_pos)));
    match &object.body {
        Body::Pod(pod) => {
            let mut e = endpoint(meta, &pod.template, namespaces, EndpointKind::Pod);
            e.node = pod.node.clone();
            // A host-network pod's addresses are its node's, which the
            // ipcache maps to the node.
            if pod.template.host_network {
                return Part::HostNetwork(Box::new(e));
            }
            e.ips = pod.ips.clone();
            endpoint_part(e)
        }
        Body::Workload(w) => {
            let owned = owners.contains(&(meta.namespace.clone(), meta.kind.clone(), meta.name.clone()));
            if owned {
                return Part::Nothing;
            }
            let e = endpoint(meta, &w.template, namespaces, EndpointKind::Workload(meta.kind.clone()));
            if w.template.host_network {
                return Part::HostNetwork(Box::new(e));
            }
            endpoint_part(e)
        }
        Body::Policy(ps) => {
            let location = located();
            Part::Policies(
                ps.iter().map(|p| (p.policy.clone(), location.clone(), p.spans.clone(), p.services.clone())).collect(),
            )
        }
        Body::Tier(t) => Part::Tier(Box::new(t.policy.clone()), located(), t.rules.clone()),
        Body::Node(n) => Part::Node(Node { name: meta.name.clone(), labels: meta.labels.clone(), ips: n.ips.clone() }),
        Body::Backends(b)
            if b.service == APISERVER_SERVICE && meta.namespace.as_deref().unwrap_or("default") == "default" =>
        {
            Part::ApiServer(b.ready_addresses())
        }
        _ => Part::Nothing,
    }
}

/// The Service in namespace `default` whose endpoints are the API server's
/// addresses (Kubernetes: "the `kubernetes` service in the `default`
/// namespace" points at the API server).
const APISERVER_SERVICE: &str = "kubernetes";

/// An endpoint with Cilium's identity labels.
fn endpoint(
    meta: &Meta,
    template: &PodTemplate,
    namespaces: &BTreeMap<String, Labels>,
    kind: EndpointKind,
) -> Endpoint {
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    Endpoint {
        labels: identity_labels(
            &namespace,
            &template.labels,
            namespaces.get(&namespace),
            template.service_account.as_deref(),
        ),
        namespace,
        name: meta.name.clone(),
        kind,
        ips: Vec::new(),
        node: None,
        named_ports: template.ports.clone(),
    }
}

/// Cilium's identity labels of a pod.
pub fn identity_labels(
    namespace: &str,
    pod_labels: &Labels,
    namespace_labels: Option<&Labels>,
    service_account: Option<&str>,
) -> Labels {
    let mut labels = Labels::new();
    for (k, v) in pod_labels.iter() {
        if is_identity_relevant(k) {
            labels.insert(k, v);
        }
    }
    labels.insert(NAMESPACE_LABEL, namespace);
    for (k, v) in namespace_labels.into_iter().flat_map(Labels::iter) {
        labels.insert(format!("{NAMESPACE_LABELS_PREFIX}{k}"), v);
    }
    labels.insert(SERVICE_ACCOUNT_LABEL, service_account.unwrap_or("default"));
    labels
}

fn describe(location: &Location) -> String {
    let mut s = location.file.clone().unwrap_or_else(|| "<input>".into());
    if let Some(pos) = location.pos {
        s = format!("{s}:{}:{}", pos.line, pos.col);
    }
    if let Some(doc) = location.document {
        s = format!("{s} (document {})", doc + 1);
    }
    s
}

impl Location {
    /// This location, naming `meta`'s object.
    pub fn with_object(mut self, meta: &Meta) -> Location {
        self.object = Some(meta.display());
        self
    }
}
