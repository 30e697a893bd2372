//! `policyc graph`: the DOT of the example cluster is pinned in
//! `docs/example-graph.dot`, and the README's picture
//! `docs/example-graph.svg` shows that graph, so neither goes stale
//! (`cargo xtask bless` writes both); the edges agree with the
//! connectivity table; rendering to SVG goes through Graphviz's `dot`,
//! which must be installed (CI installs it; these tests fail, never skip,
//! without it).

use policyc::analysis::connectivity::{allowed_between, party, peer_name, port_cuts, Allowed, Side};
use policyc::analysis::graph::{build, to_dot, EdgeKind, GraphNode};
use policyc::pipeline::load;
use policyc_ir::cluster::Cluster;
use policyc_ir::protocol::PortRange;
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

const STALE: &str = "run `cargo xtask bless` (or `policyc graph examples/policies --out docs/example-graph.dot` and \
     `policyc graph examples/policies --format svg --out docs/example-graph.svg`) and review the diff";

#[test]
fn example_dot_is_pinned_and_deterministic() {
    let dot = example_dot();
    assert_eq!(dot, example_dot());
    let pinned = std::fs::read_to_string(root().join("docs/example-graph.dot")).unwrap();
    assert!(pinned == dot, "docs/example-graph.dot is not `policyc graph examples/policies`: {STALE}");
}

/// The text of every `<title>` and `<text>` element of an SVG that
/// Graphviz drew: node and edge names, cluster and edge labels. Unlike the
/// coordinates, these do not depend on Graphviz's version.
fn drawn_text(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["title", "text"] {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        let mut rest = svg;
        while let Some(at) = rest.find(&open) {
            let element = &rest[at..];
            let body_start = element.find('>').expect("a tag ends") + 1;
            let body_end = element.find(&close).expect("an element closes");
            out.push(format!("{tag}: {}", &element[body_start..body_end]));
            rest = &element[body_end..];
        }
    }
    out.sort();
    out
}

/// `policyc graph --format svg` of `input`; `name` keeps the scratch
/// files of tests running at once apart.
fn render_svg(input: &Path, name: &str) -> String {
    let out = std::env::temp_dir().join(format!("policyc-graph-{}-{name}.svg", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["graph", "--format", "svg", "--out"])
        .arg(&out)
        .arg(input)
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    svg
}

#[test]
fn the_readme_picture_shows_the_example_graph() {
    assert_has_dot();
    let committed = std::fs::read_to_string(root().join("docs/example-graph.svg")).unwrap();
    let fresh = render_svg(&root().join("examples/policies"), "readme");
    let drawn = drawn_text(&fresh);
    assert!(drawn.iter().any(|t| t.contains("deny TCP/9109")), "{drawn:?}");
    assert!(drawn_text(&committed) == drawn, "docs/example-graph.svg does not show the example's graph: {STALE}");
}

fn assert_has_dot() {
    let has_dot = Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(has_dot, "Graphviz `dot` is not installed: `apt-get install graphviz` (.ci/run installs it)");
}

/// Every edge between endpoints and nodes, allowed or blocked by a deny
/// rule, as the reference evaluator gives it pair by pair: allowed is the
/// connectivity of the cluster, blocked what the cluster without its deny
/// rules would allow beyond that.
fn pairwise_edges(cluster: &Cluster) -> Vec<(String, String, EdgeKind, String)> {
    let mut relaxed = cluster.clone();
    for p in &mut relaxed.policies {
        p.rules.retain(|r| r.action == policyc_ir::policy::Action::Allow);
    }
    let cuts = port_cuts(cluster);
    let mut sides: Vec<Side> = cluster.endpoints_with_ids().map(|(i, _)| Side::Endpoint(i)).collect();
    sides.extend((0..cluster.nodes.len()).map(Side::Node));
    let text = |a: &Allowed| if a.is_all() { "all".to_string() } else { a.items().join(",") };
    let mut out = Vec::new();
    for src in &sides {
        for dst in &sides {
            let endpoint = |s: &Side| matches!(s, Side::Endpoint(_));
            if src == dst || !(endpoint(src) || endpoint(dst)) {
                continue;
            }
            let allowed = allowed_between(cluster, party(src), party(dst), &cuts);
            let without = allowed_between(&relaxed, party(src), party(dst), &cuts);
            let names = (peer_name(cluster, src), peer_name(cluster, dst));
            if !allowed.is_empty() {
                out.push((names.0.clone(), names.1.clone(), EdgeKind::Allowed, text(&allowed)));
            }
            let mut blocked = Allowed::default();
            for pi in 0..4 {
                let inside = |port: u16| allowed.ranges[pi].iter().any(|r| r.contains(port));
                // Port by port: the reference, not the graph's subtraction.
                let mut ranges: Vec<PortRange> = Vec::new();
                for r in &without.ranges[pi] {
                    for port in r.lo..=r.hi {
                        if inside(port) {
                            continue;
                        }
                        match ranges.last_mut() {
                            Some(last) if u32::from(last.hi) + 1 == u32::from(port) => last.hi = port,
                            _ => ranges.push(PortRange { lo: port, hi: port }),
                        }
                    }
                }
                blocked.ranges[pi] = ranges;
            }
            if !blocked.is_empty() {
                out.push((names.0, names.1, EdgeKind::Denied, text(&blocked)));
            }
        }
    }
    out.sort();
    out
}

/// The graph's edges between endpoints and nodes.
fn graph_edges(graph: &policyc::analysis::graph::ConnectivityGraph) -> Vec<(String, String, EdgeKind, String)> {
    let name = |i| match &graph[i] {
        GraphNode::Endpoint { name, .. } => Some(name.clone()),
        GraphNode::Node { name } => Some(format!("node:{name}")),
        GraphNode::Outside { .. } => None,
    };
    let mut out: Vec<(String, String, EdgeKind, String)> = graph
        .edge_indices()
        .filter_map(|e| {
            let (a, b) = graph.edge_endpoints(e)?;
            Some((name(a)?, name(b)?, graph[e].kind.clone(), graph[e].items.join(",")))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn edges_between_endpoints_and_nodes_are_the_evaluators() {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/golden"))
        .unwrap()
        .map(|e| e.unwrap().path().join("input"))
        .filter(|p| p.is_dir())
        .collect();
    inputs.sort();
    inputs.push(root().join("examples/policies"));
    let mut checked = 0;
    for input in inputs {
        let loaded = load(std::slice::from_ref(&input));
        if loaded.has_errors() {
            continue;
        }
        let cluster = &loaded.lowered.cluster;
        assert_eq!(graph_edges(&build(cluster)), pairwise_edges(cluster), "{}", input.display());
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} inputs checked");
    // The pprof carve-out of the monitoring allow is drawn as a deny edge,
    // and the nodes are vertices.
    let dot = example_dot();
    assert!(dot.contains(
        "\"monitoring/prometheus-0\" -> \"shop/db-0\" [label=\"deny TCP/9109\", style=dashed, color=\"#c0392b\""
    ));
    assert!(dot.contains("\"node:node-a\" [label=\"node-a\""), "{dot}");
}

#[test]
fn renders_svg_with_graphviz() {
    assert_has_dot();
    let svg = render_svg(&root().join("examples/policies"), "render");
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
