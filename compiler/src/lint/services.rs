//! Services (W0280-W0282): a selector that matches nothing, a named
//! `targetPort` none of the selected pods defines, a port without a usable
//! backend. Each points at the Service; they run only where the input has
//! endpoints (a repository of Services without pods would warn on all).
//!
//! A Service with EndpointSlices (or Endpoints) in the input takes its
//! backends from them, so only W0282 applies to it.

use crate::diag::{codes, Diagnostic, Location};
use crate::front::decode::PortValue;
use crate::front::{Body, ServiceObject};
use crate::pipeline::Loaded;
use policyc_ir::cluster::Endpoint;
use policyc_ir::service::select::{select, Selection};
use policyc_ir::service::ServiceType;
use std::collections::{BTreeSet, HashMap};

/// W0280, W0281, W0282.
pub(super) fn services(loaded: &Loaded, out: &mut Vec<Diagnostic>) {
    let cluster = &loaded.lowered.cluster;
    if cluster.endpoints.is_empty() {
        return;
    }
    let namespace_of = |ns: &Option<String>| ns.clone().unwrap_or_else(|| "default".into());
    let published: BTreeSet<(String, String)> = loaded
        .input
        .objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::Backends(b) => Some((namespace_of(&o.meta.namespace), b.service.clone())),
            _ => None,
        })
        .collect();
    // Endpoints by namespace and label: a selector's matches are among
    // those with its first label.
    let mut by_label: HashMap<(&str, &str, &str), Vec<&Endpoint>> = HashMap::new();
    for e in &cluster.endpoints {
        for (k, v) in e.labels.iter() {
            by_label.entry((e.namespace.as_str(), k, v)).or_default().push(e);
        }
    }
    for object in &loaded.input.objects {
        let Body::Service(spec) = &object.body else { continue };
        let meta = &object.meta;
        let namespace = namespace_of(&meta.namespace);
        let Some(index) = cluster.service_by_name(&namespace, &meta.name) else { continue };
        let service = &cluster.services[index];
        if service.service_type == ServiceType::ExternalName {
            continue;
        }
        let at = |path: String, pos: Option<crate::front::yaml::Pos>| {
            let mut l: Location = meta.location.clone().with_object(meta);
            l.path = Some(path);
            l.pos = Some(pos.unwrap_or(meta.start));
            l
        };
        let from_selector = !published.contains(&(namespace.clone(), meta.name.clone()));
        if let (true, Some(selector)) = (from_selector, &spec.selector) {
            let first = selector.iter().next().and_then(|(k, v)| by_label.get(&(namespace.as_str(), k, v)));
            let matched: Vec<&Endpoint> = first
                .into_iter()
                .flatten()
                .copied()
                .filter(|e| selector.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
                .collect();
            // The pods' identity labels leave some labels out (Cilium's
            // filter); the backends were found on all of them.
            let has_backends = service.ports.iter().any(|p| !p.backends.is_empty());
            if matched.is_empty() && !has_backends {
                out.push(
                    Diagnostic::new(
                        codes::SERVICE_SELECTOR_UNMATCHED,
                        at("spec.selector".into(), spec.selector_pos),
                        format!("the selector of Service `{namespace}/{}` matches no pod or workload", meta.name),
                    )
                    .with_help("check the selector against the pods' labels; connections to the Service are refused"),
                );
                continue;
            }
            target_ports(spec, &matched, &at, out);
        }
        // Headless Services have no frontend to refuse connections.
        if service.cluster_ips.is_empty() && !service.service_type.has_node_ports() {
            continue;
        }
        // The lowered ports are the decoded ones, in order.
        for (port, written) in service.ports.iter().zip(&spec.ports) {
            if matches!(select(&port.backends, Default::default(), None), Selection::NoEndpoints) {
                out.push(
                    Diagnostic::new(
                        codes::SERVICE_PORT_WITHOUT_BACKENDS,
                        at(format!("spec.ports[{}]", written.index), Some(written.pos)),
                        format!(
                            "port {}/{} of Service `{namespace}/{}` has no ready or serving backend: connections are refused",
                            port.protocol.name(),
                            port.port,
                            meta.name
                        ),
                    )
                    .with_help("kube-proxy rejects connections to a Service port without endpoints (ICMP port unreachable)"),
                );
            }
        }
    }
}

/// W0281 for each named `targetPort` of `spec` that none of `matched`
/// defines.
fn target_ports(
    spec: &ServiceObject,
    matched: &[&Endpoint],
    at: &dyn Fn(String, Option<crate::front::yaml::Pos>) -> Location,
    out: &mut Vec<Diagnostic>,
) {
    for p in &spec.ports {
        let Some(PortValue::Name(name)) = &p.target_port else { continue };
        if !matched.iter().any(|e| e.named_port(name, p.protocol).is_some()) {
            out.push(
                Diagnostic::new(
                    codes::SERVICE_TARGET_PORT_UNDEFINED,
                    at(format!("spec.ports[{}].targetPort", p.index), p.target_pos),
                    format!(
                        "named target port `{name}` is defined by none of the {} pod(s) the selector matches",
                        matched.len()
                    ),
                )
                .with_help("name a container port the pods define, or give the port number"),
            );
        }
    }
}
