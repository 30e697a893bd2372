//! A YAML (and so JSON) reader that keeps the line and column of every
//! node, built on `yaml-rust2`'s event parser: `serde_yaml` loses positions
//! after parsing, and diagnostics must point at the offending line. Texts
//! in the plain block style most manifests are written in take a faster
//! path ([`block`]) to the same nodes.

mod block;

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos { line: m.line() as u32, col: m.col() as u32 + 1 }
    }
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (any quoted scalar, or a plain one that is no other type).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

/// A value with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it starts.
    pub pos: Pos,
}

impl Node {
    /// A short name of the value's type, for "expected X, found Y".
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar rendered as text (numbers and booleans as written).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// A document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The document's root node.
    pub root: Node,
}

/// A syntax error, with where the parser stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// The parser's message.
    pub message: String,
    /// Where it stopped.
    pub pos: Pos,
    /// How many documents were read completely before the error.
    pub documents_before: usize,
}

/// Parses every document of `text`. Documents before a syntax error are
/// returned along with it.
pub fn parse_stream(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    match block::parse(text) {
        Some(documents) => (documents, None),
        None => parse_events(text),
    }
}

/// [`parse_stream`] through `yaml-rust2`'s events, for any text.
fn parse_events(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let result = parser.load(&mut builder, true);
    let error = result.err().map(|e| SyntaxError {
        message: e.info().to_string(),
        pos: Pos::from_marker(e.marker()),
        documents_before: builder.documents.len(),
    });
    (builder.documents, error)
}

/// Builds nodes from parser events.
#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    /// Open collections: the node being filled and, for mappings, a key
    /// waiting for its value.
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: HashMap<usize, Node>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(Document { root: node }),
            Some((parent, pending_key, _)) => match &mut parent.value {
                Value::Seq(items) => items.push(node),
                Value::Map(entries) => match pending_key.take() {
                    Some(key) => entries.push((key, node)),
                    None => {
                        // The parser marks a block mapping where its first
                        // key's `:` is; the mapping starts at that key.
                        if entries.is_empty() && node.pos < parent.pos {
                            parent.pos = node.pos;
                        }
                        *pending_key = Some(node)
                    }
                },
                _ => unreachable!("only collections are pushed on the stack"),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain { plain_scalar(text) } else { Value::Str(text) };
                self.push_value(Node { value, pos }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push((Node { value: Value::Seq(Vec::new()), pos }, None, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push((Node { value: Value::Map(Vec::new()), pos }, None, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _, anchor)) = self.stack.pop() {
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node { value: Value::Null, pos });
                self.push_value(node, 0);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
/// `text` is owned (`yaml-rust2`'s events) or borrowed (the fast path's
/// lines), so that only a string value is copied into a new allocation.
fn plain_scalar<S: AsRef<str> + Into<String>>(owned: S) -> Value {
    let text = owned.as_ref();
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    let looks_numeric = text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(owned.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let (docs, err) = parse_stream("a: 1\nb:\n  - 'x'\n  - true\n---\n{\"c\": null}\n");
        assert!(err.is_none());
        assert_eq!(docs.len(), 2);
        let b = docs[0].root.get("b").unwrap();
        assert_eq!(b.pos.line, 3);
        let Value::Seq(items) = &b.value else { panic!() };
        assert_eq!(items[0].value, Value::Str("x".into()));
        assert_eq!(items[1].value, Value::Bool(true));
        assert_eq!(docs[1].root.get("c").unwrap().value, Value::Null);
        assert_eq!(docs[0].root.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        // Mappings start at their first key (block) or their `{` (flow).
        assert_eq!(docs[0].root.pos, Pos { line: 1, col: 1 });
        assert_eq!(docs[1].root.pos, Pos { line: 6, col: 1 });
        let (docs, _) = parse_stream(
            "spec:
  podSelector:
    app: x
",
        );
        let selector = docs[0].root.get("spec").unwrap();
        assert_eq!(selector.pos, Pos { line: 2, col: 3 });
        assert_eq!(selector.get("podSelector").unwrap().pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn reports_syntax_errors_after_good_documents() {
        let (docs, err) = parse_stream("a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs.len(), 1);
        let err = err.unwrap();
        assert_eq!(err.documents_before, 1);
        assert!(err.pos.line >= 3);
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let (docs, _) = parse_stream("port: \"80\"\nn: 80\n");
        assert_eq!(docs[0].root.get("port").unwrap().value, Value::Str("80".into()));
        assert_eq!(docs[0].root.get("n").unwrap().value, Value::Int(80));
    }
}
