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
//! A connection needs the source's egress and the destination's ingress.

use crate::cluster::{Cluster, Endpoint};
use crate::ids::{EndpointId, PolicyId, RuleRef};
use crate::labels::{Labels, RESERVED_PREFIX};
use crate::policy::{Action, Entity, Peer, Peers, PolicyKind, PortMatch, PortSpec, Rule, Subject};
use crate::protocol::{Direction, Protocol};
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
    /// `remote-node`, as each node's ipcache maps it.
    Node(usize),
}

impl Party {
    /// The party as endpoint `subject` sees it: a node is `host` to the
    /// endpoints that run on it and `remote-node` to the others.
    pub fn seen_by(self, cluster: &Cluster, subject: &Endpoint) -> Party {
        match self {
            Party::Node(n) => {
                let local = cluster.nodes.get(n).is_some_and(|node| subject.node.as_deref() == Some(&node.name));
                Party::Reserved(if local { Entity::Host } else { Entity::RemoteNode })
            }
            other => other,
        }
    }
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
}

impl Decision {
    /// Whether the packet passes this direction.
    pub fn passes(&self) -> bool {
        matches!(self, Decision::NotIsolated | Decision::Allowed(_) | Decision::Redirected(_))
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

/// The decision of endpoint `subject` on traffic with `peer` in `dir`.
pub fn decide(
    cluster: &Cluster,
    subject: EndpointId,
    peer: Party,
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> Decision {
    let endpoint = cluster.endpoint(subject);
    let peer = peer.seen_by(cluster, endpoint);
    let selecting: Vec<PolicyId> = cluster
        .policies_with_ids()
        .filter(|(_, policy)| match &policy.subject {
            Subject::Endpoints(sel) => sel.matches(&endpoint.labels),
            Subject::Nodes(_) => false,
        })
        .map(|(p, _)| p)
        .collect();
    let isolating: Vec<PolicyId> = selecting.iter().copied().filter(|&p| cluster.policy(p).enforces(dir)).collect();
    let requirements_met = selecting
        .iter()
        .flat_map(|&p| &cluster.policy(p).requires[dir.index()])
        .all(|req| req.matches(&party_labels(cluster, peer)));

    let (mut allows, mut redirects, mut denies) = (Vec::new(), Vec::new(), Vec::new());
    for &p in &selecting {
        let policy = cluster.policy(p);
        // The built-in allow (`crate::localhost`) is outside the rules
        // that `fromRequires` narrows.
        let required = requirements_met || policy.is_builtin();
        let kind = policy.origin.kind;
        for (r, rule) in policy.rules.iter().enumerate() {
            if rule.direction != dir || !rule_matches(cluster, rule, kind, endpoint, peer, dir, protocol, port) {
                continue;
            }
            let at = RuleRef::new(p, r);
            match rule.action {
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
    peer: Party,
    dir: Direction,
    protocol: Protocol,
    port: u16,
) -> bool {
    let peer_ok = match &rule.peers {
        Peers::Any => true,
        Peers::Only(peers) => peers.iter().any(|p| peer_matches(cluster, p, peer)),
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

fn port_matches(m: &PortMatch, resolve: &dyn Fn(&str) -> Option<u16>, protocol: Protocol, port: u16) -> bool {
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

/// Whether `peer` (one entry of a rule) selects `party`.
pub fn peer_matches(cluster: &Cluster, peer: &Peer, party: Party) -> bool {
    match (peer, party) {
        (Peer::Endpoints(sel), Party::Endpoint(i)) => sel.matches(&cluster.endpoint(i).labels),
        (Peer::Endpoints(_), _) => false,
        (Peer::Cidr { cidr, except }, Party::External(ip)) => {
            cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
        }
        (Peer::Cidr { .. }, _) => false,
        (Peer::Entity(entity), party) => entity_matches(*entity, party),
    }
}

/// Whether a Cilium entity covers `party`.
pub fn entity_matches(entity: Entity, party: Party) -> bool {
    match (entity, party) {
        (Entity::All, _) => true,
        (Entity::None, _) => false,
        (Entity::World, party) => matches!(party, Party::External(_)),
        (Entity::Cluster, party) => !matches!(party, Party::External(_)),
        // Whichever node it is, it is one of the two.
        (Entity::Host | Entity::RemoteNode, Party::Node(_)) => true,
        (entity, Party::Reserved(reserved)) => entity == reserved,
        _ => false,
    }
}

/// The labels a `fromRequires`/`toRequires` selector is tested against.
pub fn party_labels(cluster: &Cluster, party: Party) -> Labels {
    match party {
        Party::Endpoint(i) => cluster.endpoint(i).labels.clone(),
        Party::External(_) => Labels::from_pairs([(format!("{RESERVED_PREFIX}world"), "")]),
        Party::Reserved(e) => Labels::from_pairs([(format!("{RESERVED_PREFIX}{}", e.name()), "")]),
        // `decide` sees a node as `host` or `remote-node` before this.
        Party::Node(_) => Labels::from_pairs([(format!("{RESERVED_PREFIX}remote-node"), "")]),
    }
}
