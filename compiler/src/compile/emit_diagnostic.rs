//! An emission failure the user can act on, as a diagnostic: a policy map
//! over capacity names the endpoint and the policies that fill it; an
//! unknown `--node` suggests the nearest node.

use crate::diag::{codes, Diagnostic, Location};
use crate::emit::maps::endpoint_stem;
use crate::emit::{CapacityError, EmitError};
use crate::pipeline::Loaded;
use policyc_ir::ids::PolicyId;
use policyc_ir::resolve::Resolved;
use std::collections::BTreeMap;

/// The diagnostic of `e`, or `None` for a failure that is not about the
/// input (an internal inconsistency, a write error).
pub fn emit_diagnostic(loaded: &Loaded, resolved: &Resolved, e: &EmitError) -> Option<Diagnostic> {
    match e {
        EmitError::Capacity(c) => Some(capacity_diagnostic(loaded, resolved, c)),
        EmitError::UnknownNode(node) => {
            let known = crate::emit::node_names(&loaded.lowered.cluster);
            let hint = crate::diag::did_you_mean(node, known.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("nodes in the input: {}", known.join(", ")));
            Some(
                Diagnostic::new(codes::UNKNOWN_NODE, Location::default(), format!("no node `{node}` in the input"))
                    .with_help(hint),
            )
        }
        EmitError::Invalid(_) | EmitError::Io(_) => None,
    }
}

/// A capacity overflow as a diagnostic that names the endpoint and the
/// policies whose rules fill its map.
fn capacity_diagnostic(loaded: &Loaded, resolved: &Resolved, c: &CapacityError) -> Diagnostic {
    let c_map = c.map.strip_prefix("policy/").unwrap_or(&c.map);
    let endpoint = resolved.endpoints.iter().find(|e| {
        e.node.as_deref() == Some(c.node.as_str()) && endpoint_stem(&loaded.lowered.cluster, e.index) == c_map
    });
    let mut per_policy: BTreeMap<PolicyId, usize> = BTreeMap::new();
    let mut location = Location::default();
    if let Some(e) = endpoint {
        for entry in &e.policy.entries {
            *per_policy.entry(entry.rule.policy).or_default() += 1;
        }
        location = loaded.lowered.endpoint_locations.get(e.index.index()).cloned().unwrap_or_default();
    }
    let mut ranked: Vec<(PolicyId, usize)> = per_policy.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let cluster = &loaded.lowered.cluster;
    let names: Vec<String> =
        ranked.iter().take(5).map(|(p, n)| format!("{} ({n} entries)", cluster.policy(*p).origin)).collect();
    let who = endpoint.map(|e| e.name.clone()).unwrap_or_else(|| c.map.clone());
    Diagnostic::new(
        codes::POLICY_MAP_CAPACITY,
        location,
        format!("the policy map of `{who}` on node `{}` needs {} entries but holds {}", c.node, c.entries, c.capacity),
    )
    .with_help(format!(
        "the largest contributors: {}; narrow their peers or port ranges, or raise --policy-map-capacity",
        if names.is_empty() { "unknown".to_string() } else { names.join(", ") }
    ))
}
