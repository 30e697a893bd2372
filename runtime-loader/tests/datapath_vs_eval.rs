//! The BPF programs, run by the kernel on crafted packets
//! (`BPF_PROG_TEST_RUN`), agree with the reference evaluator on every
//! golden case and the example: every pair of addressed endpoints and
//! outside address ranges, every protocol, every port segment a policy
//! distinguishes. Egress is judged by the source node's bundle, ingress by
//! the destination node's, each loaded into its own scratch root.

mod support;

use policyc::analysis::connectivity::{address_segments, port_cuts, PROTOCOLS};
use policyc_ir::eval::{eval, Party, Query};
use policyc_loader::packet::ProbePacket;
use policyc_loader::probe::Probe;
use std::collections::BTreeMap;
use std::net::IpAddr;
use support::{compile, golden_inputs, require_root, scratch_paths, TempDir};

#[test]
fn programs_agree_with_eval_on_golden_cases() {
    require_root();
    let mut checked = 0usize;
    let mut sport = 10_000u16;
    for (case, dir) in golden_inputs().into_iter().enumerate() {
        let out = TempDir::new(&format!("dve-{case}"));
        let Some((loaded, bundles)) = compile(&dir, &out) else { continue };
        let cluster = &loaded.lowered.cluster;
        let mut probes: BTreeMap<String, Probe> = BTreeMap::new();
        for (node, bundle) in &bundles {
            if bundle.endpoints.iter().all(|e| e.addresses.is_empty()) {
                continue;
            }
            let paths = scratch_paths(&format!("dve-{case}-{node}"), &out);
            probes.insert(node.clone(), Probe::load(paths, bundle).expect("probe loads"));
        }
        let mut peers: Vec<(IpAddr, Party, Option<String>)> = Vec::new();
        for (i, e) in cluster.endpoints_with_ids() {
            for ip in &e.ips {
                peers.push((*ip, Party::Endpoint(i), e.node.clone()));
            }
        }
        // Nodes' addresses: `host` to the endpoints on that node (the
        // built-in allow-localhost applies), `remote-node` to the others.
        for (n, node) in cluster.nodes.iter().enumerate() {
            for ip in &node.ips {
                peers.push((*ip, Party::Node(n), None));
            }
        }
        // Outside segments (nodes' addresses are cut out of them).
        for (first, _) in address_segments(cluster, &[]) {
            if cluster.endpoint_by_ip(first).is_none() {
                peers.push((first, Party::External(first), None));
            }
        }
        let cuts = port_cuts(cluster);
        for (src_ip, src, src_node) in &peers {
            for (dst_ip, dst, dst_node) in &peers {
                if src == dst || src_ip.is_ipv4() != dst_ip.is_ipv4() {
                    continue;
                }
                // No program runs between two peers that are not endpoints.
                if !matches!(src, Party::Endpoint(_)) && !matches!(dst, Party::Endpoint(_)) {
                    continue;
                }
                for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
                    // ICMP types are per family: ICMP with IPv4, ICMPv6 with IPv6.
                    if protocol.is_icmp() && (protocol.number() == 1) != src_ip.is_ipv4() {
                        continue;
                    }
                    for &port in &cuts[pi] {
                        let Ok(port) = u16::try_from(port) else { continue };
                        let want = eval(cluster, &Query { src: *src, dst: *dst, protocol, port }).allowed();
                        sport = sport.checked_add(1).unwrap_or(10_000);
                        let packet =
                            ProbePacket { src: *src_ip, dst: *dst_ip, protocol: protocol.number(), sport, dport: port };
                        let mut passed = true;
                        let mut judged = Vec::new();
                        let mut nodes: Vec<&String> = [src_node, dst_node].into_iter().flatten().collect();
                        nodes.dedup();
                        for node in nodes {
                            if let Some(probe) = probes.get_mut(node) {
                                let v = probe.judge(&packet).unwrap();
                                // Each hook runs on the node of its endpoint.
                                let egress = v.egress.filter(|_| Some(node) == src_node.as_ref());
                                let ingress = v.ingress.filter(|_| Some(node) == dst_node.as_ref());
                                for h in egress.into_iter().chain(ingress) {
                                    passed &= h.passed();
                                    judged.push(h);
                                }
                                probe.clear_conntrack().unwrap();
                            }
                        }
                        assert_eq!(
                            passed,
                            want,
                            "{}: {src_ip} -> {dst_ip} {protocol}/{port}: programs said {judged:?}",
                            dir.display()
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} packets checked");
    eprintln!("{checked} packets agreed");
}
