//! Properties of the admin tiers in `ir::eval` on random clusters (the
//! generators of `support/random_cluster.rs`) with random admin and
//! baseline policies (Allow, Deny, Pass; pod selectors, `networks`,
//! `nodes`; numbered and named ports): what network-policy-api says must
//! hold whatever the policies.
//! - An admin tier of `Pass` rules only changes nothing: each `Pass` goes
//!   on to the NetworkPolicy tier.
//! - Where a NetworkPolicy or Cilium policy isolates the endpoint, the
//!   baseline tier is never asked ("v1.NetworkPolicy always makes a final
//!   decision for selected pods", `ClusterNetworkPolicySpec.Tier`).
//! - An admin `Allow` of everything at the first priority opens every
//!   connection between pods, outside addresses and nodes; a `Deny`
//!   closes them.
//! - Only the order of priorities counts, not their values.
//!
//! The datapath does not enforce tiers yet (issue 14), so there is no
//! compiled side to compare with.

#[path = "support/random_cluster.rs"]
mod random_cluster;

use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{decide, decide_network_policies, eval, Decision, Party, Query};
use policyc_ir::policy::PortMatch;
use policyc_ir::protocol::Direction;
use policyc_ir::selector::LabelSelector;
use policyc_ir::tier::{Tier, TierAction, TierKind, TierPeer, TierPolicy, TierRule};
use proptest::prelude::*;
use random_cluster::*;

fn tier_peer() -> impl Strategy<Value = TierPeer> {
    let networks = ["192.0.2.0/24", "10.200.0.0/16", "0.0.0.0/0", "10.100.0.1/32", "2001:db8::/32", "::/0"];
    prop_oneof![
        3 => selector().prop_map(TierPeer::Endpoints),
        2 => proptest::collection::vec(proptest::sample::select(networks.to_vec()), 1..3)
            .prop_map(|cs| TierPeer::Networks(cs.into_iter().map(cidr).collect())),
        1 => Just(TierPeer::Nodes(LabelSelector::everything())),
    ]
}

fn tier_rule(actions: &'static [TierAction]) -> impl Strategy<Value = TierRule> {
    (
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        proptest::sample::select(actions),
        proptest::collection::vec(tier_peer(), 1..3),
        proptest::option::weighted(0.6, proptest::collection::vec(port_match(), 1..3)),
    )
        .prop_map(|(direction, action, peers, ports)| {
            // Ingress peers are pods only (`AdminNetworkPolicyIngressPeer`).
            let peers: Vec<TierPeer> = match direction {
                Direction::Ingress => peers.into_iter().filter(|p| matches!(p, TierPeer::Endpoints(_))).collect(),
                Direction::Egress => peers,
            };
            let ports: Option<Vec<PortMatch>> = ports;
            TierRule { path: String::new(), name: None, direction, action, peers, ports }
        })
}

const ALL_ACTIONS: &[TierAction] = &[TierAction::Allow, TierAction::Deny, TierAction::Pass];

fn tier_policy(tier: Tier, actions: &'static [TierAction]) -> impl Strategy<Value = TierPolicy> {
    (0u16..4, selector(), proptest::collection::vec(tier_rule(actions), 0..4)).prop_map(
        move |(priority, subject, rules)| TierPolicy {
            kind: TierKind::ClusterNetworkPolicy,
            name: String::new(),
            tier,
            priority,
            subject,
            rules,
        },
    )
}

fn tiers(actions: &'static [TierAction]) -> impl Strategy<Value = Vec<TierPolicy>> {
    (
        proptest::collection::vec(tier_policy(Tier::Admin, actions), 0..4),
        proptest::collection::vec(tier_policy(Tier::Baseline, ALL_ACTIONS), 0..3),
    )
        .prop_map(|(admin, baseline)| {
            let mut all: Vec<TierPolicy> = admin.into_iter().chain(baseline).collect();
            for (i, p) in all.iter_mut().enumerate() {
                p.name = format!("p{i}");
            }
            all
        })
}

fn with(cluster: &Cluster, tiers: Vec<TierPolicy>) -> Cluster {
    Cluster { tier_policies: tiers, ..cluster.clone() }
}

fn queries(cluster: &Cluster, pods: usize, packets: &[PacketSpec]) -> Vec<Query> {
    packets
        .iter()
        .map(|&(v6, src, dst, protocol, port)| Query {
            src: address(cluster, pods, v6, src).1,
            dst: address(cluster, pods, v6, dst).1,
            protocol,
            port,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn an_admin_tier_of_passes_changes_nothing(
        (cluster, pods, packets) in scenario(),
        passes in tiers(&[TierAction::Pass]),
    ) {
        let baseline_only: Vec<TierPolicy> = passes.iter().filter(|p| p.tier == Tier::Baseline).cloned().collect();
        let (with_passes, without) = (with(&cluster, passes), with(&cluster, baseline_only));
        for q in queries(&cluster, pods, &packets) {
            prop_assert_eq!(eval(&with_passes, &q).allowed(), eval(&without, &q).allowed(), "{:?}", q);
        }
    }

    #[test]
    fn the_baseline_is_not_asked_where_network_policies_isolate(
        (cluster, pods, packets) in scenario(),
        baseline in proptest::collection::vec(tier_policy(Tier::Baseline, ALL_ACTIONS), 1..3),
    ) {
        let c = with(&cluster, baseline);
        for q in queries(&cluster, pods, &packets) {
            for (subject, peer, dir) in [(q.src, q.dst, Direction::Egress), (q.dst, q.src, Direction::Ingress)] {
                let Party::Endpoint(e) = subject else { continue };
                let np = decide_network_policies(&c, e, peer, dir, q.protocol, q.port);
                let all = decide(&c, e, peer, dir, q.protocol, q.port);
                if np != Decision::NotIsolated {
                    prop_assert_eq!(all, np, "{:?}", q);
                }
            }
        }
    }

    #[test]
    fn a_first_admin_rule_on_everything_decides_everything(
        (cluster, pods, packets) in scenario(),
        others in tiers(ALL_ACTIONS),
        deny in any::<bool>(),
    ) {
        let everything = vec![
            TierPeer::Endpoints(LabelSelector::everything()),
            TierPeer::Networks(vec![cidr("0.0.0.0/0"), cidr("::/0")]),
            TierPeer::Nodes(LabelSelector::everything()),
        ];
        let action = if deny { TierAction::Deny } else { TierAction::Allow };
        let rule = |direction| TierRule { path: String::new(), name: None, direction, action, peers: everything.clone(), ports: None };
        let mut all = others;
        for p in &mut all {
            p.priority += 1;
        }
        all.push(TierPolicy {
            kind: TierKind::AdminNetworkPolicy,
            name: "first".into(),
            tier: Tier::Admin,
            priority: 0,
            subject: LabelSelector::everything(),
            rules: vec![rule(Direction::Ingress), rule(Direction::Egress)],
        });
        let c = with(&cluster, all);
        for q in queries(&cluster, pods, &packets) {
            let touches_a_pod = matches!(q.src, Party::Endpoint(_)) || matches!(q.dst, Party::Endpoint(_));
            if touches_a_pod && q.src != q.dst {
                prop_assert_eq!(eval(&c, &q).allowed(), !deny, "{:?}", q);
            }
        }
    }

    #[test]
    fn only_the_order_of_priorities_counts(
        (cluster, pods, packets) in scenario(),
        policies in tiers(ALL_ACTIONS),
    ) {
        let spread: Vec<TierPolicy> =
            policies.iter().cloned().map(|mut p| { p.priority = p.priority * 100 + 7; p }).collect();
        let (a, b) = (with(&cluster, policies), with(&cluster, spread));
        for q in queries(&cluster, pods, &packets) {
            prop_assert_eq!(eval(&a, &q), eval(&b, &q), "{:?}", q);
        }
    }
}
