//! Cluster-admin policy tiers: SIG Network's network-policy-api
//! `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy`
//! (`policy.networking.k8s.io/v1alpha1`) and `ClusterNetworkPolicy`
//! (`v1alpha2`, `tier: Admin|Baseline`), normalized to one vocabulary.
//!
//! Their rules are read differently from NetworkPolicy and Cilium rules,
//! so they are kept apart from [`crate::policy::Policy`]:
//! - first match decides: the policies of a tier by ascending `priority`,
//!   each one's rules in written order ("The relative precedence of the
//!   rules within a single ANP object ... will be determined by the order
//!   in which the rule is written", `AdminNetworkPolicySpec.Priority` in
//!   network-policy-api `apis/v1alpha1/adminnetworkpolicy_types.go`);
//! - `Allow` (v1alpha2 `Accept`) and `Deny` are final, `Pass` leaves the
//!   tier ("skip any remaining ANP rules, and then pass execution to any
//!   NetworkPolicies that select the pod", same file);
//! - a policy that selects a pod does not isolate it: what no rule
//!   matches falls through to the next tier ("ANPs with no ingress rules
//!   do not affect ingress traffic", same file).
//!
//! Namespace scoping is folded into the selectors as for the other
//! policies: a `namespaces` selector tests the endpoint's
//! `io.cilium.k8s.namespace.labels.*`.

use crate::cidr::Cidr;
use crate::cluster::Cluster;
use crate::eval::Party;
use crate::policy::PortMatch;
use crate::protocol::{Direction, Protocol};
use crate::selector::LabelSelector;
use std::fmt;

/// The tiers an admin policy may sit in; the NetworkPolicy tier lies
/// between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Tier {
    /// Before NetworkPolicies: `AdminNetworkPolicy`, `ClusterNetworkPolicy`
    /// with `tier: Admin`.
    Admin,
    /// After NetworkPolicies: `BaselineAdminNetworkPolicy`,
    /// `ClusterNetworkPolicy` with `tier: Baseline`.
    Baseline,
}

impl Tier {
    /// The name output uses (`admin`, `baseline`).
    pub fn name(self) -> &'static str {
        match self {
            Tier::Admin => "admin",
            Tier::Baseline => "baseline",
        }
    }
}

/// Which kind of object an admin policy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TierKind {
    /// `policy.networking.k8s.io/v1alpha1` `AdminNetworkPolicy`.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` `BaselineAdminNetworkPolicy`.
    BaselineAdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` `ClusterNetworkPolicy`.
    ClusterNetworkPolicy,
}

impl TierKind {
    /// The manifest `kind`.
    pub fn name(self) -> &'static str {
        match self {
            TierKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            TierKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            TierKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        }
    }
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TierAction {
    /// `Allow` (v1alpha2 `Accept`): allowed, no later tier is asked.
    Allow,
    /// `Deny`: dropped, no later tier is asked.
    Deny,
    /// `Pass`: the rest of this tier is skipped; the next tier decides.
    Pass,
}

impl TierAction {
    /// The name output uses (`Allow`, `Deny`, `Pass`).
    pub fn name(self) -> &'static str {
        match self {
            TierAction::Allow => "Allow",
            TierAction::Deny => "Deny",
            TierAction::Pass => "Pass",
        }
    }
}

/// One peer of an admin rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum TierPeer {
    /// Pods whose identity labels match (`namespaces`, `pods`).
    Endpoints(LabelSelector),
    /// Addresses in any of these prefixes (`networks`, egress only). Unlike
    /// an `ipBlock`, they match the cluster's own pods and nodes too: "if
    /// you Allow or Deny traffic to `0.0.0.0/0`, that will allow or deny
    /// all IPv4 pod-to-pod traffic as well" (`AdminNetworkPolicyEgressPeer`
    /// `Networks`, network-policy-api `apis/v1alpha1/shared_types.go`).
    Networks(Vec<Cidr>),
    /// Nodes whose labels match (`nodes`, egress only), by their addresses.
    Nodes(LabelSelector),
}

/// One rule of an admin policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TierRule {
    /// Field path of the rule in its object (`spec.ingress[0]`).
    pub path: String,
    /// `name`, if written.
    pub name: Option<String>,
    /// Direction relative to the subject.
    pub direction: Direction,
    /// What a match does.
    pub action: TierAction,
    /// The peers (`from`/`to`); never empty in a valid policy.
    pub peers: Vec<TierPeer>,
    /// Ports; `None`: every port of every protocol.
    pub ports: Option<Vec<PortMatch>>,
}

/// A normalized admin or baseline policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TierPolicy {
    /// The object kind.
    pub kind: TierKind,
    /// The object name (admin policies are cluster-scoped).
    pub name: String,
    /// The tier it sits in.
    pub tier: Tier,
    /// `priority` (0-1000; lower first). A `BaselineAdminNetworkPolicy`,
    /// a singleton, has 0.
    pub priority: u16,
    /// The pods it applies to (namespace labels folded in).
    pub subject: LabelSelector,
    /// Ingress and egress rules, in written order within each direction.
    pub rules: Vec<TierRule>,
}

impl fmt::Display for TierPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.name)
    }
}

/// A rule of an admin policy: `cluster.tier_policies[policy].rules[rule]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TierRuleRef {
    /// Position of the policy in `Cluster::tier_policies`.
    pub policy: usize,
    /// Position of the rule in the policy.
    pub rule: usize,
}

/// The order in which the policies of `tier` are asked: ascending
/// priority, then kind and name. Two policies of one priority have no
/// defined order ("The behavior is undefined if two ANP objects have same
/// priority", `apis/v1alpha1/adminnetworkpolicy_types.go`; v1alpha2 lets
/// the implementation "apply any of the matching policies"): policyc picks
/// kind and name so the answer is the same on every compile, and `lint`
/// warns where the order matters.
pub fn tier_order(cluster: &Cluster, tier: Tier) -> Vec<usize> {
    let mut order: Vec<usize> =
        cluster.tier_policies.iter().enumerate().filter(|(_, p)| p.tier == tier).map(|(i, _)| i).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&cluster.tier_policies[a], &cluster.tier_policies[b]);
        (pa.priority, pa.kind, &pa.name).cmp(&(pb.priority, pb.kind, &pb.name))
    });
    order
}

/// The first rule of `tier` that matches traffic of endpoint `subject`
/// with `peer` in `dir`, with its action; `None` when no rule matches.
pub fn first_match(
    cluster: &Cluster,
    tier: Tier,
    subject: crate::ids::EndpointId,
    peer: Party,
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> Option<(TierRuleRef, TierAction)> {
    if cluster.tier_policies.is_empty() {
        return None; // most clusters: nothing to order
    }
    let endpoint = cluster.endpoint(subject);
    for p in tier_order(cluster, tier) {
        let policy = &cluster.tier_policies[p];
        if !policy.subject.matches(&endpoint.labels) {
            continue;
        }
        for (r, rule) in policy.rules.iter().enumerate() {
            if rule.direction == dir && rule_matches(cluster, rule, subject, peer, protocol, port) {
                return Some((TierRuleRef { policy: p, rule: r }, rule.action));
            }
        }
    }
    None
}

fn rule_matches(
    cluster: &Cluster,
    rule: &TierRule,
    subject: crate::ids::EndpointId,
    peer: Party,
    protocol: Protocol,
    port: u16,
) -> bool {
    if !rule.peers.iter().any(|p| peer_matches(cluster, p, peer)) {
        return false;
    }
    let Some(ports) = &rule.ports else { return true };
    // A named port is the destination pod's container port
    // (`AdminNetworkPolicyPort.NamedPort` "selects a port on a pod(s)
    // based on name"): the subject's own on ingress, the peer's on egress.
    let destination = match rule.direction {
        Direction::Ingress => Some(subject),
        Direction::Egress => match peer {
            Party::Endpoint(i) => Some(i),
            _ => None,
        },
    };
    let resolve = |name: &str| destination.and_then(|d| cluster.endpoint(d).named_port(name, protocol));
    ports.iter().any(|m| crate::eval::port_matches(m, &resolve, protocol, port))
}

/// Whether admin peer `peer` selects `party` (a node as itself, before
/// it is seen as `host` or `remote-node`).
pub fn peer_matches(cluster: &Cluster, peer: &TierPeer, party: Party) -> bool {
    match (peer, party) {
        (TierPeer::Endpoints(sel), Party::Endpoint(i)) => sel.matches(&cluster.endpoint(i).labels),
        (TierPeer::Endpoints(_), _) => false,
        (TierPeer::Networks(cidrs), party) => {
            let ips = match party {
                Party::External(ip) => vec![ip],
                Party::Endpoint(i) => cluster.endpoint(i).ips.clone(),
                Party::Node(n) => cluster.nodes[n].ips.clone(),
                Party::Reserved(_) => Vec::new(),
            };
            ips.iter().any(|ip| cidrs.iter().any(|c| c.contains(*ip)))
        }
        (TierPeer::Nodes(sel), Party::Node(n)) => sel.matches(&cluster.nodes[n].labels),
        (TierPeer::Nodes(_), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Endpoint;
    use crate::eval::{decide, Decision};
    use crate::ids::EndpointId;
    use crate::labels::Labels;
    use crate::policy::{Action, Peers, Policy, PolicyKind, PolicyOrigin, PortSpec, Rule, Subject};
    use crate::protocol::PortRange;
    use crate::selector::Requirement;

    fn pod(name: &str, ip: &str) -> Endpoint {
        Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            kind: crate::cluster::EndpointKind::Pod,
            labels: Labels::from_pairs([("app".to_string(), name.to_string())]),
            ips: vec![ip.parse().unwrap()],
            node: None,
            named_ports: vec![],
        }
    }

    fn app(name: &str) -> LabelSelector {
        LabelSelector::everything().with(Requirement::equals("app", name))
    }

    fn rule(action: TierAction, peers: Vec<TierPeer>, port: Option<u16>) -> TierRule {
        let ports = port
            .map(|p| vec![PortMatch { protocol: Some(Protocol::Tcp), ports: PortSpec::Range(PortRange::single(p)) }]);
        TierRule { path: "spec.ingress[0]".into(), name: None, direction: Direction::Ingress, action, peers, ports }
    }

    fn policy(name: &str, tier: Tier, priority: u16, rules: Vec<TierRule>) -> TierPolicy {
        TierPolicy { kind: TierKind::AdminNetworkPolicy, name: name.into(), tier, priority, subject: app("b"), rules }
    }

    /// `a` and `b`; b is the subject of every policy.
    fn cluster(tiers: Vec<TierPolicy>, isolate_b: bool) -> Cluster {
        let mut c = Cluster { endpoints: vec![pod("a", "10.200.0.1"), pod("b", "10.200.0.2")], ..Default::default() };
        if isolate_b {
            c.policies.push(Policy {
                origin: PolicyOrigin {
                    kind: PolicyKind::NetworkPolicy,
                    namespace: Some("ns".into()),
                    name: "np".into(),
                    spec_path: "spec".into(),
                },
                subject: Subject::Endpoints(app("b")),
                default_deny: [true, false],
                requires: [vec![], vec![]],
                deny_requires: [vec![], vec![]],
                rules: vec![Rule {
                    path: "spec.ingress[0]".into(),
                    direction: Direction::Ingress,
                    action: Action::Allow,
                    peers: Peers::Any,
                    ports: Some(vec![PortMatch {
                        protocol: Some(Protocol::Tcp),
                        ports: PortSpec::Range(PortRange::single(443)),
                    }]),
                    l7: None,
                }],
            });
        }
        c.tier_policies = tiers;
        c
    }

    fn ingress_of_b(c: &Cluster, port: u16) -> Decision {
        decide(c, EndpointId::new(1), Party::Endpoint(EndpointId::new(0)), Direction::Ingress, Protocol::Tcp, port)
    }

    fn at(policy: usize) -> TierRuleRef {
        TierRuleRef { policy, rule: 0 }
    }

    #[test]
    fn lower_priority_decides_first_whatever_the_input_order() {
        let peers = || vec![TierPeer::Endpoints(app("a"))];
        let c = cluster(
            vec![
                policy("deny", Tier::Admin, 20, vec![rule(TierAction::Deny, peers(), None)]),
                policy("allow", Tier::Admin, 10, vec![rule(TierAction::Allow, peers(), Some(80))]),
            ],
            true,
        );
        assert_eq!(tier_order(&c, Tier::Admin), [1, 0]);
        assert_eq!(ingress_of_b(&c, 80), Decision::TierAllowed(at(1)));
        assert_eq!(ingress_of_b(&c, 443), Decision::TierDenied(at(0)), "deny wins over the NetworkPolicy's allow");
    }

    #[test]
    fn pass_goes_to_the_network_policy_tier_then_the_baseline() {
        let peers = || vec![TierPeer::Endpoints(app("a"))];
        let tiers = || {
            vec![
                policy("pass", Tier::Admin, 1, vec![rule(TierAction::Pass, peers(), None)]),
                policy("base", Tier::Baseline, 0, vec![rule(TierAction::Deny, peers(), None)]),
            ]
        };
        // Isolated: the NetworkPolicy decides, the baseline is not asked.
        let c = cluster(tiers(), true);
        let np = |p: u16| ingress_of_b(&c, p);
        assert!(
            matches!(np(443), Decision::Passed { by, then } if by == at(0) && matches!(*then, Decision::Allowed(_)))
        );
        assert!(matches!(np(80), Decision::Passed { then, .. } if matches!(*then, Decision::DefaultDeny(_))));
        // Not isolated: the baseline decides.
        let c = cluster(tiers(), false);
        assert_eq!(ingress_of_b(&c, 80), Decision::Passed { by: at(0), then: Box::new(Decision::TierDenied(at(1))) });
        assert!(!ingress_of_b(&c, 80).passes());
    }

    #[test]
    fn no_match_falls_through_and_an_admin_policy_does_not_isolate() {
        let c = cluster(
            vec![policy(
                "other",
                Tier::Admin,
                1,
                vec![rule(TierAction::Deny, vec![TierPeer::Endpoints(app("z"))], None)],
            )],
            false,
        );
        assert_eq!(ingress_of_b(&c, 80), Decision::NotIsolated);
    }

    #[test]
    fn networks_match_pod_addresses_and_nodes_match_node_labels() {
        let cidr = Cidr::parse_strict("10.200.0.0/24").unwrap();
        let c = cluster(
            vec![policy(
                "net",
                Tier::Admin,
                1,
                vec![rule(TierAction::Deny, vec![TierPeer::Networks(vec![cidr])], None)],
            )],
            false,
        );
        assert_eq!(ingress_of_b(&c, 80), Decision::TierDenied(at(0)));
        let outside = Party::External("192.0.2.1".parse().unwrap());
        assert!(!peer_matches(&c, &TierPeer::Networks(vec![cidr]), outside));
        let mut c = c;
        c.nodes.push(crate::cluster::Node {
            name: "n".into(),
            labels: Labels::from_pairs([("role".to_string(), "gw".to_string())]),
            ips: vec!["10.200.255.1".parse().unwrap()],
        });
        let gw = LabelSelector::everything().with(Requirement::equals("role", "gw"));
        assert!(peer_matches(&c, &TierPeer::Nodes(gw.clone()), Party::Node(0)));
        assert!(!peer_matches(&c, &TierPeer::Nodes(gw), Party::Endpoint(EndpointId::new(0))));
        assert!(
            peer_matches(&c, &TierPeer::Networks(vec![cidr]), Party::Node(0))
                == cidr.contains("10.200.255.1".parse().unwrap())
        );
    }
}
