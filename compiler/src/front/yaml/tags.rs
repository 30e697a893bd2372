//! Explicit tags: those of the YAML 1.2 core schema (`!!str`, `!!int`,
//! `!!float`, `!!bool`, `!!null`, `!!seq`, `!!map`) decide a node's type as
//! YAML says; a scalar its tag cannot read is an error (Go's YAML library
//! refuses `!!int "http"`, where ignoring the tag would take the named port
//! `http`). Any other tag means nothing to Kubernetes and is reported.

use super::{plain_scalar, Finding, Pos, Value};
use crate::diag::{codes, Code};
use yaml_rust2::parser::Tag;

/// The prefix `!!` stands for.
const CORE: &str = "tag:yaml.org,2002:";

/// A tagged scalar's value, and what to report about it.
pub(super) enum Resolved {
    /// The value the tag gives.
    Value(Value),
    /// The value read without the tag, with a finding's code and message.
    Finding(Value, Code, String),
}

/// The value of scalar `text` tagged `tag` (`plain`: it was not quoted).
pub(super) fn resolve_scalar(tag: &Tag, text: String, plain: bool) -> Resolved {
    let untagged = |text: String| if plain { plain_scalar(text) } else { Value::Str(text) };
    // `!` alone is the non-specific tag: a string, whatever it looks like.
    if tag.handle.is_empty() && tag.suffix == "!" {
        return Resolved::Value(Value::Str(text));
    }
    let Some(kind) = core_kind(tag) else {
        let message = format!("tag `{}` is not one of the YAML core schema and is ignored", shown(tag));
        return Resolved::Finding(untagged(text), codes::UNKNOWN_TAG, message);
    };
    let value = match kind {
        "str" => return Resolved::Value(Value::Str(text)),
        "seq" | "map" => None,
        _ => match (kind, plain_scalar(text.as_str())) {
            ("int", value @ Value::Int(_)) => Some(value),
            ("float", Value::Int(i)) => Some(Value::Float(i as f64)),
            ("float", value @ Value::Float(_)) => Some(value),
            ("bool", value @ Value::Bool(_)) => Some(value),
            ("null", value @ Value::Null) => Some(value),
            _ => None,
        },
    };
    match value {
        Some(value) => Resolved::Value(value),
        None => {
            let message = format!("`{text}` is not a value of tag `!!{kind}`");
            Resolved::Finding(untagged(text), codes::TAG_MISMATCH, message)
        }
    }
}

/// What to report about the tag of a collection, if anything.
pub(super) fn check_collection(tag: &Tag, is_map: bool, pos: Pos, document: usize) -> Option<Finding> {
    let (code, message) = match core_kind(tag) {
        Some("map") if is_map => return None,
        Some("seq") if !is_map => return None,
        Some(kind) => {
            let found = if is_map { "a mapping" } else { "a list" };
            (codes::TAG_MISMATCH, format!("{found} cannot have tag `!!{kind}`"))
        }
        None => (codes::UNKNOWN_TAG, format!("tag `{}` is not one of the YAML core schema and is ignored", shown(tag))),
    };
    Some(Finding { code, pos, message, document })
}

/// The core schema's name of `tag` (`int` for `!!int`), if it is one.
fn core_kind(tag: &Tag) -> Option<&'static str> {
    if tag.handle != CORE {
        return None;
    }
    ["str", "int", "float", "bool", "null", "seq", "map"].into_iter().find(|k| *k == tag.suffix)
}

/// A tag as it is usually written.
fn shown(tag: &Tag) -> String {
    match tag.handle.strip_prefix(CORE) {
        Some("") => format!("!!{}", tag.suffix),
        _ => format!("{}{}", tag.handle, tag.suffix),
    }
}
