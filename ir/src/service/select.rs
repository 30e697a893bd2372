//! Which backends a node sends a frontend's traffic to.
//!
//! kube-proxy's rules (`pkg/proxy/topology.go`, `CategorizeEndpoints`;
//! "Virtual IPs and Service Proxies", traffic policies; KEP-1669):
//! - the traffic policy that applies is `internalTrafficPolicy` for
//!   cluster IPs and `externalTrafficPolicy` for node ports, external and
//!   load-balancer IPs, the latter only for traffic from outside the
//!   cluster ("traffic sent to an External IP or LoadBalancer IP from
//!   within the cluster will always get Cluster semantics", `ServiceSpec`);
//! - `Cluster` uses the ready endpoints of the whole cluster, or, if none
//!   is ready, the serving and terminating ones;
//! - `Local` does the same among the endpoints on the node itself;
//! - no endpoints at all: the connection is rejected; endpoints but none
//!   usable under `Local`: the packet is dropped.

use super::model::{Backend, TrafficPolicy};

/// The outcome of selecting backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// These backends, in order.
    Backends(Vec<&'a Backend>),
    /// The Service port has no usable endpoint anywhere: reject (ICMP
    /// port unreachable, as kube-proxy's `REJECT`).
    NoEndpoints,
    /// `Local` policy and no usable endpoint on this node: drop.
    NoLocalEndpoints,
}

/// The backends of `backends` that node `node` uses under `policy`.
pub fn select<'a>(backends: &'a [Backend], policy: TrafficPolicy, node: Option<&str>) -> Selection<'a> {
    let usable = |candidates: Vec<&'a Backend>| {
        let ready: Vec<&Backend> = candidates.iter().copied().filter(|b| b.conditions.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates.into_iter().filter(|b| b.conditions.serving && b.conditions.terminating).collect()
    };
    let cluster = usable(backends.iter().collect());
    if cluster.is_empty() {
        return Selection::NoEndpoints;
    }
    match policy {
        TrafficPolicy::Cluster => Selection::Backends(cluster),
        TrafficPolicy::Local => {
            let local = usable(backends.iter().filter(|b| node.is_some() && b.node.as_deref() == node).collect());
            if local.is_empty() {
                Selection::NoLocalEndpoints
            } else {
                Selection::Backends(local)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::model::Conditions;

    fn backend(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Backend {
        Backend {
            address: Some(ip.parse().unwrap()),
            port: 8080,
            endpoint: None,
            node: Some(node.into()),
            zone: None,
            conditions: Conditions { ready, serving, terminating },
        }
    }

    fn addresses(s: Selection) -> Vec<String> {
        match s {
            Selection::Backends(b) => b.iter().map(|b| b.address.unwrap().to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn ready_first_then_serving_terminating() {
        let all = [
            backend("10.200.0.1", "a", true, true, false),
            backend("10.200.0.2", "b", false, true, true),
            backend("10.200.0.3", "b", false, false, false),
        ];
        assert_eq!(addresses(select(&all, TrafficPolicy::Cluster, Some("b"))), ["10.200.0.1"]);
        // KEP-1669: with no ready endpoint anywhere, serving terminating ones carry traffic.
        assert_eq!(addresses(select(&all[1..], TrafficPolicy::Cluster, Some("a"))), ["10.200.0.2"]);
        // Not ready and not serving: nothing.
        assert_eq!(addresses(select(&all[2..], TrafficPolicy::Cluster, Some("a"))), ["NoEndpoints"]);
    }

    #[test]
    fn local_uses_this_nodes_endpoints_or_drops() {
        let all = [backend("10.200.0.1", "a", true, true, false), backend("10.200.0.2", "b", false, true, true)];
        assert_eq!(addresses(select(&all, TrafficPolicy::Local, Some("a"))), ["10.200.0.1"]);
        // Node b's only endpoint is terminating: KEP-1669 lets it serve locally.
        assert_eq!(addresses(select(&all, TrafficPolicy::Local, Some("b"))), ["10.200.0.2"]);
        assert_eq!(addresses(select(&all, TrafficPolicy::Local, Some("c"))), ["NoLocalEndpoints"]);
        assert_eq!(addresses(select(&all, TrafficPolicy::Local, None)), ["NoLocalEndpoints"]);
        assert_eq!(addresses(select(&[], TrafficPolicy::Local, Some("a"))), ["NoEndpoints"]);
    }
}
