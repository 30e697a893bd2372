//! `policyc graph`: the DOT of the example cluster is pinned in
//! `tests/graph/example.snap`; the edges agree with the connectivity
//! table; rendering to SVG goes through Graphviz's `dot`, which must be
//! installed (CI installs it; this test fails, never skips, without it).

use policyc::analysis::connectivity::connectivity;
use policyc::analysis::graph::{build, to_dot, EdgeKind, GraphNode};
use policyc::pipeline::load;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn example_dot() -> String {
    let loaded = load(&[root().join("examples/policies")]);
    assert!(!loaded.has_errors());
    to_dot(&build(&loaded.lowered.cluster))
}

#[test]
fn example_dot_is_pinned_and_deterministic() {
    let dot = example_dot();
    assert_eq!(dot, example_dot());
    insta::with_settings!({
        snapshot_path => root().join("tests/graph"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => "policyc graph examples/policies",
    }, {
        insta::assert_snapshot!("example", dot);
    });
}

#[test]
fn edges_between_endpoints_are_the_connectivity_table() {
    let loaded = load(&[root().join("examples/policies")]);
    let cluster = &loaded.lowered.cluster;
    let graph = build(cluster);
    let name = |i| match &graph[i] {
        GraphNode::Endpoint { name, .. } => Some(name.clone()),
        GraphNode::Outside { .. } => None,
    };
    let mut from_graph: Vec<(String, String, String)> = graph
        .edge_indices()
        .filter(|&e| graph[e].kind == EdgeKind::Allowed)
        .filter_map(|e| {
            let (a, b) = graph.edge_endpoints(e)?;
            Some((name(a)?, name(b)?, graph[e].items.join(",")))
        })
        .collect();
    from_graph.sort();
    let mut from_table: Vec<(String, String, String)> = connectivity(cluster, &[])
        .into_iter()
        .filter_map(|r| {
            let name = |s: &policyc::analysis::connectivity::Side| match s {
                policyc::analysis::connectivity::Side::Endpoint(i) => Some(cluster.endpoints[*i].display_name()),
                _ => None,
            };
            let items = if r.allowed.is_all() { "all".to_string() } else { r.allowed.items().join(",") };
            Some((name(&r.src)?, name(&r.dst)?, items))
        })
        .collect();
    from_table.sort();
    assert_eq!(from_graph, from_table);
    // The pprof carve-out of the monitoring allow is drawn as a deny edge.
    assert!(example_dot().contains(
        "\"monitoring/prometheus-0\" -> \"shop/db-0\" [label=\"deny TCP/9109\", style=dashed, color=\"#c0392b\""
    ));
}

#[test]
fn renders_svg_with_graphviz() {
    let has_dot = Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(has_dot, "Graphviz `dot` is not installed: `apt-get install graphviz` (.ci/run installs it)");
    let out = std::env::temp_dir().join(format!("policyc-graph-{}.svg", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["graph", "--format", "svg", "--out"])
        .arg(&out)
        .arg(root().join("examples/policies"))
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(svg.contains("<svg") && svg.contains("namespace shop") && svg.contains("deny TCP/9109"), "{svg}");
}

#[test]
fn images_need_an_output_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["graph", "--format", "png"])
        .arg(root().join("examples/policies"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out FILE"));
}
