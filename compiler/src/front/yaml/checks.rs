//! Checks on a stream that its reader accepts but Kubernetes does not:
//! mappings with the same key twice (the API server's strict decoding
//! refuses them, and policyc's decoders would otherwise read the first of
//! them in one place and the last in another) and a `%YAML` directive for
//! a version other than 1.x.

use super::{Document, Finding, Node, Pos, Value};
use crate::diag::codes;
use std::borrow::Cow;
use std::collections::HashSet;

/// Mappings of small size are checked pairwise, larger ones with a set.
const PAIRWISE_UP_TO: usize = 16;

/// A finding for every key that repeats an earlier key of its mapping.
pub(super) fn duplicate_keys(documents: &[Document]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (document, doc) in documents.iter().enumerate() {
        // A stack rather than recursion: the depth is bounded, but a walk
        // this simple needs no frames.
        let mut stack: Vec<&Node> = vec![&doc.root];
        while let Some(node) = stack.pop() {
            match &node.value {
                Value::Seq(items) => stack.extend(items),
                Value::Map(entries) => {
                    check_mapping(entries, document, &mut findings);
                    stack.extend(entries.iter().flat_map(|(k, v)| [k, v]));
                }
                _ => {}
            }
        }
    }
    findings.sort_by_key(|f| (f.document, f.pos));
    findings
}

fn check_mapping(entries: &[(Node, Node)], document: usize, findings: &mut Vec<Finding>) {
    let keys: Vec<Option<Cow<str>>> = entries.iter().map(|(k, _)| key_text(k)).collect();
    let mut report = |i: usize, text: &str| {
        findings.push(Finding {
            code: codes::DUPLICATE_KEY,
            pos: entries[i].0.pos,
            message: format!("key `{text}` appears twice in a mapping"),
            document,
        })
    };
    if keys.len() <= PAIRWISE_UP_TO {
        for (i, key) in keys.iter().enumerate() {
            if let Some(text) = key {
                if keys[..i].iter().any(|k| k.as_ref() == Some(text)) {
                    report(i, text);
                }
            }
        }
    } else {
        let mut seen = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(text) = key {
                if !seen.insert(text) {
                    report(i, text);
                }
            }
        }
    }
}

/// A key as the API server's JSON sees it (`80` and `"80"` are one key);
/// `None` for a collection, which no manifest uses as a key.
fn key_text(key: &Node) -> Option<Cow<'_, str>> {
    match &key.value {
        Value::Str(s) => Some(Cow::Borrowed(s)),
        Value::Null => Some(Cow::Borrowed("null")),
        _ => key.scalar_text().map(Cow::Owned),
    }
}

/// A finding for every `%YAML` directive whose version is not 1.x.
pub(super) fn version_directives(text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    if !text.contains("%YAML") {
        return findings;
    }
    let mut document = 0;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            document += 1;
        }
        let Some(rest) = line.strip_prefix("%YAML") else { continue };
        let version = rest.split('#').next().unwrap_or("").trim();
        if version.split_once('.').is_some_and(|(major, minor)| {
            major == "1" && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
        }) {
            continue;
        }
        findings.push(Finding {
            code: codes::YAML_VERSION,
            pos: Pos { line: index as u32 + 1, col: 1 },
            message: format!("unsupported YAML version `{version}` (policyc reads YAML 1.x)"),
            document,
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use crate::diag::codes;

    #[test]
    fn finds_duplicate_keys_in_small_and_large_mappings() {
        let large: String = (0..20).map(|i| format!("k{i}: 1\n")).collect::<String>() + "k7: 2\n";
        for (text, line) in [("a: 1\nb: 2\na: 3\n", 3), (large.as_str(), 21), ("x: {1: a, \"1\": b}\n", 1)] {
            let findings = parse(text).findings;
            assert_eq!(findings.len(), 1, "{text:?}");
            assert_eq!((findings[0].code, findings[0].pos.line), (codes::DUPLICATE_KEY, line));
        }
        assert!(parse("a: {b: 1}\nc: {b: 1}\n").findings.is_empty());
    }

    #[test]
    fn accepts_yaml_1_only() {
        assert!(parse("%YAML 1.1\n---\na: 1\n").findings.is_empty());
        let findings = parse("%YAML 2.0\n---\na: 1\n").findings;
        assert_eq!(findings[0].code, codes::YAML_VERSION);
    }
}
