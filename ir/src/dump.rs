//! A stable, human-readable text dump of the cluster model, for golden
//! files and review: same model, same bytes.

use crate::cluster::{Cluster, EndpointKind};
use crate::policy::{Action, Peer, Peers, PortMatch, PortSpec, Rule, Subject};
use crate::tier::{tier_order, Tier, TierPeer, TierRule};
use std::fmt::Write;

/// Renders the whole model: namespaces, endpoints, nodes, Services,
/// policies, and admin and baseline policies.
pub fn dump(cluster: &Cluster) -> String {
    let mut out = String::new();
    for (name, labels) in &cluster.namespaces {
        let _ = writeln!(out, "namespace {name} {{{labels}}}");
    }
    for e in &cluster.endpoints {
        let kind = match &e.kind {
            EndpointKind::Pod => "pod".to_string(),
            EndpointKind::Workload(k) => format!("workload {k}"),
        };
        let ips: Vec<String> = e.ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "endpoint {} ({kind}) ips=[{}] node={}",
            e.display_name(),
            ips.join(","),
            e.node.as_deref().unwrap_or("-")
        );
        let _ = writeln!(out, "  labels {{{}}}", e.labels);
        for p in &e.named_ports {
            let _ = writeln!(out, "  port {}={}/{}", p.name, p.protocol, p.port);
        }
    }
    for n in &cluster.nodes {
        let ips: Vec<String> = n.ips.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "node {} ips=[{}]", n.name, ips.join(","));
    }
    for s in &cluster.services {
        service(&mut out, cluster, s);
    }
    for p in &cluster.policies {
        let _ = writeln!(out, "policy {}", p.origin);
        match &p.subject {
            Subject::Endpoints(sel) => {
                let _ = writeln!(out, "  subject endpoints {sel}");
            }
            Subject::Nodes(sel) => {
                let _ = writeln!(out, "  subject nodes {sel}");
            }
        }
        let dirs: Vec<&str> =
            crate::protocol::Direction::BOTH.iter().filter(|d| p.enforces(**d)).map(|d| d.name()).collect();
        let _ = writeln!(out, "  default-deny [{}]", dirs.join(","));
        for d in crate::protocol::Direction::BOTH {
            for req in &p.requires[d.index()] {
                let _ = writeln!(out, "  requires {d} {req}");
            }
            for req in &p.deny_requires[d.index()] {
                let _ = writeln!(out, "  requires {d} deny {req}");
            }
        }
        for r in &p.rules {
            let _ = writeln!(out, "  {}", rule(r));
        }
    }
    // In evaluation order: each tier by priority (`tier_order`).
    for tier in [Tier::Admin, Tier::Baseline] {
        for i in tier_order(cluster, tier) {
            let p = &cluster.tier_policies[i];
            let _ = writeln!(out, "tier-policy {p} tier={} priority={}", tier.name(), p.priority);
            let _ = writeln!(out, "  subject endpoints {}", p.subject);
            for r in &p.rules {
                let _ = writeln!(out, "  {}", tier_rule(r));
            }
        }
    }
    out
}

/// One rule of an admin or baseline policy on one line.
pub fn tier_rule(r: &TierRule) -> String {
    let peers: Vec<String> = r
        .peers
        .iter()
        .map(|p| match p {
            TierPeer::Endpoints(sel) => format!("endpoints {sel}"),
            TierPeer::Networks(cidrs) => {
                format!("networks {}", cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
            }
            TierPeer::Nodes(sel) => format!("nodes {sel}"),
        })
        .collect();
    let peers = if peers.is_empty() { "nothing".to_string() } else { peers.join(" | ") };
    let ports = match &r.ports {
        None => "all".to_string(),
        Some(ms) => ms.iter().map(port_match).collect::<Vec<_>>().join(", "),
    };
    let name = r.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    format!("{}{name}: {} {} peers[{peers}] ports[{ports}]", r.path, r.direction, r.action.name())
}

/// One rule on one line.
pub fn rule(r: &Rule) -> String {
    let action = match r.action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    };
    let peers = match &r.peers {
        Peers::Any => "any".to_string(),
        Peers::Only(ps) if ps.is_empty() => "nothing".to_string(),
        Peers::Only(ps) => ps.iter().map(peer).collect::<Vec<_>>().join(" | "),
    };
    let ports = match &r.ports {
        None => "all".to_string(),
        Some(ms) => ms.iter().map(port_match).collect::<Vec<_>>().join(", "),
    };
    let l7 = r.l7.as_ref().map(|l| format!(" l7={} {}", l.parser, l.rules)).unwrap_or_default();
    format!("{}: {} {action} peers[{peers}] ports[{ports}]{l7}", r.path, r.direction)
}

fn peer(p: &Peer) -> String {
    match p {
        Peer::Endpoints(sel) => format!("endpoints {sel}"),
        Peer::Cidr { cidr, except } if except.is_empty() => format!("cidr {cidr}"),
        Peer::Cidr { cidr, except } => {
            format!("cidr {cidr} except {}", except.iter().map(ToString::to_string).collect::<Vec<_>>().join(","))
        }
        Peer::Entity(e) => format!("entity {}", e.name()),
    }
}

fn port_match(m: &PortMatch) -> String {
    let proto = m.protocol.map(|p| p.name()).unwrap_or("ANY");
    match &m.ports {
        PortSpec::All => format!("{proto}/all"),
        PortSpec::Range(r) => format!("{proto}/{r}"),
        PortSpec::Named(n) => format!("{proto}/named:{n}"),
    }
}

/// One Service: its addresses and settings, then each port with its
/// backends (address:port, node, conditions).
fn service(out: &mut String, cluster: &Cluster, s: &crate::service::Service) {
    let list = |ips: &[std::net::IpAddr]| ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let _ = write!(out, "service {s} {} cluster-ips=[{}]", s.service_type.name(), list(&s.cluster_ips));
    if !s.external_ips.is_empty() {
        let _ = write!(out, " external-ips=[{}]", list(&s.external_ips));
    }
    if !s.load_balancer_ips.is_empty() {
        let _ = write!(out, " lb-ips=[{}]", list(&s.load_balancer_ips));
    }
    let _ = write!(out, " itp={} etp={}", s.internal_traffic_policy.name(), s.external_traffic_policy.name());
    if let Some(t) = s.affinity_timeout {
        let _ = write!(out, " affinity={t}s");
    }
    if !s.source_ranges.is_empty() {
        let ranges: Vec<String> = s.source_ranges.iter().map(ToString::to_string).collect();
        let _ = write!(out, " source-ranges=[{}]", ranges.join(","));
    }
    out.push('\n');
    for p in &s.ports {
        let name = if p.name.is_empty() { "-" } else { &p.name };
        let node_port = p.node_port.map(|n| format!(" node-port={n}")).unwrap_or_default();
        let _ = writeln!(out, "  port {name} {}/{}{node_port}", p.protocol, p.port);
        for b in &p.backends {
            let at = match b.address {
                Some(a) => format!("{a}:{}", b.port),
                None => format!(":{}", b.port),
            };
            let who = b.endpoint.map(|e| cluster.endpoint(e).display_name()).unwrap_or_else(|| "-".into());
            let c = b.conditions;
            let state: Vec<&str> = [(c.ready, "ready"), (c.serving, "serving"), (c.terminating, "terminating")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect();
            let _ =
                writeln!(out, "    backend {at} {who} node={} [{}]", b.node.as_deref().unwrap_or("-"), state.join(","));
        }
    }
}
