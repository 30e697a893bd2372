//! On every golden case and on the example cluster, the compiled maps (the
//! Rust lookup that mirrors the datapath) agree with the reference
//! evaluator for every pair of addressed endpoints and outside address
//! ranges, every protocol, and every port segment a policy distinguishes.
//! Inputs with admin tiers are in; an input `compile` refuses (E0350: an
//! admin peer splitting a node identity) is left out.

use policyc::analysis::connectivity::{address_segments, port_cuts, PROTOCOLS};
use policyc::pipeline::load;
use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::lookup::{Datapath, Packet};
use policyc_ir::resolve::resolve;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(root.join("examples/policies"));
    dirs
}

#[test]
fn compiled_maps_agree_with_eval() {
    let mut checked = 0usize;
    for dir in inputs() {
        let loaded = load(std::slice::from_ref(&dir));
        if loaded.has_errors() {
            continue;
        }
        let cluster = &loaded.lowered.cluster;
        let resolved = resolve(cluster);
        if !policyc::compile::tiers::unenforced(&loaded, &resolved).is_empty() {
            continue;
        }
        let datapath = Datapath::new(&resolved);
        let mut peers: Vec<(IpAddr, Party)> = Vec::new();
        for (i, e) in cluster.endpoints_with_ids() {
            if let Some(ip) = e.ips.first() {
                peers.push((*ip, Party::Endpoint(i)));
            }
        }
        let node_ips: Vec<IpAddr> = cluster.nodes.iter().flat_map(|n| n.ips.iter().copied()).collect();
        for (first, _) in address_segments(cluster, &[]) {
            if cluster.endpoint_by_ip(first).is_none() && !node_ips.contains(&first) {
                peers.push((first, Party::External(first)));
            }
        }
        let cuts = port_cuts(cluster);
        for &(src_ip, src) in &peers {
            for &(dst_ip, dst) in &peers {
                if src == dst || (matches!(src, Party::External(_)) && matches!(dst, Party::External(_))) {
                    continue;
                }
                for (pi, &protocol) in PROTOCOLS.iter().enumerate() {
                    for &port in &cuts[pi] {
                        let Ok(port) = u16::try_from(port) else { continue };
                        let want = eval(cluster, &Query { src, dst, protocol, port }).allowed();
                        let got = datapath.judge(&Packet { src: src_ip, dst: dst_ip, protocol, port }).allowed();
                        assert_eq!(got, want, "{}: {src_ip} -> {dst_ip} {protocol}/{port}", dir.display());
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} packets checked");
}
