//! `EndpointSlice` and `Endpoints` objects: a Service's endpoints with
//! their conditions, node and zone, and the ports they serve.
//!
//! Conditions are read as kube-proxy reads them
//! (`pkg/proxy/endpointslicecache.go`): an unset `ready` or `serving` is
//! true ("nil should be interpreted as ready", EndpointSlice API
//! reference), an unset `terminating` false. A legacy `Endpoints`
//! object's `addresses` are ready, its `notReadyAddresses` neither ready
//! nor serving.

use super::core::{port_number, push_ip};
use super::decode::{index, join, Ctx};
use super::k8s::protocol;
use super::yaml::{Node, Value};
use super::{BackendEndpoint, BackendObject, Body, Meta};
use crate::diag::codes;
use policyc_ir::protocol::Protocol;
use policyc_ir::service::Conditions;

/// The label that ties an `EndpointSlice` to its `Service`.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Decodes an `EndpointSlice`: the endpoints of the service named by its
/// `kubernetes.io/service-name` label.
pub fn endpoint_slice(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let Some(service) = meta.labels.get(SERVICE_NAME_LABEL).map(str::to_string) else {
        ctx.report(
            codes::NO_SERVICE_NAME,
            root.get("metadata"),
            "metadata.labels",
            format!("the endpoint slice has no `{SERVICE_NAME_LABEL}` label and is ignored"),
            Some(format!("add the label `{SERVICE_NAME_LABEL}` with the name of its service")),
        );
        return None;
    };
    // Addresses of `FQDN` slices are host names, which policyc cannot use.
    let fqdn = root.get("addressType").and_then(Node::as_str) == Some("FQDN");
    let mut out = Vec::new();
    let endpoints = root.get("endpoints").map(|n| ctx.list(n, "endpoints")).unwrap_or(&[]);
    for (i, endpoint) in endpoints.iter().enumerate() {
        let path = index("endpoints", i);
        let Value::Map(_) = endpoint.value else {
            ctx.wrong_type(endpoint, &path, "a mapping");
            continue;
        };
        let get = |key: &str| endpoint.get(key).filter(|n| n.value != Value::Null);
        let conditions = get("conditions");
        let mut flag = |key: &str, default: bool| {
            let node = conditions.and_then(|c| c.get(key)).filter(|n| n.value != Value::Null);
            node.and_then(|n| ctx.boolean(n, &join(&path, &format!("conditions.{key}")))).unwrap_or(default)
        };
        let conditions = Conditions {
            ready: flag("ready", true),
            serving: flag("serving", true),
            terminating: flag("terminating", false),
        };
        let node = get("nodeName").and_then(|n| ctx.text(n, &join(&path, "nodeName")));
        let zone = get("zone").and_then(|n| ctx.text(n, &join(&path, "zone")));
        let list_path = join(&path, "addresses");
        let list = get("addresses").map(|n| ctx.list(n, &list_path)).unwrap_or(&[]);
        let mut addresses = Vec::new();
        for (j, address) in list.iter().enumerate() {
            if !fqdn {
                push_ip(ctx, &mut addresses, address, &index(&list_path, j));
            }
        }
        if !addresses.is_empty() {
            out.push(BackendEndpoint { addresses, conditions, node, zone });
        }
    }
    let ports = backend_ports(ctx, root.get("ports"), "ports");
    Some(Body::Backends(BackendObject { service, endpoints: out, ports }))
}

/// Decodes an `Endpoints` object: the addresses and ports of every subset
/// of the service with the same name.
pub fn endpoints(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let mut out: Vec<BackendEndpoint> = Vec::new();
    let mut ports = Vec::new();
    let subsets = root.get("subsets").map(|n| ctx.list(n, "subsets")).unwrap_or(&[]);
    for (i, subset) in subsets.iter().enumerate() {
        let path = index("subsets", i);
        let Value::Map(_) = subset.value else {
            ctx.wrong_type(subset, &path, "a mapping");
            continue;
        };
        let not_ready = Conditions { ready: false, serving: false, terminating: false };
        for (key, conditions) in [("addresses", Conditions::READY), ("notReadyAddresses", not_ready)] {
            let list_path = join(&path, key);
            let list = subset.get(key).map(|n| ctx.list(n, &list_path)).unwrap_or(&[]);
            for (j, address) in list.iter().enumerate() {
                let address_path = index(&list_path, j);
                let Value::Map(_) = address.value else {
                    ctx.wrong_type(address, &address_path, "a mapping");
                    continue;
                };
                let mut addresses = Vec::new();
                match address.get("ip").filter(|n| n.value != Value::Null) {
                    Some(ip) => push_ip(ctx, &mut addresses, ip, &join(&address_path, "ip")),
                    None => ctx.report(codes::MISSING_FIELD, Some(address), &address_path, "missing field `ip`", None),
                }
                let node = address
                    .get("nodeName")
                    .filter(|n| n.value != Value::Null)
                    .and_then(|n| ctx.text(n, &join(&address_path, "nodeName")));
                if !addresses.is_empty() && !out.iter().any(|e| e.addresses == addresses) {
                    out.push(BackendEndpoint { addresses, conditions, node, zone: None });
                }
            }
        }
        for port in backend_ports(ctx, subset.get("ports"), &join(&path, "ports")) {
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    Some(Body::Backends(BackendObject { service: meta.name.clone(), endpoints: out, ports }))
}

/// The `ports` of an `EndpointSlice` or an `Endpoints` subset. A slice port
/// without a number stands for "all ports" and has no entry.
fn backend_ports(ctx: &mut Ctx, node: Option<&Node>, path: &str) -> Vec<(Option<String>, Protocol, u16)> {
    let mut out = Vec::new();
    let list = node.map(|n| ctx.list(n, path)).unwrap_or(&[]);
    for (i, port) in list.iter().enumerate() {
        let port_path = index(path, i);
        let Value::Map(_) = port.value else {
            ctx.wrong_type(port, &port_path, "a mapping");
            continue;
        };
        let get = |key: &str| port.get(key).filter(|n| n.value != Value::Null);
        let name = get("name").and_then(|n| ctx.text(n, &join(&port_path, "name"))).filter(|n| !n.is_empty());
        let protocol = match get("protocol") {
            Some(n) => protocol(ctx, n, &join(&port_path, "protocol")),
            None => Some(Protocol::Tcp),
        };
        let number_path = join(&port_path, "port");
        let number =
            get("port").and_then(|n| ctx.int(n, &number_path).and_then(|p| port_number(ctx, n, &number_path, p)));
        if let (Some(protocol), Some(number)) = (protocol, number) {
            out.push((name, protocol, number));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, Diagnostic};
    use std::net::IpAddr;

    use crate::front::tests_support::parse;

    fn one(text: &str) -> BackendObject {
        let (mut bodies, diags) = parse(text);
        assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
        let Some(Body::Backends(b)) = bodies.pop() else { panic!("no backends") };
        b
    }

    fn only(text: &str, code: Code) -> Diagnostic {
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 1, "expected exactly one {}: {diags:#?}", code.id);
        assert_eq!(diags[0].code, code);
        diags.into_iter().next().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn endpoint_slice() {
        let b = one(concat!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n",
            "metadata: {name: web-abc, namespace: prod, labels: {kubernetes.io/service-name: web}}\n",
            "addressType: IPv4\n",
            "endpoints:\n- addresses: [10.0.0.5]\n  conditions: {ready: true}\n  nodeName: node-a\n  zone: z1\n",
            "- addresses: [10.0.0.6]\n  conditions: {ready: false, serving: true, terminating: true}\n",
            "- addresses: [10.0.0.7, 10.0.0.5]\n",
            "ports: [{name: http, port: 8080}, {name: dns, protocol: UDP, port: 53}]\n",
        ));
        assert_eq!(b.service, "web");
        assert_eq!(b.endpoints.len(), 3);
        assert_eq!(b.endpoints[0].node.as_deref(), Some("node-a"));
        assert_eq!(b.endpoints[0].zone.as_deref(), Some("z1"));
        assert_eq!(b.endpoints[1].conditions, Conditions { ready: false, serving: true, terminating: true });
        // Unset conditions: ready and serving, not terminating.
        assert_eq!(b.endpoints[2].conditions, Conditions::READY);
        assert_eq!(b.ready_addresses(), vec![ip("10.0.0.5"), ip("10.0.0.7")]);
        assert_eq!(b.ports, vec![(Some("http".into()), Protocol::Tcp, 8080), (Some("dns".into()), Protocol::Udp, 53)]);
    }

    #[test]
    fn endpoint_slice_errors() {
        let d = only(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x}\naddressType: IPv4\nendpoints: []\n",
            codes::NO_SERVICE_NAME,
        );
        assert!(!d.is_error());
        assert_eq!(parse("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x}\n").0.len(), 0);
        only(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x, labels: {kubernetes.io/service-name: s}}\nendpoints: [{addresses: [x.y]}]\n",
            codes::INVALID_IP,
        );
        let d = only(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x, labels: {kubernetes.io/service-name: s}}\nendpoints: [{addresses: [10.0.0.1], conditions: {serving: maybe}}]\n",
            codes::WRONG_TYPE,
        );
        assert_eq!(d.location.path.as_deref(), Some("endpoints[0].conditions.serving"));
    }

    #[test]
    fn endpoints() {
        let b = one(concat!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: prod}\nsubsets:\n",
            "- addresses: [{ip: 10.0.0.5, nodeName: n1}, {ip: 10.0.0.6}]\n  notReadyAddresses: [{ip: 10.0.0.9}]\n  ports: [{name: http, port: 8080}]\n",
            "- addresses: [{ip: 10.0.0.7}]\n  ports: [{name: http, port: 8080}, {name: q, port: 9, protocol: SCTP}]\n",
        ));
        assert_eq!(b.service, "web");
        assert_eq!(b.ready_addresses(), vec![ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")]);
        assert_eq!(b.endpoints[0].node.as_deref(), Some("n1"));
        let not_ready: Vec<_> = b.endpoints.iter().filter(|e| !e.conditions.serving).collect();
        assert_eq!(not_ready.len(), 1);
        assert_eq!(not_ready[0].addresses, vec![ip("10.0.0.9")]);
        assert_eq!(b.ports, vec![(Some("http".into()), Protocol::Tcp, 8080), (Some("q".into()), Protocol::Sctp, 9)]);
        let d = only(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: w}\nsubsets: [{addresses: [{ip: bad}]}]\n",
            codes::INVALID_IP,
        );
        assert_eq!(d.location.path.as_deref(), Some("subsets[0].addresses[0].ip"));
    }
}
