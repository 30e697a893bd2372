//! The pod's own node may always reach it: the built-in policy that says
//! so, as Kubernetes and Cilium both do by default.
//!
//! Kubernetes: "traffic to and from the node where a Pod is running is
//! always allowed, regardless of the IP address of the Pod or the node"
//! (<https://kubernetes.io/docs/concepts/services-networking/network-policies/>),
//! which is what keeps kubelet's liveness and readiness probes working on
//! an ingress-isolated pod. Cilium: with `--allow-localhost=always` (the
//! default under Kubernetes), "Kubernetes will automatically allow all
//! communication from the local host of all local endpoints"
//! (<https://docs.cilium.io/en/stable/security/policy/language/>, entity
//! `host`; the option came with <https://github.com/cilium/cilium/pull/754>);
//! `--allow-localhost=policy` leaves the local host to policy like any peer.
//!
//! Cilium implements it as one more allow entry for the `host` identity in
//! every endpoint's ingress policy map, outside rule resolution: so here it
//! is one more policy, selecting every endpoint, enforcing nothing, with one
//! ingress rule allowing the `host` entity on every port. Being an allow,
//! it loses to a deny rule that covers the host (deny wins, as for any
//! allow entry in Cilium's map); being outside the manifests' rules,
//! `fromRequires` of the other policies does not narrow it. The evaluator,
//! the compiled maps and the datapath all read it as the rule it is, and
//! `trace` and `explain` name it as the reason.

use crate::policy::{Action, Entity, Peer, Peers, Policy, PolicyKind, PolicyOrigin, Rule, Subject};
use crate::protocol::Direction;
use crate::selector::LabelSelector;

/// The name of the built-in policy (Cilium's option, `--allow-localhost`).
pub const ALLOW_LOCALHOST: &str = "allow-localhost";

/// The field path its one rule is cited by.
pub const ALLOW_LOCALHOST_RULE: &str = "ingress-from-host";

/// The built-in policy letting the local node reach every endpoint on it.
pub fn allow_localhost_policy() -> Policy {
    Policy {
        origin: PolicyOrigin {
            kind: PolicyKind::Builtin,
            namespace: None,
            name: ALLOW_LOCALHOST.into(),
            spec_path: "spec".into(),
        },
        subject: Subject::Endpoints(LabelSelector::everything()),
        default_deny: [false, false],
        requires: [Vec::new(), Vec::new()],
        deny_requires: [Vec::new(), Vec::new()],
        rules: vec![Rule {
            path: ALLOW_LOCALHOST_RULE.into(),
            direction: Direction::Ingress,
            action: Action::Allow,
            peers: Peers::Only(vec![Peer::Entity(Entity::Host)]),
            ports: None,
            l7: None,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Cluster, Endpoint, EndpointKind};
    use crate::eval::{eval, Decision, Party, Query};
    use crate::ids::{EndpointId, PolicyId, RuleRef};
    use crate::labels::Labels;
    use crate::protocol::Protocol;

    fn isolated_cluster(allow_localhost: bool) -> Cluster {
        let mut cluster = Cluster::default();
        cluster.endpoints.push(Endpoint {
            namespace: "a".into(),
            name: "p".into(),
            kind: EndpointKind::Pod,
            labels: Labels::from_pairs([("app", "p")]),
            ips: vec!["10.200.0.1".parse().unwrap()],
            node: Some("n1".into()),
            named_ports: vec![],
        });
        cluster.policies.push(Policy {
            origin: PolicyOrigin {
                kind: PolicyKind::NetworkPolicy,
                namespace: Some("a".into()),
                name: "deny-all".into(),
                spec_path: "spec".into(),
            },
            subject: Subject::Endpoints(LabelSelector::everything()),
            default_deny: [true, true],
            requires: [Vec::new(), Vec::new()],
            deny_requires: [Vec::new(), Vec::new()],
            rules: vec![],
        });
        if allow_localhost {
            cluster.policies.push(allow_localhost_policy());
        }
        cluster
    }

    #[test]
    fn the_local_host_reaches_an_isolated_pod_only_while_allowed() {
        let query = |from| Query {
            src: Party::Reserved(from),
            dst: Party::Endpoint(EndpointId::new(0)),
            protocol: Protocol::Tcp,
            port: 8080,
        };
        let on = isolated_cluster(true);
        let rule = RuleRef::new(PolicyId::new(1), 0);
        assert_eq!(eval(&on, &query(Entity::Host)).ingress, Some(Decision::Allowed(vec![rule])));
        assert!(!eval(&on, &query(Entity::RemoteNode)).allowed(), "another node is not the local host");
        let off = isolated_cluster(false);
        assert!(!eval(&off, &query(Entity::Host)).allowed());
    }
}
