//! The maps of the resolved cluster rendered as the bundle's text files,
//! one entry per line, through the line types of [`policyc_bundle`] (which
//! defines every format): `identities.txt`, `ipcache.txt`,
//! `endpoints.txt` and the policy files (see [`policy_files`]).

use crate::emit::programs::lookups;
use policyc_bundle::endpoints::{EndpointLine, Enforced};
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::ipcache::{IpcacheLine, Source};
use policyc_bundle::policy::{self as policy_line, PolicyLine, Verdict};
use policyc_bundle::stem;
use policyc_ebpf::config::EndpointConfig;
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::identity::{Identity, IdentityTable};
use policyc_ir::ids::{EndpointId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::policy_map::{MapVerdict, PolicyEntry, PolicyMap, Precedence};
use policyc_ir::protocol::Direction;
use policyc_ir::resolve::{IdentityInfo, IdentityKind, IpcacheSource, Resolved, ResolvedEndpoint};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// An identity as `identities.txt` writes it.
pub fn identity_line(info: &IdentityInfo) -> IdentityLine {
    let kind = match info.kind {
        IdentityKind::Reserved => "reserved",
        IdentityKind::Endpoint => "endpoint",
        IdentityKind::Cidr(_) => "cidr",
    };
    IdentityLine::new(info.identity.get(), kind, info.labels.iter())
}

/// `identities.txt`.
pub fn identities(resolved: &Resolved) -> Vec<String> {
    resolved.identities.values().map(|info| identity_line(info).to_string()).collect()
}

/// `ipcache.txt`, rendered once for every node: only the lines of nodes'
/// own addresses differ between nodes (a node's own addresses resolve to
/// `host`).
#[derive(Clone, Debug)]
pub struct Ipcache {
    /// Every line in prefix order, as other nodes see it, and for a node's
    /// address the node's name and the line as that node sees it.
    lines: Vec<(String, Option<(String, String)>)>,
}

impl Ipcache {
    /// Renders the ipcache of `resolved`.
    pub fn new(resolved: &Resolved) -> Ipcache {
        let lines = resolved
            .ipcache
            .iter()
            .map(|e| {
                let line = |identity: Identity, source| {
                    let (addr, prefix_len) = (e.prefix.addr(), e.prefix.prefix_len());
                    IpcacheLine { addr, prefix_len, identity: identity.get(), source }.to_string()
                };
                match &e.source {
                    IpcacheSource::World => (line(e.identity, Source::World), None),
                    IpcacheSource::Cidr => (line(e.identity, Source::Cidr), None),
                    IpcacheSource::Node(name) => {
                        (line(e.identity, Source::Node(name)), Some((name.clone(), line(Identity::HOST, Source::Host))))
                    }
                    IpcacheSource::Endpoint(i) => {
                        (line(e.identity, Source::Endpoint(&resolved.endpoints[i.index()].name)), None)
                    }
                }
            })
            .collect();
        Ipcache { lines }
    }

    /// The text of `ipcache.txt` on `node` and its number of lines.
    pub fn text(&self, node: &str) -> (String, usize) {
        let mut out = String::with_capacity(self.lines.iter().map(|(line, _)| line.len() + 8).sum());
        for (line, own) in &self.lines {
            match own {
                Some((of, host)) if of == node => out.push_str(host),
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        (out, self.lines.len())
    }
}

/// The endpoints running on `node`, in cluster order.
pub fn local_endpoints<'a>(resolved: &'a Resolved, node: &str) -> Vec<&'a ResolvedEndpoint> {
    resolved.endpoints.iter().filter(|e| e.node.as_deref() == Some(node)).collect()
}

/// Stable endpoint ids (`1..=65535`) for the endpoints of one node
/// ([`policyc_bundle::ids::endpoint_ids`]), by endpoint.
pub fn endpoint_ids(local: &[&ResolvedEndpoint]) -> BTreeMap<EndpointId, u16> {
    let names: BTreeMap<&str, EndpointId> = local.iter().map(|e| (e.name.as_str(), e.index)).collect();
    let ids = policyc_bundle::ids::endpoint_ids(names.keys().copied());
    names.iter().map(|(name, &index)| (index, ids.get(name).copied().unwrap_or(0))).collect()
}

/// `endpoints.txt`: one line per pod IP of the node's endpoints.
pub fn endpoints(local: &[&ResolvedEndpoint], ids: &BTreeMap<EndpointId, u16>) -> Vec<String> {
    let mut lines: Vec<(std::net::IpAddr, String)> = Vec::new();
    for e in local {
        let enforced = Enforced { ingress: e.policy.enforced[0], egress: e.policy.enforced[1] };
        // Validation guarantees every endpoint an identity.
        let identity = e.identity.map_or(0, |id| id.get());
        let id = ids.get(&e.index).copied().unwrap_or(0);
        for &ip in &e.ips {
            lines.push((ip, EndpointLine { ip, id, identity, enforced, name: &e.name }.to_string()));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, line)| line).collect()
}

/// A file-system-safe name of an endpoint ([`policyc_bundle::stem`]):
/// `<ns>.<pod>`, or `<ns>.<name>.<kind>` for a workload standing for its
/// pods, hashed when too long to pin. It names the endpoint's pinned links
/// on the node and tells apart the policy files of one identity's
/// endpoints whose maps differ.
pub fn endpoint_stem(cluster: &Cluster, endpoint: EndpointId) -> String {
    let e = cluster.endpoint(endpoint);
    match &e.kind {
        EndpointKind::Pod => stem::endpoint_stem(&[&e.namespace, &e.name]),
        EndpointKind::Workload(kind) => stem::endpoint_stem(&[&e.namespace, &e.name, &kind.to_lowercase()]),
    }
}

/// The policy file of each of `local` (a node's endpoints), in order.
/// Endpoints sharing one map (see [`ResolvedEndpoint::policy`]) share one
/// file, named after their identity: `maps/policy/<identity>.txt`. Pods of
/// one identity have different maps only when their named ports differ;
/// then each of that identity's maps is named after the first endpoint
/// using it: `maps/policy/<identity>.<ns>.<pod>.txt`.
pub fn policy_files(cluster: &Cluster, local: &[&ResolvedEndpoint]) -> Vec<String> {
    // Per identity, its maps (by address: a key only, never dereferenced)
    // and the first endpoint of each by name.
    let mut by_identity: HashMap<u32, HashMap<usize, &ResolvedEndpoint>> = HashMap::new();
    for e in local {
        let first = by_identity
            .entry(e.identity.map_or(0, |i| i.get()))
            .or_default()
            .entry(Arc::as_ptr(&e.policy) as usize)
            .or_insert(e);
        if e.name < first.name {
            *first = e;
        }
    }
    local
        .iter()
        .map(|e| {
            let identity = e.identity.map_or(0, |i| i.get());
            let maps = &by_identity[&identity];
            if maps.len() == 1 {
                format!("maps/policy/{identity}.txt")
            } else {
                let first = maps[&(Arc::as_ptr(&e.policy) as usize)];
                format!("maps/policy/{identity}.{}.txt", endpoint_stem(cluster, first.index))
            }
        })
        .collect()
}

/// The display name of every rule of the cluster ([`rule_name`]), built
/// once per emission: a policy map names a rule on each of its lines.
#[derive(Clone, Debug, Default)]
pub struct RuleNames {
    /// Per policy, per rule: its name and its cookie.
    by_policy: Vec<Vec<(String, u32)>>,
}

impl RuleNames {
    /// The names of every rule of `cluster`, and their cookies
    /// ([`policyc_bundle::ids::rule_cookies`]), allocated over the whole
    /// cluster so that a rule has one cookie on every node.
    pub fn new(cluster: &Cluster) -> RuleNames {
        // Admin rules follow the cluster's policies, as map entries name
        // them (`Cluster::tier_rule_ref`).
        let rule_counts =
            cluster.policies.iter().map(|p| p.rules.len()).chain(cluster.tier_policies.iter().map(|p| p.rules.len()));
        let names: Vec<Vec<String>> =
            rule_counts.enumerate().map(|(p, rules)| (0..rules).map(|r| rule_name(cluster, p, r)).collect()).collect();
        let cookies = policyc_bundle::ids::rule_cookies(names.iter().flatten().map(String::as_str));
        let by_policy = names
            .iter()
            .map(|rules| {
                rules.iter().map(|name| (name.clone(), cookies.get(name.as_str()).copied().unwrap_or(0))).collect()
            })
            .collect();
        RuleNames { by_policy }
    }

    /// The name of `rule` (a placeholder for a rule the cluster lacks,
    /// which validation rules out).
    pub fn get(&self, rule: RuleRef) -> Cow<'_, str> {
        match self.by_policy.get(rule.policy.index()).and_then(|p| p.get(rule.rule_index())) {
            Some((name, _)) => Cow::Borrowed(name),
            None => Cow::Owned(format!("policy{}:rule{}", rule.policy, rule.rule)),
        }
    }

    /// The cookie of `rule` (0, "no rule", for a rule the cluster lacks).
    pub fn cookie(&self, rule: RuleRef) -> u32 {
        self.by_policy.get(rule.policy.index()).and_then(|p| p.get(rule.rule_index())).map_or(0, |(_, cookie)| *cookie)
    }
}

/// The text of one policy map (one [`PolicyLine`] per entry) and its
/// number of lines.
pub fn policy(names: &RuleNames, map: &PolicyMap) -> (String, usize) {
    // Room for every line at once: growing the text as it is written
    // copied it over and over.
    let longest_verdict = |entry: &PolicyEntry| match &entry.verdict {
        MapVerdict::Redirect(parser) => "redirect:".len() + parser.len(),
        _ => "allow".len(),
    };
    let capacity =
        map.entries.iter().map(|e| PolicyLine::FIXED_LEN + longest_verdict(e) + names.get(e.rule).len()).sum();
    let mut out = String::with_capacity(capacity);
    for entry in &map.entries {
        let key = &entry.key;
        let rule = names.get(entry.rule);
        PolicyLine {
            key: policy_line::PolicyKey {
                direction: match key.direction {
                    Direction::Ingress => policy_line::Direction::Ingress,
                    Direction::Egress => policy_line::Direction::Egress,
                },
                peer: key.identity.get(),
                protocol: key.protocol,
                port: key.port,
                prefix_len: key.prefix_len,
            },
            verdict: match &entry.verdict {
                MapVerdict::Allow => Verdict::Allow,
                MapVerdict::Deny => Verdict::Deny,
                MapVerdict::Redirect(parser) => Verdict::Redirect(parser),
            },
            cookie: names.cookie(entry.rule),
            rule: &rule,
            others: entry.rule_count.saturating_sub(1),
            tier: match entry.precedence {
                Precedence::NetworkPolicy => policy_line::Tier::NetworkPolicy,
                Precedence::Admin(order) => policy_line::Tier::Admin(order),
                Precedence::Passed(order) => policy_line::Tier::Passed(order),
                Precedence::Baseline(order) => policy_line::Tier::Baseline(order),
            },
        }
        .write(&mut out);
        out.push('\n');
    }
    (out, map.entries.len())
}

/// Rendered policy maps, shared by the endpoints (on any node) whose maps
/// are one shared map (see [`policyc_ir::resolve::ResolvedEndpoint`]):
/// each distinct map is rendered once, on every available core, before
/// the bundles are assembled, together with the lookups its programs need.
#[derive(Debug, Default)]
pub struct RenderedMaps {
    /// Text and lookups per map, by the map's address (the maps live in the
    /// [`Resolved`] for the whole emission; the address is only a key, never
    /// dereferenced, and nothing iterates this map).
    by_map: HashMap<usize, RenderedMap>,
}

/// One rendered policy map.
#[derive(Debug)]
struct RenderedMap {
    text: Arc<str>,
    lookups: EndpointConfig,
    /// The rules its entries name, sorted, each once.
    rules: Vec<RuleRef>,
}

impl RenderedMap {
    fn new(names: &RuleNames, map: &PolicyMap) -> RenderedMap {
        let rules: BTreeSet<RuleRef> = map.entries.iter().map(|entry| entry.rule).collect();
        RenderedMap { text: Arc::from(policy(names, map).0), lookups: lookups(map), rules: rules.into_iter().collect() }
    }
}

impl RenderedMaps {
    /// Renders the policy maps of the endpoints on `nodes` (every node if
    /// `None`).
    pub fn new(resolved: &Resolved, nodes: Option<&[&str]>, names: &RuleNames) -> RenderedMaps {
        let mut maps: Vec<&Arc<PolicyMap>> = Vec::new();
        let mut seen = HashSet::new();
        for e in &resolved.endpoints {
            let on_node = match (nodes, e.node.as_deref()) {
                (None, Some(_)) => true,
                (Some(nodes), Some(node)) => nodes.contains(&node),
                (_, None) => false,
            };
            if on_node && seen.insert(Arc::as_ptr(&e.policy) as usize) {
                maps.push(&e.policy);
            }
        }
        let rendered = policyc_ir::parallel::map(&maps, |map| RenderedMap::new(names, map));
        let by_map = maps.iter().map(|map| Arc::as_ptr(map) as usize).zip(rendered).collect();
        RenderedMaps { by_map }
    }

    /// The text of `map` ([`policy`]): one text for every bundle that
    /// holds the map, so that writing can tell it is the same file.
    pub fn text(&self, names: &RuleNames, map: &Arc<PolicyMap>) -> Arc<str> {
        match self.by_map.get(&(Arc::as_ptr(map) as usize)) {
            Some(rendered) => Arc::clone(&rendered.text),
            None => Arc::from(policy(names, map).0),
        }
    }

    /// The rules the entries of `map` name, sorted, each once (gathered
    /// once per map: a node's bundle lists the rules of all its maps).
    pub fn rules(&self, map: &Arc<PolicyMap>) -> Vec<RuleRef> {
        match self.by_map.get(&(Arc::as_ptr(map) as usize)) {
            Some(rendered) => rendered.rules.clone(),
            None => map.entries.iter().map(|entry| entry.rule).collect::<BTreeSet<_>>().into_iter().collect(),
        }
    }

    /// Every rendered text.
    pub fn texts(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_map.values().map(|rendered| &rendered.text)
    }

    /// The settings of endpoint `endpoint_id`'s programs, whose policy is
    /// `map` ([`lookups`]).
    pub fn config(&self, endpoint_id: u16, map: &Arc<PolicyMap>) -> EndpointConfig {
        let lookups = match self.by_map.get(&(Arc::as_ptr(map) as usize)) {
            Some(rendered) => rendered.lookups,
            None => lookups(map),
        };
        EndpointConfig { endpoint_id: u32::from(endpoint_id), ..lookups }
    }
}

/// `<Kind>/<ns>/<name>:<rule path>` (`<Kind>/<name>:...` when cluster-wide).
pub fn rule_name(cluster: &Cluster, policy: usize, rule: usize) -> String {
    if let Some(tier) = policy.checked_sub(cluster.policies.len()).and_then(|t| cluster.tier_policies.get(t)) {
        // Admin policies are cluster-scoped: `<Kind>/<name>:<path>`.
        return match tier.rules.get(rule).map(|r| r.path.as_str()).filter(|path| !path.is_empty()) {
            Some(path) => format!("{}/{}:{path}", tier.kind.name(), tier.name),
            None => format!("{}/{}:rules[{rule}]", tier.kind.name(), tier.name),
        };
    }
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
    let lines =
        IdentityLine::parse_all("identities.txt", text).map_err(|e| format!("line {}: {}", e.line, e.message))?;
    let mut assignments = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.kind != "endpoint" {
            continue;
        }
        let mut set = Labels::new();
        for (k, v) in line.endpoint_labels().map_err(|e| format!("line {}: {e}", n + 1))? {
            set.insert(k, v);
        }
        assignments.push((set, Identity(line.identity)));
    }
    Ok(IdentityTable::from_assignments(assignments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_ir::ids::PolicyId;
    use policyc_ir::policy_map::{PolicyEntry, PolicyKey};
    use policyc_ir::protocol::Direction;

    #[test]
    fn a_policy_line_names_the_first_rule_and_counts_the_others() {
        let names = RuleNames { by_policy: vec![vec![("CiliumNetworkPolicy/shop/api:spec.ingress[0]".into(), 42)]] };
        let entry = |identity, port, prefix_len, verdict, rule_count, precedence| PolicyEntry {
            key: PolicyKey {
                identity: Identity(identity),
                direction: Direction::Egress,
                protocol: 6,
                port,
                prefix_len,
            },
            verdict,
            rule: RuleRef::new(PolicyId::new(0), 0),
            rule_count,
            precedence,
        };
        let map = PolicyMap {
            enforced: [false, true],
            entries: vec![
                entry(0, 0, 8, MapVerdict::Deny, 1, Precedence::NetworkPolicy),
                entry(7, 80, 24, MapVerdict::Allow, 1, Precedence::Passed(3)),
                entry(4_294_967_295, 65535, 24, MapVerdict::Redirect("http".into()), 3, Precedence::NetworkPolicy),
            ],
        };
        let (text, lines) = policy(&names, &map);
        assert_eq!(lines, 3);
        assert_eq!(
            text,
            "egress any 6/0/8 deny 42 CiliumNetworkPolicy/shop/api:spec.ingress[0]\n\
             egress 7 6/80/24 allow 42 CiliumNetworkPolicy/shop/api:spec.ingress[0] pass/3\n\
             egress 4294967295 6/65535/24 redirect:http 42 CiliumNetworkPolicy/shop/api:spec.ingress[0],+2\n"
        );
        // The loader computes the same precedence from the line as the IR
        // from the entry.
        for (entry, line) in map.entries.iter().zip(text.lines()) {
            let parsed = PolicyLine::parse("p.txt", 1, line).unwrap();
            assert_eq!(parsed.precedence(), entry.precedence_value(), "{line}");
        }
        // A rule the cluster lacks (validation rules it out) still renders.
        assert_eq!(names.get(RuleRef::new(PolicyId::new(3), 1)), "policy3:rule1");
    }
}
