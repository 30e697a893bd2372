//! The reference evaluator: "may this packet from A reach B?", answered
//! straight from the Kubernetes and Cilium documentation on the normalized
//! policies, with no identities, tries or maps in between. Every faster
//! path (compiled map lookup, BPF programs, real traffic) is tested against
//! it, so it stays simple and slow on purpose.
//!
//! Rules it implements, per direction of the subject endpoint:
//! - the endpoint is isolated (default deny) in a direction if any policy
//!   selecting it enforces that direction;
//! - a matching deny rule drops the packet whatever else allows it;
//! - otherwise a matching allow rule admits it (through the proxy if the
//!   rule carries L7 rules);
//! - otherwise the packet passes only if the endpoint is not isolated.
//!
//! Cluster-admin tiers ([`crate::tier`]) wrap that: the admin tier's first
//! matching rule decides before it (`Pass` goes on to it), and where no
//! NetworkPolicy or Cilium policy isolates the endpoint the baseline
//! tier's first matching rule decides before the default allow. Cilium
//! policies sit in the NetworkPolicy tier (policyc's choice: they isolate
//! and allow as NetworkPolicies do, and their denies win inside it).
//!
//! A connection needs the source's egress and the destination's ingress.

use crate::cluster::{Cluster, Endpoint};
use crate::ids::{EndpointId, PolicyId, RuleRef};
use crate::labels::Labels;
use crate::policy::{Action, Entity, Peer, Peers, Policy, PolicyKind, PortMatch, PortSpec, Rule, Subject};
use crate::protocol::{Direction, Protocol};
use crate::reserved::{as_labels, entity_selects, reserved_labels};
use crate::selector::LabelSelector;
use crate::tier::{first_match, Tier, TierAction, TierRuleRef};
use std::net::IpAddr;

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Party {
    /// An endpoint of the cluster, by index into [`Cluster::endpoints`].
    Endpoint(EndpointId),
    /// An address outside the cluster.
    External(IpAddr),
    /// A reserved peer that is not a pod: `host`, `remote-node`,
    /// `kube-apiserver`, `health`, `init`, `ingress` or `unmanaged`.
    Reserved(Entity),
    /// A node of the cluster, by index into [`Cluster::nodes`] (one of its
    /// addresses): to an endpoint on that node it is `host`, to the others
    /// `remote-node`, as each node's ipcache maps it (and `kube-apiserver`
    /// too if it runs the API server, see [`crate::reserved`]).
    Node(usize),
}

/// A packet (the first of a connection) to judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Sender.
    pub src: Party,
    /// Receiver.
    pub dst: Party,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port (ICMP type for ICMP).
    pub port: u16,
}

/// How one direction was decided.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Decision {
    /// No policy isolates the endpoint in this direction.
    NotIsolated,
    /// Allowed by these rules.
    Allowed(Vec<RuleRef>),
    /// Allowed by these rules, through the L7 proxy.
    Redirected(Vec<RuleRef>),
    /// Dropped by these deny rules.
    Denied(Vec<RuleRef>),
    /// Isolated, and no rule allows it; these policies isolate it.
    DefaultDeny(Vec<PolicyId>),
    /// Allowed by the first matching rule of an admin or baseline policy.
    TierAllowed(TierRuleRef),
    /// Dropped by the first matching rule of an admin or baseline policy.
    TierDenied(TierRuleRef),
    /// A `Pass` rule left its tier; `then` is how the next tiers decided.
    Passed {
        /// The `Pass` rule.
        by: TierRuleRef,
        /// The decision of the tiers after it.
        then: Box<Decision>,
    },
}

impl Decision {
    /// Whether the packet passes this direction.
    pub fn passes(&self) -> bool {
        match self {
            Decision::NotIsolated | Decision::Allowed(_) | Decision::Redirected(_) | Decision::TierAllowed(_) => true,
            Decision::Denied(_) | Decision::DefaultDeny(_) | Decision::TierDenied(_) => false,
            Decision::Passed { then, .. } => then.passes(),
        }
    }

    /// The decision of the tier that decided, past any `Pass`.
    pub fn decided(&self) -> &Decision {
        match self {
            Decision::Passed { then, .. } => then.decided(),
            other => other,
        }
    }
}

/// The verdict on a packet, with the reason for each direction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// The source's egress decision (`None` when the source is no endpoint).
    pub egress: Option<Decision>,
    /// The destination's ingress decision (`None` when it is no endpoint).
    pub ingress: Option<Decision>,
}

impl Verdict {
    /// Whether the connection is allowed in both directions.
    pub fn allowed(&self) -> bool {
        self.egress.as_ref().is_none_or(Decision::passes) && self.ingress.as_ref().is_none_or(Decision::passes)
    }
}

/// Judges `query` against every policy of `cluster`.
pub fn eval(cluster: &Cluster, query: &Query) -> Verdict {
    let side = |subject: Party, peer: Party, dir: Direction| match subject {
        Party::Endpoint(i) => Some(decide(cluster, i, peer, dir, query.protocol, query.port)),
        _ => None,
    };
    Verdict {
        egress: side(query.src, query.dst, Direction::Egress),
        ingress: side(query.dst, query.src, Direction::Ingress),
    }
}

/// The decision of endpoint `subject` on traffic with `peer` in `dir`,
/// through the tiers: admin, NetworkPolicy (and Cilium), baseline,
/// default allow. A `Pass` in the admin tier goes on to the NetworkPolicy
/// tier; one in a baseline `ClusterNetworkPolicy` to the default.
pub fn decide(
    cluster: &Cluster,
    subject: EndpointId,
    peer: Party,
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> Decision {
    let tier = |tier| first_match(cluster, tier, subject, peer, dir, protocol, port);
    let final_or_pass = |hit: Option<(TierRuleRef, TierAction)>, next: &dyn Fn() -> Decision| match hit {
        Some((r, TierAction::Allow)) => Decision::TierAllowed(r),
        Some((r, TierAction::Deny)) => Decision::TierDenied(r),
        Some((r, TierAction::Pass)) => Decision::Passed { by: r, then: Box::new(next()) },
        None => next(),
    };
    let baseline = || final_or_pass(tier(Tier::Baseline), &|| Decision::NotIsolated);
    let network_policy = || match decide_network_policies(cluster, subject, peer, dir, protocol, port) {
        // "v1.NetworkPolicy always makes a final decision for selected
        // pods. Further evaluation only happens for Pods not selected by a
        // v1.NetworkPolicy" (`ClusterNetworkPolicySpec.Tier`,
        // network-policy-api `apis/v1alpha2`).
        Decision::NotIsolated => baseline(),
        decided => decided,
    };
    final_or_pass(tier(Tier::Admin), &network_policy)
}

/// The decision of the NetworkPolicy tier alone (Kubernetes and Cilium
/// policies): [`Decision::NotIsolated`] when none isolates the endpoint
/// and none of their rules matches.
pub fn decide_network_policies(
    cluster: &Cluster,
    subject: EndpointId,
    peer: Party,
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> Decision {
    let endpoint = cluster.endpoint(subject);
    let reserved = reserved_labels(cluster, endpoint, peer);
    let peer_labels = match &reserved {
        Some(names) => as_labels(names),
        None => party_labels(cluster, peer),
    };
    let selecting: Vec<PolicyId> = cluster
        .policies_with_ids()
        .filter(|(_, policy)| match &policy.subject {
            Subject::Endpoints(sel) => sel.matches(&endpoint.labels),
            Subject::Nodes(_) => false,
        })
        .map(|(p, _)| p)
        .collect();
    let isolating: Vec<PolicyId> = selecting.iter().copied().filter(|&p| cluster.policy(p).enforces(dir)).collect();
    // Requirements of allow rules narrow allow rules, those of deny rules
    // deny rules (`Policy::deny_requires`).
    let met = |of: fn(&Policy) -> &[Vec<LabelSelector>; 2]| {
        selecting.iter().flat_map(|&p| &of(cluster.policy(p))[dir.index()]).all(|req| req.matches(&peer_labels))
    };
    let (requirements_met, deny_requirements_met) = (met(|p| &p.requires), met(|p| &p.deny_requires));

    let (mut allows, mut redirects, mut denies) = (Vec::new(), Vec::new(), Vec::new());
    for &p in &selecting {
        let policy = cluster.policy(p);
        // The built-in allow (`crate::localhost`) is outside the rules
        // that `fromRequires` narrows.
        let required = requirements_met || policy.is_builtin();
        let kind = policy.origin.kind;
        for (r, rule) in policy.rules.iter().enumerate() {
            if rule.direction != dir
                || !rule_matches(cluster, rule, kind, endpoint, (peer, reserved.as_deref()), dir, protocol, port)
            {
                continue;
            }
            let at = RuleRef::new(p, r);
            match rule.action {
                Action::Deny if !deny_requirements_met => {}
                Action::Deny => denies.push(at),
                Action::Allow if !required => {}
                Action::Allow if rule.l7.is_some() => redirects.push(at),
                Action::Allow => allows.push(at),
            }
        }
    }
    if !denies.is_empty() {
        Decision::Denied(denies)
    } else if !redirects.is_empty() {
        Decision::Redirected(redirects)
    } else if !allows.is_empty() {
        Decision::Allowed(allows)
    } else if !isolating.is_empty() {
        Decision::DefaultDeny(isolating)
    } else {
        Decision::NotIsolated
    }
}

#[allow(clippy::too_many_arguments)]
fn rule_matches(
    cluster: &Cluster,
    rule: &Rule,
    kind: PolicyKind,
    subject: &Endpoint,
    (peer, reserved): (Party, Option<&[Entity]>),
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> bool {
    let peer_ok = match &rule.peers {
        Peers::Any => true,
        Peers::Only(peers) => peers.iter().any(|p| peer_matches(cluster, p, peer, reserved)),
    };
    if !peer_ok {
        return false;
    }
    let Some(ports) = &rule.ports else { return true };
    // A named port on ingress is the subject's own. On egress, Kubernetes
    // names a port of the destination pod ("resolved per destination pod");
    // Cilium resolves the name across the cluster's pods whatever the peer
    // (see `Cluster::cluster_named_port`).
    let resolve = |name: &str| match dir {
        Direction::Ingress => subject.named_port(name, protocol),
        Direction::Egress if kind.is_cilium() => cluster.cluster_named_port(name, protocol),
        Direction::Egress => match peer {
            Party::Endpoint(i) => cluster.endpoint(i).named_port(name, protocol),
            _ => None,
        },
    };
    ports.iter().any(|m| port_matches(m, &resolve, protocol, port))
}

/// Whether port match `m` covers `port` of `protocol`; `resolve` gives the
/// number a named port stands for.
pub fn port_matches(m: &PortMatch, resolve: &dyn Fn(&str) -> Option<u16>, protocol: Protocol, port: u16) -> bool {
    let protocol_ok = match m.protocol {
        Some(p) => p == protocol,
        None => Protocol::WITH_PORTS.contains(&protocol),
    };
    protocol_ok
        && match &m.ports {
            PortSpec::All => true,
            PortSpec::Range(range) => range.contains(port),
            PortSpec::Named(name) => resolve(name) == Some(port),
        }
}

/// Whether `peer` (one entry of a rule) selects `party`, whose reserved
/// labels are `reserved` ([`reserved_labels`]).
pub fn peer_matches(cluster: &Cluster, peer: &Peer, party: Party, reserved: Option<&[Entity]>) -> bool {
    match (peer, party) {
        (Peer::Endpoints(sel), Party::Endpoint(i)) => sel.matches(&cluster.endpoint(i).labels),
        (Peer::Endpoints(_), _) => false,
        (Peer::Cidr { cidr, except }, Party::External(ip)) => {
            cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
        }
        (Peer::Cidr { .. }, _) => false,
        (Peer::Entity(entity), _) => entity_selects(*entity, reserved),
    }
}

/// The labels of an endpoint party.
pub fn party_labels(cluster: &Cluster, party: Party) -> Labels {
    match party {
        Party::Endpoint(i) => cluster.endpoint(i).labels.clone(),
        _ => Labels::new(),
    }
}
