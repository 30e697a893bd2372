//! Core objects: `Pod`, `Service`, `Endpoints`, `EndpointSlice`, `Node`.
//!
//! These objects have large schemas that policyc mostly does not use, so
//! only the fields it reads are checked (their types and values); other
//! fields are not reported as unknown.

use super::decode::{check_port_name, index, join, plain_key, Ctx};
use super::k8s::{int_or_string_port, protocol};
use super::yaml::{Node, Value};
use super::{BackendObject, Body, Meta, NodeObject, PodObject, PodTemplate, ServiceObject, ServicePort};
use crate::diag::codes;
use policyc_ir::cluster::NamedPort;
use policyc_ir::labels::Labels;
use policyc_ir::protocol::Protocol;
use std::net::IpAddr;

/// The label that ties an `EndpointSlice` to its `Service`.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

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
    Some(Body::Pod(PodObject { template, ips, node }))
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
fn port_number(ctx: &mut Ctx, node: &Node, path: &str, value: i64) -> Option<u16> {
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
fn push_ip(ctx: &mut Ctx, ips: &mut Vec<IpAddr>, node: &Node, path: &str) {
    let Some(text) = ctx.string(node, path) else { return };
    match text.parse::<IpAddr>() {
        Ok(ip) if !ips.contains(&ip) => ips.push(ip),
        Ok(_) => {}
        Err(_) => ctx.report(codes::INVALID_IP, Some(node), path, format!("invalid IP address `{text}`"), None),
    }
}

/// Decodes a `Service`: selector, ports, cluster IPs and type.
pub fn service(ctx: &mut Ctx, _meta: &Meta, root: &Node) -> Option<Body> {
    let spec = super::spec(ctx, root)?;
    let Value::Map(_) = spec.value else {
        ctx.wrong_type(spec, "spec", "a mapping");
        return None;
    };
    let get = |key: &str| spec.get(key).filter(|n| n.value != Value::Null);
    // An empty selector is no selector: the endpoints are managed by hand.
    let selector = get("selector").map(|n| ctx.labels(n, "spec.selector", plain_key)).filter(|l| !l.is_empty());

    let mut ports = Vec::new();
    let port_nodes = get("ports").map(|n| ctx.list(n, "spec.ports")).unwrap_or(&[]);
    for (i, node) in port_nodes.iter().enumerate() {
        if let Some(p) = service_port(ctx, node, &index("spec.ports", i)) {
            ports.push(p);
        }
    }

    let mut cluster_ips = Vec::new();
    let mut add_cluster_ip = |ctx: &mut Ctx, node: &Node, path: &str| {
        // `None` marks a headless service; `""` asks for an allocation.
        if !matches!(node.as_str(), Some("None" | "")) {
            push_ip(ctx, &mut cluster_ips, node, path);
        }
    };
    if let Some(list) = get("clusterIPs") {
        for (i, node) in ctx.list(list, "spec.clusterIPs").iter().enumerate() {
            add_cluster_ip(ctx, node, &index("spec.clusterIPs", i));
        }
    }
    if let Some(node) = get("clusterIP") {
        add_cluster_ip(ctx, node, "spec.clusterIP");
    }

    let service_type = get("type").and_then(|n| ctx.string(n, "spec.type")).unwrap_or("ClusterIP").to_string();
    Some(Body::Service(ServiceObject { selector, ports, cluster_ips, service_type }))
}

fn service_port(ctx: &mut Ctx, node: &Node, path: &str) -> Option<ServicePort> {
    let Value::Map(_) = node.value else {
        ctx.wrong_type(node, path, "a mapping");
        return None;
    };
    let get = |key: &str| node.get(key).filter(|n| n.value != Value::Null);
    let name = get("name").and_then(|n| ctx.text(n, &join(path, "name")));
    let protocol = match get("protocol") {
        Some(n) => protocol(ctx, n, &join(path, "protocol")),
        None => Some(Protocol::Tcp),
    };
    let port_path = join(path, "port");
    let port = match get("port") {
        Some(n) => ctx.int(n, &port_path).and_then(|p| port_number(ctx, n, &port_path, p)),
        None => {
            ctx.report(codes::MISSING_FIELD, Some(node), path, "missing field `port`", None);
            None
        }
    };
    let target_path = join(path, "targetPort");
    let target_port = match get("targetPort") {
        Some(n) => Some(int_or_string_port(ctx, n, &target_path)?),
        None => None,
    };
    Some(ServicePort { name, protocol: protocol?, port: port?, target_port })
}

/// Decodes an `EndpointSlice`: the backends of the service named by its
/// `kubernetes.io/service-name` label. Endpoints whose `ready` condition
/// is `false` are left out, as Cilium leaves them out for new connections.
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
    let mut addresses = Vec::new();
    let endpoints = root.get("endpoints").map(|n| ctx.list(n, "endpoints")).unwrap_or(&[]);
    for (i, endpoint) in endpoints.iter().enumerate() {
        let path = index("endpoints", i);
        let Value::Map(_) = endpoint.value else {
            ctx.wrong_type(endpoint, &path, "a mapping");
            continue;
        };
        let ready = endpoint.get("conditions").and_then(|c| c.get("ready")).filter(|n| n.value != Value::Null);
        // An unset `ready` means ready (the API's "unknown" is to be taken as ready).
        if let Some(r) = ready {
            if ctx.boolean(r, &join(&path, "conditions.ready")) == Some(false) {
                continue;
            }
        }
        let list_path = join(&path, "addresses");
        let list = endpoint.get("addresses").map(|n| ctx.list(n, &list_path)).unwrap_or(&[]);
        for (j, address) in list.iter().enumerate() {
            if !fqdn {
                push_ip(ctx, &mut addresses, address, &index(&list_path, j));
            }
        }
    }
    let ports = backend_ports(ctx, root.get("ports"), "ports");
    Some(Body::Backends(BackendObject { service, addresses, ports }))
}

/// Decodes an `Endpoints` object: the ready addresses and ports of every
/// subset of the service with the same name.
pub fn endpoints(ctx: &mut Ctx, meta: &Meta, root: &Node) -> Option<Body> {
    let mut addresses = Vec::new();
    let mut ports = Vec::new();
    let subsets = root.get("subsets").map(|n| ctx.list(n, "subsets")).unwrap_or(&[]);
    for (i, subset) in subsets.iter().enumerate() {
        let path = index("subsets", i);
        let Value::Map(_) = subset.value else {
            ctx.wrong_type(subset, &path, "a mapping");
            continue;
        };
        let list_path = join(&path, "addresses");
        let list = subset.get("addresses").map(|n| ctx.list(n, &list_path)).unwrap_or(&[]);
        for (j, address) in list.iter().enumerate() {
            let address_path = index(&list_path, j);
            let Value::Map(_) = address.value else {
                ctx.wrong_type(address, &address_path, "a mapping");
                continue;
            };
            match address.get("ip").filter(|n| n.value != Value::Null) {
                Some(ip) => push_ip(ctx, &mut addresses, ip, &join(&address_path, "ip")),
                None => ctx.report(codes::MISSING_FIELD, Some(address), &address_path, "missing field `ip`", None),
            }
        }
        for port in backend_ports(ctx, subset.get("ports"), &join(&path, "ports")) {
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    Some(Body::Backends(BackendObject { service: meta.name.clone(), addresses, ports }))
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
    use crate::front::decode::PortValue;
    use crate::front::Input;

    fn parse(text: &str) -> (Vec<Body>, Vec<Diagnostic>) {
        let mut input = Input::default();
        input.add_source("t.yaml", text.to_string());
        (input.objects.into_iter().map(|o| o.body).collect(), input.diagnostics)
    }

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

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  selector: {app: web}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  - {port: 443}
"#;

    #[test]
    fn service() {
        let Body::Service(s) = one(SERVICE) else { panic!() };
        assert_eq!(s.selector, Some(Labels::from_pairs([("app", "web")])));
        assert_eq!(s.cluster_ips, vec![ip("10.96.0.10"), ip("fd00:96::10")]);
        assert_eq!(s.service_type, "ClusterIP");
        let port = |name: Option<&str>, protocol, port, target_port| ServicePort {
            name: name.map(String::from),
            protocol,
            port,
            target_port,
        };
        assert_eq!(
            s.ports,
            vec![
                port(Some("http"), Protocol::Tcp, 80, Some(PortValue::Name("http".into()))),
                port(Some("dns"), Protocol::Udp, 53, Some(PortValue::Number(5353))),
                port(None, Protocol::Tcp, 443, None),
            ]
        );
    }

    #[test]
    fn headless_service_without_selector() {
        let Body::Service(s) = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None, type: NodePort, selector: {}}\n")
        else {
            panic!()
        };
        assert_eq!(s.selector, None);
        assert!(s.cluster_ips.is_empty());
        assert_eq!(s.service_type, "NodePort");
    }

    #[test]
    fn service_errors() {
        let d = only(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: 10.96.0.999}\n",
            codes::INVALID_IP,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.clusterIP"));
        only(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, protocol: Tcp}]}\n",
            codes::UNKNOWN_PROTOCOL,
        );
        only(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: 0}]}\n",
            codes::PORT_OUT_OF_RANGE,
        );
        only(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{targetPort: 80}]}\n",
            codes::MISSING_FIELD,
        );
        only("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", codes::MISSING_FIELD);
    }

    #[test]
    fn endpoint_slice() {
        let Body::Backends(b) = one(concat!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n",
            "metadata: {name: web-abc, namespace: prod, labels: {kubernetes.io/service-name: web}}\n",
            "addressType: IPv4\n",
            "endpoints:\n- addresses: [10.0.0.5]\n  conditions: {ready: true}\n",
            "- addresses: [10.0.0.6]\n  conditions: {ready: false}\n- addresses: [10.0.0.7, 10.0.0.5]\n",
            "ports: [{name: http, port: 8080}, {name: dns, protocol: UDP, port: 53}]\n",
        )) else {
            panic!()
        };
        assert_eq!(b.service, "web");
        assert_eq!(b.addresses, vec![ip("10.0.0.5"), ip("10.0.0.7")]);
        assert_eq!(b.ports, vec![(Some("http".into()), Protocol::Tcp, 8080), (Some("dns".into()), Protocol::Udp, 53)]);
    }

    #[test]
    fn endpoint_slice_without_service_name() {
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
    }

    #[test]
    fn endpoints() {
        let Body::Backends(b) = one(concat!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: prod}\nsubsets:\n",
            "- addresses: [{ip: 10.0.0.5}, {ip: 10.0.0.6}]\n  notReadyAddresses: [{ip: 10.0.0.9}]\n  ports: [{name: http, port: 8080}]\n",
            "- addresses: [{ip: 10.0.0.7}]\n  ports: [{name: http, port: 8080}, {name: q, port: 9, protocol: SCTP}]\n",
        )) else {
            panic!()
        };
        assert_eq!(b.service, "web");
        assert_eq!(b.addresses, vec![ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")]);
        assert_eq!(b.ports, vec![(Some("http".into()), Protocol::Tcp, 8080), (Some("q".into()), Protocol::Sctp, 9)]);
        let d = only(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: w}\nsubsets: [{addresses: [{ip: bad}]}]\n",
            codes::INVALID_IP,
        );
        assert_eq!(d.location.path.as_deref(), Some("subsets[0].addresses[0].ip"));
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
