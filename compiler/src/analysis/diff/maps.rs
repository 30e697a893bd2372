//! Map entries added and removed, per node and map file: the writes and
//! deletes a node's loader would make to go from one bundle to the other.
//!
//! Map files hold one entry per line, sorted, so an entry whose value
//! changes shows as one line removed and one added. A policy map file is
//! named after an identity (`maps/policy/<identity>.txt`) and shared by
//! that identity's endpoints on the node: each change to one names the
//! endpoints that use it, as the bundles' `manifest.json` lists them.

use super::DiffError;
use crate::emit::{Bundle, EmitError, NodeEmitter};
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
/// one side only has all its lines added or removed). Nodes are emitted
/// and compared one at a time on every core, each node's two bundles
/// dropped once compared; a file whose text is the same on both sides is
/// not split into lines. An emission failure is returned: the old tree's
/// first (in node order), else the new tree's.
pub fn changes(old: &NodeEmitter, new: &NodeEmitter) -> Result<Vec<MapChange>, DiffError> {
    let nodes: BTreeSet<&str> = old.nodes().iter().chain(new.nodes()).map(String::as_str).collect();
    let nodes: Vec<&str> = nodes.into_iter().collect();
    let bundle = |emitter: &NodeEmitter, node: &str| -> Result<Option<Bundle>, EmitError> {
        let listed = emitter.nodes().binary_search_by(|n| n.as_str().cmp(node)).is_ok();
        listed.then(|| emitter.node(node)).transpose()
    };
    // Per node: its changes, or the emission errors of either side.
    let per_node = policyc_ir::parallel::map(&nodes, |node| match (bundle(old, node), bundle(new, node)) {
        (Ok(was), Ok(now)) => (node_changes(node, was.as_ref(), now.as_ref()), [None, None]),
        (was, now) => (Vec::new(), [was.err(), now.err()]),
    });
    for (k, side) in ["old", "new"].into_iter().enumerate() {
        if let Some(error) = per_node.iter().find_map(|(_, errors)| errors[k].clone()) {
            return Err(DiffError { side, error });
        }
    }
    Ok(per_node.into_iter().flat_map(|(changes, _)| changes).collect())
}

/// The map files of a bundle the diff compares, by path.
fn map_files(bundle: Option<&Bundle>) -> BTreeMap<&str, &str> {
    let files = bundle.into_iter().flat_map(|b| &b.files);
    files
        .filter(|(path, _)| path.starts_with("maps/") && !SKIPPED.contains(&path.as_str()))
        .map(|(path, text)| (path.as_str(), &**text))
        .collect()
}

/// The changes of one node's map files, in file order.
fn node_changes(node: &str, old: Option<&Bundle>, new: Option<&Bundle>) -> Vec<MapChange> {
    let (o, n) = (map_files(old), map_files(new));
    let paths: BTreeSet<&str> = o.keys().chain(n.keys()).copied().collect();
    let mut users: Option<BTreeMap<String, BTreeSet<String>>> = None;
    let mut out = Vec::new();
    for path in paths {
        let (was, now) = (o.get(path).copied().unwrap_or(""), n.get(path).copied().unwrap_or(""));
        if was == now {
            continue;
        }
        let (was, now): (BTreeSet<&str>, BTreeSet<&str>) = (was.lines().collect(), now.lines().collect());
        let removed: Vec<String> = was.difference(&now).map(|l| l.to_string()).collect();
        let added: Vec<String> = now.difference(&was).map(|l| l.to_string()).collect();
        if removed.is_empty() && added.is_empty() {
            continue;
        }
        // Read from the manifests only when a file changed.
        let users = users.get_or_insert_with(|| {
            let mut users = policy_file_users(old);
            for (file, names) in policy_file_users(new) {
                users.entry(file).or_default().extend(names);
            }
            users
        });
        out.push(MapChange {
            node: node.to_string(),
            file: path.to_string(),
            endpoints: users.get(path).map(|names| names.iter().cloned().collect()).unwrap_or_default(),
            removed,
            added,
        });
    }
    out
}

/// Per policy file, the endpoints using it, from a bundle's
/// `manifest.json` (`endpoints[].name` and `.policy_file`).
fn policy_file_users(bundle: Option<&Bundle>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Some(manifest) = bundle.and_then(|b| b.files.get("manifest.json")) else { return out };
    let Ok(manifest) = serde_json::from_str::<serde_json::Value>(manifest) else { return out };
    for e in manifest["endpoints"].as_array().into_iter().flatten() {
        if let (Some(name), Some(file)) = (e["name"].as_str(), e["policy_file"].as_str()) {
            out.entry(file.to_string()).or_default().insert(name.to_string());
        }
    }
    out
}
