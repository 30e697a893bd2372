//! The cluster model: namespaces, endpoints (pods and workloads standing for
//! their pods), nodes and normalized policies. The front end builds it; the
//! reference evaluator and identity resolution read it.

use crate::ids::{EndpointId, PolicyId, RuleRef};
use crate::labels::Labels;
use crate::policy::{Policy, Rule};
use crate::protocol::Protocol;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct NamedPort {
    /// Port name (`http`).
    pub name: String,
    /// Protocol of the container port.
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
}

/// What an endpoint stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum EndpointKind {
    /// A `Pod` object.
    Pod,
    /// A workload (`Deployment`, ...) standing for its pods, or a pod that
    /// a workload owns, named after the workload.
    Workload(String),
}

/// An endpoint: something with an identity that policies select.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Pod or workload.
    pub kind: EndpointKind,
    /// Identity-relevant labels: filtered pod labels, the namespace label,
    /// namespace labels and the service account, as Cilium derives them.
    pub labels: Labels,
    /// IP addresses (none for workloads and unscheduled pods).
    pub ips: Vec<IpAddr>,
    /// Node the pod runs on.
    pub node: Option<String>,
    /// Named container ports.
    pub named_ports: Vec<NamedPort>,
}

impl Endpoint {
    /// The port number `name` resolves to for `protocol`, if the endpoint
    /// defines it.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.named_ports.iter().find(|p| p.name == name && p.protocol == protocol).map(|p| p.port)
    }

    /// The display name: `ns/pod`, or `ns/name[Kind]` for a workload.
    pub fn display_name(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EndpointKind::Pod => write!(f, "{}/{}", self.namespace, self.name),
            EndpointKind::Workload(kind) => write!(f, "{}/{}[{kind}]", self.namespace, self.name),
        }
    }
}

/// A cluster node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: Labels,
    /// Internal addresses.
    pub ips: Vec<IpAddr>,
}

/// Everything the compiler knows about a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cluster {
    /// Namespaces and their labels (including `kubernetes.io/metadata.name`).
    pub namespaces: BTreeMap<String, Labels>,
    /// Endpoints, sorted by display name.
    pub endpoints: Vec<Endpoint>,
    /// Nodes, sorted by name.
    pub nodes: Vec<Node>,
    /// Policies, in input order.
    pub policies: Vec<Policy>,
    /// Cluster-admin policies (admin and baseline tiers), in input order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tier_policies: Vec<crate::tier::TierPolicy>,
    /// The addresses behind Service `default/kubernetes` (its
    /// EndpointSlices, or its legacy Endpoints), sorted, without repeats:
    /// what Cilium's `kube-apiserver` entity selects (see
    /// [`crate::apiserver`]).
    pub apiserver: Vec<IpAddr>,
    /// Services with their backends, sorted by namespace and name (see
    /// [`crate::service`]). Not read back: the normalized policy
    /// ([`crate::normalized`]) leaves them out, service tables being
    /// compiled per node.
    #[serde(skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub services: Vec<crate::service::Service>,
}

impl Cluster {
    /// The number a named port in the egress rule of a Cilium policy
    /// stands for: Cilium resolves it across the pods of the cluster, not
    /// per destination (the agent's named-port map, `pkg/policy/types`: a
    /// name with one number per protocol resolves to it; pods that give it
    /// different numbers make the lookup fail with "duplicate named ports",
    /// so it resolves to nothing, as does a name no pod defines).
    pub fn cluster_named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        let mut numbers = self.endpoints.iter().filter_map(|e| e.named_port(name, protocol));
        let first = numbers.next()?;
        numbers.all(|n| n == first).then_some(first)
    }

    /// The endpoint with display name `name` (`ns/pod` or `ns/name[Kind]`).
    pub fn endpoint_by_name(&self, name: &str) -> Option<EndpointId> {
        self.endpoints.iter().position(|e| e.display_name() == name).map(EndpointId::new)
    }

    /// The endpoint that owns `ip`, if any.
    pub fn endpoint_by_ip(&self, ip: IpAddr) -> Option<EndpointId> {
        self.endpoints.iter().position(|e| e.ips.contains(&ip)).map(EndpointId::new)
    }

    /// The node (index into [`Cluster::nodes`]) that has address `ip`, if any.
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.ips.contains(&ip))
    }

    /// Whether `ip` is an address of the API server (behind Service
    /// `default/kubernetes`).
    pub fn is_apiserver_address(&self, ip: IpAddr) -> bool {
        self.apiserver.binary_search(&ip).is_ok()
    }

    /// Whether node `n` (an index into [`Cluster::nodes`]) runs the API
    /// server: one of its addresses is behind `default/kubernetes`.
    pub fn node_runs_apiserver(&self, n: usize) -> bool {
        self.nodes.get(n).is_some_and(|node| node.ips.iter().any(|&ip| self.is_apiserver_address(ip)))
    }

    /// The names of the nodes that run the API server.
    pub fn apiserver_nodes(&self) -> BTreeSet<&str> {
        (0..self.nodes.len()).filter(|&n| self.node_runs_apiserver(n)).map(|n| self.nodes[n].name.as_str()).collect()
    }

    /// The Service `namespace/name`, by index into [`Cluster::services`].
    pub fn service_by_name(&self, namespace: &str, name: &str) -> Option<usize> {
        self.services.binary_search_by(|s| (s.namespace.as_str(), s.name.as_str()).cmp(&(namespace, name))).ok()
    }

    /// The endpoint `id`.
    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.index()]
    }

    /// The policy `id`.
    pub fn policy(&self, id: PolicyId) -> &Policy {
        &self.policies[id.index()]
    }

    /// The handle a policy map entry names admin rule `r` by: policy ids
    /// past [`Cluster::policies`] stand for [`Cluster::tier_policies`] in
    /// order, so map entries, rule names and cookies need one kind of rule
    /// handle.
    pub fn tier_rule_ref(&self, r: crate::tier::TierRuleRef) -> RuleRef {
        RuleRef::new(PolicyId::new(self.policies.len() + r.policy), r.rule)
    }

    /// The admin rule a map entry's handle names, if it names one
    /// ([`Cluster::tier_rule_ref`]).
    pub fn as_tier_rule(&self, r: RuleRef) -> Option<crate::tier::TierRuleRef> {
        let policy = r.policy.index().checked_sub(self.policies.len())?;
        (policy < self.tier_policies.len()).then_some(crate::tier::TierRuleRef { policy, rule: r.rule_index() })
    }

    /// The rule `r`.
    pub fn rule(&self, r: RuleRef) -> &Rule {
        &self.policy(r.policy).rules[r.rule_index()]
    }

    /// Every endpoint with its id, in order.
    pub fn endpoints_with_ids(&self) -> impl Iterator<Item = (EndpointId, &Endpoint)> {
        self.endpoints.iter().enumerate().map(|(i, e)| (EndpointId::new(i), e))
    }

    /// Every policy with its id, in order.
    pub fn policies_with_ids(&self) -> impl Iterator<Item = (PolicyId, &Policy)> {
        self.policies.iter().enumerate().map(|(i, p)| (PolicyId::new(i), p))
    }

    /// The policies manifests wrote (every one but the built-in ones), with
    /// their ids, in order.
    pub fn written_policies(&self) -> impl Iterator<Item = (PolicyId, &Policy)> {
        self.policies_with_ids().filter(|(_, p)| !p.is_builtin())
    }
}
