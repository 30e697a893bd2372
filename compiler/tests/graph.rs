//! `policyc graph`: the DOT of the example cluster is pinned in
//! `docs/example-graph.dot`, and the README's picture
//! `docs/example-graph.svg` shows that graph, so neither goes stale
//! (`cargo xtask bless` writes both); the edges agree with the
//! connectivity table; rendering to SVG goes through Graphviz's `dot`,
//! which must be installed (CI installs it; these tests fail, never skip,
//! without it).

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
                policyc::analysis::connectivity::Side::Endpoint(i) => Some(cluster.endpoint(*i).display_name()),
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
