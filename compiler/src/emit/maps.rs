//! Text renderings of the maps, one entry per line, fields separated by one
//! space, sorted:
//!
//! - `identities.txt`: `<identity> <kind> <labels>`, kind `reserved`,
//!   `endpoint` or `cidr`; labels comma-separated (`-` if none).
//! - `ipcache.txt`: `<prefix> <identity> <source>`, source `world`, `cidr`,
//!   `host` (this node), `node:<name>` or `endpoint:<ns>/<pod>`; by prefix.
//! - `endpoints.txt`: `<ip> <endpoint id> <identity> <enforced> <ns>/<pod>`,
//!   enforced `ingress`, `egress`, `ingress+egress` or `-`; by IP.
//! - `policy/<identity>.txt` (see [`policy_files`]): `<direction> <peer> <proto>/<port>/<len>
//!   <verdict> <rule>[,+<more>]`: peer an identity or `any`; `len` the
//!   prefix length over the 24 bits `protocol|port` (0 every protocol, 8
//!   one protocol, 24 one port); verdict `allow`, `deny` or
//!   `redirect:<parser>`; rule `<Kind>/<ns>/<name>:<path>`, the first of
//!   the rules giving the verdict, and `,+<more>` how many others do (left
//!   out if none). By key.

use crate::emit::programs::lookups;
use policyc_ebpf::config::EndpointConfig;
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::identity::{fnv1a64, Identity, IdentityTable};
use policyc_ir::ids::{EndpointId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::policy_map::{MapVerdict, PolicyEntry, PolicyMap};
use policyc_ir::resolve::{IdentityInfo, IdentityKind, IpcacheSource, Resolved, ResolvedEndpoint};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Lines joined with `\n`, with a final newline unless empty.
pub fn join(lines: &[String]) -> String {
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// One line of `identities.txt`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdentityLine {
    /// The number.
    pub identity: u32,
    /// `reserved`, `endpoint` or `cidr`.
    pub kind: &'static str,
    /// Labels, comma-separated (`-` if none).
    pub labels: String,
}

impl std::fmt::Display for IdentityLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.identity, self.kind, self.labels)
    }
}

/// An identity as `identities.txt` writes it.
pub fn identity_line(info: &IdentityInfo) -> IdentityLine {
    let kind = match info.kind {
        IdentityKind::Reserved => "reserved",
        IdentityKind::Endpoint => "endpoint",
        IdentityKind::Cidr(_) => "cidr",
    };
    let labels: Vec<String> = info
        .labels
        .iter()
        .map(|(k, v)| if v.is_empty() && kind != "endpoint" { k.to_string() } else { format!("{k}={v}") })
        .collect();
    let labels = if labels.is_empty() { "-".to_string() } else { labels.join(",") };
    IdentityLine { identity: info.identity.get(), kind, labels }
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
                let mut line = e.prefix.to_string();
                line.push(' ');
                let mut own = None;
                match &e.source {
                    IpcacheSource::World | IpcacheSource::Cidr => {
                        push_number(&mut line, e.identity.get());
                        line.push_str(if e.source == IpcacheSource::World { " world" } else { " cidr" });
                    }
                    IpcacheSource::Node(name) => {
                        let mut host = line.clone();
                        push_number(&mut host, Identity::HOST.get());
                        host.push_str(" host");
                        own = Some((name.clone(), host));
                        push_number(&mut line, e.identity.get());
                        line.push_str(" node:");
                        line.push_str(name);
                    }
                    IpcacheSource::Endpoint(i) => {
                        push_number(&mut line, e.identity.get());
                        line.push_str(" endpoint:");
                        line.push_str(&resolved.endpoints[i.index()].name);
                    }
                }
                (line, own)
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

/// Stable endpoint ids (`1..=65535`) for the endpoints of one node: each
/// name starts at a hash of itself and probes linearly, in name order, so
/// adding a pod renumbers no other pod unless their hashes collide.
pub fn endpoint_ids(local: &[&ResolvedEndpoint]) -> BTreeMap<EndpointId, u16> {
    let names: BTreeMap<&str, EndpointId> = local.iter().map(|e| (e.name.as_str(), e.index)).collect();
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
pub fn endpoints(local: &[&ResolvedEndpoint], ids: &BTreeMap<EndpointId, u16>) -> Vec<String> {
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

/// A file-system-safe name of an endpoint: `<ns>.<pod>`, or
/// `<ns>.<name>.<kind>` for a workload standing for its pods. It names the
/// endpoint's pinned links on the node and tells apart the policy files of
/// one identity's endpoints whose maps differ.
pub fn endpoint_stem(cluster: &Cluster, endpoint: EndpointId) -> String {
    let e = cluster.endpoint(endpoint);
    match &e.kind {
        EndpointKind::Pod => format!("{}.{}", e.namespace, e.name),
        EndpointKind::Workload(kind) => format!("{}.{}.{}", e.namespace, e.name, kind.to_lowercase()),
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
    by_policy: Vec<Vec<String>>,
}

impl RuleNames {
    /// The names of every rule of `cluster`.
    pub fn new(cluster: &Cluster) -> RuleNames {
        let by_policy = cluster
            .policies
            .iter()
            .enumerate()
            .map(|(p, policy)| (0..policy.rules.len()).map(|r| rule_name(cluster, p, r)).collect())
            .collect();
        RuleNames { by_policy }
    }

    /// The name of `rule` (a placeholder for a rule the cluster lacks,
    /// which validation rules out).
    pub fn get(&self, rule: RuleRef) -> Cow<'_, str> {
        match self.by_policy.get(rule.policy.index()).and_then(|p| p.get(rule.rule_index())) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("policy{}:rule{}", rule.policy, rule.rule)),
        }
    }
}

/// The text of one policy map (one line per entry, see the module
/// documentation) and its number of lines. The rule field ends with the
/// number of other rules that gave the same verdict (`,+2`), left out when
/// there are none.
pub fn policy(names: &RuleNames, map: &PolicyMap) -> (String, usize) {
    // Room for every line at once: growing the text as it is written
    // copied it over and over.
    let longest_verdict = |entry: &PolicyEntry| match &entry.verdict {
        MapVerdict::Redirect(parser) => "redirect:".len() + parser.len(),
        _ => "allow".len(),
    };
    let capacity = map.entries.iter().map(|e| LINE_FIELDS + longest_verdict(e) + names.get(e.rule).len()).sum();
    let mut out = String::with_capacity(capacity);
    for entry in &map.entries {
        let key = &entry.key;
        out.push_str(key.direction.name());
        out.push(' ');
        if key.identity.is_any() {
            out.push_str("any");
        } else {
            push_number(&mut out, key.identity.get());
        }
        out.push(' ');
        push_number(&mut out, u32::from(key.protocol));
        out.push('/');
        push_number(&mut out, u32::from(key.port));
        out.push('/');
        push_number(&mut out, u32::from(key.prefix_len));
        out.push(' ');
        match &entry.verdict {
            MapVerdict::Allow => out.push_str("allow"),
            MapVerdict::Deny => out.push_str("deny"),
            MapVerdict::Redirect(parser) => {
                out.push_str("redirect:");
                out.push_str(parser);
            }
        }
        out.push(' ');
        out.push_str(&names.get(entry.rule));
        if entry.rule_count > 1 {
            out.push_str(",+");
            push_number(&mut out, entry.rule_count - 1);
        }
        out.push('\n');
    }
    (out, map.entries.len())
}

/// The longest a policy line is without its verdict and rule name:
/// `ingress 4294967295 255/65535/24 ` and `,+4294967295` and the newline.
const LINE_FIELDS: usize = 32 + 12 + 1;

/// Appends the decimal digits of `n` (what `write!` does, without the
/// formatting machinery, which dominated emission time).
fn push_number(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits are always UTF-8.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_ir::ids::PolicyId;
    use policyc_ir::policy_map::{PolicyEntry, PolicyKey};
    use policyc_ir::protocol::Direction;

    #[test]
    fn a_policy_line_names_the_first_rule_and_counts_the_others() {
        let names = RuleNames { by_policy: vec![vec!["CiliumNetworkPolicy/shop/api:spec.ingress[0]".into()]] };
        let entry = |identity, port, prefix_len, verdict, rule_count| PolicyEntry {
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
        };
        let map = PolicyMap {
            enforced: [false, true],
            entries: vec![
                entry(0, 0, 0, MapVerdict::Deny, 1),
                entry(4_294_967_295, 65535, 24, MapVerdict::Redirect("http".into()), 3),
            ],
        };
        let (text, lines) = policy(&names, &map);
        assert_eq!(lines, 2);
        assert_eq!(
            text,
            "egress any 6/0/0 deny CiliumNetworkPolicy/shop/api:spec.ingress[0]\n\
             egress 4294967295 6/65535/24 redirect:http CiliumNetworkPolicy/shop/api:spec.ingress[0],+2\n"
        );
        // A rule the cluster lacks (validation rules it out) still renders.
        assert_eq!(names.get(RuleRef::new(PolicyId::new(3), 1)), "policy3:rule1");
    }
}
