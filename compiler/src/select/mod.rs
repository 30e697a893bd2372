//! Selector queries on the command line, in Kubernetes label-selector
//! syntax (`kubectl get -l`), parsed with a pest grammar
//! (`selector.pest`): `app=web`, `app==web`, `app!=web`, `tier in (a,b)`,
//! `tier notin (a)`, `legacy` (the key exists), `!legacy` (it does not);
//! commas separate requirements that must all hold.
//!
//! Queries match an endpoint's *identity labels*, the labels policies see:
//! its pod labels after Cilium's filter (no `pod-template-hash`), plus
//! `io.kubernetes.pod.namespace`, `io.cilium.k8s.namespace.labels.*` and
//! `io.cilium.k8s.policy.serviceaccount`. One shorthand: the key `ns`
//! stands for `io.kubernetes.pod.namespace`, so `ns=prod,app=web` is "pods
//! labelled `app=web` in namespace `prod`" (a pod label literally named
//! `ns` cannot be queried; write the full key of anything else).
//!
//! A bad query is a [`SelectorError`] that points at its column.

mod parser;

pub use parser::{parse_selector, SelectorError};

use policyc_ir::cluster::Cluster;
use policyc_ir::ids::EndpointId;
use policyc_ir::selector::LabelSelector;

/// The shorthand key for the pod's namespace.
pub const NAMESPACE_SHORTHAND: &str = "ns";

/// Indices of the endpoints of `cluster` that `selector` matches, in
/// cluster order.
pub fn matching_endpoints(cluster: &Cluster, selector: &LabelSelector) -> Vec<EndpointId> {
    cluster.endpoints_with_ids().filter(|(_, e)| selector.matches(&e.labels)).map(|(i, _)| i).collect()
}
