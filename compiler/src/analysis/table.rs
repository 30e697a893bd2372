//! The connectivity table computed per class ([`crate::analysis::engine`])
//! and written row by row as it is produced, in the order and format of
//! [`crate::analysis::connectivity::to_table`] and
//! [`crate::analysis::connectivity::to_json`], so that its memory grows
//! with the number of classes, not with the number of rows.

use crate::analysis::connectivity::{l7_parser, pad, peer_name, Allowed, Row, Side};
use crate::analysis::engine::{Engine, RunsId};
use crate::analysis::fast_hash::FastMap;
use policyc_ir::cluster::Cluster;
use policyc_ir::ids::EndpointId;
use policyc_ir::protocol::{Direction, PortRange};
use policyc_ir::selector::LabelSelector;
use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;

/// A peer of the table, with what its rows depend on.
#[derive(Clone, Copy, Debug)]
enum Listed {
    /// An endpoint, its class and its node (index into `Cluster::nodes`).
    Endpoint(EndpointId, usize, Option<usize>),
    /// A node.
    Node(usize),
    /// An outside segment.
    Segment(usize),
}

/// A peer of the table by position: an endpoint or a node (indices into
/// the cluster's lists), or an outside segment (into [`Table::segments`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// An endpoint.
    Endpoint(usize),
    /// A node.
    Node(usize),
    /// An outside segment.
    Segment(usize),
}

/// Every row of the connectivity table, ready to be written.
pub struct Table<'a> {
    cluster: &'a Cluster,
    /// Peers sorted by name: name, peer.
    peers: Vec<(String, Listed)>,
    classes: usize,
    segments: Vec<(IpAddr, IpAddr)>,
    /// What each allowed id stands for.
    allowed: Vec<Allowed>,
    /// Per (class, class): the allowed id between their endpoints.
    between: Vec<u32>,
    /// Per (class, segment): from the class, to the class.
    to_segment: Vec<u32>,
    from_segment: Vec<u32>,
    /// Per (class, node class, local node or not): to the node, from the
    /// node.
    to_node: Vec<u32>,
    from_node: Vec<u32>,
    /// Per node: its node class.
    node_class: Vec<usize>,
    /// Per endpoint: its class and node.
    endpoint_class: Vec<(usize, Option<usize>)>,
    /// The number of node classes, twice (local and remote).
    node_keys: usize,
}

/// Interns what is allowed for a pair of runs.
struct AllowedCache<'e, 'a> {
    engine: &'e Engine<'a>,
    ids: FastMap<(Option<RunsId>, Option<RunsId>), u32>,
    /// The same for one side only, by runs id: egress, ingress.
    one_side: [Vec<u32>; 2],
    values: Vec<Allowed>,
    by_value: HashMap<Allowed, u32>,
}

impl AllowedCache<'_, '_> {
    fn get(&mut self, egress: Option<RunsId>, ingress: Option<RunsId>) -> u32 {
        let side = match (egress, ingress) {
            (Some(r), None) => Some((0, r as usize)),
            (None, Some(r)) => Some((1, r as usize)),
            _ => None,
        };
        if let Some((k, r)) = side {
            if let Some(&id) = self.one_side[k].get(r).filter(|id| **id != u32::MAX) {
                return id;
            }
        }
        if let Some(&id) = self.ids.get(&(egress, ingress)) {
            return id;
        }
        let allowed = allowed_of(self.engine, egress, ingress);
        let n = self.values.len() as u32;
        let id = *self.by_value.entry(allowed.clone()).or_insert(n);
        if id == n {
            self.values.push(allowed);
        }
        self.ids.insert((egress, ingress), id);
        if let Some((k, r)) = side {
            if self.one_side[k].len() <= r {
                self.one_side[k].resize(r + 1, u32::MAX);
            }
            self.one_side[k][r] = id;
        }
        id
    }
}

/// What passes both decisions, with the parts the L7 proxy handles, as
/// [`crate::analysis::connectivity::allowed_between`] computes it.
pub fn allowed_of(engine: &Engine, egress: Option<RunsId>, ingress: Option<RunsId>) -> Allowed {
    let mut allowed = Allowed::default();
    for (pi, range, e, i) in engine.pieces(egress, ingress) {
        if !(engine.passes(e) && engine.passes(i)) {
            continue;
        }
        let ranges = &mut allowed.ranges[pi];
        match ranges.last_mut() {
            Some(last) if u32::from(last.hi) + 1 == u32::from(range.lo) => last.hi = range.hi,
            _ => ranges.push(range),
        }
        let decisions = [e.map(|d| engine.decision(d)), i.map(|d| engine.decision(d))];
        if let Some(parser) = l7_parser(engine.cluster(), decisions) {
            let l7 = &mut allowed.l7[pi];
            match l7.last_mut() {
                Some((last, p)) if u32::from(last.hi) + 1 == u32::from(range.lo) && *p == parser => last.hi = range.hi,
                _ => l7.push((PortRange { lo: range.lo, hi: range.hi }, parser)),
            }
        }
    }
    allowed
}

impl<'a> Table<'a> {
    /// Judges `cluster` per class (outside segments as
    /// [`crate::analysis::connectivity::address_segments`] cuts them).
    pub fn new(cluster: &'a Cluster, externals: &[IpAddr]) -> Self {
        Self::with_engine(cluster, Engine::new(cluster, externals))
    }

    /// Judges `cluster` per class on these outside segments (as
    /// [`Engine::with_segments`] takes them).
    pub fn with_segments(cluster: &'a Cluster, segments: Vec<(IpAddr, IpAddr)>) -> Self {
        Self::with_engine(cluster, Engine::with_segments(cluster, segments))
    }

    fn with_engine(cluster: &'a Cluster, mut engine: Engine<'a>) -> Self {
        engine.fill();
        let (classes, segments) = (engine.classes(), engine.segments().len());
        let node_keys = 2 * engine.node_classes();
        let table = |dir: Direction| -> Vec<&[RunsId]> {
            (0..classes).map(|c| engine.table_of(c, dir).expect("every class is judged")).collect()
        };
        let (egress, ingress) = (table(Direction::Egress), table(Direction::Ingress));
        let mut cache = AllowedCache {
            engine: &engine,
            ids: FastMap::default(),
            one_side: Default::default(),
            values: Vec::new(),
            by_value: HashMap::new(),
        };
        let mut between = Vec::with_capacity(classes * classes);
        for s in 0..classes {
            for t in 0..classes {
                between.push(cache.get(Some(egress[s][t]), Some(ingress[t][s])));
            }
        }
        let mut to_segment = Vec::with_capacity(classes * segments);
        let mut from_segment = Vec::with_capacity(classes * segments);
        let mut to_node = Vec::with_capacity(classes * node_keys);
        let mut from_node = Vec::with_capacity(classes * node_keys);
        for c in 0..classes {
            let (egress, ingress) = (egress[c], ingress[c]);
            for s in classes..classes + segments {
                to_segment.push(cache.get(Some(egress[s]), None));
                from_segment.push(cache.get(None, Some(ingress[s])));
            }
            for n in classes + segments..classes + segments + node_keys {
                to_node.push(cache.get(Some(egress[n]), None));
                from_node.push(cache.get(None, Some(ingress[n])));
            }
        }
        let allowed = cache.values;
        let node_index =
            |name: &Option<String>| name.as_ref().and_then(|n| cluster.nodes.iter().position(|x| &x.name == n));
        let mut peers: Vec<(String, Listed)> = cluster
            .endpoints_with_ids()
            .map(|(i, e)| (e.display_name(), Listed::Endpoint(i, engine.class_of(i), node_index(&e.node))))
            .collect();
        peers
            .extend(cluster.nodes.iter().enumerate().map(|(n, node)| (format!("node:{}", node.name), Listed::Node(n))));
        let segment_list = engine.segments().to_vec();
        peers.extend(
            segment_list
                .iter()
                .enumerate()
                .map(|(s, &(a, b))| (peer_name(cluster, &Side::Addresses(a, b)), Listed::Segment(s))),
        );
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        let node_class = (0..cluster.nodes.len()).map(|n| engine.node_class_of(n)).collect();
        let endpoint_class =
            cluster.endpoints_with_ids().map(|(i, e)| (engine.class_of(i), node_index(&e.node))).collect();
        Table {
            cluster,
            peers,
            classes,
            segments: segment_list,
            allowed,
            between,
            to_segment,
            from_segment,
            to_node,
            from_node,
            node_class,
            endpoint_class,
            node_keys,
        }
    }

    /// The outside segments, in address order.
    pub fn segments(&self) -> &[(IpAddr, IpAddr)] {
        &self.segments
    }

    /// The id of what may flow from `src` to `dst` (see
    /// [`Table::allowed`]); `None` between two peers that are not
    /// endpoints, or from an endpoint to itself.
    pub fn allowed_id(&self, src: At, dst: At) -> Option<u32> {
        let (classes, segments) = (self.classes, self.segments.len());
        let node_key = |c: usize, node: Option<usize>, n: usize| {
            c * self.node_keys + 2 * self.node_class[n] + usize::from(node != Some(n))
        };
        Some(match (src, dst) {
            (At::Endpoint(s), At::Endpoint(t)) if s != t => {
                self.between[self.endpoint_class[s].0 * classes + self.endpoint_class[t].0]
            }
            (At::Endpoint(s), At::Node(n)) => {
                let (c, node) = self.endpoint_class[s];
                self.to_node[node_key(c, node, n)]
            }
            (At::Node(n), At::Endpoint(t)) => {
                let (c, node) = self.endpoint_class[t];
                self.from_node[node_key(c, node, n)]
            }
            (At::Endpoint(s), At::Segment(k)) => self.to_segment[self.endpoint_class[s].0 * segments + k],
            (At::Segment(k), At::Endpoint(t)) => self.from_segment[self.endpoint_class[t].0 * segments + k],
            _ => return None,
        })
    }

    /// The class of endpoint `e` (an index into `Cluster::endpoints`):
    /// two endpoints of one class have the same rows towards every peer.
    pub fn class_of(&self, e: usize) -> usize {
        self.endpoint_class[e].0
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// What allowed id `id` stands for.
    pub fn allowed(&self, id: u32) -> &Allowed {
        &self.allowed[id as usize]
    }

    /// The number of distinct allowed values.
    pub fn allowed_count(&self) -> usize {
        self.allowed.len()
    }

    /// Calls `f` with the sorted indices (into the sorted peers) of every
    /// row's source and destination and its allowed id, in output order;
    /// `keep` filters on the two peers' indices.
    fn for_each_row(&self, keep: &dyn Fn(usize, usize) -> bool, f: &mut dyn FnMut(usize, usize, u32)) {
        let (classes, segments) = (self.classes, self.segments.len());
        let node_key = |c: usize, node: Option<usize>, n: usize| {
            c * self.node_keys + 2 * self.node_class[n] + usize::from(node != Some(n))
        };
        for (si, (_, src)) in self.peers.iter().enumerate() {
            for (di, (_, dst)) in self.peers.iter().enumerate() {
                let id = match (*src, *dst) {
                    (Listed::Endpoint(s, cs, _), Listed::Endpoint(t, ct, _)) if s != t => {
                        self.between[cs * classes + ct]
                    }
                    (Listed::Endpoint(_, cs, node), Listed::Node(n)) => self.to_node[node_key(cs, node, n)],
                    (Listed::Endpoint(_, cs, _), Listed::Segment(s)) => self.to_segment[cs * segments + s],
                    (Listed::Node(n), Listed::Endpoint(_, ct, node)) => self.from_node[node_key(ct, node, n)],
                    (Listed::Segment(s), Listed::Endpoint(_, ct, _)) => self.from_segment[ct * segments + s],
                    _ => continue,
                };
                if !self.allowed[id as usize].is_empty() && keep(si, di) {
                    f(si, di, id);
                }
            }
        }
    }

    /// A filter keeping rows whose source or destination endpoint matches
    /// `select` (every row without one).
    fn keep(&self, select: Option<&LabelSelector>) -> impl Fn(usize, usize) -> bool {
        let chosen: Vec<bool> = self
            .peers
            .iter()
            .map(|(_, p)| match (select, p) {
                (None, _) => true,
                (Some(sel), Listed::Endpoint(i, ..)) => sel.matches(&self.cluster.endpoint(*i).labels),
                (Some(_), _) => false,
            })
            .collect();
        move |s, d| chosen[s] || chosen[d]
    }

    /// The rows (only where few: every row is a value).
    pub fn rows(&self) -> Vec<Row> {
        let side = |l: Listed| match l {
            Listed::Endpoint(i, ..) => Side::Endpoint(i),
            Listed::Node(n) => Side::Node(n),
            Listed::Segment(s) => Side::Addresses(self.segments[s].0, self.segments[s].1),
        };
        let mut rows = Vec::new();
        self.for_each_row(&|_, _| true, &mut |s, d, id| {
            rows.push(Row {
                src: side(self.peers[s].1),
                dst: side(self.peers[d].1),
                allowed: self.allowed[id as usize].clone(),
            })
        });
        rows
    }

    /// Writes the text table of the rows `select` keeps, as
    /// [`crate::analysis::connectivity::to_table`] renders it.
    pub fn write_table(&self, select: Option<&LabelSelector>, out: &mut dyn Write) -> io::Result<()> {
        let keep = self.keep(select);
        let (mut w_src, mut w_dst) = (3, 3);
        self.for_each_row(&keep, &mut |s, d, _| {
            w_src = w_src.max(self.peers[s].0.len());
            w_dst = w_dst.max(self.peers[d].0.len());
        });
        let summaries: Vec<String> = self.allowed.iter().map(|a| a.summary().join(",")).collect();
        let mut line = String::new();
        let mut result = Ok(());
        let mut write_line = |line: &mut String, s: &str, arrow: &str, d: &str, a: &str| {
            line.clear();
            pad(line, s, w_src);
            line.push(' ');
            line.push_str(arrow);
            line.push(' ');
            pad(line, d, w_dst);
            line.push_str("  ");
            line.push_str(a);
            line.push('\n');
            if result.is_ok() {
                result = out.write_all(line.as_bytes());
            }
        };
        write_line(&mut line, "SRC", "  ", "DST", "ALLOWED");
        self.for_each_row(&keep, &mut |s, d, id| {
            write_line(&mut line, &self.peers[s].0, "->", &self.peers[d].0, &summaries[id as usize])
        });
        result
    }

    /// Writes the JSON array of the rows `select` keeps, as
    /// `serde_json::to_string_pretty` of
    /// [`crate::analysis::connectivity::to_json`] renders it, then the
    /// `tail` items (rows to Services) in the same array, and a newline.
    pub fn write_json(
        &self,
        select: Option<&LabelSelector>,
        tail: &[serde_json::Value],
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let keep = self.keep(select);
        // One row's pretty JSON with placeholders, indented as an element
        // of the array: the key order is serde_json's, whatever it is.
        let template =
            serde_json::to_string_pretty(&serde_json::json!({"src": "\u{1}", "dst": "\u{2}", "allowed": "\u{3}"}))
                .expect("JSON values serialize")
                .replace('\n', "\n  ");
        // Where each placeholder is, in the template's order: (position,
        // length, which).
        let mut order: Vec<(usize, usize, usize)> = ["\"\\u0001\"", "\"\\u0002\"", "\"\\u0003\""]
            .iter()
            .enumerate()
            .map(|(k, p)| (template.find(p).expect("placeholder written"), p.len(), k))
            .collect();
        order.sort();
        let names: Vec<String> =
            self.peers.iter().map(|(n, _)| serde_json::to_string(n).expect("strings serialize")).collect();
        let allowed: Vec<String> = self
            .allowed
            .iter()
            .map(|a| {
                let summary = a.summary();
                let value = if summary == ["all"] { serde_json::json!("all") } else { serde_json::json!(summary) };
                serde_json::to_string_pretty(&value).expect("JSON values serialize").replace('\n', "\n    ")
            })
            .collect();
        let mut result = out.write_all(b"[");
        let mut first = true;
        let mut item = String::new();
        self.for_each_row(&keep, &mut |s, d, id| {
            item.clear();
            item.push_str(if first { "\n  " } else { ",\n  " });
            first = false;
            let mut at = 0;
            for &(start, len, k) in &order {
                item.push_str(&template[at..start]);
                item.push_str(match k {
                    0 => &names[s],
                    1 => &names[d],
                    _ => &allowed[id as usize],
                });
                at = start + len;
            }
            item.push_str(&template[at..]);
            if result.is_ok() {
                result = out.write_all(item.as_bytes());
            }
        });
        result?;
        for value in tail {
            out.write_all(if first { b"\n  " } else { b",\n  " })?;
            first = false;
            let text = serde_json::to_string_pretty(value).expect("JSON values serialize").replace('\n', "\n  ");
            out.write_all(text.as_bytes())?;
        }
        out.write_all(if first { b"]\n" } else { b"\n]\n" })
    }
}
