//! Resolution details that the differential test reaches only by chance,
//! and the validator's detection of every broken invariant.

use policyc_ir::cidr::Cidr;
use policyc_ir::cluster::{Cluster, Endpoint, EndpointKind, Node};
use policyc_ir::identity::Identity;
use policyc_ir::ids::{EndpointId, PolicyId, RuleRef};
use policyc_ir::labels::Labels;
use policyc_ir::lookup::{lookup, Packet};
use policyc_ir::policy::{Action, Entity, Peer, Peers, Policy, PolicyKind, PolicyOrigin, Rule, Subject};
use policyc_ir::policy_map::{MapVerdict, PolicyEntry, PolicyKey, PolicyMap, Precedence};
use policyc_ir::protocol::{Direction, Protocol};
use policyc_ir::resolve::{resolve, IpcacheSource, Resolved};
use policyc_ir::selector::LabelSelector;
use policyc_ir::validate::{validate, ValidationError};
use std::net::IpAddr;
use std::sync::Arc;

fn cidr(s: &str) -> Cidr {
    Cidr::parse_strict(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(name: &str, app: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        namespace: "default".into(),
        name: name.into(),
        kind: EndpointKind::Pod,
        labels: Labels::from_pairs([("app", app), ("io.kubernetes.pod.namespace", "default")]),
        ips: ips.iter().map(|s| ip(s)).collect(),
        node: Some("n1".into()),
        named_ports: vec![],
    }
}

fn egress_policy(peers: Vec<Peer>) -> Policy {
    Policy {
        origin: PolicyOrigin {
            kind: PolicyKind::CiliumNetworkPolicy,
            namespace: Some("default".into()),
            name: "p".into(),
            spec_path: "spec".into(),
        },
        subject: Subject::Endpoints(LabelSelector::everything()),
        default_deny: [false, true],
        requires: [vec![], vec![]],
        deny_requires: [Vec::new(), Vec::new()],
        rules: vec![Rule {
            path: "spec.egress[0]".into(),
            direction: Direction::Egress,
            action: Action::Allow,
            peers: Peers::Only(peers),
            ports: None,
            l7: None,
        }],
    }
}

/// Two pods, one node inside 10.0.0.0/8, a CIDR rule naming 10.0.0.0/8 and
/// the exact /32 of one pod, and a world rule.
fn cluster() -> Cluster {
    Cluster {
        namespaces: Default::default(),
        endpoints: vec![pod("a", "a", &["10.200.0.1", "fd00:200::1"]), pod("b", "b", &["10.200.0.2"])],
        nodes: vec![Node { name: "n1".into(), labels: Labels::new(), ips: vec![ip("10.100.0.1")] }],
        policies: vec![egress_policy(vec![
            Peer::Cidr { cidr: cidr("10.0.0.0/8"), except: vec![] },
            Peer::Cidr { cidr: cidr("10.200.0.2/32"), except: vec![] },
            Peer::Cidr { cidr: cidr("0.0.0.0/0"), except: vec![cidr("192.0.2.0/24")] },
        ])],
        tier_policies: Vec::new(),
        apiserver: vec![],
        services: vec![],
    }
}

#[test]
fn pods_and_nodes_shadow_cidr_prefixes() {
    let cluster = cluster();
    let resolved = resolve(&cluster);
    assert_eq!(validate(&resolved), Ok(()));
    let b = resolved.endpoints[1].identity.unwrap();
    let entry = resolved.ipcache.iter().find(|e| e.prefix == cidr("10.200.0.2/32")).unwrap();
    assert_eq!((entry.identity, &entry.source), (b, &IpcacheSource::Endpoint(EndpointId::new(1))));
    // The /32 still has a CIDR identity (a rule names it), just no address
    // resolves to it.
    assert!(resolved.cidr_identities.contains_key(&cidr("10.200.0.2/32")));
    let pass = |src: &str, dst: &str| {
        lookup(&resolved, &Packet { src: ip(src), dst: ip(dst), protocol: Protocol::Tcp, port: 80 }).allowed()
    };
    // A CIDR rule never selects a pod or a node, even inside its prefix.
    assert!(!pass("10.200.0.1", "10.200.0.2"));
    assert!(!pass("10.200.0.1", "10.100.0.1"));
    assert!(pass("10.200.0.1", "10.9.9.9"));
    assert!(pass("10.200.0.1", "8.8.8.8"));
    assert!(!pass("10.200.0.1", "192.0.2.1"));
    // The ipcache has both world prefixes, the /0 rule maps to world-ipv4.
    let world: Vec<(String, Identity)> = resolved
        .ipcache
        .iter()
        .filter(|e| e.prefix.prefix_len() == 0)
        .map(|e| (e.prefix.to_string(), e.identity))
        .collect();
    assert_eq!(world, vec![("0.0.0.0/0".into(), Identity::WORLD_IPV4), ("::/0".into(), Identity::WORLD_IPV6)]);
    assert!(!resolved.cidr_identities.keys().any(|c| c.prefix_len() == 0));
}

#[test]
fn entities_map_to_reserved_identities() {
    let mut cluster = cluster();
    cluster.policies = vec![egress_policy(vec![Peer::Entity(Entity::Host), Peer::Entity(Entity::RemoteNode)])];
    let resolved = resolve(&cluster);
    let peers: Vec<Identity> = resolved.endpoints[0].policy.entries.iter().map(|e| e.key.identity).collect();
    // Identity 7 is a remote node running the API server: also `remote-node`.
    assert_eq!(peers, vec![Identity::HOST, Identity::REMOTE_NODE, Identity::KUBE_APISERVER]);
    // Judged on n1, the pods' node: its address is `host`.
    let verdict =
        lookup(&resolved, &Packet { src: ip("10.200.0.1"), dst: ip("10.100.0.1"), protocol: Protocol::Udp, port: 1 });
    assert_eq!(verdict.egress.unwrap().peer, Identity::HOST);
}

#[test]
fn kube_apiserver_is_the_addresses_behind_default_kubernetes() {
    let mut cluster = cluster();
    cluster.nodes.push(Node { name: "n2".into(), labels: Labels::new(), ips: vec![ip("10.100.0.2")] });
    // On n2 (a remote node to the pods on n1), and outside the cluster.
    cluster.apiserver = vec![ip("10.100.0.2"), ip("203.0.113.9")];
    cluster.policies = vec![egress_policy(vec![Peer::Entity(Entity::KubeApiserver)])];
    let resolved = resolve(&cluster);
    assert_eq!(validate(&resolved), Ok(()));
    let identity_of = |addr: &str| identity_of_in(&resolved, addr);
    assert_eq!(identity_of("10.100.0.2"), Some(Identity::KUBE_APISERVER));
    assert_eq!(identity_of("10.100.0.1"), Some(Identity::REMOTE_NODE));
    let outside = identity_of("203.0.113.9").expect("a CIDR identity for the outside address");
    assert!(outside.is_cidr());
    assert_eq!(resolved.identities[&outside].labels.to_string(), "cidr:203.0.113.9/32=,reserved:kube-apiserver");
    let pass = |dst: &str| {
        lookup(&resolved, &Packet { src: ip("10.200.0.1"), dst: ip(dst), protocol: Protocol::Tcp, port: 443 }).allowed()
    };
    assert!(pass("10.100.0.2") && pass("203.0.113.9"));
    assert!(!pass("10.100.0.1") && !pass("203.0.113.10"));
    // On the node that runs it, the API server is that node's `host`.
    cluster.apiserver = vec![ip("10.100.0.1")];
    let resolved = resolve(&cluster);
    assert_eq!(identity_of_in(&resolved, "10.100.0.1"), Some(Identity::KUBE_APISERVER));
    let verdict =
        lookup(&resolved, &Packet { src: ip("10.200.0.1"), dst: ip("10.100.0.1"), protocol: Protocol::Tcp, port: 443 });
    assert_eq!(verdict.egress.as_ref().unwrap().peer, Identity::HOST);
    assert!(verdict.allowed());
}

fn identity_of_in(resolved: &Resolved, addr: &str) -> Option<Identity> {
    resolved.ipcache.iter().find(|e| e.prefix == cidr(&format!("{addr}/32"))).map(|e| e.identity)
}

fn broken(resolved: &Resolved) -> Vec<ValidationError> {
    validate(resolved).expect_err("validation should fail")
}

#[test]
fn validator_reports_broken_invariants() {
    let good = resolve(&cluster());
    assert_eq!(validate(&good), Ok(()));

    let mut r = good.clone();
    r.ipcache.push(r.ipcache[0].clone());
    assert!(matches!(broken(&r)[..], [ValidationError::IpcacheOrder { .. }]));

    let mut r = good.clone();
    r.ipcache.retain(|e| e.prefix != Cidr::all(true));
    assert!(matches!(broken(&r)[..], [ValidationError::MissingWorldPrefix { .. }]));

    let mut r = good.clone();
    r.ipcache[1].identity = Identity(4242);
    assert!(matches!(broken(&r)[..], [ValidationError::UnknownIdentity { .. }]));

    let key = |identity, port, prefix_len| PolicyKey {
        identity,
        direction: Direction::Ingress,
        protocol: 6,
        port,
        prefix_len,
    };
    let entry = |key| PolicyEntry {
        key,
        verdict: MapVerdict::Allow,
        rule: RuleRef::new(PolicyId::new(0), 0),
        rule_count: 1,
        precedence: Precedence::NetworkPolicy,
    };

    let mut r = good.clone();
    Arc::make_mut(&mut r.endpoints[0].policy).entries = vec![entry(key(Identity::ANY, 81, 23))];
    assert!(matches!(broken(&r)[..], [ValidationError::BadKey { .. }]));

    let mut r = good.clone();
    Arc::make_mut(&mut r.endpoints[0].policy).entries = vec![entry(key(Identity::ANY, 80, 25))];
    assert!(matches!(broken(&r)[..], [ValidationError::BadKey { .. }]));

    let mut r = good.clone();
    Arc::make_mut(&mut r.endpoints[0].policy).entries =
        vec![entry(key(Identity::ANY, 80, 22)), entry(key(Identity::ANY, 81, 24))];
    assert!(matches!(broken(&r)[..], [ValidationError::KeyOrder { .. }]));

    let mut r = good.clone();
    Arc::make_mut(&mut r.endpoints[0].policy).entries = vec![entry(key(Identity(999), 80, 24))];
    assert!(matches!(broken(&r)[..], [ValidationError::UnknownIdentity { .. }]));

    let mut r = good.clone();
    Arc::make_mut(&mut r.endpoints[0].policy).entries = vec![PolicyEntry {
        key: key(Identity::ANY, 80, 24),
        verdict: MapVerdict::Redirect(String::new()),
        rule: RuleRef::new(PolicyId::new(0), 0),
        rule_count: 0,
        precedence: Precedence::NetworkPolicy,
    }];
    assert!(matches!(broken(&r)[..], [ValidationError::BadEntry { .. }]));

    // Errors come in endpoint order, each endpoint's own before its map's,
    // though maps are checked in parallel.
    let mut r = good.clone();
    for (i, e) in r.endpoints.iter_mut().enumerate() {
        e.index = EndpointId::new(i + 10);
        e.policy = Arc::new(PolicyMap { enforced: [true, true], entries: vec![entry(key(Identity::ANY, 80, 25))] });
    }
    let order: Vec<(&str, String)> = broken(&r)
        .iter()
        .map(|e| match e {
            ValidationError::EndpointMismatch { endpoint, .. } => ("mismatch", endpoint.clone()),
            ValidationError::BadKey { endpoint, .. } => ("key", endpoint.clone()),
            other => ("other", other.to_string()),
        })
        .collect();
    let names: Vec<String> = r.endpoints.iter().map(|e| e.name.clone()).collect();
    let expected: Vec<(&str, String)> =
        names.iter().flat_map(|n| [("mismatch", n.clone()), ("key", n.clone())]).collect();
    assert_eq!(order, expected);

    let mut r = good.clone();
    r.endpoints[1].identity = None;
    assert!(broken(&r).iter().any(|e| matches!(e, ValidationError::EndpointWithoutIdentity { .. })));

    let mut r = good.clone();
    r.endpoint_ips.insert(ip("10.200.0.9"), EndpointId::new(0));
    assert!(matches!(broken(&r)[..], [ValidationError::EndpointMismatch { .. }]));

    let mut r = good;
    r.exhausted.push(Labels::from_pairs([("app", "z")]));
    let errors = broken(&r);
    assert!(matches!(errors[..], [ValidationError::IdentitySpaceExhausted { .. }]));
    assert_eq!(
        errors[0].to_string(),
        "1 label sets found no cluster-local identity (at most 65280 distinct label sets fit)"
    );
}
