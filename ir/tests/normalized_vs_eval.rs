//! Differential test of the node agent's computation: label sets a bundle
//! does not know, resolved from the bundle's normalized policy
//! ([`policyc_ir::normalized`]), against the reference evaluator on the
//! whole cluster (the compiled pods and the new ones together). Both ways:
//! the new pods' own maps, and the maps of the compiled pods, whose
//! policies may select a new label set. Generators live in
//! `support/random_cluster.rs`.

#[path = "support/random_cluster.rs"]
mod random_cluster;

use policyc_ir::cluster::{Cluster, Endpoint};
use policyc_ir::eval::{decide, Party};
use policyc_ir::identity::Identity;
use policyc_ir::identity_split::identity_keys;
use policyc_ir::ids::EndpointId;
use policyc_ir::normalized::{is_node_computed, NormalizedPolicy};
use policyc_ir::protocol::{Direction, Protocol};
use policyc_ir::resolve::resolve;
use proptest::prelude::*;
use random_cluster::*;

/// Ports judged for each pair: ones the random rules name, and others.
const JUDGED: [u16; 6] = [53, 80, 443, 1000, 8080, 9000];

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn maps_computed_from_the_normalized_policy_agree_with_eval(
        (cluster, pods, _packets) in scenario(),
        new_count in 1usize..=3,
        job_label in proptest::collection::vec(any::<bool>(), 3),
    ) {
        // The last `new_count` pods were not in the compiled repository;
        // some carry a `job-name` no compiled label set has.
        let new_count = new_count.min(pods - 1);
        let first_new = pods - new_count;
        let mut whole = cluster.clone();
        for (i, e) in whole.endpoints[first_new..pods].iter_mut().enumerate() {
            if job_label[i] {
                e.labels.insert("job-name", format!("run-{i}"));
            }
        }
        let mut compiled: Cluster = whole.clone();
        compiled.endpoints.drain(first_new..pods);
        // A live pod of a compiled label set is bound to that set's
        // compiled identity; one whose named ports differ from the
        // compiled pods' keeps their numbers in other pods' maps (a known
        // limit of identity-keyed named ports, README "Label sets computed
        // on the node"), so such cases are not asked.
        let sorted_ports = |e: &Endpoint| {
            let mut ports = e.named_ports.clone();
            ports.sort();
            ports.dedup();
            ports
        };
        prop_assume!(whole.endpoints[first_new..pods].iter().all(|n| compiled
            .endpoints
            .iter()
            .filter(|c| c.labels == n.labels)
            .all(|c| sorted_ports(c) == sorted_ports(n))));
        let table = resolve(&compiled).table;
        let normalized = NormalizedPolicy::new(&compiled, &table);
        // Through the text form, as the agent reads it.
        let normalized: NormalizedPolicy = serde_json::from_str(&serde_json::to_string(&normalized).unwrap()).unwrap();
        let extra: Vec<Endpoint> =
            whole.endpoints[first_new..pods].iter().map(|e| Endpoint { ips: Vec::new(), ..e.clone() }).collect();
        let node = normalized.resolve(&extra, &|_| true);
        let resolved = &node.resolved;

        let identity_of = |e: &Endpoint| table.get(&e.labels).or_else(|| node.computed.get(&e.labels).copied().flatten());
        for e in &extra {
            let id = identity_of(e).unwrap();
            prop_assert_eq!(table.get(&e.labels).is_none(), is_node_computed(id), "{}", e.labels);
        }
        // The map of pod `i` of `whole`: a new pod's own, a compiled pod's
        // representative's (same labels and named ports).
        // A representative carries its identity key: the label set, plus
        // the facts an admin rule splits it by (`policyc_ir::identity_split`).
        let keys = identity_keys(&compiled);
        let map_of = |i: usize| {
            let at = if i >= first_new && i < pods {
                node.first_extra + (i - first_new)
            } else {
                let at_compiled = if i < first_new { i } else { i - new_count };
                let ports = sorted_ports(&compiled.endpoints[at_compiled]);
                normalized
                    .cluster
                    .endpoints
                    .iter()
                    .position(|r| r.labels == *keys[at_compiled] && r.named_ports == ports)
                    .unwrap()
            };
            resolved.endpoints[at].policy.clone()
        };
        let new = first_new..pods;
        for subject in 0..pods {
            for peer in 0..pods {
                // Only pairs where one side is new: the others are the
                // compiler's, tested elsewhere.
                if !new.contains(&subject) && !new.contains(&peer) {
                    continue;
                }
                let peer_identity: Identity = match peer {
                    p if new.contains(&p) => identity_of(&whole.endpoints[p]).unwrap(),
                    p => table.get(&keys[if p < first_new { p } else { p - new_count }]).unwrap(),
                };
                let map = map_of(subject);
                for dir in Direction::BOTH {
                    for protocol in [Protocol::Tcp, Protocol::Udp] {
                        for port in JUDGED {
                            let reference = decide(
                                &whole,
                                EndpointId::new(subject),
                                Party::Endpoint(EndpointId::new(peer)),
                                dir,
                                protocol,
                                port,
                            );
                            let got = map.decide(dir, peer_identity, protocol.number(), port);
                            prop_assert_eq!(
                                got.passes(),
                                reference.passes(),
                                "{} {:?} {} {}/{}: eval {:?}, map {:?}",
                                whole.endpoints[subject].display_name(),
                                dir,
                                whole.endpoints[peer].display_name(),
                                protocol,
                                port,
                                reference,
                                got
                            );
                        }
                    }
                }
            }
        }
    }
}
