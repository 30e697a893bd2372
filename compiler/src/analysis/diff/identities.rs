//! Identities added, removed or renumbered between two resolutions.
//!
//! Identities are matched by what they stand for (kind and labels): a
//! label set present in both trees under different numbers is
//! *renumbered*, which invalidates every map entry naming it on every node.

use crate::emit::maps::identity_line;
pub use policyc_bundle::identities::IdentityLine;
use policyc_ir::resolve::Resolved;
use std::collections::BTreeMap;

/// What changed about one identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentityChange {
    /// Only in the new tree.
    Added(IdentityLine),
    /// Only in the old tree.
    Removed(IdentityLine),
    /// In both, under different numbers.
    Renumbered {
        /// The number in the old tree.
        old: u32,
        /// The identity in the new tree.
        new: IdentityLine,
    },
}

/// The identity changes from `old` to `new`, sorted (removed, renumbered
/// and added each by number).
pub fn changes(old: &Resolved, new: &Resolved) -> Vec<IdentityChange> {
    let index = |r: &Resolved| -> BTreeMap<(&'static str, String), IdentityLine> {
        r.identities.values().map(identity_line).map(|l| ((l.kind, l.labels.clone()), l)).collect()
    };
    let (o, n) = (index(old), index(new));
    let mut out = Vec::new();
    for (key, was) in &o {
        match n.get(key) {
            None => out.push(IdentityChange::Removed(was.clone())),
            Some(now) if now.identity != was.identity => {
                out.push(IdentityChange::Renumbered { old: was.identity, new: now.clone() })
            }
            Some(_) => {}
        }
    }
    out.extend(n.iter().filter(|(k, _)| !o.contains_key(*k)).map(|(_, l)| IdentityChange::Added(l.clone())));
    let order = |c: &IdentityChange| match c {
        IdentityChange::Removed(l) => (0, l.identity),
        IdentityChange::Renumbered { old, .. } => (1, *old),
        IdentityChange::Added(l) => (2, l.identity),
    };
    out.sort_by_key(order);
    out
}
