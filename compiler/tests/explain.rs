//! `policyc explain NS/POD`: golden renderings for endpoints of the
//! example cluster in `tests/explain/` (human and JSON), and the flows it
//! lists agree with the connectivity table.

use policyc::analysis::connectivity::{connectivity, Side};
use policyc::analysis::explain::{explain, render_human, render_json, Explanation};
use policyc::pipeline::load;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn explained(name: &str) -> Explanation {
    let loaded = load(&[root().join("examples/policies")]);
    let cluster = &loaded.lowered.cluster;
    let index = cluster.endpoint_by_name(name).expect(name);
    let resolved = policyc_ir::resolve::resolve(cluster);
    explain(&loaded, &resolved, index)
}

fn relative(text: String) -> String {
    text.replace(&format!("{}/", root().display()), "")
}

fn snapshot(snap: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => root().join("tests/explain"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => "policyc explain on examples/policies",
    }, {
        insta::assert_snapshot!(snap.to_string(), text);
    });
}

#[test]
fn golden_explanations() {
    for (name, file) in [("shop/db-0", "shop-db-0"), ("shop/frontend-6d8f9c7b5-x2kqp", "shop-frontend")] {
        let x = explained(name);
        snapshot(file, &relative(render_human(&x)));
        if file == "shop-db-0" {
            let json = serde_json::to_string_pretty(&render_json(&x)).unwrap() + "\n";
            snapshot(&format!("{file}-json"), &relative(json));
        }
    }
}

/// Port items (`TCP`, `TCP/80`, `TCP/1-79`) with adjacent ranges of one
/// protocol merged, a whole protocol written as its name, sorted.
fn merged(items: Vec<String>) -> Vec<String> {
    let full = |protocol: &str| if protocol == "ICMP" { (0u32, 255u32) } else { (1, 65535) };
    let mut ranges: std::collections::BTreeMap<String, Vec<(u32, u32)>> = Default::default();
    for item in items {
        let (protocol, range) = match item.split_once('/') {
            None => (item.clone(), full(&item)),
            Some((p, r)) => {
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                (p.to_string(), (lo.parse().unwrap(), hi.parse().unwrap()))
            }
        };
        ranges.entry(protocol).or_default().push(range);
    }
    let mut out = Vec::new();
    for (protocol, mut list) in ranges {
        list.sort();
        let mut joined: Vec<(u32, u32)> = Vec::new();
        for (lo, hi) in list {
            match joined.last_mut() {
                Some(last) if last.1 + 1 >= lo => last.1 = last.1.max(hi),
                _ => joined.push((lo, hi)),
            }
        }
        for (lo, hi) in joined {
            out.push(match (lo, hi) {
                _ if (lo, hi) == full(&protocol) => protocol.clone(),
                _ if lo == hi => format!("{protocol}/{lo}"),
                _ => format!("{protocol}/{lo}-{hi}"),
            });
        }
    }
    out.sort();
    out
}

#[test]
fn flows_agree_with_the_connectivity_table() {
    let loaded = load(&[root().join("examples/policies")]);
    let cluster = &loaded.lowered.cluster;
    let rows = connectivity(cluster, &[]);
    let name = |s: &Side| policyc::analysis::connectivity::peer_name(cluster, s);
    for e in &cluster.endpoints {
        let me = e.display_name();
        let x = explained(&me);
        // A peer's flows are grouped by reasons, so adjacent ranges of
        // one protocol may come in several flows (TCP/8080 allowed by a
        // rule and by the built-in allow-localhost, the ports around it by
        // the latter alone): merged, they must be the table's.
        let items = |flows: &[policyc::analysis::explain::Flow], peer: &str| -> Vec<String> {
            merged(flows.iter().filter(|f| f.peer == peer).flat_map(|f| f.port_items()).collect())
        };
        for r in &rows {
            let mut want = if r.allowed.is_all() {
                vec!["ICMP".to_string(), "SCTP".into(), "TCP".into(), "UDP".into()]
            } else {
                r.allowed.items()
            };
            want = merged(want);
            if name(&r.dst) == me {
                assert_eq!(items(&x.reached_by, &name(&r.src)), want, "{} -> {me}", name(&r.src));
            }
            if name(&r.src) == me {
                assert_eq!(items(&x.reaches, &name(&r.dst)), want, "{me} -> {}", name(&r.dst));
            }
        }
        let rows_in = rows.iter().filter(|r| name(&r.dst) == me).count();
        let peers_in: std::collections::BTreeSet<&str> = x.reached_by.iter().map(|f| f.peer.as_str()).collect();
        assert_eq!(peers_in.len(), rows_in, "{me}: a peer listed that the table does not have");
    }
}

#[test]
fn unknown_endpoint_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["explain", "shop/db-1"])
        .arg(root().join("examples/policies"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `shop/db-0`"));
}

/// An allow only through the L7 proxy is marked in `explain`'s flows as
/// `connectivity` marks it (`TCP/8080 (L7 http)`), on both ends.
#[test]
fn l7_restricted_flows_are_marked_as_in_connectivity() {
    let loaded = load(&[root().join("tests/golden/cnp-l7-http/input")]);
    let cluster = &loaded.lowered.cluster;
    let resolved = policyc_ir::resolve::resolve(cluster);
    let name = |s: &Side| policyc::analysis::connectivity::peer_name(cluster, s);
    let marked = |items: Vec<String>| -> std::collections::BTreeSet<String> {
        items.into_iter().filter(|i| i.contains(" (L7 ")).collect()
    };
    let mut seen = 0;
    for r in connectivity(cluster, &[]) {
        let want = marked(r.allowed.summary());
        seen += want.len();
        for (side, other, inbound) in [(&r.dst, &r.src, true), (&r.src, &r.dst, false)] {
            let Side::Endpoint(index) = side else { continue };
            let x = explain(&loaded, &resolved, *index);
            let flows = if inbound { &x.reached_by } else { &x.reaches };
            let got = marked(flows.iter().filter(|f| f.peer == name(other)).flat_map(|f| f.port_items()).collect());
            assert_eq!(got, want, "{} -> {}", name(&r.src), name(&r.dst));
        }
    }
    assert!(seen > 0, "the L7 golden has an L7-restricted allow");
}
