//! Where a warning points: the line and column of the field it is about;
//! also where `explain`, `diff` and `trace` cite a deciding rule
//! ([`crate::analysis::reason`]).
//!
//! Lowered policies keep field paths (`spec.ingress[0]`), not positions:
//! positions stay out of the IR so that its dumps do not change with
//! whitespace. The front end does not keep the YAML trees either, since
//! only the few objects that warnings point into need them. So the files
//! that warnings point into are read again, once each and only when a
//! warning needs one: the same text gives the same tree, and the object is
//! the mapping at the position its location records (a document's root,
//! or an item of a `List`).

use crate::diag::render::Sources;
use crate::diag::Location;
use crate::front::yaml::{parse_stream, Document, Node, Pos, Value};
use std::cell::OnceCell;
use std::collections::BTreeMap;

/// The YAML trees of the input files, parsed on first use.
pub(crate) struct Trees<'a> {
    files: BTreeMap<&'a str, (&'a str, OnceCell<Vec<Document>>)>,
}

impl<'a> Trees<'a> {
    /// Trees of `sources`, none parsed yet.
    pub(crate) fn new(sources: &'a Sources) -> Trees<'a> {
        Trees { files: sources.iter().map(|(name, text)| (name.as_str(), (text.as_str(), OnceCell::new()))).collect() }
    }

    /// The object `location` names: the mapping at its position in its
    /// document.
    pub(super) fn object(&self, location: &Location) -> Option<&Node> {
        let (text, parsed) = self.files.get(location.file.as_deref()?)?;
        let documents = parsed.get_or_init(|| parse_stream(text).0);
        let root = &documents.get(location.document?)?.root;
        let pos = location.pos?;
        if root.pos == pos {
            return Some(root);
        }
        match &root.get("items")?.value {
            Value::Seq(items) => items.iter().find(|item| item.pos == pos),
            _ => None,
        }
    }

    /// The node at `path` (`spec.ingress[0].from[1]`) in the object
    /// `location` names.
    pub(super) fn node(&self, location: &Location, path: &str) -> Option<&Node> {
        resolve(self.object(location)?, path).map(|(_, node)| node)
    }

    /// Where a diagnostic about `path` in the object `location` names
    /// points: a field's key (`podSelector:`), a list item's first
    /// character, or the object's first key when `path` is not in the
    /// source. `None` when the object itself cannot be found.
    pub(crate) fn position(&self, location: &Location, path: Option<&str>) -> Option<Pos> {
        let object = self.object(location)?;
        let at =
            path.and_then(|path| resolve(object, path)).map(|(key, node)| key.map_or_else(|| start(node), |k| k.pos));
        Some(at.unwrap_or_else(|| start(object)))
    }
}

/// One step of a field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step<'p> {
    Field(&'p str),
    Index(usize),
}

/// The steps of `spec.ingress[0].from[1]`; `None` if it is not a path.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for segment in path.split('.') {
        let (name, mut rest) = segment.split_once('[').map_or((segment, ""), |(n, r)| (n, r));
        if name.is_empty() {
            return None;
        }
        out.push(Step::Field(name));
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            out.push(Step::Index(index.parse().ok()?));
            // Another index follows, or nothing.
            rest = match after.strip_prefix('[') {
                Some(next) if !next.is_empty() => next,
                _ if after.is_empty() => after,
                _ => return None,
            };
        }
    }
    Some(out)
}

/// The node at `path` below `node`, with the key node of the last step
/// when that step is a field.
fn resolve<'n>(node: &'n Node, path: &str) -> Option<(Option<&'n Node>, &'n Node)> {
    let mut key = None;
    let mut at = node;
    for step in steps(path)? {
        match (step, &at.value) {
            (Step::Field(name), Value::Map(entries)) => {
                let (k, v) = entries.iter().find(|(k, _)| k.as_str() == Some(name))?;
                (key, at) = (Some(k), v);
            }
            (Step::Index(i), Value::Seq(items)) => (key, at) = (None, items.get(i)?),
            _ => return None,
        }
    }
    Some((key, at))
}

/// Where `node` starts. The reader places a block mapping at the colon
/// after its first key; its first key is where it starts.
fn start(node: &Node) -> Pos {
    match &node.value {
        Value::Map(entries) => entries.first().map_or(node.pos, |(key, _)| node.pos.min(key.pos)),
        _ => node.pos,
    }
}

/// The first node below `node` (itself included; depth first, in source
/// order) for which `found(field, node)` holds, where `field` is the name
/// of the field that holds the node or its list; with its path, `node`
/// being at `path`.
pub(super) fn find<'n>(node: &'n Node, path: &str, found: &dyn Fn(&str, &Node) -> bool) -> Option<(String, &'n Node)> {
    fn walk<'n>(
        node: &'n Node,
        path: &str,
        field: &str,
        found: &dyn Fn(&str, &Node) -> bool,
    ) -> Option<(String, &'n Node)> {
        if found(field, node) {
            return Some((path.to_string(), node));
        }
        match &node.value {
            Value::Map(entries) => entries.iter().find_map(|(k, v)| {
                let name = k.as_str()?;
                walk(v, &format!("{path}.{name}"), name, found)
            }),
            Value::Seq(items) => {
                items.iter().enumerate().find_map(|(i, item)| walk(item, &format!("{path}[{i}]"), field, found))
            }
            _ => None,
        }
    }
    let field = path.rsplit('.').next().unwrap_or(path).split('[').next().unwrap_or("");
    walk(node, path, field, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
apiVersion: v1
kind: List
items:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    spec:
      endpointSelector: {}
      ingress:
        - fromEndpoints: [{matchLabels: {app: a}}]
          toPorts:
            - ports: [{port: http}]
";

    fn trees(sources: &Sources) -> Trees<'_> {
        Trees::new(sources)
    }

    #[test]
    fn paths_resolve_to_keys_and_items() {
        let sources = Sources::from([("f.yaml".to_string(), TEXT.to_string())]);
        let trees = trees(&sources);
        let (docs, _) = parse_stream(TEXT);
        let Value::Seq(items) = &docs[0].root.get("items").unwrap().value else { panic!() };
        let location =
            Location { file: Some("f.yaml".into()), document: Some(0), pos: Some(items[0].pos), ..Default::default() };
        let at = |path| trees.position(&location, Some(path)).unwrap();
        assert_eq!(at("spec.endpointSelector"), Pos { line: 7, col: 7 });
        assert_eq!(at("spec.ingress[0]"), Pos { line: 9, col: 11 });
        assert_eq!(at("spec.ingress[0].fromEndpoints[0]"), Pos { line: 9, col: 27 });
        assert_eq!(at("spec.ingress[0].toPorts[0].ports[0].port"), Pos { line: 11, col: 24 });
        // Not in the source, or not a path: the object's first key.
        assert_eq!(at("spec.egress[0]"), Pos { line: 4, col: 5 });
        assert_eq!(at("spec..x[a]"), Pos { line: 4, col: 5 });
        let rule = trees.node(&location, "spec.ingress[0]").unwrap();
        let port = find(rule, "spec.ingress[0]", &|field, n| field == "port" && n.as_str() == Some("http"));
        assert_eq!(port.map(|(path, _)| path).as_deref(), Some("spec.ingress[0].toPorts[0].ports[0].port"));
        // An object at no recorded position is not guessed.
        let elsewhere = Location { pos: Some(Pos { line: 2, col: 1 }), ..location };
        assert_eq!(trees.position(&elsewhere, Some("spec")), None);
    }

    #[test]
    fn steps_of_paths() {
        use Step::*;
        assert_eq!(steps("specs[1].ingress[0]"), Some(vec![Field("specs"), Index(1), Field("ingress"), Index(0)]));
        assert_eq!(steps("a[0][2].b"), Some(vec![Field("a"), Index(0), Index(2), Field("b")]));
        assert_eq!(steps("a[x]"), None);
        assert_eq!(steps("a[0]b"), None);
        assert_eq!(steps("a[0]["), None);
        assert_eq!(steps(""), None);
    }
}
