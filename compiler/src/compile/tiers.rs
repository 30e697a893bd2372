//! Admin and baseline policies are read, checked and evaluated
//! (`connectivity`, `trace`, `explain`), but the datapath has no verdict
//! order for them yet (issue 14: a precedence in each policy-map entry).
//! A bundle that left them out would enforce less than the cluster
//! allows or denies, so `compile` refuses the input, naming each one:
//! failing closed, as `toFQDNs` allows nothing rather than everything.

use crate::diag::{codes, Diagnostic};
use crate::pipeline::Loaded;

/// One error per admin or baseline policy of `loaded`, at its object.
pub fn unenforced(loaded: &Loaded) -> Vec<Diagnostic> {
    let lowered = &loaded.lowered;
    lowered
        .cluster
        .tier_policies
        .iter()
        .zip(&lowered.tier_locations)
        .map(|(policy, location)| {
            Diagnostic::new(
                codes::TIERS_NOT_ENFORCED,
                location.clone(),
                format!(
                    "`{policy}` ({} tier) is not enforced by policyc's datapath yet: no bundle is written",
                    policy.tier.name()
                ),
            )
            .with_help(
                "`lint`, `connectivity`, `trace` and `explain` evaluate it; remove it from the input to compile the rest",
            )
        })
        .collect()
}
