//! Map entries added and removed, per node and map file: the writes and
//! deletes a node's loader would make to go from one bundle to the other.
//!
//! Map files hold one entry per line, sorted, so an entry whose value
//! changes shows as one line removed and one added.

use crate::emit::Bundle;
use std::collections::{BTreeMap, BTreeSet};

/// The identity table is in every bundle but is not a pinned map, and the
/// identity section of the diff already shows its changes.
const SKIPPED: &[&str] = &["maps/identities.txt"];

/// The changes to one map file of one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MapChange {
    /// Node of the bundle.
    pub node: String,
    /// File in the bundle (`maps/policy/shop.db-0.txt`).
    pub file: String,
    /// Lines only in the old bundle, sorted.
    pub removed: Vec<String>,
    /// Lines only in the new bundle, sorted.
    pub added: Vec<String>,
}

/// Per node and map file, the lines that differ (a node or file present on
/// one side only has all its lines added or removed).
pub fn changes(old: &[Bundle], new: &[Bundle]) -> Vec<MapChange> {
    let files = |bundles: &[Bundle]| -> BTreeMap<(String, String), BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for b in bundles {
            for (path, text) in &b.files {
                if path.starts_with("maps/") && !SKIPPED.contains(&path.as_str()) {
                    out.insert((b.node.clone(), path.clone()), text.lines().map(str::to_string).collect());
                }
            }
        }
        out
    };
    let (o, n) = (files(old), files(new));
    let empty = BTreeSet::new();
    let keys: BTreeSet<&(String, String)> = o.keys().chain(n.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (was, now) = (o.get(key).unwrap_or(&empty), n.get(key).unwrap_or(&empty));
            let removed: Vec<String> = was.difference(now).cloned().collect();
            let added: Vec<String> = now.difference(was).cloned().collect();
            (!removed.is_empty() || !added.is_empty()).then(|| MapChange {
                node: key.0.clone(),
                file: key.1.clone(),
                removed,
                added,
            })
        })
        .collect()
}
