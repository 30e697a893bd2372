//! The bundle writer: one directory per node holding what that node's
//! loader puts into its pinned maps.
//!
//! ```text
//! <node>/manifest.json            format version, node, source hash, maps, endpoints
//! <node>/maps/identities.txt      every identity with its labels
//! <node>/maps/ipcache.txt         prefix → identity (this node's addresses are `host`)
//! <node>/maps/endpoints.txt       pod IP → endpoint id, identity, enforcement
//! <node>/maps/policy/<ns>.<pod>.txt   one endpoint's policy entries
//! <node>/maps/rules.txt           rule cookie → rule, for flow events
//! <node>/programs/{from,to}_container.o   program templates (settings per endpoint in the manifest)
//! ```
//!
//! Every map file is one entry per line, fields separated by one space,
//! sorted, with no header, so a review diff shows exactly the entries that
//! change (formats in [`maps`]). Emission is pure: [`emit`] builds the files
//! in memory and [`Bundle::write_to`] is the only I/O. It starts by
//! validating the resolved maps ([`policyc_ir::validate`]); after that it
//! may fail (capacity, unknown node) but never panics.

pub mod manifest;
pub mod maps;
pub mod programs;
pub mod rules;

use policyc_ebpf::abi::{self, MAPS};
use policyc_ebpf::Template;
use policyc_ir::cluster::Cluster;
use policyc_ir::resolve::Resolved;
use policyc_ir::validate::{validate, ValidationError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

/// Default capacity of each endpoint's policy map (Cilium's default).
pub const DEFAULT_POLICY_MAP_CAPACITY: usize = 16384;

/// Settings of an emission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleOptions {
    /// Capacity of each endpoint's policy map.
    pub policy_map_capacity: usize,
    /// Content hash of the input manifests, recorded in the manifest.
    pub source_hash: String,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions { policy_map_capacity: DEFAULT_POLICY_MAP_CAPACITY, source_hash: String::new() }
    }
}

/// One node's bundle, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// Node name (the bundle's directory name).
    pub node: String,
    /// Text files by path relative to the bundle directory
    /// (`maps/ipcache.txt`).
    pub files: BTreeMap<String, String>,
    /// Program objects by path relative to the bundle directory
    /// (`programs/from_container.o`).
    pub programs: BTreeMap<String, Vec<u8>>,
}

/// Why a bundle cannot be emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmitError {
    /// The resolved maps break an invariant (a bug in policyc, reported
    /// rather than panicking).
    Invalid(Vec<ValidationError>),
    /// A map has more entries than its capacity.
    Capacity(CapacityError),
    /// `--node` names a node the input does not know.
    UnknownNode(String),
    /// A bundle directory cannot be written.
    Io(String),
}

/// A map over capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapacityError {
    /// Node of the bundle.
    pub node: String,
    /// The map (`policy/shop.api`, `ipcache`).
    pub map: String,
    /// Entries it would hold.
    pub entries: usize,
    /// Its capacity.
    pub capacity: usize,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Invalid(errors) => {
                write!(f, "internal error: the compiled maps are inconsistent")?;
                for e in errors {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
            EmitError::Capacity(c) => write!(
                f,
                "map `{}` of node `{}` needs {} entries but holds at most {}",
                c.map, c.node, c.entries, c.capacity
            ),
            EmitError::UnknownNode(node) => write!(f, "no node `{node}` in the input"),
            EmitError::Io(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for EmitError {}

/// Every node a bundle is emitted for: the input's nodes and the nodes
/// its pods run on, sorted.
pub fn node_names(cluster: &Cluster) -> Vec<String> {
    let names: BTreeSet<&str> = cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(cluster.endpoints.iter().filter_map(|e| e.node.as_deref()))
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// Emits the bundle of every node (or only of `only`).
pub fn emit(
    cluster: &Cluster,
    resolved: &Resolved,
    only: Option<&str>,
    options: &BundleOptions,
) -> Result<Vec<Bundle>, EmitError> {
    validate(resolved).map_err(EmitError::Invalid)?;
    let nodes = node_names(cluster);
    let selected: Vec<&String> = match only {
        Some(name) => {
            let node = nodes.iter().find(|n| *n == name).ok_or_else(|| EmitError::UnknownNode(name.to_string()))?;
            vec![node]
        }
        None => nodes.iter().collect(),
    };
    let names = maps::RuleNames::new(cluster);
    let texts = maps::PolicyTexts::new(resolved, only.map(|o| vec![o]).as_deref(), &names);
    selected.into_iter().map(|node| emit_node_named(cluster, resolved, node, options, &names, &texts)).collect()
}

/// Emits the bundle of every node (or only of `only`) one at a time,
/// handing each to `sink` before the next is built, so that only one
/// node's bundle is in memory at once. Stops at the first error.
pub fn emit_each(
    cluster: &Cluster,
    resolved: &Resolved,
    only: Option<&str>,
    options: &BundleOptions,
    mut sink: impl FnMut(Bundle) -> Result<(), EmitError>,
) -> Result<(), EmitError> {
    validate(resolved).map_err(EmitError::Invalid)?;
    let nodes = node_names(cluster);
    if let Some(name) = only {
        if !nodes.iter().any(|n| n == name) {
            return Err(EmitError::UnknownNode(name.to_string()));
        }
    }
    let names = maps::RuleNames::new(cluster);
    let texts = maps::PolicyTexts::new(resolved, only.map(|o| vec![o]).as_deref(), &names);
    for node in nodes.iter().filter(|n| only.is_none_or(|o| o == n.as_str())) {
        sink(emit_node_named(cluster, resolved, node, options, &names, &texts)?)?;
    }
    Ok(())
}

/// Emits the bundle of `node`. `resolved` must be the resolution of
/// `cluster` and pass validation ([`emit`] checks both).
pub fn emit_node(
    cluster: &Cluster,
    resolved: &Resolved,
    node: &str,
    options: &BundleOptions,
) -> Result<Bundle, EmitError> {
    let names = maps::RuleNames::new(cluster);
    let texts = maps::PolicyTexts::new(resolved, Some(&[node]), &names);
    emit_node_named(cluster, resolved, node, options, &names, &texts)
}

fn emit_node_named(
    cluster: &Cluster,
    resolved: &Resolved,
    node: &str,
    options: &BundleOptions,
    names: &maps::RuleNames,
    texts: &maps::PolicyTexts,
) -> Result<Bundle, EmitError> {
    let local = maps::local_endpoints(resolved, node);
    let ids = maps::endpoint_ids(&local);
    let mut files = BTreeMap::new();
    let programs: BTreeMap<String, Vec<u8>> = programs::templates().into_iter().collect();

    let ipcache = maps::ipcache(resolved, node);
    let endpoint_lines = maps::endpoints(&local, &ids);
    let mut endpoints = Vec::new();
    let mut rule_names = BTreeSet::new();
    let mut policy_entries = 0;
    for endpoint in &local {
        let stem = maps::policy_file_stem(cluster, endpoint.index);
        let (text, lines) = texts.get(names, &endpoint.policy);
        check_capacity(node, &format!("policy/{stem}"), lines, options.policy_map_capacity)?;
        policy_entries += lines;
        rule_names.extend(endpoint.policy.entries.iter().map(|entry| names.get(entry.rule).into_owned()));
        let id = ids.get(&endpoint.index).copied().unwrap_or(0);
        let config = programs::endpoint_config(id, &endpoint.policy);
        let policy_file = format!("maps/policy/{stem}.txt");
        endpoints.push(manifest::EndpointSpec {
            name: endpoint.name.clone(),
            id,
            identity: endpoint.identity.map_or(0, |i| i.get()),
            addresses: endpoint.ips.iter().map(ToString::to_string).collect(),
            policy_file: policy_file.clone(),
            policy_entries: lines,
            config,
        });
        files.insert(policy_file, text);
    }
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));

    let counts = [("ipcache", ipcache.len()), ("endpoints", endpoint_lines.len()), ("policy", policy_entries)];
    for (name, entries) in counts {
        let capacity = abi::generation_capacity(name).unwrap_or(0) as usize;
        check_capacity(node, name, entries, capacity)?;
    }
    let specs = MAPS
        .iter()
        .map(|layout| {
            let entries = counts.iter().find(|(name, _)| *name == layout.name).map(|&(_, n)| n);
            manifest::MapSpec::new(layout, entries)
        })
        .collect();
    files.insert("maps/ipcache.txt".to_string(), maps::join(&ipcache));
    files.insert("maps/endpoints.txt".to_string(), maps::join(&endpoint_lines));

    let identities = maps::identities(resolved);
    let cookies = rules::cookies(rule_names.iter().map(String::as_str));
    let rules = rules::table(&cookies);
    let tables = vec![
        manifest::TableSpec {
            name: "identities".into(),
            file: "maps/identities.txt".into(),
            entries: identities.len(),
        },
        manifest::TableSpec { name: "rules".into(), file: "maps/rules.txt".into(), entries: rules.len() },
    ];
    files.insert("maps/identities.txt".to_string(), maps::join(&identities));
    files.insert("maps/rules.txt".to_string(), maps::join(&rules));

    let manifest = manifest::Manifest {
        format_version: manifest::FORMAT_VERSION,
        node: node.to_string(),
        source_hash: options.source_hash.clone(),
        maps: specs,
        programs: manifest::ProgramFiles {
            from: programs::template_path(Template::FromContainer),
            to: programs::template_path(Template::ToContainer),
        },
        endpoints,
        tables,
        files: manifest::file_digests(&files, &programs),
    };
    files.insert("manifest.json".to_string(), manifest.to_json());
    Ok(Bundle { node: node.to_string(), files, programs })
}

fn check_capacity(node: &str, map: &str, entries: usize, capacity: usize) -> Result<(), EmitError> {
    if entries > capacity {
        return Err(EmitError::Capacity(CapacityError {
            node: node.to_string(),
            map: map.to_string(),
            entries,
            capacity,
        }));
    }
    Ok(())
}

impl Bundle {
    /// Writes the bundle into `dir` (created if needed). A previous bundle
    /// there (a directory with a `manifest.json`) is replaced whole, so no
    /// stale policy file survives; any other non-empty directory is left
    /// alone and reported.
    pub fn write_to(&self, dir: &Path) -> Result<(), EmitError> {
        let io_error =
            |what: &str, path: &Path, e: io::Error| EmitError::Io(format!("cannot {what} `{}`: {e}", path.display()));
        if dir.exists() {
            let is_bundle = dir.join("manifest.json").is_file();
            let is_empty = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?.next().is_none();
            if !is_bundle && !is_empty {
                return Err(EmitError::Io(format!(
                    "`{}` exists and is not a bundle; refusing to overwrite it",
                    dir.display()
                )));
            }
            if is_bundle {
                std::fs::remove_dir_all(dir).map_err(|e| io_error("remove", dir, e))?;
            }
        }
        let files = self.files.iter().map(|(p, text)| (p, text.as_bytes()));
        let programs = self.programs.iter().map(|(p, bytes)| (p, bytes.as_slice()));
        for (relative, content) in files.chain(programs) {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
            }
            std::fs::write(&path, content).map_err(|e| io_error("write", &path, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
