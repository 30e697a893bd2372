//! Conformance of the admin and baseline tiers with netpol-analyzer's
//! connection lists (`../shared/conformance/netpol-analyzer-anp/`, 72
//! cases, 1 647 lines): every expected line must agree with the
//! connectivity policyc computes with `ir::eval`, on the normalized pods
//! and on the manifests as published (workloads standing for their pods).
//! A line agrees when every port of its range is allowed (an `allow`
//! line) or none is (`deny`), for every outside address range policyc
//! tells apart inside the line's `ip:` range.

mod conformance_support;

use conformance_support::{corpus, ip_range, workload_names};
use policyc::analysis::connectivity::{address_segments, allowed_between, port_cuts};
use policyc::pipeline::load;
use policyc_ir::cidr::{from_u128, to_u128};
use policyc_ir::eval::Party;
use policyc_ir::protocol::PortRange;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One expected line.
struct Line {
    text: String,
    src: String,
    dst: String,
    /// Protocol indices (TCP 0, UDP 1, SCTP 2) and the port range.
    what: Vec<(usize, PortRange)>,
    allow: bool,
}

fn parse_line(line: &str) -> Line {
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.len(), 5, "bad line `{line}`");
    let all = PortRange { lo: 1, hi: 65535 };
    let what = if parts[3] == "ANY" {
        (0..3).map(|i| (i, all)).collect()
    } else {
        let (proto, range) = parts[3].split_once('/').expect("PROTO/range");
        let i = ["TCP", "UDP", "SCTP"].iter().position(|p| *p == proto).expect("known protocol");
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        vec![(i, PortRange { lo: lo.parse().unwrap(), hi: hi.parse().unwrap() })]
    };
    Line {
        text: line.to_string(),
        src: parts[0].to_string(),
        dst: parts[2].to_string(),
        what,
        allow: parts[4] == "allow",
    }
}

/// The lines of one case on one input that disagree, and how many lines
/// the case has.
fn check(case: &Path, input: &str, map_to_workloads: bool) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(case.join("expected.txt")).unwrap();
    let lines: Vec<Line> =
        text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).map(parse_line).collect();
    let loaded = load(&[case.join(input)]);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
    if !errors.is_empty() {
        let codes: Vec<String> = errors.iter().map(|d| format!("{} {}", d.code.id, d.message)).collect();
        return (lines.len(), vec![format!("{input}: input has errors: {codes:?}"); lines.len()]);
    }
    let cluster = &loaded.lowered.cluster;
    let mut names = BTreeMap::new();
    if map_to_workloads {
        for (pod, workload) in workload_names(case) {
            if cluster.endpoint_by_name(&pod).is_none() {
                names.insert(pod, workload);
            }
        }
    }
    let cuts = port_cuts(cluster);
    let segments = address_segments(cluster, &[]);
    let parties = |name: &str| -> Vec<Party> {
        if let Some((a, b)) = ip_range(name) {
            return segments
                .iter()
                .filter(|(s, e)| s.is_ipv4() && to_u128(*s) <= b && to_u128(*e) >= a)
                .map(|(s, _)| Party::External(if to_u128(*s) < a { from_u128(a, false) } else { *s }))
                .collect();
        }
        let mapped = names.get(name).map(String::as_str).unwrap_or(name);
        cluster.endpoint_by_name(mapped).map(Party::Endpoint).into_iter().collect()
    };
    let mut memo: BTreeMap<(Party, Party), [Vec<PortRange>; 4]> = BTreeMap::new();
    let mut wrong = Vec::new();
    for line in &lines {
        let (srcs, dsts) = (parties(&line.src), parties(&line.dst));
        if srcs.is_empty() || dsts.is_empty() {
            wrong.push(format!("{input}: {}: a peer is not one policyc found", line.text));
            continue;
        }
        let mut agrees = true;
        for &s in &srcs {
            for &d in &dsts {
                let got = memo.entry((s, d)).or_insert_with(|| allowed_between(cluster, s, d, &cuts).ranges);
                for &(i, range) in &line.what {
                    let covered: u32 = got[i]
                        .iter()
                        .map(|r| {
                            let (lo, hi) = (r.lo.max(range.lo), r.hi.min(range.hi));
                            if lo <= hi {
                                u32::from(hi - lo) + 1
                            } else {
                                0
                            }
                        })
                        .sum();
                    let size = u32::from(range.hi - range.lo) + 1;
                    agrees &= if line.allow { covered == size } else { covered == 0 };
                }
            }
        }
        if !agrees {
            wrong.push(format!("{input}: {}", line.text));
        }
    }
    (lines.len(), wrong)
}

fn run(input: &str, map_to_workloads: bool) {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(corpus("netpol-analyzer-anp").join("cases")).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert_eq!(cases.len(), 72, "the corpus has 72 cases");
    let (mut total, mut wrong) = (0, Vec::new());
    for case in &cases {
        let (n, w) = check(case, input, map_to_workloads);
        total += n;
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        wrong.extend(w.into_iter().map(|l| format!("{name}: {l}")));
    }
    assert_eq!(total, 1647, "the corpus has 1 647 lines");
    eprintln!("{input}: {} of {total} lines agree", total - wrong.len());
    let shown: Vec<&str> = wrong.iter().map(String::as_str).take(40).collect();
    assert!(wrong.is_empty(), "{} of {total} lines disagree:\n{}", wrong.len(), shown.join("\n"));
}

#[test]
fn normalized_pods_agree_with_netpol_analyzer_on_admin_tiers() {
    run("normalized.yaml", false);
}

#[test]
fn manifests_with_workloads_agree_with_netpol_analyzer_on_admin_tiers() {
    run("manifests.yaml", true);
}
