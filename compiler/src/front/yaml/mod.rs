//! A YAML (and so JSON) reader that keeps the line and column of every
//! node, built on `yaml-rust2`'s event parser: `serde_yaml` loses positions
//! after parsing, and diagnostics must point at the offending line. Texts
//! in the plain block style most manifests are written in take a faster
//! path ([`block`]) to the same nodes.
//!
//! Texts are untrusted: nesting is bounded ([`MAX_DEPTH`]), aliases expand
//! only in proportion to their document ([`alias`]), and what Kubernetes
//! would refuse (duplicate keys, tags outside the core schema, a `%YAML`
//! directive other than 1.x) is reported ([`checks`], [`tags`]).

mod alias;
mod block;
mod checks;
mod events;
pub mod report;
mod tags;
pub mod utf8;

use crate::diag::Code;

/// How deeply collections may nest. Manifests nest a dozen levels; every
/// consumer of the nodes may then recurse without fear for its stack.
pub const MAX_DEPTH: usize = 200;

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
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

/// What stopped the reading of a stream (a syntax error or a limit), with
/// where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// [`crate::diag::codes::YAML_SYNTAX`], or the code of the limit reached.
    pub code: Code,
    /// The parser's message.
    pub message: String,
    /// Where it stopped.
    pub pos: Pos,
    /// How many documents were read completely before the error.
    pub documents_before: usize,
}

/// Something about a stream that did not stop its reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it is.
    pub code: Code,
    /// Where.
    pub pos: Pos,
    /// Lower-case message.
    pub message: String,
    /// The document it is in, from 0.
    pub document: usize,
}

/// A stream read: its documents, what stopped the reading if anything, and
/// findings about what was read.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The documents read completely.
    pub documents: Vec<Document>,
    /// What stopped the reading, if it stopped before the end.
    pub error: Option<SyntaxError>,
    /// Findings, in document and position order.
    pub findings: Vec<Finding>,
}

/// Reads every document of `text`, with what it finds about them.
pub fn parse(text: &str) -> Parsed {
    let (documents, error, mut findings) = match block::parse(text) {
        Some(documents) => (documents, None, Vec::new()),
        None => events::parse(text),
    };
    findings.extend(checks::version_directives(text));
    findings.extend(checks::duplicate_keys(&documents));
    findings.sort_by_key(|f| (f.document, f.pos));
    Parsed { documents, error, findings }
}

/// Parses every document of `text`. Documents before a syntax error are
/// returned along with it.
pub fn parse_stream(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    match block::parse(text) {
        Some(documents) => (documents, None),
        None => {
            let (documents, error, _) = events::parse(text);
            (documents, error)
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
