//! Where the parts of a decoded policy are written, kept beside the policy
//! and not inside it (as naga keeps spans beside its IR): an IR dump does
//! not change when whitespace does, and nothing parses the YAML again to
//! cite a rule.

use super::yaml::{Node, Pos, Value};

/// A decoded policy with where its parts are written.
#[derive(Clone, Debug, PartialEq)]
pub struct SpannedPolicy {
    /// The policy.
    pub policy: policyc_ir::policy::Policy,
    /// Where its parts are written.
    pub spans: PolicySpans,
}

/// Positions of one policy's parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySpans {
    /// Per rule of the policy, in order: where the rule is written (the
    /// first character of its list item; of its `toPorts` entry for the
    /// part of a Cilium rule split off for that entry's L7 rules).
    pub rules: Vec<Pos>,
}

/// Where `node` starts. The reader places a block mapping at the colon
/// after its first key; its first key is where it starts.
pub fn start(node: &Node) -> Pos {
    match &node.value {
        Value::Map(entries) => entries.first().map_or(node.pos, |(key, _)| node.pos.min(key.pos)),
        _ => node.pos,
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
}
