//! `Service` objects: the fields kube-proxy reads, checked as the API
//! server checks them (`pkg/apis/core/validation`, `ValidateService`;
//! defaults from the `ServiceSpec` API reference):
//! - `type` is `ClusterIP` (default), `NodePort`, `LoadBalancer` or
//!   `ExternalName` (which needs `externalName`);
//! - `clusterIP`/`clusterIPs` (`None`: headless, which a `NodePort` or
//!   `LoadBalancer` Service cannot be); `nodePort` only where the type
//!   allocates node ports;
//! - ports unique by protocol and port, by node port, and by name;
//! - `internalTrafficPolicy`/`externalTrafficPolicy`: `Cluster` (default)
//!   or `Local`; the external one "may only be set for externally-accessible
//!   services" (a warning here: policyc ignores it there);
//! - `sessionAffinity: ClientIP` with `timeoutSeconds` in 1-86400, default
//!   10800;
//! - `loadBalancerSourceRanges` are CIDRs; Go's `net.ParseCIDR`, which the
//!   API server uses, takes host bits and keeps the network, and so does
//!   policyc (kube-proxy also trims spaces around them).

use super::core::{port_number, push_ip};
use super::decode::{index, join, plain_key, Ctx};
use super::k8s::{int_or_string_port, protocol};
use super::yaml::{Node, Value};
use super::{Body, Meta, ServiceObject, ServicePort};
use crate::diag::codes;
use policyc_ir::cidr::{Cidr, CidrError};
use policyc_ir::protocol::Protocol;
use policyc_ir::service::{ServiceType, TrafficPolicy};

/// `timeoutSeconds` when `sessionAffinityConfig` does not set it.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;
/// The largest `timeoutSeconds` the API server accepts (one day).
const MAX_AFFINITY_TIMEOUT: i64 = 86400;

/// Decodes a `Service`.
pub fn service(ctx: &mut Ctx, _meta: &Meta, root: &Node) -> Option<Body> {
    let spec = super::spec(ctx, root)?;
    let Value::Map(_) = spec.value else {
        ctx.wrong_type(spec, "spec", "a mapping");
        return None;
    };
    let get = |key: &str| spec.get(key).filter(|n| n.value != Value::Null);
    // An empty selector is no selector: the endpoints are managed by hand.
    let selector = get("selector").map(|n| ctx.labels(n, "spec.selector", plain_key)).filter(|l| !l.is_empty());
    let service_type = match get("type") {
        Some(n) => service_type(ctx, n)?,
        None => ServiceType::ClusterIp,
    };

    let mut ports = Vec::new();
    let port_nodes = get("ports").map(|n| ctx.list(n, "spec.ports")).unwrap_or(&[]);
    for (i, node) in port_nodes.iter().enumerate() {
        if let Some(mut p) = service_port(ctx, node, &index("spec.ports", i), service_type) {
            p.index = i;
            ports.push((p, node, i));
        }
    }
    check_unique_ports(ctx, &ports);
    let ports: Vec<ServicePort> = ports.into_iter().map(|(p, _, _)| p).collect();

    let mut cluster_ips = Vec::new();
    let mut headless = false;
    let mut add_cluster_ip = |ctx: &mut Ctx, node: &Node, path: &str| match node.as_str() {
        Some("None") => headless = true,
        // `""` asks the API server for an allocation.
        Some("") => {}
        _ => push_ip(ctx, &mut cluster_ips, node, path),
    };
    if let Some(list) = get("clusterIPs") {
        for (i, node) in ctx.list(list, "spec.clusterIPs").iter().enumerate() {
            add_cluster_ip(ctx, node, &index("spec.clusterIPs", i));
        }
    }
    if let Some(node) = get("clusterIP") {
        add_cluster_ip(ctx, node, "spec.clusterIP");
    }
    if headless && service_type.has_node_ports() {
        let node = get("clusterIP").or(get("clusterIPs")).unwrap_or(spec);
        ctx.report(
            codes::SERVICE_TYPE_CONFLICT,
            Some(node),
            "spec.clusterIP",
            format!("a `{}` Service cannot be headless (`clusterIP: None`)", service_type.name()),
            Some("remove `clusterIP: None`, or make the Service `ClusterIP`".into()),
        );
    }
    if service_type == ServiceType::ExternalName && get("externalName").is_none() {
        ctx.report(codes::MISSING_FIELD, Some(spec), "spec", "missing field `externalName`", None);
    }

    let mut external_ips = Vec::new();
    if let Some(list) = get("externalIPs") {
        for (i, node) in ctx.list(list, "spec.externalIPs").iter().enumerate() {
            push_ip(ctx, &mut external_ips, node, &index("spec.externalIPs", i));
        }
    }
    let load_balancer_ips = load_balancer_ips(ctx, root);

    let internal_traffic_policy = traffic_policy(ctx, get("internalTrafficPolicy"), "spec.internalTrafficPolicy");
    let external = get("externalTrafficPolicy");
    let external_traffic_policy = traffic_policy(ctx, external, "spec.externalTrafficPolicy");
    if let Some(n) = external {
        if !service_type.has_node_ports() && external_ips.is_empty() {
            ctx.report(
                codes::EXTERNAL_POLICY_NOT_EXTERNAL,
                Some(n),
                "spec.externalTrafficPolicy",
                "`externalTrafficPolicy` has no effect: the Service has no node port, external IP or load balancer",
                Some("remove it, or make the Service `NodePort` or `LoadBalancer`".into()),
            );
        }
    }
    let affinity_timeout = session_affinity(ctx, spec);
    let source_ranges = source_ranges(ctx, get("loadBalancerSourceRanges"));
    let publish_not_ready =
        get("publishNotReadyAddresses").and_then(|n| ctx.boolean(n, "spec.publishNotReadyAddresses")).unwrap_or(false);
    Some(Body::Service(ServiceObject {
        selector,
        ports,
        cluster_ips,
        service_type,
        external_ips,
        load_balancer_ips,
        internal_traffic_policy: internal_traffic_policy?,
        external_traffic_policy: external_traffic_policy?,
        affinity_timeout: affinity_timeout?,
        source_ranges,
        publish_not_ready,
        selector_pos: get("selector").map(|n| n.pos),
    }))
}

fn service_type(ctx: &mut Ctx, node: &Node) -> Option<ServiceType> {
    let text = ctx.string(node, "spec.type")?;
    if let Some((_, t)) = ServiceType::NAMES.iter().find(|(name, _)| *name == text) {
        return Some(*t);
    }
    let help = ServiceType::NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(name, _)| format!("did you mean `{name}`?"))
        .unwrap_or_else(|| "the types are `ClusterIP`, `NodePort`, `LoadBalancer` and `ExternalName`".into());
    ctx.report(
        codes::INVALID_SERVICE_TYPE,
        Some(node),
        "spec.type",
        format!("unknown Service type `{text}`"),
        Some(help),
    );
    None
}

/// A traffic policy at `path`; `Some(Cluster)` when unset, `None` when
/// invalid (reported).
fn traffic_policy(ctx: &mut Ctx, node: Option<&Node>, path: &str) -> Option<TrafficPolicy> {
    let Some(node) = node else { return Some(TrafficPolicy::Cluster) };
    match ctx.string(node, path)? {
        "Cluster" => Some(TrafficPolicy::Cluster),
        "Local" => Some(TrafficPolicy::Local),
        other => {
            ctx.report(
                codes::INVALID_TRAFFIC_POLICY,
                Some(node),
                path,
                format!("unknown traffic policy `{other}`"),
                Some("the traffic policies are `Cluster` and `Local`".into()),
            );
            None
        }
    }
}

/// `Some(None)` without affinity, `Some(Some(timeout))` with `ClientIP`,
/// `None` when invalid (reported).
fn session_affinity(ctx: &mut Ctx, spec: &Node) -> Option<Option<u32>> {
    let get = |key: &str| spec.get(key).filter(|n| n.value != Value::Null);
    let affinity = match get("sessionAffinity") {
        Some(n) => match ctx.string(n, "spec.sessionAffinity")? {
            "None" => false,
            "ClientIP" => true,
            other => {
                ctx.report(
                    codes::INVALID_SESSION_AFFINITY,
                    Some(n),
                    "spec.sessionAffinity",
                    format!("unknown session affinity `{other}`"),
                    Some("the session affinities are `None` and `ClientIP`".into()),
                );
                return None;
            }
        },
        None => false,
    };
    const PATH: &str = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
    let timeout = get("sessionAffinityConfig")
        .and_then(|c| c.get("clientIP"))
        .and_then(|c| c.get("timeoutSeconds"))
        .filter(|n| n.value != Value::Null);
    let seconds = match timeout {
        Some(n) => {
            let value = ctx.int(n, PATH)?;
            if !(1..=MAX_AFFINITY_TIMEOUT).contains(&value) {
                ctx.report(
                    codes::INVALID_SESSION_AFFINITY,
                    Some(n),
                    PATH,
                    format!("session affinity timeout `{value}` is out of range"),
                    Some(format!("the timeout is 1-{MAX_AFFINITY_TIMEOUT} seconds")),
                );
                return None;
            }
            value as u32
        }
        None => DEFAULT_AFFINITY_TIMEOUT,
    };
    Some(affinity.then_some(seconds))
}

fn source_ranges(ctx: &mut Ctx, node: Option<&Node>) -> Vec<Cidr> {
    let mut out = Vec::new();
    let list = node.map(|n| ctx.list(n, "spec.loadBalancerSourceRanges")).unwrap_or(&[]);
    for (i, n) in list.iter().enumerate() {
        let path = index("spec.loadBalancerSourceRanges", i);
        let Some(text) = ctx.string(n, &path) else { continue };
        match Cidr::parse_strict(text.trim()) {
            Ok(c) | Err(CidrError::HostBitsSet(c)) => {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            Err(_) => {
                // Reported with the usual message and help.
                ctx.cidr(n, &path);
            }
        }
    }
    out
}

fn load_balancer_ips(ctx: &mut Ctx, root: &Node) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let ingress = root.get("status").and_then(|s| s.get("loadBalancer")).and_then(|l| l.get("ingress"));
    let list = ingress.filter(|n| n.value != Value::Null).map(|n| ctx.list(n, "status.loadBalancer.ingress"));
    for (i, entry) in list.unwrap_or(&[]).iter().enumerate() {
        // An entry with only `hostname` is a name policyc cannot use.
        if let Some(ip) = entry.get("ip").filter(|n| n.value != Value::Null) {
            push_ip(ctx, &mut out, ip, &join(&index("status.loadBalancer.ingress", i), "ip"));
        }
    }
    out
}

fn service_port(ctx: &mut Ctx, node: &Node, path: &str, service_type: ServiceType) -> Option<ServicePort> {
    let Value::Map(_) = node.value else {
        ctx.wrong_type(node, path, "a mapping");
        return None;
    };
    let get = |key: &str| node.get(key).filter(|n| n.value != Value::Null);
    let name = get("name").and_then(|n| ctx.text(n, &join(path, "name"))).filter(|n| !n.is_empty());
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
    let node_port_path = join(path, "nodePort");
    let node_port = match get("nodePort") {
        Some(n) if !service_type.has_node_ports() => {
            ctx.report(
                codes::SERVICE_TYPE_CONFLICT,
                Some(n),
                &node_port_path,
                format!("`nodePort` is not allowed on a `{}` Service", service_type.name()),
                Some("remove it, or make the Service `NodePort` or `LoadBalancer`".into()),
            );
            return None;
        }
        Some(n) => Some(ctx.int(n, &node_port_path).and_then(|p| port_number(ctx, n, &node_port_path, p))?),
        None => None,
    };
    let target_pos = get("targetPort").map(|n| n.pos);
    Some(ServicePort {
        name,
        protocol: protocol?,
        port: port?,
        target_port,
        node_port,
        index: 0,
        pos: node.pos,
        target_pos,
    })
}

/// Reports the second of two ports with the same protocol and port, node
/// port, or name.
fn check_unique_ports(ctx: &mut Ctx, ports: &[(ServicePort, &Node, usize)]) {
    for (j, (p, node, i)) in ports.iter().enumerate() {
        let earlier = &ports[..j];
        let clash =
            if let Some((_, _, k)) = earlier.iter().find(|(q, _, _)| (q.protocol, q.port) == (p.protocol, p.port)) {
                Some(format!("port {}/{} is also port {k}", p.port, p.protocol.name()))
            } else if let Some((_, _, k)) = earlier
                .iter()
                .find(|(q, _, _)| p.node_port.is_some() && (q.protocol, q.node_port) == (p.protocol, p.node_port))
            {
                Some(format!("node port {} is also port {k}'s", p.node_port.unwrap_or(0)))
            } else {
                earlier
                    .iter()
                    .find(|(q, _, _)| p.name.is_some() && q.name == p.name)
                    .map(|(_, _, k)| format!("name `{}` is also port {k}'s", p.name.as_deref().unwrap_or("")))
            };
        if let Some(what) = clash {
            ctx.report(
                codes::DUPLICATE_SERVICE_PORT,
                Some(node),
                &index("spec.ports", *i),
                format!("duplicate Service port: {what}"),
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, Diagnostic};
    use crate::front::decode::PortValue;
    use policyc_ir::labels::Labels;
    use std::net::IpAddr;

    use crate::front::tests_support::parse;

    fn one(text: &str) -> ServiceObject {
        let (mut bodies, diags) = parse(text);
        assert!(diags.is_empty(), "unexpected diagnostics: {diags:#?}");
        let Some(Body::Service(s)) = bodies.pop() else { panic!("not a service") };
        s
    }

    /// The only diagnostic, which must have `code`, and its field path.
    fn only(spec: &str, code: Code) -> Diagnostic {
        let (_, diags) = parse(&format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s, namespace: ns}}\n{spec}"));
        assert_eq!(diags.len(), 1, "expected exactly one {}: {diags:#?}", code.id);
        assert_eq!(diags[0].code, code);
        assert_eq!(diags[0].location.object.as_deref(), Some("Service ns/s"));
        diags.into_iter().next().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  type: LoadBalancer
  selector: {app: web}
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:96::10"]
  externalIPs: [192.0.2.10]
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 5353}
  - {name: tls, port: 443}
  internalTrafficPolicy: Local
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  loadBalancerSourceRanges: [" 198.51.100.0/24", 203.0.113.7/16]
  publishNotReadyAddresses: true
status:
  loadBalancer: {ingress: [{ip: 192.0.2.20}, {hostname: lb.example.com}]}
"#;

    #[test]
    fn service() {
        let s = one(SERVICE);
        assert_eq!(s.selector, Some(Labels::from_pairs([("app", "web")])));
        assert_eq!(s.cluster_ips, vec![ip("10.96.0.10"), ip("fd00:96::10")]);
        assert_eq!(s.service_type, ServiceType::LoadBalancer);
        let port = |name: &str, protocol, port, target_port, node_port| {
            (Some(name.to_string()), protocol, port, target_port, node_port)
        };
        let got: Vec<_> =
            s.ports.iter().map(|p| (p.name.clone(), p.protocol, p.port, p.target_port.clone(), p.node_port)).collect();
        assert_eq!(s.ports[2].index, 2);
        assert_eq!(
            got,
            vec![
                port("http", Protocol::Tcp, 80, Some(PortValue::Name("http".into())), Some(30080)),
                port("dns", Protocol::Udp, 53, Some(PortValue::Number(5353)), None),
                port("tls", Protocol::Tcp, 443, None, None),
            ]
        );
        assert_eq!(s.external_ips, vec![ip("192.0.2.10")]);
        assert_eq!(s.load_balancer_ips, vec![ip("192.0.2.20")]);
        assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Local);
        assert_eq!(s.affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
        let cidr = |c| Cidr::parse_strict(c).unwrap();
        // Host bits are kept out, as Go's `net.ParseCIDR` does.
        assert_eq!(s.source_ranges, vec![cidr("198.51.100.0/24"), cidr("203.0.0.0/16")]);
        assert!(s.publish_not_ready);
    }

    #[test]
    fn defaults_and_headless() {
        let s = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None, selector: {}, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}}\n");
        assert_eq!(s.selector, None);
        assert!(s.cluster_ips.is_empty());
        assert_eq!(s.service_type, ServiceType::ClusterIp);
        assert_eq!(
            (s.internal_traffic_policy, s.external_traffic_policy),
            (TrafficPolicy::Cluster, TrafficPolicy::Cluster)
        );
        assert_eq!(s.affinity_timeout, None, "a timeout without `ClientIP` is no affinity");
        let s = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}}\n");
        assert_eq!(s.affinity_timeout, Some(60));
        let s = one("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ExternalName, externalName: db.example.com}\n");
        assert_eq!(s.service_type, ServiceType::ExternalName);
    }

    #[test]
    fn service_errors() {
        let d = only("spec: {clusterIP: 10.96.0.999}\n", codes::INVALID_IP);
        assert_eq!(d.location.path.as_deref(), Some("spec.clusterIP"));
        only("spec: {ports: [{port: 80, protocol: Tcp}]}\n", codes::UNKNOWN_PROTOCOL);
        only("spec: {ports: [{port: 80, targetPort: 0}]}\n", codes::PORT_OUT_OF_RANGE);
        only("spec: {ports: [{targetPort: 80}]}\n", codes::MISSING_FIELD);
        let (_, diags) = parse("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n");
        assert_eq!(diags.iter().map(|d| d.code).collect::<Vec<_>>(), [codes::MISSING_FIELD]);
        let d = only("spec: {type: Nodeport}\n", codes::INVALID_SERVICE_TYPE);
        assert_eq!(d.help.as_deref(), Some("did you mean `NodePort`?"));
        let d = only("spec: {type: NodePort, internalTrafficPolicy: local}\n", codes::INVALID_TRAFFIC_POLICY);
        assert_eq!(d.location.path.as_deref(), Some("spec.internalTrafficPolicy"));
        only("spec: {sessionAffinity: Cookie}\n", codes::INVALID_SESSION_AFFINITY);
        let d = only(
            "spec: {sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}\n",
            codes::INVALID_SESSION_AFFINITY,
        );
        assert_eq!(d.location.path.as_deref(), Some("spec.sessionAffinityConfig.clientIP.timeoutSeconds"));
        let d = only("spec: {ports: [{port: 80, nodePort: 30080}]}\n", codes::SERVICE_TYPE_CONFLICT);
        assert_eq!(d.location.path.as_deref(), Some("spec.ports[0].nodePort"));
        only("spec: {type: NodePort, clusterIP: None}\n", codes::SERVICE_TYPE_CONFLICT);
        let d = only("spec: {externalTrafficPolicy: Local}\n", codes::EXTERNAL_POLICY_NOT_EXTERNAL);
        assert!(!d.is_error());
        let d = only("spec: {ports: [{port: 80}, {port: 80, name: b}]}\n", codes::DUPLICATE_SERVICE_PORT);
        assert_eq!(d.location.path.as_deref(), Some("spec.ports[1]"));
        only("spec: {ports: [{port: 80, name: a}, {port: 81, name: a}]}\n", codes::DUPLICATE_SERVICE_PORT);
        only(
            "spec: {type: NodePort, ports: [{port: 80, nodePort: 30000}, {port: 81, nodePort: 30000}]}\n",
            codes::DUPLICATE_SERVICE_PORT,
        );
        only("spec: {type: LoadBalancer, loadBalancerSourceRanges: [10.0.0.0/33]}\n", codes::INVALID_CIDR);
        only("spec: {type: ExternalName}\n", codes::MISSING_FIELD);
    }
}
