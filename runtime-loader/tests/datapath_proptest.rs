//! Property test: on random clusters, policies and packets (IPv4 and IPv6,
//! TCP/UDP/SCTP/ICMP/ICMPv6, port ranges, named ports, deny rules, CIDR
//! rules with `except`, entities, requires; and with admin and baseline
//! tiers: Allow, Deny, Pass, `networks`, `nodes`, named ports, tied
//! priorities), the BPF programs run by the kernel (`BPF_PROG_TEST_RUN`)
//! allow exactly what `ir::eval` allows. The
//! generators are the compiled-maps property test's
//! (`ir/tests/support/random_cluster.rs`).

#[path = "../../ir/tests/support/random_cluster.rs"]
mod random_cluster;
mod support;

use policyc::emit::{emit, BundleOptions};
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::{eval, Query};
use policyc_ir::resolve::resolve;
use policyc_loader::bundle::Bundle;
use policyc_loader::packet::ProbePacket;
use policyc_loader::probe::Probe;
use proptest::prelude::*;
use random_cluster::{address, node_of, scenario, scenario_with_tiers, PacketSpec};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{require_root, scratch_paths, TempDir};

/// Each case loads every endpoint's two programs through the verifier, so
/// cases are few and packets many.
const CASES: u32 = 48;

/// Cases of the admin-tier variant.
const TIER_CASES: u32 = 32;

static CASE: AtomicUsize = AtomicUsize::new(0);

/// Loads `cluster`'s bundles into probes and judges every packet, against
/// `eval`.
fn programs_agree(cluster: Cluster, pods: usize, packets: Vec<PacketSpec>) -> Result<(), TestCaseError> {
    require_root();
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    let out = TempDir::new(&format!("dpp-{case}"));
    let resolved = resolve(&cluster);
    let mut probes: BTreeMap<String, Probe> = BTreeMap::new();
    for b in emit(&cluster, &resolved, None, &BundleOptions::default()).expect("emit") {
        if !b.files["maps/endpoints.txt"].is_empty() {
            let dir = out.0.join(&b.node);
            b.write_to(&dir).unwrap();
            let bundle = Bundle::read(&dir).expect("bundle reads");
            let paths = scratch_paths(&format!("dpp-{case}-{}", b.node), &out);
            probes.insert(b.node.clone(), Probe::load(paths, &bundle).expect("probe loads"));
        }
    }
    for (n, (v6, src, dst, protocol, port)) in packets.into_iter().enumerate() {
        // An ICMP "port" is the one-byte type.
        let port = if protocol.is_icmp() { port & 0xff } else { port };
        let src_node = node_of(&cluster, pods, src).map(str::to_string);
        let dst_node = node_of(&cluster, pods, dst).map(str::to_string);
        let (src_ip, src_party) = address(&cluster, pods, v6, src);
        let (dst_ip, dst_party) = address(&cluster, pods, v6, dst);
        // A pod's traffic to its own address stays inside its network
        // namespace and never meets the programs.
        if src_ip == dst_ip {
            continue;
        }
        let reference = eval(&cluster, &Query { src: src_party, dst: dst_party, protocol, port });
        let packet = ProbePacket {
            src: src_ip,
            dst: dst_ip,
            protocol: protocol.number(),
            sport: 20_000 + n as u16,
            dport: port,
        };
        let mut passed = true;
        let mut hooks = Vec::new();
        if let Some(probe) = src_node.as_ref().and_then(|node| probes.get_mut(node)) {
            let v = probe.judge(&packet).unwrap();
            hooks.extend(v.egress);
            probe.clear_conntrack().unwrap();
        }
        if let Some(probe) = dst_node.as_ref().and_then(|node| probes.get_mut(node)) {
            let v = probe.judge(&packet).unwrap();
            hooks.extend(v.ingress);
            probe.clear_conntrack().unwrap();
        }
        for h in &hooks {
            passed &= h.passed();
        }
        prop_assert_eq!(
            passed,
            reference.allowed(),
            "{} -> {} {}/{}\nreference: {:?}\nprograms: {:?}",
            src_ip,
            dst_ip,
            protocol,
            port,
            reference,
            hooks
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn programs_agree_with_eval_on_random_clusters((cluster, pods, packets) in scenario()) {
        programs_agree(cluster, pods, packets)?;
    }
}

proptest! {
    // Fewer cases: the tiered maps are larger, and both tests run at once.
    #![proptest_config(ProptestConfig { cases: TIER_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn programs_agree_with_eval_on_random_clusters_with_admin_tiers((cluster, pods, packets) in scenario_with_tiers()) {
        programs_agree(cluster, pods, packets)?;
    }
}
