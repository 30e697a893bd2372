//! The allowed-connectivity graph: workloads as vertices (grouped by
//! namespace), the cluster's nodes (`node:NAME`, as `connectivity` lists
//! them) and outside address ranges as vertices, an edge for what may flow
//! from one to the other, labelled with protocols and ports, and a dashed
//! edge for what an explicit deny rule blocks.
//!
//! The graph is a `petgraph` [`DiGraph`] built from the connectivity table
//! ([`crate::analysis::table`], the reference evaluator asked per class of
//! alike endpoints). A
//! "blocked by a deny rule" edge holds the ports that the same cluster
//! would allow if its deny rules were removed (policies keep isolating what
//! they isolate): a deny that only repeats what default deny already drops
//! draws nothing. Outside address segments with exactly the same edges are
//! merged into one node, so the picture has one "world" node rather than
//! one per prefix boundary. [`to_dot`] renders Graphviz DOT,
//! deterministically.

use crate::analysis::connectivity::{Allowed, PROTOCOLS};
use crate::analysis::fast_hash::FastMap;
use crate::analysis::table::{At, Table};
use petgraph::graph::{DiGraph, NodeIndex};
use policyc_ir::cidr::{from_u128, to_u128};
use policyc_ir::cluster::{Cluster, EndpointKind};
use policyc_ir::policy::Action;
use policyc_ir::protocol::PortRange;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::IpAddr;

/// A node: an endpoint or a group of outside address ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphNode {
    /// An endpoint of the cluster.
    Endpoint {
        /// Namespace (the cluster it is drawn in).
        namespace: String,
        /// Display name (`ns/pod`), the node's DOT id.
        name: String,
        /// What the node shows: the pod or workload name.
        label: String,
    },
    /// A node of the cluster: `host` to the endpoints on it,
    /// `remote-node` to the others.
    Node {
        /// The node's name.
        name: String,
    },
    /// Outside addresses on which the policies decide alike.
    Outside {
        /// The inclusive ranges, in address order.
        ranges: Vec<(IpAddr, IpAddr)>,
    },
}

/// An edge: allowed traffic, or traffic a deny rule blocks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EdgeKind {
    /// Allowed.
    Allowed,
    /// Dropped by an explicit deny rule that overrides an allow.
    Denied,
}

/// The protocols and ports of an edge.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraphEdge {
    /// Allowed or denied.
    pub kind: EdgeKind,
    /// `all`, or items like `TCP/8080`, `UDP/53`.
    pub items: Vec<String>,
}

/// The connectivity graph of a cluster.
pub type ConnectivityGraph = DiGraph<GraphNode, GraphEdge>;

fn items(a: &Allowed) -> Vec<String> {
    if a.is_all() {
        vec!["all".to_string()]
    } else {
        a.items()
    }
}

/// `a` minus `b`, both sorted disjoint ranges with `b`'s ports inside `a`'s.
fn subtract(a: &[PortRange], b: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    for r in a {
        let mut lo = u32::from(r.lo);
        for x in b.iter().filter(|x| x.hi >= r.lo && x.lo <= r.hi) {
            if u32::from(x.lo) > lo {
                out.push(PortRange { lo: lo as u16, hi: x.lo - 1 });
            }
            lo = u32::from(x.hi) + 1;
        }
        if lo <= u32::from(r.hi) {
            out.push(PortRange { lo: lo as u16, hi: r.hi });
        }
    }
    out
}

/// Edges, and the edges of each pair of allowed ids (with and without
/// denies), numbered in the order first seen.
#[derive(Default)]
struct Interned {
    ids: BTreeMap<GraphEdge, u32>,
    edges: Vec<GraphEdge>,
    pair_ids: FastMap<(u32, u32), usize>,
    pairs: Vec<Vec<u32>>,
}

impl Interned {
    /// The pair of allowed ids `with` (of `strict`) and `without` (of
    /// `loose`, the cluster without its deny rules): an allowed edge for
    /// what passes, a denied edge for what only the deny rules drop.
    fn pair(&mut self, strict: &Table, loose: &Table, with: u32, without: u32) -> usize {
        if let Some(&id) = self.pair_ids.get(&(with, without)) {
            return id;
        }
        let (allowed, without_denies) = (strict.allowed(with), loose.allowed(without));
        let mut blocked = Allowed::default();
        for pi in 0..PROTOCOLS.len() {
            blocked.ranges[pi] = subtract(&without_denies.ranges[pi], &allowed.ranges[pi]);
        }
        let mut pair = Vec::new();
        for (kind, a) in [(EdgeKind::Allowed, allowed), (EdgeKind::Denied, &blocked)] {
            if !a.is_empty() {
                let edge = GraphEdge { kind, items: items(a) };
                let next = self.edges.len() as u32;
                let id = *self.ids.entry(edge.clone()).or_insert(next);
                if id == next {
                    self.edges.push(edge);
                }
                pair.push(id);
            }
        }
        self.pairs.push(pair);
        self.pair_ids.insert((with, without), self.pairs.len() - 1);
        self.pairs.len() - 1
    }
}

/// Edge lists of pairs, numbered so that pairs with the same edges share
/// a number.
#[derive(Default)]
struct Lists {
    ids: HashMap<Vec<u32>, u32>,
    values: Vec<Vec<u32>>,
    /// Per pair of [`Interned::pairs`]: its list.
    of_pair: Vec<u32>,
}

impl Lists {
    /// No edge.
    const NONE: u32 = u32::MAX;

    /// The list of `pair`'s edges ([`Lists::NONE`] for none).
    fn of(&mut self, interned: &Interned, pair: Option<usize>) -> u32 {
        let Some(pair) = pair else { return Self::NONE };
        if let Some(&id) = self.of_pair.get(pair).filter(|&&id| id != u32::MAX - 1) {
            return id;
        }
        let edges = &interned.pairs[pair];
        let id = if edges.is_empty() {
            Self::NONE
        } else {
            let next = self.values.len() as u32;
            let id = *self.ids.entry(edges.clone()).or_insert(next);
            if id == next {
                self.values.push(edges.clone());
            }
            id
        };
        if self.of_pair.len() <= pair {
            self.of_pair.resize(pair + 1, u32::MAX - 1);
        }
        self.of_pair[pair] = id;
        id
    }

    /// The edges of list `id`.
    fn edges(&self, id: u32) -> &[u32] {
        if id == Self::NONE {
            &[]
        } else {
            &self.values[id as usize]
        }
    }
}

/// Builds the graph of `cluster`.
pub fn build(cluster: &Cluster) -> ConnectivityGraph {
    let strict = Table::new(cluster, &[]);
    let segments = strict.segments().to_vec();
    // Without deny rules the cluster is its own relaxed cluster.
    let has_denies = cluster.policies.iter().flat_map(|p| &p.rules).any(|r| r.action != Action::Allow);
    let relaxed: Cluster;
    let relaxed_table;
    let loose = if has_denies {
        let mut without = cluster.clone();
        for p in &mut without.policies {
            p.rules.retain(|r| r.action == Action::Allow);
        }
        relaxed = without;
        // Judged on the same segments: without the deny rules' prefixes
        // the relaxed cluster's own would be coarser, never finer.
        relaxed_table = Table::with_segments(&relaxed, segments.clone());
        &relaxed_table
    } else {
        &strict
    };
    let (n, m) = (cluster.endpoints.len(), cluster.nodes.len());
    // Both tables group endpoints alike: dropping rules changes no class.
    debug_assert!((0..n).all(|e| strict.class_of(e) == loose.class_of(e)));
    let classes = strict.classes();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for e in 0..n {
        members[strict.class_of(e)].push(e);
    }
    // A class's first endpoint stands for the class towards segments,
    // whose rows depend on nothing else (not on the endpoint's node).
    let rep = |c: usize| At::Endpoint(members[c][0]);

    // Edges are interned; each pair of allowed ids (with and without
    // denies) is turned into edges once, and each pair of classes (or of
    // a class and a segment) looked up once.
    let mut interned = Interned::default();
    // The pair of `a` and `b`; `None` where it has no edge.
    let pair_of = |interned: &mut Interned, a: At, b: At| match (strict.allowed_id(a, b), loose.allowed_id(a, b)) {
        (Some(with), Some(without)) => {
            Some(interned.pair(&strict, loose, with, without)).filter(|&p| !interned.pairs[p].is_empty())
        }
        _ => None,
    };
    // Every edge between parties: endpoints, nodes (after the endpoints),
    // then outside nodes (after the nodes, by group).
    let mut edges: Vec<(usize, usize, usize)> = Vec::new();
    for cx in 0..classes {
        for cy in 0..classes {
            let (x, y) = (members[cx][0], members[cy].iter().copied().find(|&y| y != members[cx][0]));
            let Some(pair) = y.and_then(|y| pair_of(&mut interned, At::Endpoint(x), At::Endpoint(y))) else { continue };
            for &x in &members[cx] {
                edges.extend(members[cy].iter().filter(|&&y| y != x).map(|&y| (x, y, pair)));
            }
        }
    }
    for e in 0..n {
        for node in 0..m {
            if let Some(pair) = pair_of(&mut interned, At::Endpoint(e), At::Node(node)) {
                edges.push((e, n + node, pair));
            }
            if let Some(pair) = pair_of(&mut interned, At::Node(node), At::Endpoint(e)) {
                edges.push((n + node, e, pair));
            }
        }
    }

    // Outside segments with the same edges become one node. Endpoints of
    // one class have the same edges with a segment, so a segment's edges
    // are told by its column: per class, the edges to the segment and
    // from it (nodes have none with segments). Each distinct column is
    // kept once, with its group's segments.
    let mut lists = Lists::default();
    let mut columns: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for k in 0..segments.len() {
        let mut column = Vec::with_capacity(2 * classes);
        for c in 0..classes {
            let to = pair_of(&mut interned, rep(c), At::Segment(k));
            let from = pair_of(&mut interned, At::Segment(k), rep(c));
            column.push(lists.of(&interned, to));
            column.push(lists.of(&interned, from));
        }
        if column.iter().all(|&l| l == Lists::NONE) {
            continue;
        }
        let next = groups.len();
        let g = *columns.entry(column).or_insert(next);
        if g == next {
            groups.push(Vec::new());
        }
        groups[g].push(k);
    }
    // Numbered by first segment, so in the order of their ranges.
    let mut group_columns: Vec<Vec<u32>> = vec![Vec::new(); groups.len()];
    for (column, g) in columns {
        group_columns[g] = column;
    }
    let mut graph = ConnectivityGraph::new();
    let mut index: Vec<NodeIndex> = Vec::with_capacity(n);
    for e in &cluster.endpoints {
        let label = match &e.kind {
            EndpointKind::Pod => e.name.clone(),
            EndpointKind::Workload(kind) => format!("{} [{kind}]", e.name),
        };
        index.push(graph.add_node(GraphNode::Endpoint {
            namespace: e.namespace.clone(),
            name: e.display_name(),
            label,
        }));
    }
    for node in &cluster.nodes {
        index.push(graph.add_node(GraphNode::Node { name: node.name.clone() }));
    }
    // A segment without edges is drawn nowhere.
    let endpoints = cluster.endpoints.len();
    for (group, column) in groups.iter().zip(&group_columns) {
        let ranges = group.iter().map(|&k| segments[k]).collect();
        let outside = graph.add_node(GraphNode::Outside { ranges });
        for (e, &vertex) in index.iter().enumerate().take(endpoints) {
            let c = strict.class_of(e);
            for &edge in lists.edges(column[2 * c]) {
                graph.add_edge(vertex, outside, interned.edges[edge as usize].clone());
            }
            for &edge in lists.edges(column[2 * c + 1]) {
                graph.add_edge(outside, vertex, interned.edges[edge as usize].clone());
            }
        }
    }
    for (s, d, pair) in edges {
        for &edge in &interned.pairs[pair] {
            graph.add_edge(index[s], index[d], interned.edges[edge as usize].clone());
        }
    }
    graph
}

/// A range as a CIDR when it is one (`10.0.0.0/8`), else `first - last`.
pub fn range_text(first: IpAddr, last: IpAddr) -> String {
    let (lo, hi) = (to_u128(first), to_u128(last));
    let bits: u32 = if first.is_ipv6() { 128 } else { 32 };
    let size = hi.wrapping_sub(lo).wrapping_add(1);
    // The whole IPv6 space has size 2^128, which wraps to 0.
    let host_bits = if size == 0 { 128 } else { size.trailing_zeros() };
    let exact = (size == 0 || size.is_power_of_two()) && (host_bits >= 128 || lo & ((1u128 << host_bits) - 1) == 0);
    if exact {
        format!("{}/{}", from_u128(lo, first.is_ipv6()), bits - host_bits.min(bits))
    } else {
        format!("{first} - {last}")
    }
}

/// How an outside node is labelled: its ranges, at most four lines.
fn outside_label(ranges: &[(IpAddr, IpAddr)]) -> String {
    let mut lines: Vec<String> = ranges.iter().take(4).map(|&(a, b)| range_text(a, b)).collect();
    if ranges.len() > 4 {
        lines.truncate(3);
        lines.push(format!("(+{} more ranges)", ranges.len() - 3));
    }
    format!("outside\n{}", lines.join("\n"))
}

/// A DOT quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

fn node_id(node: &GraphNode) -> String {
    match node {
        GraphNode::Endpoint { name, .. } => name.clone(),
        GraphNode::Node { name } => format!("node:{name}"),
        GraphNode::Outside { ranges } => format!("outside:{}", range_text(ranges[0].0, ranges[0].1)),
    }
}

/// Graphviz DOT: namespaces as clusters, the cluster's nodes in one,
/// outside addresses in their own cluster, allowed edges solid, edges a deny rule blocks dashed red. An
/// endpoint with the same edge to every outside node is drawn with one
/// edge to the outside cluster's border.
pub fn to_dot(graph: &ConnectivityGraph) -> String {
    let mut out = String::new();
    out.push_str("digraph policyc {\n");
    out.push_str("  graph [rankdir=LR, newrank=true, compound=true, fontname=\"Helvetica\", fontsize=12, nodesep=0.3, ranksep=1.2];\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", fontname=\"Helvetica\", fontsize=11];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9, color=\"#3b6ea8\"];\n");
    let mut by_namespace: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut outside: Vec<&GraphNode> = Vec::new();
    let mut nodes: Vec<&str> = Vec::new();
    for node in graph.node_weights() {
        match node {
            GraphNode::Endpoint { namespace, name, label } => {
                by_namespace.entry(namespace).or_default().push((name, label))
            }
            GraphNode::Node { name } => nodes.push(name),
            GraphNode::Outside { .. } => outside.push(node),
        }
    }
    for (ns, nodes) in &by_namespace {
        let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_ns_{ns}")));
        let _ = writeln!(out, "    label={}; style=\"rounded\"; color=\"#9aa5b1\";", quote(&format!("namespace {ns}")));
        for (name, label) in nodes {
            let _ = writeln!(out, "    {} [label={}];", quote(name), quote(label));
        }
        out.push_str("  }\n");
    }
    if !nodes.is_empty() {
        out.push_str("  subgraph \"cluster_nodes\" {\n");
        out.push_str("    label=\"nodes\"; style=\"rounded\"; color=\"#9aa5b1\";\n");
        for name in nodes {
            let _ = writeln!(
                out,
                "    {} [label={}, shape=box3d, fillcolor=\"#fbf3e6\"];",
                quote(&format!("node:{name}")),
                quote(name)
            );
        }
        out.push_str("  }\n");
    }
    if !outside.is_empty() {
        out.push_str("  subgraph \"cluster_outside\" {\n");
        out.push_str("    label=\"outside the cluster\"; style=\"dashed\"; color=\"#9aa5b1\";\n");
        for node in outside {
            if let GraphNode::Outside { ranges } = node {
                let _ = writeln!(
                    out,
                    "    {} [label={}, shape=ellipse, fillcolor=\"#f5f5f5\"];",
                    quote(&node_id(node)),
                    quote(&outside_label(ranges))
                );
            }
        }
        out.push_str("  }\n");
    }
    // An endpoint with the same edge to every outside node gets one edge
    // to the "outside the cluster" box instead (`lhead`/`ltail`).
    let outside_nodes: Vec<NodeIndex> =
        graph.node_indices().filter(|&i| matches!(graph[i], GraphNode::Outside { .. })).collect();
    let mut to_outside: BTreeMap<(NodeIndex, bool, &GraphEdge), Vec<NodeIndex>> = BTreeMap::new();
    for e in graph.edge_indices() {
        let Some((a, b)) = graph.edge_endpoints(e) else { continue };
        match (&graph[a], &graph[b]) {
            (GraphNode::Endpoint { .. }, GraphNode::Outside { .. }) => {
                to_outside.entry((a, true, &graph[e])).or_default().push(b)
            }
            (GraphNode::Outside { .. }, GraphNode::Endpoint { .. }) => {
                to_outside.entry((b, false, &graph[e])).or_default().push(a)
            }
            _ => {}
        }
    }
    let whole_outside: std::collections::BTreeSet<(NodeIndex, bool, &GraphEdge)> = to_outside
        .into_iter()
        .filter(|(_, nodes)| outside_nodes.len() > 1 && nodes.len() == outside_nodes.len())
        .map(|(key, _)| key)
        .collect();
    let mut lines: Vec<String> = Vec::new();
    for e in graph.edge_indices() {
        let Some((a, b)) = graph.edge_endpoints(e) else { continue };
        let edge = &graph[e];
        let mut attributes = Vec::new();
        let (from_endpoint, to_endpoint) =
            (matches!(graph[a], GraphNode::Endpoint { .. }), matches!(graph[b], GraphNode::Endpoint { .. }));
        let (from_outside, to_outside) =
            (matches!(graph[a], GraphNode::Outside { .. }), matches!(graph[b], GraphNode::Outside { .. }));
        if from_endpoint && to_outside && whole_outside.contains(&(a, true, edge)) {
            if b != outside_nodes[0] {
                continue;
            }
            attributes.push("lhead=\"cluster_outside\"".to_string());
        }
        if from_outside && to_endpoint && whole_outside.contains(&(b, false, edge)) {
            if a != outside_nodes[0] {
                continue;
            }
            attributes.push("ltail=\"cluster_outside\"".to_string());
        }
        let label = edge.items.join("\n");
        match edge.kind {
            EdgeKind::Allowed => attributes.insert(0, format!("label={}", quote(&label))),
            EdgeKind::Denied => {
                attributes.insert(0, format!("label={}", quote(&format!("deny {label}"))));
                attributes.push("style=dashed, color=\"#c0392b\", fontcolor=\"#c0392b\"".to_string());
            }
        }
        lines.push(format!(
            "  {} -> {} [{}];",
            quote(&node_id(&graph[a])),
            quote(&node_id(&graph[b])),
            attributes.join(", ")
        ));
    }
    lines.sort();
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_print_as_cidrs_when_they_are() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(range_text(ip("10.0.0.0"), ip("10.255.255.255")), "10.0.0.0/8");
        assert_eq!(range_text(ip("0.0.0.0"), ip("255.255.255.255")), "0.0.0.0/0");
        assert_eq!(range_text(ip("169.254.169.254"), ip("169.254.169.254")), "169.254.169.254/32");
        assert_eq!(range_text(ip("11.0.0.0"), ip("169.253.255.255")), "11.0.0.0 - 169.253.255.255");
        assert_eq!(range_text(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), "::/0");
    }

    #[test]
    fn subtracts_port_ranges() {
        let r = |lo, hi| PortRange { lo, hi };
        assert_eq!(subtract(&[r(9100, 9110)], &[r(9100, 9108), r(9110, 9110)]), [r(9109, 9109)]);
        assert_eq!(subtract(&[r(1, 65535)], &[]), [r(1, 65535)]);
        assert_eq!(subtract(&[r(1, 10)], &[r(1, 10)]), []);
    }
}
