//! The analyses judged per class of alike endpoints and per group of
//! alike peers (`analysis::engine`) agree with the reference evaluator
//! asked for every pair, on every golden case, the example cluster and a
//! cluster built to tell classes and nodes apart: the rows, and the text
//! and JSON written as they are produced.

use policyc::analysis::connectivity::{
    address_segments, allowed_between, connectivity, peer_name, port_cuts, to_json, to_table, Row, Side,
};
use policyc::analysis::table::Table;
use policyc::front::source::read_paths;
use policyc::pipeline::{load_input, Loaded};
use policyc_ir::cluster::Cluster;
use std::path::{Path, PathBuf};

fn inputs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input"))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases.push(root.join("examples/policies"));
    cases
}

fn load(path: &Path) -> Option<Loaded> {
    let loaded = load_input(read_paths(&[path.to_path_buf()]));
    (!loaded.has_errors()).then_some(loaded)
}

/// Every row, pair by pair, with the evaluator: the table before classes.
fn pairwise(cluster: &Cluster) -> Vec<Row> {
    let cuts = port_cuts(cluster);
    let mut peers: Vec<Side> = cluster.endpoints_with_ids().map(|(i, _)| Side::Endpoint(i)).collect();
    peers.extend((0..cluster.nodes.len()).map(Side::Node));
    peers.extend(address_segments(cluster, &[]).into_iter().map(|(a, b)| Side::Addresses(a, b)));
    let mut rows = Vec::new();
    for src in &peers {
        for dst in &peers {
            let endpoint = |s: &Side| matches!(s, Side::Endpoint(_));
            if src == dst || !(endpoint(src) || endpoint(dst)) {
                continue;
            }
            let allowed = allowed_between(
                cluster,
                policyc::analysis::connectivity::party(src),
                policyc::analysis::connectivity::party(dst),
                &cuts,
            );
            if !allowed.is_empty() {
                rows.push(Row { src: src.clone(), dst: dst.clone(), allowed });
            }
        }
    }
    rows
}

fn sorted(cluster: &Cluster, mut rows: Vec<Row>) -> Vec<(String, String, Vec<String>)> {
    rows.sort_by_key(|r| (peer_name(cluster, &r.src), peer_name(cluster, &r.dst)));
    rows.into_iter()
        .map(|r| (peer_name(cluster, &r.src), peer_name(cluster, &r.dst), r.allowed.marked_items()))
        .collect()
}

fn check(name: &str, cluster: &Cluster) {
    let expected = pairwise(cluster);
    assert_eq!(sorted(cluster, connectivity(cluster, &[])), sorted(cluster, expected.clone()), "{name}: rows");
    let table = Table::new(cluster, &[]);
    let mut text = Vec::new();
    table.write_table(None, &mut text).unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), to_table(cluster, &expected), "{name}: table");
    let mut json = Vec::new();
    table.write_json(None, &mut json).unwrap();
    let want = serde_json::to_string_pretty(&to_json(cluster, &expected)).unwrap() + "\n";
    assert_eq!(String::from_utf8(json).unwrap(), want, "{name}: json");
    // A selector keeps the rows with a matching endpoint on either end.
    if let Some(e) = cluster.endpoints.first() {
        let ns = e.namespace.clone();
        let selector = policyc::select::parse_selector(&format!("ns={ns}")).unwrap();
        let kept: Vec<Row> = expected
            .iter()
            .filter(|r| {
                [&r.src, &r.dst]
                    .iter()
                    .any(|s| matches!(s, Side::Endpoint(i) if selector.matches(&cluster.endpoint(*i).labels)))
            })
            .cloned()
            .collect();
        let mut text = Vec::new();
        table.write_table(Some(&selector), &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), to_table(cluster, &kept), "{name}: --select");
    }
}

#[test]
fn per_class_rows_are_the_pairwise_rows() {
    let mut checked = 0;
    for input in inputs() {
        if let Some(loaded) = load(&input) {
            check(&input.display().to_string(), &loaded.lowered.cluster);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} inputs checked");
}

/// Pods of one label set on different nodes, one of them unscheduled,
/// named ports that differ within a label set, a host policy's entities,
/// requirements and L7: classes and node groups must not merge what the
/// evaluator tells apart.
const MIXED: &str = "\
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.200.255.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.200.255.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a1, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
status: {podIP: 10.200.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a2, namespace: x, labels: {app: a}}
spec: {nodeName: n2, containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.200.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: a3, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b1, namespace: x, labels: {app: b, role: client}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.200.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: b2, namespace: y, labels: {app: b}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.200.0.4}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-web, namespace: x}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: a}}}]
      ports: [{port: web}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: a-in, namespace: x}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
    - fromEntities: [remote-node]
      toPorts: [{ports: [{port: \"9100\"}]}]
    - fromEndpoints: [{matchLabels: {role: client}}]
      toPorts: [{ports: [{port: web, protocol: TCP}], rules: {http: [{method: GET}]}}]
    - fromCIDRSet: [{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}]
  ingressDeny:
    - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: y}}]
      toPorts: [{ports: [{port: \"80\"}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-req, namespace: y}
spec:
  endpointSelector: {}
  ingress:
    - fromRequires: [{matchLabels: {app: a}}]
    - fromEndpoints: [{}]
    - fromEntities: [host]
";

#[test]
fn classes_keep_apart_what_nodes_named_ports_and_requirements_tell_apart() {
    let mut input = policyc::front::Input::default();
    input.add_source("mixed.yaml", MIXED.to_string());
    let loaded = load_input(input);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    check("mixed", &loaded.lowered.cluster);
}

#[test]
fn a_bad_selector_is_reported_before_the_input_is_read() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["connectivity", "/nonexistent/per-class-input", "--select", "tier in data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: --select:") && !stderr.contains("per-class-input"), "{stderr}");
}
