//! The YAML reader on any bytes: UTF-8 decoding, then every document with
//! its findings and diagnostics. Beyond "never panics, never overflows the
//! stack", two of the reader's promises are checked on what it returns:
//! no collection nests deeper than `MAX_DEPTH`, and aliases expand a
//! document only in proportion to its text (no billion laughs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyc::front::yaml::{self, utf8, Node, Value, MAX_DEPTH};

/// Nodes a document may hold without aliases counting against it (Go's
/// YAML library checks the ratio only past 1000 nodes).
const UNCHECKED_NODES: usize = 1000;
/// Nodes per byte of text an alias-expanded stream may reach: aliases may
/// build 99% of a small document, about 100 nodes per node of text, and
/// a byte of text makes at most two nodes (a flow key and its null).
const NODES_PER_BYTE: usize = 200;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = utf8::decode(bytes.to_vec()) else { return };
    let parsed = yaml::parse(&text);
    let mut nodes = 0;
    for doc in &parsed.documents {
        nodes += walk(&doc.root);
    }
    let bound = UNCHECKED_NODES * (parsed.documents.len() + 1) + NODES_PER_BYTE * (text.len() + 1);
    assert!(nodes <= bound, "{nodes} nodes from {} bytes", text.len());
    for finding in &parsed.findings {
        assert!(finding.message.chars().next().is_none_or(|c| !c.is_uppercase()), "{}", finding.message);
    }
    let _ = yaml::report::diagnostics("fuzz.yaml", parsed.error, parsed.findings);
});

/// Counts the nodes under `root` without recursion (the walk must not be
/// what overflows the stack), asserting the depth bound on the way.
fn walk(root: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![(root, 1)];
    while let Some((node, depth)) = stack.pop() {
        count += 1;
        match &node.value {
            Value::Seq(items) => {
                assert!(depth <= MAX_DEPTH + 1, "a sequence nested {depth} deep");
                stack.extend(items.iter().map(|n| (n, depth + 1)));
            }
            Value::Map(pairs) => {
                assert!(depth <= MAX_DEPTH + 1, "a mapping nested {depth} deep");
                stack.extend(pairs.iter().flat_map(|(k, v)| [(k, depth + 1), (v, depth + 1)]));
            }
            _ => {}
        }
    }
    count
}
