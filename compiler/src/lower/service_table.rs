//! Services and their backends, as kube-proxy sees them
//! ([`policyc_ir::service`]).
//!
//! Backends come from the Service's EndpointSlices where the input has
//! some (else from its legacy `Endpoints`, which kube-proxy no longer
//! reads but older dumps hold); a slice port serves the Service port of
//! the same name and protocol, as kube-proxy pairs them.
//!
//! Without either, a Service with a selector gets the backends the
//! EndpointSlice controller would publish (`pkg/controller/endpointslice`,
//! `podToEndpoint`): every pod and workload of its namespace whose labels
//! match; `serving` is the pod's `Ready` condition, `terminating` its
//! deletion timestamp, `ready` both together, or always with
//! `publishNotReadyAddresses`; a named `targetPort` is looked up in each
//! pod's container ports, and a pod that does not define it is no backend
//! of that port. A workload standing for its pods is one backend without
//! an address (it is in the reference evaluator's answers, not in maps).
//! A Service without selector and without endpoints has no backends.

use crate::front::decode::PortValue;
use crate::front::{BackendObject, Body, Input, PodTemplate, ServiceObject};
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::ids::EndpointId;
use policyc_ir::labels::Labels;
use policyc_ir::service::{Backend, Conditions, Service, ServicePort};
use std::collections::{BTreeMap, HashMap};

/// A pod or workload that may back a Service.
struct Candidate<'a> {
    namespace: String,
    labels: &'a Labels,
    template: &'a PodTemplate,
    endpoint: Option<EndpointId>,
    address: Option<std::net::IpAddr>,
    node: Option<String>,
    ready: bool,
    terminating: bool,
}

/// The Services of `input` (objects with `duplicate[i]` skipped) with
/// their backends, sorted by namespace and name.
pub fn services(input: &Input, duplicate: &[bool], cluster: &Cluster) -> Vec<Service> {
    let by_name: BTreeMap<String, EndpointId> =
        cluster.endpoints_with_ids().map(|(id, e)| (e.display_name(), id)).collect();
    let mut specs: BTreeMap<(String, String), &ServiceObject> = BTreeMap::new();
    let mut slices: BTreeMap<(String, String), Vec<&BackendObject>> = BTreeMap::new();
    let mut legacy: BTreeMap<(String, String), Vec<&BackendObject>> = BTreeMap::new();
    let mut candidates = Vec::new();
    for (object, _) in input.objects.iter().zip(duplicate).filter(|(_, &d)| !d) {
        let meta = &object.meta;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        match &object.body {
            Body::Service(s) => {
                specs.insert((namespace, meta.name.clone()), s);
            }
            Body::Backends(b) => {
                let to = if meta.kind == "EndpointSlice" { &mut slices } else { &mut legacy };
                to.entry((namespace, b.service.clone())).or_default().push(b);
            }
            Body::Pod(p) => {
                let endpoint = by_name.get(&format!("{namespace}/{}", meta.name)).copied();
                // Every address of the pod is an endpoint (one per family,
                // as the controller writes one slice per address type).
                let addresses: Vec<_> =
                    if p.ips.is_empty() { vec![None] } else { p.ips.iter().map(|&ip| Some(ip)).collect() };
                if endpoint.is_none() && p.ips.is_empty() {
                    continue;
                }
                for address in addresses {
                    candidates.push(Candidate {
                        namespace: namespace.clone(),
                        labels: &meta.labels,
                        template: &p.template,
                        endpoint,
                        address,
                        node: p.node.clone(),
                        ready: p.ready,
                        terminating: p.terminating,
                    });
                }
            }
            Body::Workload(w) => {
                let name = format!("{namespace}/{}[{}]", meta.name, meta.kind);
                let Some(&endpoint) = by_name.get(&name) else { continue };
                debug_assert!(matches!(cluster.endpoint(endpoint).kind, EndpointKind::Workload(_)));
                candidates.push(Candidate {
                    namespace: namespace.clone(),
                    labels: &w.template.labels,
                    template: &w.template,
                    endpoint: Some(endpoint),
                    address: None,
                    node: None,
                    ready: true,
                    terminating: false,
                });
            }
            _ => {}
        }
    }
    // Selectors only match pods of their Service's namespace, and each
    // pod has all of a selector's labels: index the pods by namespace and
    // label, and look at those with the selector's first label only.
    let mut by_label: HashMap<(&str, &str, &str), Vec<&Candidate>> = HashMap::new();
    for c in &candidates {
        for (k, v) in c.labels.iter() {
            by_label.entry((c.namespace.as_str(), k, v)).or_default().push(c);
        }
    }
    specs
        .into_iter()
        .map(|((namespace, name), spec)| {
            let key = (namespace.clone(), name.clone());
            let published = slices.get(&key).filter(|s| !s.is_empty()).or_else(|| legacy.get(&key));
            let ports = spec
                .ports
                .iter()
                .map(|p| {
                    let mut backends = match (published, &spec.selector) {
                        (Some(objects), _) => from_endpoint_objects(cluster, objects, p),
                        (None, Some(selector)) => {
                            // A selector has a label: an empty one is no selector.
                            let here = selector
                                .iter()
                                .next()
                                .and_then(|(k, v)| by_label.get(&(namespace.as_str(), k, v)))
                                .map(Vec::as_slice)
                                .unwrap_or_default();
                            from_selector(here, selector, spec, p)
                        }
                        (None, None) => Vec::new(),
                    };
                    backends.sort();
                    backends.dedup();
                    ServicePort {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: p.protocol,
                        port: p.port,
                        node_port: p.node_port,
                        backends,
                    }
                })
                .collect();
            Service {
                namespace,
                name,
                service_type: spec.service_type,
                cluster_ips: spec.cluster_ips.clone(),
                external_ips: spec.external_ips.clone(),
                load_balancer_ips: spec.load_balancer_ips.clone(),
                ports,
                internal_traffic_policy: spec.internal_traffic_policy,
                external_traffic_policy: spec.external_traffic_policy,
                affinity_timeout: spec.affinity_timeout,
                source_ranges: spec.source_ranges.clone(),
            }
        })
        .collect()
}

/// The backends EndpointSlices (or Endpoints) publish for Service port `p`.
fn from_endpoint_objects(cluster: &Cluster, objects: &[&BackendObject], p: &crate::front::ServicePort) -> Vec<Backend> {
    let mut out = Vec::new();
    for object in objects {
        let wanted = p.name.as_deref();
        let Some(&(_, _, number)) =
            object.ports.iter().find(|(name, protocol, _)| name.as_deref() == wanted && *protocol == p.protocol)
        else {
            continue;
        };
        for e in &object.endpoints {
            for &ip in &e.addresses {
                out.push(Backend {
                    address: Some(ip),
                    port: number,
                    endpoint: cluster.endpoint_by_ip(ip),
                    node: e.node.clone(),
                    zone: e.zone.clone(),
                    conditions: e.conditions,
                });
            }
        }
    }
    out
}

/// The backends the EndpointSlice controller would publish for Service
/// port `p` of a Service with `selector`, among `candidates` (pods and
/// workloads of its namespace with one of the selector's labels).
fn from_selector(
    candidates: &[&Candidate],
    selector: &Labels,
    spec: &ServiceObject,
    p: &crate::front::ServicePort,
) -> Vec<Backend> {
    let matches = |labels: &Labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v));
    candidates
        .iter()
        .filter(|c| matches(c.labels))
        .filter_map(|c| {
            let port = match &p.target_port {
                None => p.port,
                Some(PortValue::Number(n)) => *n,
                Some(PortValue::Name(name)) => {
                    c.template.ports.iter().find(|np| &np.name == name && np.protocol == p.protocol)?.port
                }
            };
            let serving = c.ready;
            let ready = spec.publish_not_ready || (serving && !c.terminating);
            Some(Backend {
                address: c.address,
                port,
                endpoint: c.endpoint,
                node: c.node.clone(),
                zone: None,
                conditions: Conditions { ready, serving, terminating: c.terminating },
            })
        })
        .collect()
}
