//! Where the parts of a decoded policy are written, kept beside the policy
//! and not inside it (as naga keeps spans beside its IR): an IR dump does
//! not change when whitespace does, and nothing parses the YAML again to
//! cite a rule or point a warning at a field.

use super::yaml::{Node, Pos, Value};
use policyc_ir::cidr::Cidr;
use policyc_ir::policy::Policy;
use std::sync::Arc;

/// A decoded policy with where its parts are written.
#[derive(Clone, Debug, PartialEq)]
pub struct SpannedPolicy {
    /// The policy.
    pub policy: Policy,
    /// Where its parts are written.
    pub spans: PolicySpans,
    /// Its `toServices` entries, which lowering resolves.
    pub services: Vec<crate::front::cilium::services::ServiceRef>,
}

/// Positions of one policy's parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySpans {
    /// Where its object starts (what a field not in the source points at).
    pub object: Pos,
    /// Where its spec is written: the `spec` key, or the `specs` item.
    pub spec: Option<Pos>,
    /// The key of its subject selector (`podSelector`, `endpointSelector`).
    pub subject: Option<Pos>,
    /// Per rule of the policy, in order.
    pub rules: Vec<RuleSpans>,
}

/// Where one rule and the parts warnings point at are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSpans {
    /// The first character of the rule's list item (of its `toPorts` entry
    /// for the part of a Cilium rule split off for that entry's L7 rules).
    pub pos: Pos,
    /// The peers, CIDRs and port names written in the source rule, in
    /// source order; shared by the parts a Cilium rule is split into.
    pub cited: Arc<[Cited]>,
}

/// A part of a rule that a warning may point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cited {
    /// Its field path (`spec.ingress[0].from[1]`).
    pub path: String,
    /// Where it is written: a field's key, a list item's first character.
    pub pos: Pos,
    /// What it is.
    pub what: CitedKind,
}

/// What a cited part of a rule is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CitedKind {
    /// An entry of a selector peer list (`fromEndpoints`, or an entry of a
    /// `NetworkPolicy`'s `from`/`to` without `ipBlock`).
    Selector,
    /// A block with a `cidr` (`ipBlock`, a `CIDRSet` entry) and the valid
    /// prefixes of its `except` list, each with its path and position.
    Block(Cidr, Vec<(Cidr, String, Pos)>),
    /// A prefix written as `fromCIDR` item or `cidr` field.
    Prefix(Cidr),
    /// An item of `fromEntities`/`toEntities`, as written.
    Entity(String),
    /// A `port` field written as a string (a port name).
    Port(String),
}

/// Where `node` starts. The reader places a block mapping at the colon
/// after its first key; its first key is where it starts.
pub fn start(node: &Node) -> Pos {
    match &node.value {
        Value::Map(entries) => entries.first().map_or(node.pos, |(key, _)| node.pos.min(key.pos)),
        _ => node.pos,
    }
}

/// The key `key` of mapping `node` and its value.
pub fn entry<'n>(node: &'n Node, key: &str) -> Option<(&'n Node, &'n Node)> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(k, v)| (k, v)),
        _ => None,
    }
}

/// Where the field `key` of mapping `node` is written (its key).
pub fn key_pos(node: &Node, key: &str) -> Option<Pos> {
    entry(node, key).map(|(k, _)| k.pos)
}

fn items(node: &Node) -> &[Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ => &[],
    }
}

/// The parts of the rule `node` (at `path`) that warnings point at, in
/// source order.
pub fn cite_rule(node: &Node, path: &str) -> Arc<[Cited]> {
    let mut out = Vec::new();
    let Value::Map(fields) = &node.value else { return Arc::from(out) };
    let cite = |out: &mut Vec<Cited>, path: String, pos: Pos, what: CitedKind| out.push(Cited { path, pos, what });
    let prefix = |node: &Node| node.as_str().and_then(|s| Cidr::parse_strict(s).ok());
    for (key, value) in fields {
        let Some(field) = key.as_str() else { continue };
        let list = |i: usize| format!("{path}.{field}[{i}]");
        match field {
            "fromEndpoints" | "toEndpoints" => {
                for (i, item) in items(value).iter().enumerate() {
                    cite(&mut out, list(i), start(item), CitedKind::Selector);
                }
            }
            "from" | "to" => {
                for (i, item) in items(value).iter().enumerate() {
                    match item.get("ipBlock") {
                        Some(block) => cite_block(&mut out, block, &format!("{}.ipBlock", list(i))),
                        None => cite(&mut out, list(i), start(item), CitedKind::Selector),
                    }
                }
            }
            "fromCIDR" | "toCIDR" => {
                for (i, item) in items(value).iter().enumerate() {
                    if let Some(cidr) = prefix(item) {
                        cite(&mut out, list(i), start(item), CitedKind::Prefix(cidr));
                    }
                }
            }
            "fromCIDRSet" | "toCIDRSet" => {
                for (i, item) in items(value).iter().enumerate() {
                    cite_block(&mut out, item, &list(i));
                }
            }
            "fromEntities" | "toEntities" => {
                for (i, item) in items(value).iter().enumerate() {
                    if let Some(name) = item.as_str() {
                        cite(&mut out, list(i), start(item), CitedKind::Entity(name.to_string()));
                    }
                }
            }
            "ports" => cite_ports(&mut out, value, &format!("{path}.ports")),
            "toPorts" => {
                for (i, item) in items(value).iter().enumerate() {
                    if let Some(ports) = item.get("ports") {
                        cite_ports(&mut out, ports, &format!("{}.ports", list(i)));
                    }
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|c| c.pos);
    Arc::from(out)
}

/// A block with a `cidr` (at `path`): the block, and its prefix.
fn cite_block(out: &mut Vec<Cited>, block: &Node, path: &str) {
    let Some((key, cidr)) = entry(block, "cidr") else { return };
    let Some(cidr) = cidr.as_str().and_then(|s| Cidr::parse_strict(s).ok()) else { return };
    let excepts = block.get("except").map(items).unwrap_or(&[]);
    let excepts = excepts
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let e = Cidr::parse_strict(item.as_str()?).ok()?;
            Some((e, format!("{path}.except[{i}]"), start(item)))
        })
        .collect();
    out.push(Cited { path: path.to_string(), pos: start(block), what: CitedKind::Block(cidr, excepts) });
    out.push(Cited { path: format!("{path}.cidr"), pos: key.pos, what: CitedKind::Prefix(cidr) });
}

/// The port names of a `ports` list at `path`.
fn cite_ports(out: &mut Vec<Cited>, ports: &Node, path: &str) {
    for (i, item) in items(ports).iter().enumerate() {
        if let Some((key, name)) = entry(item, "port") {
            if let Some(name) = name.as_str() {
                let what = CitedKind::Port(name.to_string());
                out.push(Cited { path: format!("{path}[{i}].port"), pos: key.pos, what });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::yaml::parse_stream;

    #[test]
    fn a_block_mapping_starts_at_its_first_key_and_a_flow_one_at_its_brace() {
        let (docs, _) = parse_stream("items:\n  - a: 1\n    b: 2\n  - {c: 3}\n");
        let Value::Seq(items) = &docs[0].root.get("items").unwrap().value else { panic!("a list") };
        assert_eq!(start(&items[0]), Pos { line: 2, col: 5 });
        assert_eq!(start(&items[1]), Pos { line: 4, col: 5 });
    }

    #[test]
    fn a_rule_cites_its_peers_and_port_names_in_source_order() {
        let text = "\
rule:
  toPorts:
    - ports: [{port: http}, {port: 80}]
  fromCIDRSet:
    - {cidr: 10.0.0.0/8, except: [bad, 10.1.0.0/16]}
  fromEntities: [world]
  fromEndpoints: [{}]
";
        let (docs, _) = parse_stream(text);
        let cited = cite_rule(docs[0].root.get("rule").unwrap(), "r");
        let got: Vec<(&str, u32, u32)> = cited.iter().map(|c| (c.path.as_str(), c.pos.line, c.pos.col)).collect();
        assert_eq!(
            got,
            [
                ("r.toPorts[0].ports[0].port", 3, 16),
                ("r.fromCIDRSet[0]", 5, 7),
                ("r.fromCIDRSet[0].cidr", 5, 8),
                ("r.fromEntities[0]", 6, 18),
                ("r.fromEndpoints[0]", 7, 19),
            ]
        );
        let CitedKind::Block(_, excepts) = &cited[1].what else { panic!("a block") };
        assert_eq!(
            excepts.iter().map(|(_, path, _)| path.as_str()).collect::<Vec<_>>(),
            ["r.fromCIDRSet[0].except[1]"]
        );
    }
}
