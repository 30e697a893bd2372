//! Identities split where an admin rule tells apart endpoints of one label
//! set.
//!
//! The datapath knows a peer by its identity only. Three things an admin
//! or baseline rule says about a peer are not a function of its labels:
//! - a `networks` peer "will also match pod addresses"
//!   (`AdminNetworkPolicyEgressPeer.Networks`, network-policy-api
//!   `apis/v1alpha1/adminnetworkpolicy_types.go`): whether a pod is inside
//!   depends on its address;
//! - an egress `namedPort` (v1alpha2 `destinationNamedPort`) is the
//!   destination pod's container port of that name ("matches traffic on a
//!   named port of the destination pod", same file), which pods of one
//!   label set may number differently; so is a Kubernetes NetworkPolicy's
//!   egress named port (`NetworkPolicyPort.port`: "a named port on a pod").
//!
//! So an endpoint's identity is keyed by its label set plus these facts,
//! as Cilium keys an identity by the labels its label filter keeps
//! (<https://docs.cilium.io/en/stable/operations/performance/scalability/identity-relevant-labels/>):
//! a fact is one more label, under the [`SPLIT_PREFIX`] that no Kubernetes
//! label key can carry (`:` is not allowed in one, as `reserved:` is not).
//! Only the facts that differ among the endpoints of one label set are
//! added, so a label set no rule splits keeps its number, and of a split
//! one the endpoints that hold none of the differing facts (outside every
//! such CIDR) keep it too. The numbers are given by the same table
//! ([`crate::identity::IdentityTable`]: a hash of the key's text, probing,
//! the previous compile's numbers kept), so they are as stable as any
//! identity's; selectors never see the facts
//! ([`crate::resolve::IdentityInfo::selector_labels`]).
//!
//! `nodes` peers and `networks` that tell apart nodes behind one node
//! identity are not split here: the compiler still refuses them (E0350).

use crate::cidr::Cidr;
use crate::cluster::{Cluster, Endpoint};
use crate::labels::Labels;
use crate::policy::PortSpec;
use crate::protocol::{Direction, Protocol};
use crate::tier::TierPeer;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// Prefix of the labels an identity is split by (`split:net:10.0.0.0/24`,
/// `split:port:http/TCP`).
pub const SPLIT_PREFIX: &str = "split:";

/// What the cluster's admin rules tell apart: every prefix of a `networks`
/// peer and every egress named port (with the protocols it stands for).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distinctions {
    cidrs: BTreeSet<Cidr>,
    ports: BTreeSet<(String, Protocol)>,
}

impl Distinctions {
    /// The distinctions of `cluster`'s admin and baseline rules, and the
    /// egress named ports of its Kubernetes NetworkPolicies (the peer's
    /// too: "the named port ... on the destination pod"; Cilium's stand for
    /// one number cluster-wide, [`Cluster::cluster_named_port`]).
    pub fn of(cluster: &Cluster) -> Distinctions {
        let mut out = Distinctions::default();
        let mut egress_ports = Vec::new();
        for rule in cluster.tier_policies.iter().flat_map(|p| &p.rules) {
            for peer in &rule.peers {
                if let TierPeer::Networks(cidrs) = peer {
                    out.cidrs.extend(cidrs.iter().copied());
                }
            }
            if rule.direction == Direction::Egress {
                egress_ports.extend(rule.ports.iter().flatten());
            }
        }
        for policy in cluster.policies.iter().filter(|p| !p.origin.kind.is_cilium()) {
            let egress = policy.rules.iter().filter(|r| r.direction == Direction::Egress);
            egress_ports.extend(egress.flat_map(|r| r.ports.iter().flatten()));
        }
        for m in egress_ports {
            if let PortSpec::Named(name) = &m.ports {
                let protocols = m.protocol.map_or(Protocol::WITH_PORTS.to_vec(), |p| vec![p]);
                out.ports.extend(protocols.into_iter().map(|p| (name.clone(), p)));
            }
        }
        out
    }

    /// Whether nothing is told apart.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.ports.is_empty()
    }

    /// The facts of `endpoint`, sorted: `(i, 0)` for the `i`th prefix
    /// holding one of its addresses, `(prefixes + j, port)` for the
    /// number of the `j`th named port. Numbers, so that a cluster's pods
    /// are compared without text; [`Distinctions::label`] spells one.
    fn facts(&self, endpoint: &Endpoint) -> Vec<(usize, u16)> {
        let nets = self.cidrs.iter().enumerate().filter(|(_, c)| endpoint.ips.iter().any(|ip| c.contains(*ip)));
        let ports =
            self.ports.iter().enumerate().filter_map(|(j, (name, protocol))| {
                Some((self.cidrs.len() + j, endpoint.named_port(name, *protocol)?))
            });
        nets.map(|(i, _)| (i, 0)).chain(ports).collect()
    }

    /// Fact `(i, value)` of [`Distinctions::facts`] as a label:
    /// `split:net:<prefix>` (empty value), `split:port:<name>/<protocol>`
    /// = the number.
    fn label(&self, (i, value): (usize, u16)) -> (String, String) {
        match self.cidrs.iter().nth(i) {
            Some(c) => (format!("{SPLIT_PREFIX}net:{c}"), String::new()),
            None => {
                let (name, protocol) =
                    self.ports.iter().nth(i - self.cidrs.len()).expect("a fact of these distinctions");
                (format!("{SPLIT_PREFIX}port:{name}/{protocol}"), value.to_string())
            }
        }
    }
}

/// Whether `key` is a split fact, not a label of the endpoint.
pub fn is_split_key(key: &str) -> bool {
    key.starts_with(SPLIT_PREFIX)
}

/// `labels` without the split facts: what selectors see.
pub fn selector_labels(labels: &Labels) -> Cow<'_, Labels> {
    if labels.0.keys().any(|k| is_split_key(k)) {
        Cow::Owned(Labels(
            labels.0.iter().filter(|(k, _)| !is_split_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ))
    } else {
        Cow::Borrowed(labels)
    }
}

/// The identity key of every endpoint of `cluster`, in order: its label
/// set, plus the facts that differ among the endpoints sharing that label
/// set (those it holds).
pub fn identity_keys(cluster: &Cluster) -> Vec<Cow<'_, Labels>> {
    let distinctions = Distinctions::of(cluster);
    if distinctions.is_empty() {
        return cluster.endpoints.iter().map(|e| Cow::Borrowed(&e.labels)).collect();
    }
    let facts: Vec<Vec<(usize, u16)>> = cluster.endpoints.iter().map(|e| distinctions.facts(e)).collect();
    // Per label set: its first endpoint, and the facts seen to differ
    // from that one's (held by one endpoint and not another, or with
    // another value).
    let mut groups: HashMap<&Labels, (usize, BTreeSet<usize>)> = HashMap::new();
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let (first, differing) = groups.entry(&e.labels).or_insert((i, BTreeSet::new()));
        if *first == i || facts[*first] == facts[i] {
            continue;
        }
        let (a, b) = (&facts[*first], &facts[i]);
        differing.extend(a.iter().filter(|f| !b.contains(f)).chain(b.iter().filter(|f| !a.contains(f))).map(|f| f.0));
    }
    cluster
        .endpoints
        .iter()
        .zip(&facts)
        .map(|(e, facts)| {
            let differing = &groups[&e.labels].1;
            let mut held = facts.iter().filter(|f| differing.contains(&f.0)).peekable();
            if held.peek().is_none() {
                return Cow::Borrowed(&e.labels);
            }
            let mut key = e.labels.clone();
            for &fact in held {
                let (k, v) = distinctions.label(fact);
                key.insert(k, v);
            }
            Cow::Owned(key)
        })
        .collect()
}

/// Which of `candidates` (the identity keys of one label set, `labels`)
/// an endpoint with `ips` and `named_ports` holds: what the node agent
/// asks of a live pod, whose facts it sees live (an address moved into a
/// prefix gives the pod the identity of the pods already there). The
/// facts asked are those the keys were split by; `None` if the pod's
/// combination was never compiled.
pub fn key_among<'a>(
    candidates: &[&'a Labels],
    labels: &Labels,
    ips: &[std::net::IpAddr],
    named_ports: &[crate::cluster::NamedPort],
) -> Option<&'a Labels> {
    let asked: BTreeSet<&str> =
        candidates.iter().flat_map(|c| c.0.keys()).map(String::as_str).filter(|k| is_split_key(k)).collect();
    let mut key = labels.clone();
    for fact in asked {
        let Some(rest) = fact.strip_prefix(SPLIT_PREFIX) else { continue };
        if let Some(prefix) = rest.strip_prefix("net:") {
            let cidr = Cidr::parse_strict(prefix).ok()?;
            if ips.iter().any(|ip| cidr.contains(*ip)) {
                key.insert(fact, "");
            }
        } else if let Some((name, protocol)) = rest.strip_prefix("port:").and_then(|p| p.rsplit_once('/')) {
            let protocol = Protocol::parse(protocol)?;
            let port = named_ports.iter().find(|p| p.name == name && p.protocol == protocol);
            if let Some(port) = port {
                key.insert(fact, port.port.to_string());
            }
        }
    }
    candidates.iter().copied().find(|c| **c == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{EndpointKind, NamedPort};
    use crate::policy::PortMatch;
    use crate::selector::LabelSelector;
    use crate::tier::{Tier, TierAction, TierKind, TierPolicy, TierRule};

    fn pod(name: &str, app: &str, ip: &str, http: Option<u16>) -> Endpoint {
        Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            kind: EndpointKind::Pod,
            labels: Labels::from_pairs([("app", app)]),
            ips: vec![ip.parse().unwrap()],
            node: None,
            named_ports: http
                .map(|port| NamedPort { name: "http".into(), protocol: Protocol::Tcp, port })
                .into_iter()
                .collect(),
        }
    }

    fn admin(peers: Vec<TierPeer>, named: Option<&str>) -> TierPolicy {
        TierPolicy {
            kind: TierKind::AdminNetworkPolicy,
            name: "p".into(),
            tier: Tier::Admin,
            priority: 1,
            subject: LabelSelector::everything(),
            rules: vec![TierRule {
                path: String::new(),
                name: None,
                direction: Direction::Egress,
                action: TierAction::Deny,
                peers,
                ports: named.map(|n| vec![PortMatch { protocol: None, ports: PortSpec::Named(n.into()) }]),
            }],
        }
    }

    fn cluster(endpoints: Vec<Endpoint>, tiers: Vec<TierPolicy>) -> Cluster {
        Cluster { endpoints, tier_policies: tiers, ..Cluster::default() }
    }

    fn keys(c: &Cluster) -> Vec<String> {
        identity_keys(c).iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn without_admin_distinctions_keys_are_the_labels() {
        let c = cluster(vec![pod("a", "x", "10.0.0.1", Some(80)), pod("b", "x", "10.0.1.1", Some(81))], vec![]);
        assert_eq!(keys(&c), ["app=x", "app=x"]);
    }

    #[test]
    fn networks_split_only_the_label_sets_they_tell_apart() {
        let net = |s: &str| TierPeer::Networks(vec![Cidr::parse_strict(s).unwrap()]);
        let c = cluster(
            vec![
                pod("a", "x", "10.0.0.1", None),
                pod("b", "x", "10.0.1.1", None),
                pod("c", "y", "10.0.0.2", None),
                pod("d", "y", "10.0.0.3", None),
            ],
            vec![admin(vec![net("10.0.0.0/24"), net("0.0.0.0/0")], None)],
        );
        // `0.0.0.0/0` holds every pod, and `y`'s pods are all in
        // 10.0.0.0/24: neither splits; `x`'s outside pod keeps its key.
        assert_eq!(keys(&c), ["app=x,split:net:10.0.0.0/24=", "app=x", "app=y", "app=y"]);
    }

    #[test]
    fn egress_named_ports_split_by_number() {
        let c = cluster(
            vec![
                pod("a", "x", "10.0.0.1", Some(8080)),
                pod("b", "x", "10.0.0.2", Some(9090)),
                pod("c", "x", "10.0.0.3", None),
            ],
            vec![admin(vec![TierPeer::Endpoints(LabelSelector::everything())], Some("http"))],
        );
        assert_eq!(keys(&c), ["app=x,split:port:http/TCP=8080", "app=x,split:port:http/TCP=9090", "app=x"]);
        assert_eq!(selector_labels(&identity_keys(&c)[0]).to_string(), "app=x");
    }

    #[test]
    fn a_live_endpoint_finds_its_key_by_its_own_facts() {
        let net = TierPeer::Networks(vec![Cidr::parse_strict("10.0.0.0/24").unwrap()]);
        let c = cluster(
            vec![pod("a", "x", "10.0.0.1", Some(8080)), pod("b", "x", "10.0.1.1", Some(9090))],
            vec![admin(vec![net], Some("http"))],
        );
        let keys = identity_keys(&c);
        let candidates: Vec<&Labels> = keys.iter().map(AsRef::as_ref).collect();
        for e in &c.endpoints {
            let found = key_among(&candidates, &e.labels, &e.ips, &e.named_ports);
            assert_eq!(found, Some(&*keys[c.endpoints.iter().position(|x| x.name == e.name).unwrap()]));
        }
        // Pod b's address moved into the prefix, its port unchanged: a
        // combination never compiled.
        let moved = pod("b", "x", "10.0.0.9", Some(9090));
        assert_eq!(key_among(&candidates, &moved.labels, &moved.ips, &moved.named_ports), None);
        let like_a = pod("c", "x", "10.0.0.7", Some(8080));
        assert_eq!(key_among(&candidates, &like_a.labels, &like_a.ips, &like_a.named_ports), Some(&*keys[0]));
    }
}
