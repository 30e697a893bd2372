//! Conformance with netpol-analyzer's connection lists
//! (`../shared/conformance/netpol-analyzer/`): for every case, the
//! connectivity policyc computes must agree with every expected line, on
//! the normalized pods and on the manifests as users write them
//! (workloads standing for their pods).

mod conformance_support;

use conformance_support::{corpus, ip_range, workload_names};
use policyc::analysis::connectivity::{address_segments, allowed_between, peer_name, port_cuts, Side};
use policyc::pipeline::load;
use policyc_ir::cidr::to_u128;
use policyc_ir::cluster::Cluster;
use policyc_ir::eval::Party;
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::PortRange;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Allowed port ranges for TCP, UDP, SCTP.
type Allowed = [Vec<PortRange>; 3];

#[derive(Default)]
struct Expected {
    /// (src, dst) → allowed ranges; every pair the file covers is present.
    pairs: BTreeMap<(String, String), Allowed>,
}

fn parse_expected(text: &str) -> Expected {
    let mut e = Expected::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() || line.contains("{ingress-controller}") {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 5, "bad line `{line}`");
        let (src, dst, what, verdict) = (parts[0].to_string(), parts[2].to_string(), parts[3], parts[4]);
        let entry = e.pairs.entry((src, dst)).or_default();
        if verdict != "allow" {
            continue;
        }
        if what == "ANY" {
            *entry = std::array::from_fn(|_| vec![PortRange { lo: 1, hi: 65535 }]);
            continue;
        }
        let (proto, range) = what.split_once('/').expect("PROTO/range");
        let i = ["TCP", "UDP", "SCTP"].iter().position(|p| *p == proto).expect("known protocol");
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
            None => (range.parse().unwrap(), range.parse().unwrap()),
        };
        entry[i].push(PortRange { lo, hi });
    }
    for allowed in e.pairs.values_mut() {
        for ranges in allowed.iter_mut() {
            *ranges = merge(std::mem::take(ranges));
        }
    }
    e
}

fn merge(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut out: Vec<PortRange> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if u32::from(last.hi) + 1 >= u32::from(r.lo) => last.hi = last.hi.max(r.hi),
            _ => out.push(r),
        }
    }
    out
}

/// A peer name of expected.txt mapped to what policyc computes on.
enum Target {
    Endpoint(EndpointId),
    Addresses(u128, u128),
}

/// Checks one case on one input file; returns the mismatches.
fn check(case: &Path, input: &str, names: &BTreeMap<String, String>) -> Vec<String> {
    let loaded = load(&[case.join(input)]);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        return vec![format!("{input}: input has errors: {errors:?}")];
    }
    let cluster: &Cluster = &loaded.lowered.cluster;
    let expected = parse_expected(&std::fs::read_to_string(case.join("expected.txt")).unwrap());
    let cuts = port_cuts(cluster);
    let segments = address_segments(cluster, &[]);
    let target = |name: &str| -> Option<Target> {
        if let Some((a, b)) = ip_range(name) {
            return Some(Target::Addresses(a, b));
        }
        let mapped = names.get(name).map(String::as_str).unwrap_or(name);
        cluster.endpoint_by_name(mapped).map(Target::Endpoint)
    };
    // The outside ranges policyc distinguishes inside an expected range.
    let parties = |t: &Target| -> Vec<Party> {
        match t {
            Target::Endpoint(i) => vec![Party::Endpoint(*i)],
            Target::Addresses(a, b) => segments
                .iter()
                .filter(|(s, e)| s.is_ipv4() && to_u128(*s) <= *b && to_u128(*e) >= *a)
                .map(|(s, _)| {
                    Party::External(if to_u128(*s) < *a { policyc_ir::cidr::from_u128(*a, false) } else { *s })
                })
                .collect(),
        }
    };
    // Host-network pods and workloads are not endpoints in policyc (their
    // traffic is their node's, as Cilium treats them: issue 11 item 3),
    // while netpol-analyzer judges them as pods: their pairs are left out.
    let host_network = |name: &str| {
        let mapped = names.get(name).map(String::as_str).unwrap_or(name);
        loaded.lowered.host_network.iter().any(|e| [name, mapped].contains(&e.display_name().as_str()))
    };
    let mut mismatches = Vec::new();
    for ((src, dst), want) in &expected.pairs {
        if host_network(src) || host_network(dst) {
            continue;
        }
        let (Some(s), Some(d)) = (target(src), target(dst)) else {
            mismatches.push(format!("{input}: `{src}` or `{dst}` is not an endpoint policyc found"));
            continue;
        };
        for sp in parties(&s) {
            for dp in parties(&d) {
                let got = allowed_between(cluster, sp, dp, &cuts);
                let got: Allowed = [got.ranges[0].clone(), got.ranges[1].clone(), got.ranges[2].clone()];
                if &got != want {
                    let side = |p: Party| match p {
                        Party::Endpoint(i) => peer_name(cluster, &Side::Endpoint(i)),
                        Party::External(ip) => format!("ip:{ip}"),
                        Party::Reserved(e) => e.name().to_string(),
                        Party::Node(n) => format!("node:{}", cluster.nodes[n].name),
                    };
                    mismatches.push(format!(
                        "{input}: {src} -> {dst} (as {} -> {}): expected {want:?}, policyc says {got:?}",
                        side(sp),
                        side(dp)
                    ));
                }
            }
        }
    }
    mismatches
}

fn run(input: &str, map_to_workloads: bool) {
    let cases_dir = corpus("netpol-analyzer").join("cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&cases_dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 50, "the corpus has 50 cases");
    let mut failed = BTreeSet::new();
    let mut report = Vec::new();
    for case in &cases {
        let mut names = BTreeMap::new();
        if map_to_workloads {
            let loaded = load(&[case.join(input)]);
            let cluster = &loaded.lowered.cluster;
            // A pod of the manifests keeps its name; a workload's pods map
            // to the workload's representative endpoint.
            for (pod, workload) in workload_names(case) {
                if cluster.endpoint_by_name(&pod).is_none() {
                    names.insert(pod, workload);
                }
            }
        }
        let m = check(case, input, &names);
        if !m.is_empty() {
            failed.insert(case.file_name().unwrap().to_string_lossy().to_string());
            report
                .extend(m.into_iter().take(5).map(|l| format!("{}: {l}", case.file_name().unwrap().to_string_lossy())));
        }
    }
    assert!(failed.is_empty(), "{} of 50 cases disagree: {failed:?}\n{}", failed.len(), report.join("\n"));
}

#[test]
fn normalized_pods_agree_with_netpol_analyzer() {
    run("normalized.yaml", false);
}

#[test]
fn manifests_with_workloads_agree_with_netpol_analyzer() {
    run("manifests.yaml", true);
}
