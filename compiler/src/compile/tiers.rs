//! Admin and baseline policies compile into the policy maps with a
//! precedence per entry (`policyc_ir::policy_map::Precedence`). Pods that
//! an admin rule tells apart (by address or by the number of a named
//! port) get identities of their own (`policyc_ir::identity_split`). What
//! the datapath still cannot enforce is a `networks` or `nodes` peer that
//! selects some but not all of the nodes behind one node identity
//! (`remote-node`, `kube-apiserver`): the programs know a peer by its
//! identity only. `compile` refuses such input, naming the rule and both
//! sides of the split, rather than write a bundle that enforces something
//! else than the cluster says: failing closed, as `toFQDNs` allows nothing
//! rather than everything.

use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;
use policyc_ir::resolve::Resolved;

/// One error per admin rule of `loaded` whose peer splits a node identity in
/// `resolved`, at the rule's policy.
pub fn unenforced(loaded: &Loaded, resolved: &Resolved) -> Vec<Diagnostic> {
    let lowered = &loaded.lowered;
    resolved
        .tier_splits
        .iter()
        .filter_map(|split| {
            let policy = lowered.cluster.tier_policies.get(split.rule.policy)?;
            let location = lowered.tier_locations.get(split.rule.policy)?;
            let path = policy.rules.get(split.rule.rule).map_or("spec", |r| r.path.as_str());
            Some(
                Diagnostic::new(
                    codes::TIERS_NOT_ENFORCED,
                    location.clone(),
                    format!(
                        "`{policy}` `{path}` selects {} but not {}, which share identity {}: the datapath tells \
                         peers apart by identity only, so no bundle is written",
                        split.selected, split.unselected, split.identity
                    ),
                )
                .with_help("make the `networks`/`nodes` peer select all of the other nodes or none of them"),
            )
        })
        .collect()
}
