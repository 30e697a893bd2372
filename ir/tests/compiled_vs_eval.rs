//! Differential test: the compiled maps, read as the datapath reads them
//! (`lookup`), against the reference evaluator (`eval`), on random clusters,
//! policies and packets.
//! Generators live in `support/random_cluster.rs`.

#[path = "support/random_cluster.rs"]
mod random_cluster;

use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{eval, Decision, Query};
use policyc_ir::identity::Identity;
use policyc_ir::ids::RuleRef;
use policyc_ir::lookup::{lookup, Packet, SideVerdict};
use policyc_ir::policy::{Action, Peer, Peers, Policy, PolicyKind, PolicyOrigin, PortMatch, PortSpec, Rule, Subject};
use policyc_ir::policy_map::MapVerdict;
use policyc_ir::protocol::{Direction, PortRange, Protocol};
use policyc_ir::resolve::{resolve, resolve_with_previous};
use policyc_ir::selector::{LabelSelector, Requirement};
use policyc_ir::validate::validate;
use proptest::prelude::*;
use random_cluster::*;
use std::net::IpAddr;

/// The map verdict class eval's decision corresponds to, and its rules.
fn expected(decision: &Decision) -> (u8, Vec<RuleRef>) {
    let refs = |rs: &[RuleRef]| rs.to_vec();
    match decision {
        Decision::NotIsolated | Decision::DefaultDeny(_) => (0, vec![]),
        Decision::Allowed(rs) => (1, refs(rs)),
        Decision::Redirected(rs) => (2, refs(rs)),
        Decision::Denied(rs) => (3, refs(rs)),
        // Checked by `tiered_lookup_agrees_with_eval`.
        Decision::TierAllowed(_) | Decision::TierDenied(_) | Decision::Passed { .. } => {
            unreachable!("no admin policies in `scenario`")
        }
    }
}

/// The verdict and deciding rule the compiled entry must give for eval's
/// tiered `decision` of `cluster`: an admin or baseline rule (or a `Pass`
/// with nothing below it) by its handle, the NetworkPolicy tier as
/// [`expected`]; `None` for "no entry".
fn expected_tiered(cluster: &Cluster, decision: &Decision) -> (Option<bool>, Vec<RuleRef>) {
    match decision {
        Decision::TierAllowed(r) => (Some(true), vec![cluster.tier_rule_ref(*r)]),
        Decision::TierDenied(r) => (Some(false), vec![cluster.tier_rule_ref(*r)]),
        Decision::Passed { by, then } => {
            // A `Pass` with nothing below it: the entry names a `Pass` of
            // the chain (a baseline `Pass` is an allow of its own).
            let mut passes = vec![cluster.tier_rule_ref(*by)];
            let mut next = then.as_ref();
            while let Decision::Passed { by, then } = next {
                passes.push(cluster.tier_rule_ref(*by));
                next = then;
            }
            match next {
                Decision::NotIsolated => (Some(true), passes),
                Decision::DefaultDeny(_) => (Some(false), passes),
                _ => expected_tiered(cluster, next),
            }
        }
        Decision::NotIsolated | Decision::DefaultDeny(_) => (None, vec![]),
        Decision::Allowed(rs) | Decision::Redirected(rs) => (Some(true), rs.clone()),
        Decision::Denied(rs) => (Some(false), rs.clone()),
    }
}

fn actual(side: &SideVerdict) -> (u8, Vec<RuleRef>) {
    let rank = side.decision.verdict.as_ref().map_or(0, MapVerdict::rank);
    (rank, side.decision.rules.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_lookup_agrees_with_eval((cluster, pods, packets) in scenario()) {
        let resolved = resolve(&cluster);
        prop_assert_eq!(validate(&resolved), Ok(()));
        for (v6, src, dst, protocol, port) in packets {
            let (src_ip, src_party) = address(&cluster, pods, v6, src);
            let (dst_ip, dst_party) = address(&cluster, pods, v6, dst);
            let reference = eval(&cluster, &Query { src: src_party, dst: dst_party, protocol, port });
            let compiled = lookup(&resolved, &Packet { src: src_ip, dst: dst_ip, protocol, port });
            let context = format!("{src_ip} -> {dst_ip} {protocol}/{port}\nreference: {reference:?}\ncompiled: {compiled:?}");
            prop_assert_eq!(compiled.allowed(), reference.allowed(), "{}", context);
            for (got, want) in [(&compiled.egress, &reference.egress), (&compiled.ingress, &reference.ingress)] {
                let (got, want) = (got.as_ref().map(actual), want.as_ref().map(expected));
                prop_assert_eq!(got.is_some(), want.is_some(), "{}", context);
                let (Some((got_rank, got_rules)), Some((want_rank, want_rules))) = (got, want) else { continue };
                prop_assert_eq!(got_rank, want_rank, "{}", context);
                // A map entry names one deciding rule (the first); the
                // decision names those of the peer's and the wildcard's
                // entries: each must be one of eval's deciding rules, and
                // there is one exactly when eval names any.
                prop_assert_eq!(got_rules.is_empty(), want_rules.is_empty(), "{}", context);
                prop_assert!(got_rules.iter().all(|r| want_rules.contains(r)), "{}", context);
            }
        }
    }

    #[test]
    fn tiered_lookup_agrees_with_eval((cluster, pods, packets) in scenario_with_tiers()) {
        let resolved = resolve(&cluster);
        prop_assert_eq!(validate(&resolved), Ok(()));
        // Pods an admin rule tells apart have identities of their own, and
        // a node group of two nodes never forms: nothing splits an identity.
        prop_assert_eq!(&resolved.tier_splits, &vec![]);
        for (v6, src, dst, protocol, port) in packets {
            let (src_ip, src_party) = address(&cluster, pods, v6, src);
            let (dst_ip, dst_party) = address(&cluster, pods, v6, dst);
            let reference = eval(&cluster, &Query { src: src_party, dst: dst_party, protocol, port });
            let compiled = lookup(&resolved, &Packet { src: src_ip, dst: dst_ip, protocol, port });
            let context = format!("{src_ip} -> {dst_ip} {protocol}/{port}\nreference: {reference:?}\ncompiled: {compiled:?}");
            prop_assert_eq!(compiled.allowed(), reference.allowed(), "{}", context);
            for (got, want) in [(&compiled.egress, &reference.egress), (&compiled.ingress, &reference.ingress)] {
                prop_assert_eq!(got.is_some(), want.is_some(), "{}", context);
                let (Some(got), Some(want)) = (got, want) else { continue };
                prop_assert_eq!(got.decision.passes(), want.passes(), "{}", context);
                let (verdict, rules) = expected_tiered(&cluster, want);
                if let Some(passes) = verdict {
                    if got.decision.verdict.is_some() {
                        prop_assert_eq!(got.decision.verdict != Some(MapVerdict::Deny), passes, "{}", context);
                        prop_assert!(got.decision.rules.iter().all(|r| rules.contains(r)), "{}", context);
                    }
                } else {
                    prop_assert_eq!(&got.decision.verdict, &None, "{}", context);
                }
            }
        }
    }

    #[test]
    fn resolution_is_deterministic_and_keeps_numbers((cluster, _pods, _packets) in scenario_with_tiers()) {
        let first = resolve(&cluster);
        let second = resolve(&cluster.clone());
        prop_assert_eq!(format!("{first:?}"), format!("{second:?}"));
        // A new label set and a new policy do not renumber anything that
        // was already there.
        let mut grown = cluster.clone();
        let mut extra = grown.endpoints[0].clone();
        extra.name = "newcomer".into();
        extra.labels.insert("app", "newcomer");
        extra.ips = vec![ip("10.200.1.1")];
        grown.endpoints.push(extra);
        grown.policies.push(Policy {
            origin: PolicyOrigin { kind: PolicyKind::CiliumNetworkPolicy, namespace: None, name: "x".into(), spec_path: "spec".into() },
            subject: Subject::Endpoints(LabelSelector::everything()),
            default_deny: [false, false],
            requires: [vec![], vec![]],
            deny_requires: [Vec::new(), Vec::new()],
            rules: vec![],
        });
        let after = resolve_with_previous(&grown, Some(&first.table));
        for (labels, id) in first.table.iter() {
            prop_assert_eq!(after.table.get(labels), Some(id));
        }
    }
}

#[test]
fn deny_wins_cidr_except_and_named_ports() {
    let pods = [(0, Some(0), None, 0), (1, Some(1), Some(true), 1)];
    let mut cluster = build_cluster(2, &[true, false, false], &pods, &[(8080, 53), (80, 53), (80, 53)]);
    let web = LabelSelector::everything().with(Requirement::equals("app", "web"));
    let db = LabelSelector::everything().with(Requirement::equals("app", "db"));
    let rule =
        |direction, action, peers, ports| Rule { path: String::new(), direction, action, peers, ports, l7: None };
    let tcp = |ports| Some(vec![PortMatch { protocol: Some(Protocol::Tcp), ports }]);
    cluster.policies.push(Policy {
        origin: PolicyOrigin {
            kind: PolicyKind::CiliumNetworkPolicy,
            namespace: None,
            name: "p".into(),
            spec_path: "spec".into(),
        },
        subject: Subject::Endpoints(web.clone()),
        default_deny: [true, true],
        requires: [vec![], vec![]],
        deny_requires: [Vec::new(), Vec::new()],
        rules: vec![
            rule(
                Direction::Egress,
                Action::Allow,
                Peers::Only(vec![Peer::Endpoints(db)]),
                tcp(PortSpec::Named("http".into())),
            ),
            rule(
                Direction::Egress,
                Action::Allow,
                Peers::Only(vec![Peer::Cidr { cidr: cidr("192.0.2.0/24"), except: vec![cidr("192.0.2.128/25")] }]),
                None,
            ),
            rule(Direction::Ingress, Action::Allow, Peers::Any, tcp(PortSpec::Range(PortRange { lo: 1, hi: 9000 }))),
            rule(Direction::Ingress, Action::Deny, Peers::Any, tcp(PortSpec::Range(PortRange::single(8080)))),
        ],
    });
    let resolved = resolve(&cluster);
    assert_eq!(validate(&resolved), Ok(()));
    let web_ip = ip("10.200.0.1");
    let db_ip = ip("10.200.0.2");
    let pass = |src: &str, dst: IpAddr, protocol, port| {
        let src = if src == "web" {
            web_ip
        } else if src == "db" {
            db_ip
        } else {
            ip(src)
        };
        lookup(&resolved, &Packet { src, dst, protocol, port }).allowed()
    };
    // web calls its `http` port 8080, db 80: a Cilium egress rule resolves
    // the name across the cluster, and pods that disagree leave it nothing.
    assert!(!pass("web", db_ip, Protocol::Tcp, 80));
    assert!(!pass("web", db_ip, Protocol::Tcp, 8080));
    // A Kubernetes NetworkPolicy names the destination pod's port (deny
    // rules dropped: Kubernetes has none).
    let mut k8s = cluster.clone();
    k8s.policies[0].origin.kind = PolicyKind::NetworkPolicy;
    k8s.policies[0].rules.retain(|r| r.action == Action::Allow);
    let k8s_resolved = resolve(&k8s);
    let k8s_pass =
        |port| lookup(&k8s_resolved, &Packet { src: web_ip, dst: db_ip, protocol: Protocol::Tcp, port }).allowed();
    assert!(k8s_pass(80));
    assert!(!k8s_pass(8080));
    assert!(pass("web", ip("192.0.2.9"), Protocol::Udp, 1));
    assert!(!pass("web", ip("192.0.2.200"), Protocol::Udp, 1));
    assert!(!pass("web", ip("198.51.100.1"), Protocol::Udp, 1));
    assert!(pass("db", web_ip, Protocol::Tcp, 80));
    assert!(!pass("db", web_ip, Protocol::Tcp, 8080));
    assert!(!pass("db", web_ip, Protocol::Udp, 80));
    assert_eq!(resolved.identities[&Identity::WORLD_IPV4].labels.to_string(), "reserved:world-ipv4");
    // CIDR identities are in the local scope, numbered by a hash of the
    // prefix: another prefix renumbers none.
    let (a, b) = (resolved.cidr_identities[&cidr("192.0.2.0/24")], resolved.cidr_identities[&cidr("192.0.2.128/25")]);
    assert!(a.is_cidr() && b.is_cidr() && a != b);
    let mut grown = cluster.clone();
    let mut extra = grown.policies[0].clone();
    extra.rules.truncate(1);
    extra.rules[0].peers = Peers::Only(vec![Peer::Cidr { cidr: cidr("192.0.2.64/26"), except: vec![] }]);
    grown.policies.push(extra);
    let after = resolve(&grown);
    assert!(after.cidr_identities.contains_key(&cidr("192.0.2.64/26")));
    assert_eq!(after.cidr_identities[&cidr("192.0.2.0/24")], a);
    assert_eq!(after.cidr_identities[&cidr("192.0.2.128/25")], b);
}
