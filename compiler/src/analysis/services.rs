//! Services in the analyses: a trace through a Service to each backend,
//! the Services each endpoint reaches (`connectivity`), and what a Service
//! is (`explain svc:NS/NAME`), all from [`policyc_ir::service::connect`],
//! the reference answer (translation first, then policy on the backend).

use crate::analysis::reason::Citations;
use crate::analysis::trace::{party_name, render_human as trace_human, render_json as trace_json};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{Party, Query};
use policyc_ir::protocol::Protocol;
use policyc_ir::service::connect::{connect, BackendVerdict, Outcome, ServiceQuery};
use policyc_ir::service::select::{select, Selection};
use serde_json::{json, Value};
use std::fmt::Write;
use std::net::IpAddr;

/// The prefix that names a Service where an endpoint could be named.
pub const SERVICE_PREFIX: &str = "svc:";

/// The Service `arg` (`svc:NS/NAME`) names; `Ok(None)` when `arg` does not
/// name a Service; an error message when it names one the input lacks.
pub fn parse_service(cluster: &Cluster, arg: &str) -> Result<Option<usize>, String> {
    let Some(rest) = arg.strip_prefix(SERVICE_PREFIX) else { return Ok(None) };
    let found = rest.split_once('/').and_then(|(ns, name)| cluster.service_by_name(ns, name));
    match found {
        Some(i) => Ok(Some(i)),
        None => {
            let names: Vec<String> = cluster.services.iter().map(|s| format!("{SERVICE_PREFIX}{s}")).collect();
            let hint = crate::diag::did_you_mean(arg, names.iter().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            Err(format!("`{arg}` is not a Service of the input (write `svc:NAMESPACE/NAME`){hint}"))
        }
    }
}

/// The address a connection to Service `service` on `port` goes to: its
/// first cluster IP. An error for a Service without one.
pub fn service_address(cluster: &Cluster, service: usize) -> Result<IpAddr, String> {
    let s = &cluster.services[service];
    s.cluster_ips.first().copied().ok_or_else(|| {
        format!("Service `{s}` has no cluster IP (headless or `ExternalName`): clients reach its endpoints directly")
    })
}

/// A traced connection to a Service address.
pub struct ServiceTrace {
    /// The text rendering.
    pub text: String,
    /// The JSON rendering.
    pub json: Value,
    /// Whether the connection reaches a backend and every backend allows
    /// it.
    pub allowed: bool,
}

/// Traces `src` to `address:port`, or `None` when that is no Service
/// frontend (ordinary policy decides). A client outside the cluster
/// reaching a load-balancer or external IP arrives at some node, which
/// the input does not say: it is traced once per node (the traffic
/// policies make the answers differ).
pub fn trace(
    citations: &Citations,
    src: Party,
    address: IpAddr,
    protocol: Protocol,
    port: u16,
) -> Option<Vec<ServiceTrace>> {
    let cluster = citations.cluster();
    let external_address = cluster.services.iter().any(|s| {
        (s.external_ips.contains(&address) || s.load_balancer_ips.contains(&address)) && !s.has_cluster_ip(address)
    });
    let per_node = matches!(src, Party::External(_)) && external_address && cluster.node_by_ip(address).is_none();
    let vias: Vec<Option<usize>> =
        if per_node && !cluster.nodes.is_empty() { (0..cluster.nodes.len()).map(Some).collect() } else { vec![None] };
    let mut out = Vec::new();
    for via in vias {
        out.push(trace_via(citations, ServiceQuery { src, via, address, protocol, port })?);
    }
    Some(out)
}

/// [`trace`] through the node `query.via` says.
fn trace_via(citations: &Citations, query: ServiceQuery) -> Option<ServiceTrace> {
    let cluster = citations.cluster();
    let ServiceQuery { src, via, address, protocol, port } = query;
    let outcome = connect(cluster, &query);
    let src_name = party_name(cluster, src);
    let at = via.map(|n| format!(" (arriving at node {})", cluster.nodes[n].name)).unwrap_or_default();
    let head =
        |service: usize| format!("{src_name} -> {SERVICE_PREFIX}{} {protocol}/{port}{at}", cluster.services[service]);
    let base = |service: usize| {
        let mut value = json!({
            "src": src_name,
            "dst": format!("{SERVICE_PREFIX}{}", cluster.services[service]),
            "address": address.to_string(),
            "protocol": protocol.name(),
            "port": port,
        });
        if let Some(n) = via {
            value["node"] = json!(cluster.nodes[n].name);
        }
        value
    };
    Some(match outcome {
        Outcome::NotService => return None,
        Outcome::Dropped { service, reason } => {
            let mut json = base(service);
            json["outcome"] = json!("dropped");
            json["reason"] = json!(reason.describe());
            json["allowed"] = json!(false);
            ServiceTrace { text: format!("{}: DROPPED: {}\n", head(service), reason.describe()), json, allowed: false }
        }
        Outcome::Refused { service, frontend } => {
            let mut json = base(service);
            json["frontend"] = json!(frontend.to_string());
            json["outcome"] = json!("refused");
            json["reason"] = json!("the Service has no endpoints");
            json["allowed"] = json!(false);
            let text = format!(
                "{} via {frontend} ({}): REFUSED: no endpoints (ICMP port unreachable, as kube-proxy rejects)\n",
                head(service),
                frontend.kind.name()
            );
            ServiceTrace { text, json, allowed: false }
        }
        Outcome::Backends { service, frontend, backends } => {
            let allowed = backends.iter().all(|b| b.verdict.allowed());
            let reachable = backends.iter().filter(|b| b.verdict.allowed()).count();
            let mut text = format!(
                "{} via {frontend} ({}): {reachable} of {} backend(s) allowed\n",
                head(service),
                frontend.kind.name(),
                backends.len()
            );
            let mut items = Vec::new();
            for b in &backends {
                let (t, j) = backend_trace(citations, src, protocol, b);
                text.push_str(&t);
                items.push(j);
            }
            let mut json = base(service);
            json["frontend"] = json!(frontend.to_string());
            json["kind"] = json!(frontend.kind.name());
            json["outcome"] = json!("backends");
            json["allowed"] = json!(allowed);
            json["backends"] = Value::Array(items);
            ServiceTrace { text, json, allowed }
        }
    })
}

/// One backend's part of a Service trace.
fn backend_trace(citations: &Citations, src: Party, protocol: Protocol, b: &BackendVerdict) -> (String, Value) {
    let cluster = citations.cluster();
    let query = Query { src, dst: b.party, protocol, port: b.backend.port };
    let mut text = String::new();
    for line in trace_human(citations, &query, &b.verdict).lines() {
        let _ = writeln!(text, "  {line}");
    }
    let mut json = trace_json(citations, &query, &b.verdict);
    if b.seen_source != src {
        let seen = party_name(cluster, b.seen_source);
        let _ = writeln!(text, "    (the backend sees the connection from {seen}: the node masquerades it)");
        json["seen_source"] = json!(seen);
    }
    json["address"] = json!(b.backend.address.map(|a| a.to_string()));
    (text, json)
}

/// One `connectivity` row to a Service: the Service ports `src` reaches
/// (every backend allows it), or reaches through some backends only
/// (`TCP/80 (some backends)`).
pub struct ServiceRow {
    /// The source's name.
    pub src: String,
    /// `svc:NS/NAME`.
    pub dst: String,
    /// The ports.
    pub allowed: Vec<String>,
}

/// The Services each endpoint (`include` picks which) reaches through a
/// cluster IP, sorted; endpoints that reach no port of a Service have no
/// row for it.
pub fn connectivity(cluster: &Cluster, include: impl Fn(Party) -> bool) -> Vec<ServiceRow> {
    let mut rows = Vec::new();
    for (id, e) in cluster.endpoints_with_ids() {
        let src = Party::Endpoint(id);
        if !include(src) {
            continue;
        }
        for s in &cluster.services {
            let Some(&address) = s.cluster_ips.first() else { continue };
            let mut allowed = Vec::new();
            for p in &s.ports {
                let q = ServiceQuery { src, via: None, address, protocol: p.protocol, port: p.port };
                if let Outcome::Backends { backends, .. } = connect(cluster, &q) {
                    let n = backends.iter().filter(|b| b.verdict.allowed()).count();
                    let item = format!("{}/{}", p.protocol.name(), p.port);
                    if n == backends.len() && n > 0 {
                        allowed.push(item);
                    } else if n > 0 {
                        allowed.push(format!("{item} (some backends)"));
                    }
                }
            }
            if !allowed.is_empty() {
                rows.push(ServiceRow { src: e.display_name(), dst: format!("{SERVICE_PREFIX}{s}"), allowed });
            }
        }
    }
    rows.sort_by(|a, b| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)));
    rows
}

/// Service rows as JSON items (`{src, dst, allowed}`), appended to the
/// connectivity array.
pub fn rows_json(rows: &[ServiceRow]) -> Vec<Value> {
    rows.iter().map(|r| json!({"src": r.src, "dst": r.dst, "allowed": r.allowed})).collect()
}

/// Service rows as text lines (`src -> svc:ns/name  TCP/80`), after the
/// endpoint table.
pub fn rows_table(rows: &[ServiceRow]) -> String {
    let w_src = rows.iter().map(|r| r.src.chars().count()).max().unwrap_or(0);
    let w_dst = rows.iter().map(|r| r.dst.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for r in rows {
        let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        let _ = writeln!(out, "{} -> {}  {}", pad(&r.src, w_src), pad(&r.dst, w_dst), r.allowed.join(","));
    }
    out
}

/// `explain svc:NS/NAME`: frontends, backends per node, who reaches it.
pub fn explain(cluster: &Cluster, service: usize) -> (String, Value) {
    let s = &cluster.services[service];
    let mut text = format!("{SERVICE_PREFIX}{s} ({})\n", s.service_type.name());
    let policies = format!(
        "internalTrafficPolicy {}, externalTrafficPolicy {}{}",
        s.internal_traffic_policy.name(),
        s.external_traffic_policy.name(),
        s.affinity_timeout.map(|t| format!(", session affinity ClientIP {t}s")).unwrap_or_default()
    );
    let _ = writeln!(text, "  {policies}");
    if !s.source_ranges.is_empty() {
        let ranges: Vec<String> = s.source_ranges.iter().map(ToString::to_string).collect();
        let _ = writeln!(text, "  loadBalancerSourceRanges: {}", ranges.join(", "));
    }
    let cluster_wide = s.frontends(&[]);
    let _ = writeln!(text, "  frontends:");
    if cluster_wide.is_empty() && !s.service_type.has_node_ports() {
        let _ = writeln!(text, "    none (headless or ExternalName)");
    }
    for f in &cluster_wide {
        let _ = writeln!(text, "    {f} ({})", f.kind.name());
    }
    for p in s.ports.iter().filter(|p| s.service_type.has_node_ports() && p.node_port.is_some()) {
        let _ = writeln!(
            text,
            "    every node's address:{}/{} (NodePort)",
            p.node_port.unwrap_or_default(),
            p.protocol.name()
        );
    }
    let mut ports_json = Vec::new();
    for p in &s.ports {
        let name = if p.name.is_empty() { String::new() } else { format!(" ({})", p.name) };
        let _ = writeln!(text, "  port {}/{}{name}:", p.protocol.name(), p.port);
        let mut per_node = Vec::new();
        let nodes: Vec<Option<&str>> = if cluster.nodes.is_empty() {
            vec![None]
        } else {
            cluster.nodes.iter().map(|n| Some(n.name.as_str())).collect()
        };
        for node in nodes {
            let chosen = match select(&p.backends, s.internal_traffic_policy, node) {
                Selection::Backends(b) => b
                    .iter()
                    .map(|b| {
                        let who = policyc_ir::service::connect::backend_party(cluster, b)
                            .map(|party| party_name(cluster, party))
                            .unwrap_or_default();
                        match b.address {
                            Some(a) => format!("{who} {a}:{}", b.port),
                            None => format!("{who} :{}", b.port),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Selection::NoEndpoints => "none: connections are refused".to_string(),
                Selection::NoLocalEndpoints => "none on this node: connections are dropped".to_string(),
            };
            let label = node.map_or("every node".to_string(), |n| format!("node {n}"));
            let _ = writeln!(text, "    {label}: {chosen}");
            per_node.push(json!({"node": node, "backends": chosen}));
        }
        let reach: Vec<String> = cluster
            .endpoints_with_ids()
            .filter(|(id, _)| match s.cluster_ips.first() {
                Some(&address) => {
                    let q = ServiceQuery { src: Party::Endpoint(*id), via: None, address, protocol: p.protocol, port: p.port };
                    matches!(connect(cluster, &q), Outcome::Backends { backends, .. } if backends.iter().any(|b| b.verdict.allowed()))
                }
                None => false,
            })
            .map(|(_, e)| e.display_name())
            .collect();
        let _ = writeln!(
            text,
            "    reached by: {}",
            if reach.is_empty() { "no endpoint of the input".to_string() } else { reach.join(", ") }
        );
        ports_json.push(json!({
            "name": p.name, "protocol": p.protocol.name(), "port": p.port, "node_port": p.node_port,
            "backends_per_node": per_node, "reached_by": reach,
        }));
    }
    let json = json!({
        "service": format!("{SERVICE_PREFIX}{s}"),
        "type": s.service_type.name(),
        "internal_traffic_policy": s.internal_traffic_policy.name(),
        "external_traffic_policy": s.external_traffic_policy.name(),
        "affinity_timeout": s.affinity_timeout,
        "frontends": cluster_wide.iter().map(|f| json!({"address": f.to_string(), "kind": f.kind.name()})).collect::<Vec<_>>(),
        "ports": ports_json,
    });
    (text, json)
}
