//! Text renderings of the maps, one entry per line, fields separated by one
//! space, sorted:
//!
//! - `identities.txt`: `<identity> <kind> <labels>`, kind `reserved`,
//!   `endpoint` or `cidr`; labels comma-separated (`-` if none).
//! - `ipcache.txt`: `<prefix> <identity> <source>`, source `world`, `cidr`,
//!   `host` (this node), `node:<name>` or `endpoint:<ns>/<pod>`; by prefix.
//! - `endpoints.txt`: `<ip> <endpoint id> <identity> <enforced> <ns>/<pod>`,
//!   enforced `ingress`, `egress`, `ingress+egress` or `-`; by IP.
//! - `policy/<ns>.<pod>.txt`: `<direction> <peer> <proto>/<port>/<len>
//!   <verdict> <rules>`: peer an identity or `any`; `len` the prefix
//!   length over the 24 bits `protocol|port` (0 every protocol, 8 one
//!   protocol, 24 one port); verdict `allow`, `deny` or `redirect:<parser>`;
//!   rules `<Kind>/<ns>/<name>:<path>` joined with `,`. By key.

use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::identity::{fnv1a64, Identity, IdentityTable};
use policyc_ir::labels::Labels;
use policyc_ir::policy_map::PolicyMap;
use policyc_ir::resolve::{IdentityKind, IpcacheSource, Resolved, ResolvedEndpoint};
use std::collections::{BTreeMap, BTreeSet};

/// Lines joined with `\n`, with a final newline unless empty.
pub fn join(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `identities.txt`.
pub fn identities(resolved: &Resolved) -> Vec<String> {
    resolved
        .identities
        .values()
        .map(|info| {
            let kind = match info.kind {
                IdentityKind::Reserved => "reserved",
                IdentityKind::Endpoint => "endpoint",
                IdentityKind::Cidr(_) => "cidr",
            };
            let labels: Vec<String> = info
                .labels
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() && !matches!(info.kind, IdentityKind::Endpoint) {
                        k.to_string()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            let labels = if labels.is_empty() { "-".to_string() } else { labels.join(",") };
            format!("{} {kind} {labels}", info.identity)
        })
        .collect()
}

/// `ipcache.txt` of `node`: its own addresses resolve to `host`.
pub fn ipcache(resolved: &Resolved, node: &str) -> Vec<String> {
    resolved
        .ipcache
        .iter()
        .map(|e| {
            let (identity, source) = match &e.source {
                IpcacheSource::World => (e.identity, "world".to_string()),
                IpcacheSource::Cidr => (e.identity, "cidr".to_string()),
                IpcacheSource::Node(name) if name == node => (Identity::HOST, "host".to_string()),
                IpcacheSource::Node(name) => (e.identity, format!("node:{name}")),
                IpcacheSource::Endpoint(i) => (e.identity, format!("endpoint:{}", resolved.endpoints[*i].name)),
            };
            format!("{} {identity} {source}", e.prefix)
        })
        .collect()
}

/// The endpoints running on `node`, in cluster order.
pub fn local_endpoints<'a>(resolved: &'a Resolved, node: &str) -> Vec<&'a ResolvedEndpoint> {
    resolved.endpoints.iter().filter(|e| e.node.as_deref() == Some(node)).collect()
}

/// Stable endpoint ids (`1..=65535`) for the endpoints of one node: each
/// name starts at a hash of itself and probes linearly, in name order, so
/// adding a pod renumbers no other pod unless their hashes collide.
pub fn endpoint_ids(local: &[&ResolvedEndpoint]) -> BTreeMap<usize, u16> {
    let names: BTreeMap<&str, usize> = local.iter().map(|e| (e.name.as_str(), e.index)).collect();
    let mut used = BTreeSet::new();
    let mut ids = BTreeMap::new();
    for (name, index) in names {
        // More endpoints than ids: the endpoints map's capacity check fails
        // the bundle, so these get no id instead of probing forever.
        if used.len() >= usize::from(u16::MAX) {
            ids.insert(index, 0);
            continue;
        }
        // `% 65535 + 1` lies in 1..=65535.
        let mut id = (fnv1a64(name.as_bytes()) % 65535) as u16 + 1;
        while !used.insert(id) {
            id = if id == u16::MAX { 1 } else { id + 1 };
        }
        ids.insert(index, id);
    }
    ids
}

/// `endpoints.txt`: one line per pod IP of the node's endpoints.
pub fn endpoints(local: &[&ResolvedEndpoint], ids: &BTreeMap<usize, u16>) -> Vec<String> {
    let mut lines: Vec<(std::net::IpAddr, String)> = Vec::new();
    for e in local {
        let enforced = match e.policy.enforced {
            [true, true] => "ingress+egress",
            [true, false] => "ingress",
            [false, true] => "egress",
            [false, false] => "-",
        };
        // Validation guarantees every endpoint an identity.
        let identity = e.identity.map_or(0, |id| id.get());
        for ip in &e.ips {
            lines.push((
                *ip,
                format!("{ip} {} {identity} {enforced} {}", ids.get(&e.index).copied().unwrap_or(0), e.name),
            ));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

/// File stem of an endpoint's policy map: `<ns>.<pod>`, or
/// `<ns>.<name>.<kind>` for a workload standing for its pods.
pub fn policy_file_stem(cluster: &Cluster, endpoint: usize) -> String {
    let e = &cluster.endpoints[endpoint];
    match &e.kind {
        EndpointKind::Pod => format!("{}.{}", e.namespace, e.name),
        EndpointKind::Workload(kind) => format!("{}.{}.{}", e.namespace, e.name, kind.to_lowercase()),
    }
}

/// The lines of one policy map.
pub fn policy(cluster: &Cluster, map: &PolicyMap) -> Vec<String> {
    map.entries
        .iter()
        .map(|entry| {
            let key = &entry.key;
            let peer = if key.identity.is_any() { "any".to_string() } else { key.identity.to_string() };
            let rules: Vec<String> = entry.rules.iter().map(|r| rule_name(cluster, r.policy, r.rule)).collect();
            format!(
                "{} {peer} {}/{}/{} {} {}",
                key.direction,
                key.protocol,
                key.port,
                key.prefix_len,
                entry.verdict,
                rules.join(",")
            )
        })
        .collect()
}

/// `<Kind>/<ns>/<name>:<rule path>` (`<Kind>/<name>:...` when cluster-wide).
pub fn rule_name(cluster: &Cluster, policy: usize, rule: usize) -> String {
    let Some(p) = cluster.policies.get(policy) else { return format!("policy{policy}:rule{rule}") };
    let object = match &p.origin.namespace {
        Some(ns) => format!("{}/{ns}/{}", p.origin.kind.name(), p.origin.name),
        None => format!("{}/{}", p.origin.kind.name(), p.origin.name),
    };
    let path = p.rules.get(rule).map(|r| r.path.as_str()).filter(|path| !path.is_empty());
    match path {
        Some(path) => format!("{object}:{path}"),
        None => format!("{object}:rules[{rule}]"),
    }
}

/// Reads the endpoint identities back from an `identities.txt` (a previous
/// bundle's), to number the next compile the same way
/// ([`policyc_ir::resolve::resolve_with_previous`]). Reserved and CIDR lines
/// are skipped; a malformed line is an error naming its number.
pub fn read_identity_table(text: &str) -> Result<IdentityTable, String> {
    let mut assignments = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.splitn(3, ' ');
        let (Some(id), Some(kind), Some(labels)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {}: expected `<identity> <kind> <labels>`", n + 1));
        };
        if kind != "endpoint" {
            continue;
        }
        let id: u32 = id.parse().map_err(|_| format!("line {}: `{id}` is not an identity", n + 1))?;
        let mut set = Labels::new();
        if labels != "-" {
            for pair in labels.split(',') {
                let (k, v) =
                    pair.split_once('=').ok_or_else(|| format!("line {}: label `{pair}` has no `=`", n + 1))?;
                set.insert(k, v);
            }
        }
        assignments.push((set, Identity(id)));
    }
    Ok(IdentityTable::from_assignments(assignments))
}
