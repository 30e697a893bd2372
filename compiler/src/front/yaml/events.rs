//! Nodes from `yaml-rust2`'s events, for any text: the reader behind the
//! block fast path ([`super::block`]).
//!
//! The input is untrusted (policyc runs on pull requests), so the events
//! are pulled one at a time rather than through `Parser::load`, which
//! recurses once per nesting level and overflows the stack on a deep
//! enough text; the nesting depth is bounded ([`MAX_DEPTH`]) and aliases
//! may expand only in proportion to the document ([`AliasBudget`]).

use super::alias::AliasBudget;
use super::tags::{self, Resolved};
use super::{plain_scalar, Document, Finding, Node, Pos, SyntaxError, Value, MAX_DEPTH};
use crate::diag::codes;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

impl Pos {
    fn from_marker(m: &Marker) -> Pos {
        Pos { line: m.line() as u32, col: m.col() as u32 + 1 }
    }
}

/// What the events of `text` build: documents, the error that stopped the
/// reading (syntax or a limit), and findings that did not stop it.
pub(super) fn parse(text: &str) -> (Vec<Document>, Option<SyntaxError>, Vec<Finding>) {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let error = loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => break None,
            Ok((event, mark)) => {
                if let Err(stop) = builder.on_event(event, mark) {
                    break Some(stop);
                }
            }
            // The scanner has a nesting limit of its own for flow
            // collections, which it may reach before this reader's.
            Err(e) if e.info() == "recursion limit exceeded" => {
                let message = format!("collections are nested more than {MAX_DEPTH} levels deep");
                break Some(builder.stop(codes::NESTING_TOO_DEEP, Pos::from_marker(e.marker()), message));
            }
            Err(e) => break Some(builder.stop(codes::YAML_SYNTAX, Pos::from_marker(e.marker()), e.info().to_string())),
        }
    };
    (builder.documents, error, builder.findings)
}

/// An open collection: the node being filled, for mappings a key waiting
/// for its value, its anchor, how many nodes it holds so far and how many
/// levels of collections (itself included).
struct Open {
    node: Node,
    pending_key: Option<Node>,
    anchor: usize,
    size: u64,
    height: usize,
}

/// An anchored node, with what copying it costs: its size in nodes and its
/// height in levels of collections (an alias deep in a document may not
/// take it past [`MAX_DEPTH`] either).
struct Anchored {
    node: Node,
    size: u64,
    height: usize,
}

/// Builds nodes from parser events.
#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    findings: Vec<Finding>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Anchored>,
    budget: AliasBudget,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize, size: u64, height: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, Anchored { node: node.clone(), size, height });
        }
        let Some(open) = self.stack.last_mut() else {
            self.documents.push(Document { root: node });
            return;
        };
        open.size += size;
        open.height = open.height.max(height + 1);
        match &mut open.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match open.pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    // The parser marks a block mapping where its first
                    // key's `:` is; the mapping starts at that key.
                    if entries.is_empty() && node.pos < open.node.pos {
                        open.node.pos = node.pos;
                    }
                    open.pending_key = Some(node)
                }
            },
            _ => unreachable!("only collections are pushed on the stack"),
        }
    }

    fn open(&mut self, value: Value, pos: Pos, anchor: usize, tag: Option<Tag>) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.stop(
                codes::NESTING_TOO_DEEP,
                pos,
                format!("collections are nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let is_map = matches!(value, Value::Map(_));
        if let Some(tag) = tag {
            if let Some(finding) = tags::check_collection(&tag, is_map, pos, self.documents.len()) {
                self.findings.push(finding);
            }
        }
        self.budget.count(1);
        self.stack.push(Open { node: Node { value, pos }, pending_key: None, anchor, size: 1, height: 1 });
        Ok(())
    }

    fn stop(&self, code: crate::diag::Code, pos: Pos, message: String) -> SyntaxError {
        SyntaxError { code, message, pos, documents_before: self.documents.len() }
    }

    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), SyntaxError> {
        let pos = Pos::from_marker(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let value = match tag {
                    None if style == TScalarStyle::Plain => plain_scalar(text),
                    None => Value::Str(text),
                    Some(tag) => match tags::resolve_scalar(&tag, text, style == TScalarStyle::Plain) {
                        Resolved::Value(value) => value,
                        Resolved::Finding(value, code, message) => {
                            let document = self.documents.len();
                            self.findings.push(Finding { code, pos, message, document });
                            value
                        }
                    },
                };
                self.budget.count(1);
                self.push_value(Node { value, pos }, anchor, 1, 0);
            }
            Event::SequenceStart(anchor, tag) => self.open(Value::Seq(Vec::new()), pos, anchor, tag)?,
            Event::MappingStart(anchor, tag) => self.open(Value::Map(Vec::new()), pos, anchor, tag)?,
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    self.push_value(open.node, open.anchor, open.size, open.height);
                }
            }
            Event::Alias(id) => {
                // The parser knows anchors of earlier documents; YAML
                // does not (and `Parser::load` refused them).
                let Some(anchored) = self.anchors.get(&id) else {
                    let message = "while parsing node, found unknown anchor".to_string();
                    return Err(self.stop(codes::YAML_SYNTAX, pos, message));
                };
                let (size, height) = (anchored.size, anchored.height);
                if self.stack.len() + height > MAX_DEPTH {
                    let message = format!("an alias nests collections more than {MAX_DEPTH} levels deep");
                    return Err(self.stop(codes::NESTING_TOO_DEEP, pos, message));
                }
                if !self.budget.allows(size) {
                    return Err(self.stop(
                        codes::EXCESSIVE_ALIASING,
                        pos,
                        "aliases expand to far more nodes than the document holds".to_string(),
                    ));
                }
                let node = anchored.node.clone();
                self.push_value(node, 0, size, height);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart => {
                // Anchors do not cross documents; neither does the budget.
                self.anchors.clear();
                self.budget = AliasBudget::default();
            }
        }
        Ok(())
    }
}
