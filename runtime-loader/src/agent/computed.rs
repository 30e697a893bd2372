//! Label sets the bundle does not know, computed on the node.
//!
//! A pod whose label set no compiled identity has (a Job run's
//! `job-name`, a pod labelled by hand), or whose identity has no policy
//! compiled for this node, gets its identity and policy here, from the
//! bundle's normalized policy (`normalized-policy.json`,
//! [`policyc_ir::normalized`]) and with the compiler's own code: the
//! cluster's representatives plus the live pods, resolved by
//! [`policyc_ir::resolve`], each map rendered by the compiler's writer
//! and read back by the loader's parser, as a compiled map would be.
//!
//! - An unknown label set gets an identity in
//!   [`NODE_COMPUTED_MIN`](policyc_ir::normalized::NODE_COMPUTED_MIN)`..=`
//!   [`NODE_COMPUTED_MAX`](policyc_ir::normalized::NODE_COMPUTED_MAX),
//!   a pure function of the unknown label sets present (the same across
//!   restarts), and its pods' addresses take it in the ipcache.
//! - A local pod computed here takes the whole computed map; a local pod
//!   with a compiled model keeps the compiled map and gains the computed
//!   entries whose peer is a node-computed identity: its policies may
//!   select the new label set (a NetworkPolicy allowing `app=x` from a Job
//!   pod labelled `app=x,job-name=...`). Entries of one peer never change
//!   another peer's (the blocks of one peer and direction are disjoint,
//!   [`policyc_ir::policy_map`]), so the compiled entries stay exact.
//!
//! These identities are not in the reviewed bundle: status, metrics and
//! the log name each with its labels.

use crate::entries;
use policyc::emit::maps::{policy as policy_text, RuleNames};
use policyc::emit::programs::lookups;
use policyc_ebpf::abi::{PolicyKey, PolicyValue, ENDPOINT_ENFORCE_EGRESS, ENDPOINT_ENFORCE_INGRESS};
use policyc_ebpf::config::EndpointConfig;
use policyc_ir::cluster::{Endpoint, EndpointKind, NamedPort};
use policyc_ir::labels::Labels;
use policyc_ir::normalized::{is_node_computed, NormalizedPolicy};
use policyc_ir::policy_map::PolicyMap;
use std::collections::{BTreeMap, BTreeSet};

/// A pod computed on the node: the inputs, one per pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodInput {
    /// `<ns>/<pod>`.
    pub name: String,
    /// Identity labels.
    pub labels: Labels,
    /// Named container ports.
    pub named_ports: Vec<NamedPort>,
    /// Whether it runs on this node.
    pub local: bool,
}

/// The policy and settings of one local pod computed on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Its identity.
    pub identity: u32,
    /// Its `ENDPOINT_ENFORCE_*` flags.
    pub flags: u32,
    /// Its programs' settings (endpoint id 0).
    pub config: EndpointConfig,
    /// Its whole policy (endpoint id 0).
    pub policy: Vec<(PolicyKey, PolicyValue)>,
    /// Its entries whose peer is a node-computed identity (endpoint id 0):
    /// what a pod with a compiled model adds to it.
    pub computed_peers: Vec<(PolicyKey, PolicyValue)>,
}

/// What the node computed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Computed {
    /// Identities of the unknown label sets (`None`: the range is full).
    pub identities: BTreeMap<Labels, Option<u32>>,
    /// Per local pod.
    pub models: BTreeMap<String, Model>,
    /// Rule cookies the models' entries name.
    pub cookies: BTreeSet<u32>,
    /// Why nothing could be computed (then nothing else is set, and the
    /// pods are held).
    pub error: Option<String>,
}

/// Computes identities and the local pods' policy from `normalized`
/// (whose rule cookies are `names`) for `pods` on `node`.
pub fn compute(normalized: &NormalizedPolicy, names: &RuleNames, node: &str, pods: &[PodInput]) -> Computed {
    let extra: Vec<Endpoint> = pods
        .iter()
        .map(|p| {
            let (namespace, name) = p.name.split_once('/').unwrap_or(("", &p.name));
            Endpoint {
                namespace: namespace.to_string(),
                name: name.to_string(),
                kind: EndpointKind::Pod,
                labels: p.labels.clone(),
                ips: Vec::new(),
                node: p.local.then(|| node.to_string()),
                named_ports: p.named_ports.clone(),
            }
        })
        .collect();
    let resolution = normalized.resolve(&extra, &|_| false);
    let resolved = &resolution.resolved;
    let mut computed = Computed {
        identities: resolution.computed.iter().map(|(l, id)| (l.clone(), id.map(|i| i.get()))).collect(),
        ..Computed::default()
    };
    for (i, pod) in pods.iter().enumerate().filter(|(_, p)| p.local) {
        let e = &resolved.endpoints[resolution.first_extra + i];
        let Some(identity) = e.identity else { continue };
        let peers = PolicyMap {
            enforced: e.policy.enforced,
            entries: e.policy.entries.iter().filter(|x| is_node_computed(x.key.identity)).cloned().collect(),
        };
        let (policy, computed_peers) = match (entries_of(names, &e.policy), entries_of(names, &peers)) {
            (Ok(policy), Ok(peers)) => (policy, peers),
            (Err(error), _) | (_, Err(error)) => return Computed { error: Some(error), ..Computed::default() },
        };
        computed.cookies.extend(policy.iter().map(|(_, v)| v.rule_cookie));
        let mut flags = 0;
        if e.policy.enforced[0] {
            flags |= ENDPOINT_ENFORCE_INGRESS;
        }
        if e.policy.enforced[1] {
            flags |= ENDPOINT_ENFORCE_EGRESS;
        }
        computed.models.insert(
            pod.name.clone(),
            Model { identity: identity.get(), flags, config: lookups(&e.policy), policy, computed_peers },
        );
    }
    computed
}

/// The entries of `map` as the loader holds them: rendered by the
/// compiler's writer, read back by the loader's parser. The writer writes
/// what the parser reads; an error would be a bug in one of them, and
/// holds the pods rather than dropping an entry (a deny among them).
fn entries_of(names: &RuleNames, map: &PolicyMap) -> Result<Vec<(PolicyKey, PolicyValue)>, String> {
    let (text, _) = policy_text(names, map);
    entries::policy("<computed on the node>", 1, &text, 0).map_err(|e| format!("a computed policy map: {e}"))
}
