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

#[test]
fn flows_agree_with_the_connectivity_table() {
    let loaded = load(&[root().join("examples/policies")]);
    let cluster = &loaded.lowered.cluster;
    let rows = connectivity(cluster, &[]);
    let name = |s: &Side| policyc::analysis::connectivity::peer_name(cluster, s);
    for e in &cluster.endpoints {
        let me = e.display_name();
        let x = explained(&me);
        let items = |flows: &[policyc::analysis::explain::Flow], peer: &str| -> Vec<String> {
            let mut v: Vec<String> = flows.iter().filter(|f| f.peer == peer).flat_map(|f| f.port_items()).collect();
            v.sort();
            v
        };
        for r in &rows {
            let mut want = if r.allowed.is_all() {
                vec!["ICMP".to_string(), "SCTP".into(), "TCP".into(), "UDP".into()]
            } else {
                r.allowed.items()
            };
            want.sort();
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
