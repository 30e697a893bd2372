//! Map entries added and removed, per node and map file: the writes and
//! deletes a node's loader would make to go from one bundle to the other.
//!
//! Map files hold one entry per line, sorted, so an entry whose value
//! changes shows as one line removed and one added. A policy map file is
//! named after an identity (`maps/policy/<identity>.txt`) and shared by
//! that identity's endpoints on the node: each change to one names the
//! endpoints that use it, as the bundles' `manifest.json` lists them.

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
    /// File in the bundle (`maps/policy/16931.txt`).
    pub file: String,
    /// The endpoints (`ns/pod`) whose policy map the file is, in the old
    /// or the new bundle, sorted; empty for the other maps.
    pub endpoints: Vec<String>,
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
    let mut users = policy_file_users(old);
    for (key, names) in policy_file_users(new) {
        users.entry(key).or_default().extend(names);
    }
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
                endpoints: users.get(key).map(|names| names.iter().cloned().collect()).unwrap_or_default(),
                removed,
                added,
            })
        })
        .collect()
}

/// Per node and policy file, the endpoints using it, from each bundle's
/// `manifest.json` (`endpoints[].name` and `.policy_file`).
fn policy_file_users(bundles: &[Bundle]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for b in bundles {
        let Some(manifest) = b.files.get("manifest.json") else { continue };
        let Ok(manifest) = serde_json::from_str::<serde_json::Value>(manifest) else { continue };
        for e in manifest["endpoints"].as_array().into_iter().flatten() {
            if let (Some(name), Some(file)) = (e["name"].as_str(), e["policy_file"].as_str()) {
                out.entry((b.node.clone(), file.to_string())).or_default().insert(name.to_string());
            }
        }
    }
    out
}
