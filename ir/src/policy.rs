//! Normalized policies: Kubernetes `NetworkPolicy` and Cilium rules lowered
//! to one vocabulary of subjects, peers, ports and actions.
//!
//! Namespace scoping is already folded into the selectors here: a
//! `NetworkPolicy` in `prod` selects `io.kubernetes.pod.namespace=prod`, a
//! `namespaceSelector` becomes requirements on `io.cilium.k8s.namespace.labels.*`,
//! exactly as Cilium translates them.

use crate::cidr::Cidr;
use crate::protocol::{Direction, PortRange, Protocol};
use crate::selector::LabelSelector;
use std::fmt;

/// Which kind of object a policy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` `NetworkPolicy`.
    NetworkPolicy,
    /// `cilium.io/v2` `CiliumNetworkPolicy`.
    CiliumNetworkPolicy,
    /// `cilium.io/v2` `CiliumClusterwideNetworkPolicy`.
    CiliumClusterwideNetworkPolicy,
    /// A policy no manifest wrote: what the cluster allows by default
    /// (see [`crate::localhost`]).
    Builtin,
}

impl PolicyKind {
    /// The manifest `kind`.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            PolicyKind::Builtin => "Builtin",
        }
    }

    /// Whether Cilium's rules apply: a Cilium policy (egress named ports
    /// resolve across the cluster, see `Cluster::cluster_named_port`).
    pub fn is_cilium(self) -> bool {
        matches!(self, PolicyKind::CiliumNetworkPolicy | PolicyKind::CiliumClusterwideNetworkPolicy)
    }
}

/// The object (and, for Cilium `specs:` lists, the spec) a policy came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PolicyOrigin {
    /// Object kind.
    pub kind: PolicyKind,
    /// Namespace; `None` for cluster-wide objects.
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
    /// Field path of the spec inside the object (`spec`, `specs[1]`).
    pub spec_path: String,
}

impl fmt::Display for PolicyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == PolicyKind::Builtin {
            return write!(f, "built-in {}", self.name);
        }
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind.name(), self.name)?,
            None => write!(f, "{} {}", self.kind.name(), self.name)?,
        }
        if self.spec_path != "spec" {
            write!(f, " {}", self.spec_path)?;
        }
        Ok(())
    }
}

/// What a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Subject {
    /// Pods whose identity labels match (namespace already folded in).
    Endpoints(LabelSelector),
    /// Nodes whose labels match (Cilium host policy, `nodeSelector`).
    Nodes(LabelSelector),
}

/// Cilium entities: named groups of peers that are not selected by labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Entity {
    /// Everything, inside and outside the cluster.
    All,
    /// Everything outside the cluster.
    World,
    /// Every pod and node of the cluster.
    Cluster,
    /// The local node.
    Host,
    /// The other nodes of the cluster.
    RemoteNode,
    /// The Kubernetes API server.
    KubeApiserver,
    /// Cilium health endpoints.
    Health,
    /// Endpoints whose identity is not resolved yet.
    Init,
    /// Cilium's ingress proxy.
    Ingress,
    /// Pods not managed by Cilium.
    Unmanaged,
    /// Nothing.
    None,
}

impl Entity {
    /// Every entity, in documentation order.
    pub const ALL: [Entity; 11] = [
        Entity::All,
        Entity::World,
        Entity::Cluster,
        Entity::Host,
        Entity::RemoteNode,
        Entity::KubeApiserver,
        Entity::Health,
        Entity::Init,
        Entity::Ingress,
        Entity::Unmanaged,
        Entity::None,
    ];

    /// The name manifests use (`remote-node`).
    pub fn name(self) -> &'static str {
        match self {
            Entity::All => "all",
            Entity::World => "world",
            Entity::Cluster => "cluster",
            Entity::Host => "host",
            Entity::RemoteNode => "remote-node",
            Entity::KubeApiserver => "kube-apiserver",
            Entity::Health => "health",
            Entity::Init => "init",
            Entity::Ingress => "ingress",
            Entity::Unmanaged => "unmanaged",
            Entity::None => "none",
        }
    }

    /// The entity named `s`.
    pub fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.name() == s)
    }
}

/// One kind of peer a rule may name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Peer {
    /// Cluster pods whose identity labels match.
    Endpoints(LabelSelector),
    /// Addresses outside the cluster in `cidr` but in none of `except`.
    /// Never a pod of the cluster, even if its IP is in the prefix.
    Cidr {
        /// The prefix.
        cidr: Cidr,
        /// Sub-prefixes carved out.
        except: Vec<Cidr>,
    },
    /// A Cilium entity.
    Entity(Entity),
}

/// The peers of a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Peers {
    /// Any peer at all (Kubernetes rule without `from`/`to`, Cilium rule
    /// with only `toPorts`).
    Any,
    /// Exactly the union of these; an empty list selects nothing.
    Only(Vec<Peer>),
}

/// Which ports of which protocols a rule covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PortMatch {
    /// The protocol; `None` is Cilium's `ANY` (TCP, UDP and SCTP).
    pub protocol: Option<Protocol>,
    /// The ports (ICMP types for ICMP).
    pub ports: PortSpec,
}

/// The port part of a [`PortMatch`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum PortSpec {
    /// Every port of the protocol.
    All,
    /// A numeric range.
    Range(PortRange),
    /// A named container port, resolved against the destination pod.
    Named(String),
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Action {
    /// Allow matching traffic (union with other allows).
    Allow,
    /// Deny matching traffic; wins over every allow.
    Deny,
}

/// L7 rules attached to a port: matching traffic is redirected to a proxy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct L7Rules {
    /// Parser: `http`, `dns`, `kafka`, or a custom `l7proto`.
    pub parser: String,
    /// The rules, as canonical compact JSON, carried to the proxy unchanged.
    pub rules: String,
}

/// One rule: a direction, an action, peers and ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Rule {
    /// Field path of the rule in its object (`spec.ingress[0]`).
    pub path: String,
    /// Direction relative to the subject.
    pub direction: Direction,
    /// Allow or deny.
    pub action: Action,
    /// Peers.
    pub peers: Peers,
    /// Ports; `None` means every protocol and port (ICMP included).
    pub ports: Option<Vec<PortMatch>>,
    /// L7 rules: traffic this rule allows goes through the proxy.
    pub l7: Option<L7Rules>,
}

/// A normalized policy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Policy {
    /// Where it came from.
    pub origin: PolicyOrigin,
    /// What it applies to.
    pub subject: Subject,
    /// Per direction (`[ingress, egress]`): whether this policy puts the
    /// endpoints it selects into default deny for that direction.
    pub default_deny: [bool; 2],
    /// Per direction: Cilium `fromRequires`/`toRequires` of allow rules; a
    /// peer must match every one of them for any allow rule to apply to it.
    pub requires: [Vec<LabelSelector>; 2],
    /// Per direction: `fromRequires`/`toRequires` written in deny rules
    /// (`ingressDeny`/`egressDeny`); a peer must match every one of them
    /// for any deny rule to apply to it. They narrow no allow rule
    /// (Cilium's `requirementsDeny`, `pkg/policy/rules.go`).
    pub deny_requires: [Vec<LabelSelector>; 2],
    /// The rules.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// Whether this policy puts its subjects into default deny for `dir`.
    pub fn enforces(&self, dir: Direction) -> bool {
        self.default_deny[dir.index()]
    }

    /// Whether no manifest wrote it ([`PolicyKind::Builtin`]): other
    /// policies' `fromRequires`/`toRequires` do not narrow its rules.
    pub fn is_builtin(&self) -> bool {
        self.origin.kind == PolicyKind::Builtin
    }
}
