//! Core objects: `Pod` and `Node` (`Service` is in [`super::service`],
//! `EndpointSlice` and `Endpoints` in [`super::backends`]).
//!
//! These objects have large schemas that policyc mostly does not use, so
//! only the fields it reads are checked (their types and values); other
//! fields are not reported as unknown.

use super::decode::{check_port_name, index, join, Ctx};
use super::k8s::protocol;
use super::yaml::{Node, Value};
use super::{Body, Meta, NodeObject, PodObject, PodTemplate};
use crate::diag::codes;
use policyc_ir::cluster::NamedPort;
use policyc_ir::labels::Labels;
use policyc_ir::protocol::Protocol;
use std::net::IpAddr;

/// Decodes a `Pod`: labels, service account, host networking, named
/// container ports, IPs and node.
pub fn pod(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    // A pod without `spec` is invalid for the API server, but its labels
    // and IPs are still what a policy sees, so it is read as it is.
    let spec = root.get("spec").filter(|s| s.value != Value::Null);
    let template = match spec {
        Some(spec) => pod_template(ctx, meta.labels.clone(), spec, "spec"),
        None => PodTemplate { labels: meta.labels.clone(), ..PodTemplate::default() },
    };
    let node = spec
        .and_then(|s| s.get("nodeName"))
        .filter(|n| n.value != Value::Null)
        .and_then(|n| ctx.text(n, "spec.nodeName"));

    let mut ips = Vec::new();
    if let Some(status) = root.get("status").filter(|s| s.value != Value::Null) {
        if let Some(pod_ips) = status.get("podIPs") {
            for (i, entry) in ctx.list(pod_ips, "status.podIPs").iter().enumerate() {
                let path = index("status.podIPs", i);
                let Value::Map(_) = entry.value else {
                    ctx.wrong_type(entry, &path, "a mapping");
                    continue;
                };
                if let Some(ip) = entry.get("ip").filter(|n| n.value != Value::Null) {
                    push_ip(ctx, &mut ips, ip, &join(&path, "ip"));
                }
            }
        }
        if let Some(ip) = status.get("podIP").filter(|n| n.value != Value::Null) {
            push_ip(ctx, &mut ips, ip, "status.podIP");
        }
    }
    let (ready, terminating) = pod_state(ctx, root);
    Some(Body::Pod(PodObject { template, ips, node, ready, terminating }))
}

/// Whether the pod is ready (its `Ready` condition is not `False`; a pod
/// without status counts as ready) and whether it is terminating
/// (`metadata.deletionTimestamp` is set): what the EndpointSlice
/// controller reads (`podutil.IsPodReady`, `DeletionTimestamp`).
fn pod_state(ctx: &mut Ctx, root: &Node) -> (bool, bool) {
    let terminating =
        root.get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some_and(|n| n.value != Value::Null);
    let mut ready = true;
    let conditions = root.get("status").and_then(|s| s.get("conditions")).filter(|n| n.value != Value::Null);
    for (i, c) in conditions.map(|n| ctx.list(n, "status.conditions")).unwrap_or(&[]).iter().enumerate() {
        if c.get("type").and_then(Node::as_str) == Some("Ready") {
            let path = join(&index("status.conditions", i), "status");
            ready = c.get("status").and_then(|s| ctx.string(s, &path)) == Some("True");
        }
    }
    (ready, terminating)
}

/// What a pod spec (of a `Pod` or of a workload's pod template at `path`)
/// contributes to its endpoint, with `labels` from the pod's metadata.
pub fn pod_template(ctx: &mut Ctx, labels: Labels, spec: &Node, path: &str) -> PodTemplate {
    let mut template = PodTemplate { labels, ..PodTemplate::default() };
    let Value::Map(_) = spec.value else {
        ctx.wrong_type(spec, path, "a mapping");
        return template;
    };
    let get = |key: &str| spec.get(key).filter(|n| n.value != Value::Null);
    // `serviceAccount` is the deprecated alias; the API server copies one
    // into the other, and `serviceAccountName` wins when both are set.
    template.service_account = match (get("serviceAccountName"), get("serviceAccount")) {
        (Some(n), _) => ctx.text(n, &join(path, "serviceAccountName")),
        (None, Some(n)) => ctx.text(n, &join(path, "serviceAccount")),
        (None, None) => None,
    };
    template.host_network =
        get("hostNetwork").and_then(|n| ctx.boolean(n, &join(path, "hostNetwork"))).unwrap_or(false);
    for list in ["containers", "initContainers"] {
        let list_path = join(path, list);
        let containers = get(list).map(|n| ctx.list(n, &list_path)).unwrap_or(&[]);
        for (i, container) in containers.iter().enumerate() {
            let container_path = index(&list_path, i);
            let Value::Map(_) = container.value else {
                ctx.wrong_type(container, &container_path, "a mapping");
                continue;
            };
            let ports_path = join(&container_path, "ports");
            let ports = container.get("ports").map(|n| ctx.list(n, &ports_path)).unwrap_or(&[]);
            for (j, port) in ports.iter().enumerate() {
                if let Some(named) = container_port(ctx, port, &index(&ports_path, j)) {
                    if !template.ports.contains(&named) {
                        template.ports.push(named);
                    }
                }
            }
        }
    }
    template
}

/// One container port; `Some` only for a valid named one.
fn container_port(ctx: &mut Ctx, node: &Node, path: &str) -> Option<NamedPort> {
    // The one part of the pod schema checked for unknown fields: it is
    // small and stable, and a misspelt `containerPort` loses the port.
    let fields = ctx.fields(node, path, &["name", "containerPort", "protocol", "hostPort", "hostIP"])?;
    let get = |key: &str| fields.get(key);
    let number = match get("containerPort") {
        Some(n) => {
            ctx.int(n, &join(path, "containerPort")).and_then(|p| port_number(ctx, n, &join(path, "containerPort"), p))
        }
        None => {
            // The API server rejects this; it is only a warning here because
            // the port is then simply not there (a named port that does not
            // resolve allows less, never more), and test fixtures have it.
            ctx.report(
                codes::CONTAINER_PORT_WITHOUT_NUMBER,
                Some(node),
                path,
                "container port has no `containerPort` and is ignored",
                Some("add `containerPort` with the port number".into()),
            );
            return None;
        }
    };
    let protocol = match get("protocol") {
        Some(n) => protocol(ctx, n, &join(path, "protocol")),
        None => Some(Protocol::Tcp),
    };
    let name_path = join(path, "name");
    let name = get("name").and_then(|n| {
        let name = ctx.string(n, &name_path)?;
        if let Err(why) = check_port_name(name) {
            ctx.report(
                codes::INVALID_PORT_NAME,
                Some(n),
                &name_path,
                format!("invalid port name `{name}`: {why}"),
                None,
            );
            return None;
        }
        Some(name.to_string())
    });
    Some(NamedPort { name: name?, protocol: protocol?, port: number? })
}

/// Checks that `value` (read from `node`) is a port number 1-65535.
pub(super) fn port_number(ctx: &mut Ctx, node: &Node, path: &str, value: i64) -> Option<u16> {
    if (1..=65535).contains(&value) {
        Some(value as u16)
    } else {
        ctx.report(
            codes::PORT_OUT_OF_RANGE,
            Some(node),
            path,
            format!("port `{value}` is out of range"),
            Some("ports are 1-65535".into()),
        );
        None
    }
}

/// Reads an IP address into `ips` (once), reporting an invalid one.
pub(super) fn push_ip(ctx: &mut Ctx, ips: &mut Vec<IpAddr>, node: &Node, path: &str) {
    let Some(text) = ctx.string(node, path) else { return };
    match text.parse::<IpAddr>() {
        Ok(ip) if !ips.contains(&ip) => ips.push(ip),
        Ok(_) => {}
        Err(_) => ctx.report(codes::INVALID_IP, Some(node), path, format!("invalid IP address `{text}`"), None),
    }
}

/// Decodes a `Node`: its `InternalIP` and `ExternalIP` addresses.
pub fn node(ctx: &mut Ctx, _meta: &Meta, root: &Node) -> Option<Body> {
    let mut ips = Vec::new();
    let addresses = root.get("status").and_then(|s| s.get("addresses"));
    let list = addresses.map(|n| ctx.list(n, "status.addresses")).unwrap_or(&[]);
    for (i, address) in list.iter().enumerate() {
        let path = index("status.addresses", i);
        let Value::Map(_) = address.value else {
            ctx.wrong_type(address, &path, "a mapping");
            continue;
        };
        let kind = address.get("type").and_then(Node::as_str);
        if !matches!(kind, Some("InternalIP" | "ExternalIP")) {
            continue; // `Hostname`, `InternalDNS`, ... are names, not addresses
        }
        match address.get("address").filter(|n| n.value != Value::Null) {
            Some(ip) => push_ip(ctx, &mut ips, ip, &join(&path, "address")),
            None => ctx.report(codes::MISSING_FIELD, Some(address), &path, "missing field `address`", None),
        }
    }
    Some(Body::Node(NodeObject { ips }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, Diagnostic};

    use crate::front::tests_support::parse;

    fn one(text: &str) -> Body {
        let (mut bodies, diags) = parse(text);
        assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
        assert_eq!(bodies.len(), 1);
        bodies.pop().unwrap()
    }

    /// The only diagnostic, which must have `code`.
    fn only(text: &str, code: Code) -> Diagnostic {
        let (_, diags) = parse(text);
        assert_eq!(diags.len(), 1, "expected exactly one {}: {diags:#?}", code.id);
        assert_eq!(diags[0].code, code);
        diags.into_iter().next().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: prod, labels: {app: web}}
spec:
  serviceAccountName: web-sa
  nodeName: node-a
  initContainers:
  - name: init
    ports: [{name: metrics, containerPort: 9090}]
  containers:
  - name: web
    image: nginx
    resources: {limits: {cpu: 1}}
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    - {containerPort: 9000}
status:
  phase: Running
  podIP: 10.0.0.5
  podIPs: [{ip: 10.0.0.5}, {ip: "fd00::5"}]
"#;

    #[test]
    fn pod() {
        let Body::Pod(pod) = one(POD) else { panic!() };
        assert_eq!(pod.template.labels, Labels::from_pairs([("app", "web")]));
        assert_eq!(pod.template.service_account.as_deref(), Some("web-sa"));
        assert!(!pod.template.host_network);
        let named = |name: &str, protocol, port| NamedPort { name: name.into(), protocol, port };
        assert_eq!(
            pod.template.ports,
            vec![
                named("http", Protocol::Tcp, 8080),
                named("dns", Protocol::Udp, 53),
                named("metrics", Protocol::Tcp, 9090)
            ]
        );
        assert_eq!(pod.ips, vec![ip("10.0.0.5"), ip("fd00::5")]);
        assert_eq!(pod.node.as_deref(), Some("node-a"));
        assert!(pod.ready && !pod.terminating);
    }

    #[test]
    fn pod_readiness() {
        let Body::Pod(pod) = one(concat!(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, deletionTimestamp: '2026-01-01T00:00:00Z'}\n",
            "status: {conditions: [{type: PodScheduled, status: 'True'}, {type: Ready, status: 'False'}]}\n",
        )) else {
            panic!()
        };
        assert!(!pod.ready && pod.terminating);
    }

    #[test]
    fn pod_minimal() {
        let Body::Pod(pod) =
            one("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  serviceAccount: old\n  hostNetwork: true\n")
        else {
            panic!()
        };
        assert_eq!(pod.template.service_account.as_deref(), Some("old"));
        assert!(pod.template.host_network);
        assert!(pod.ips.is_empty() && pod.node.is_none() && pod.template.ports.is_empty());
        let Body::Pod(pod) = one("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.1.1.1}\n") else {
            panic!()
        };
        assert_eq!(pod.ips, vec![ip("10.1.1.1")]);
    }

    #[test]
    fn pod_invalid_ip() {
        let d = only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIPs: [{ip: 10.0.0.300}]}\n",
            codes::INVALID_IP,
        );
        assert_eq!(d.message, "invalid IP address `10.0.0.300`");
        assert_eq!(d.location.path.as_deref(), Some("status.podIPs[0].ip"));
        only("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: nope}\n", codes::INVALID_IP);
    }

    #[test]
    fn pod_field_types() {
        let d = only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: yes please}\n",
            codes::WRONG_TYPE,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.hostNetwork"));
        let d = only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: [{name: http, containerPort: 0}]}]}\n",
            codes::PORT_OUT_OF_RANGE,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.containers[0].ports[0].containerPort"));
        let d = only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: [{name: http, containerPort: 80, protocol: tcp}]}]}\n",
            codes::UNKNOWN_PROTOCOL,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.containers[0].ports[0].protocol"));
        only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: [{name: Http_Port, containerPort: 80}]}]}\n",
            codes::INVALID_PORT_NAME,
        );
        let d = only(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: [{name: http}]}]}\n",
            codes::CONTAINER_PORT_WITHOUT_NUMBER,
        );
        assert!(!d.is_error());
    }

    #[test]
    fn misspelt_container_port() {
        let (bodies, diags) = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: [{name: udps, containerport: 53}]}]}\n");
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, [codes::UNKNOWN_FIELD, codes::CONTAINER_PORT_WITHOUT_NUMBER]);
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `containerPort`?"));
        let Body::Pod(pod) = &bodies[0] else { panic!() };
        assert!(pod.template.ports.is_empty());
    }

    #[test]
    fn node() {
        let Body::Node(n) = one(concat!(
            "apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\nstatus:\n  addresses:\n",
            "  - {type: Hostname, address: node-a}\n  - {type: InternalIP, address: 192.168.1.10}\n",
            "  - {type: ExternalIP, address: 203.0.113.7}\n  - {type: InternalIP, address: 192.168.1.10}\n",
        )) else {
            panic!()
        };
        assert_eq!(n.ips, vec![ip("192.168.1.10"), ip("203.0.113.7")]);
        let d = only("apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: [{type: InternalIP, address: 1.2.3}]}\n", codes::INVALID_IP);
        assert_eq!(d.location.path.as_deref(), Some("status.addresses[0].address"));
    }
}
