//! Checks on a stream that its reader accepts but Kubernetes does not:
//! mappings with the same key twice (the API server's strict decoding
//! refuses them, and policyc's decoders would otherwise read the first of
//! them in one place and the last in another) and a `%YAML` directive for
//! a version other than 1.x.

use super::{Document, Finding, Node, Pos, Value};
use crate::diag::codes;
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
    let mut report = |key: &Node, text: &str| {
        findings.push(Finding {
            code: codes::DUPLICATE_KEY,
            pos: key.pos,
            message: format!("key `{text}` appears twice in a mapping"),
            document,
        })
    };
    if entries.len() <= PAIRWISE_UP_TO {
        for (i, (key, _)) in entries.iter().enumerate() {
            let Some(text) = key.scalar_text() else { continue };
            if entries[..i].iter().any(|(k, _)| k.scalar_text().as_deref() == Some(text.as_str())) {
                report(key, &text);
            }
        }
    } else {
        let mut seen = HashSet::new();
        for (key, _) in entries {
            let Some(text) = key.scalar_text() else { continue };
            if !seen.insert(text.clone()) {
                report(key, &text);
            }
        }
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
