//! The bundle writer: one directory per node holding what that node's
//! loader puts into its pinned maps.
//!
//! ```text
//! <node>/manifest.json            format version, node, source hash, maps, endpoints
//! <node>/maps/identities.txt      every identity with its labels
//! <node>/maps/ipcache.txt         prefix → identity (this node's addresses are `host`)
//! <node>/maps/endpoints.txt       pod IP → endpoint id, identity, enforcement
//! <node>/maps/policy/<identity>.txt  the policy entries of the endpoints of one identity
//! <node>/maps/rules.txt           rule cookie → rule, for flow events
//! <node>/normalized-policy.json   the policy, normalized, for label sets the bundle does not know
//! <node>/maps/services.txt        frontend → backends (only with Services; [`services`])
//! <node>/maps/backends.txt        backend id → address:port
//! <node>/maps/revnat.txt          reverse-NAT id → frontend
//! <node>/programs/{from,to}_container.o   program templates (settings per endpoint in the manifest)
//! ```
//!
//! Every map file is one entry per line, fields separated by one space,
//! sorted, with no header, so a review diff shows exactly the entries that
//! change; the formats, the manifest and the format version are defined
//! once, in [`policyc_bundle`], which the loader reads through too. Emission is pure: [`emit`] builds the files
//! in memory and [`Bundle::write_to`] is the only I/O. It starts by
//! validating the resolved maps ([`policyc_ir::validate`]); after that it
//! may fail (capacity, unknown node) but never panics.

pub mod maps;
pub mod programs;
pub mod rules;
pub mod services;
pub mod write;

use policyc_bundle::digest::{self, Digests, FileDigest};
use policyc_bundle::manifest;
use policyc_bundle::normalized::NORMALIZED_POLICY_FILE;
use policyc_ebpf::abi::{self, MAPS};
use policyc_ebpf::Template;
use policyc_ir::cluster::Cluster;
use policyc_ir::normalized::NormalizedPolicy;
use policyc_ir::resolve::Resolved;
use policyc_ir::validate::{validate, ValidationError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Default capacity of each endpoint's policy map (Cilium's default).
pub const DEFAULT_POLICY_MAP_CAPACITY: usize = 16384;

/// Settings of an emission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleOptions {
    /// Capacity of each endpoint's policy map.
    pub policy_map_capacity: usize,
    /// Content hash of the input manifests, recorded in the manifest.
    pub source_hash: String,
    /// What the manifest's file digests hold.
    pub digests: Digests,
    /// Backend and reverse-NAT ids of a previous bundle, kept for the
    /// backends and frontends still there.
    pub previous_service_ids: Option<services::PreviousIds>,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            policy_map_capacity: DEFAULT_POLICY_MAP_CAPACITY,
            source_hash: String::new(),
            digests: Digests::Sha256,
            previous_service_ids: None,
        }
    }
}

/// One node's bundle, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// Node name (the bundle's directory name).
    pub node: String,
    /// Text files by path relative to the bundle directory
    /// (`maps/ipcache.txt`). A text shared with other nodes' bundles (a
    /// policy map's, `identities.txt`) is one allocation, which
    /// [`Bundle::write_shared`] writes once.
    pub files: BTreeMap<String, Arc<str>>,
    /// Program objects by path relative to the bundle directory
    /// (`programs/from_container.o`).
    pub programs: BTreeMap<String, &'static [u8]>,
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
    emit_each(cluster, resolved, only, options, Ok)
}

/// Emits the bundle of every node (or only of `only`), handing each to
/// `sink` as soon as it is built, and returns what `sink` made of them in
/// node order. Nodes are built on every available core, so memory holds a
/// few nodes' bundles, not the cluster's. The first error in node order is
/// returned (the same whatever the number of cores); a node after a
/// failing one may be skipped.
pub fn emit_each<T: Send>(
    cluster: &Cluster,
    resolved: &Resolved,
    only: Option<&str>,
    options: &BundleOptions,
    sink: impl Fn(Bundle) -> Result<T, EmitError> + Sync,
) -> Result<Vec<T>, EmitError> {
    validate(resolved).map_err(EmitError::Invalid)?;
    let nodes = node_names(cluster);
    let selected: Vec<&str> = match only {
        Some(name) => {
            let node = nodes.iter().find(|n| *n == name).ok_or_else(|| EmitError::UnknownNode(name.to_string()))?;
            vec![node.as_str()]
        }
        None => nodes.iter().map(String::as_str).collect(),
    };
    let shared = Shared::new(cluster, resolved, only, options);
    policyc_ir::parallel::try_map(&selected, |node| shared.node(node).and_then(&sink))
}

/// Every node's bundle of one cluster, one node at a time: what the nodes
/// share is prepared once (as in [`emit_each`]), a node's bundle only when
/// asked for, so that a caller comparing two clusters (`diff`) holds a
/// node's two bundles at a time, not both clusters' bundles.
pub struct NodeEmitter<'a> {
    shared: Shared<'a>,
    nodes: Vec<String>,
}

impl<'a> NodeEmitter<'a> {
    /// Validates `resolved` and prepares what every node's bundle shares.
    pub fn new(cluster: &'a Cluster, resolved: &'a Resolved, options: &'a BundleOptions) -> Result<Self, EmitError> {
        validate(resolved).map_err(EmitError::Invalid)?;
        Ok(NodeEmitter { shared: Shared::new(cluster, resolved, None, options), nodes: node_names(cluster) })
    }

    /// The nodes a bundle is emitted for ([`node_names`]), sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The bundle of `node` (one of [`NodeEmitter::nodes`]), as [`emit`]
    /// builds it.
    pub fn node(&self, node: &str) -> Result<Bundle, EmitError> {
        self.shared.node(node)
    }
}

/// What every node's bundle is built from, prepared once per emission.
struct Shared<'a> {
    cluster: &'a Cluster,
    resolved: &'a Resolved,
    options: &'a BundleOptions,
    names: maps::RuleNames,
    texts: maps::RenderedMaps,
    /// `identities.txt`, the same on every node.
    identities: (Arc<str>, usize),
    /// `normalized-policy.json` ([`normalized_policy`]), the same on every
    /// node.
    normalized: Arc<str>,
    ipcache: maps::Ipcache,
    /// Digests of the texts and objects every bundle shares, by address.
    shared_digests: HashMap<usize, FileDigest>,
    /// Backend and reverse-NAT ids, when the input has Services.
    service_ids: Option<Result<services::ServicePlan, services::ServiceIdsError>>,
}

impl<'a> Shared<'a> {
    fn new(cluster: &'a Cluster, resolved: &'a Resolved, only: Option<&str>, options: &'a BundleOptions) -> Self {
        let names = maps::RuleNames::new(cluster);
        let texts = maps::RenderedMaps::new(resolved, only.map(|o| vec![o]).as_deref(), &names);
        let lines = maps::identities(resolved);
        let identities = (Arc::from(policyc_bundle::join(&lines)), lines.len());
        let ipcache = maps::Ipcache::new(resolved);
        let normalized: Arc<str> = Arc::from(normalized_policy(cluster, resolved));
        let service_ids = (!cluster.services.is_empty())
            .then(|| services::ServicePlan::new(cluster, options.previous_service_ids.as_ref()));
        let service_texts = service_ids.iter().flatten().flat_map(services::ServicePlan::shared_texts);
        let shared: Vec<&Arc<str>> = texts.texts().chain([&identities.0, &normalized]).chain(service_texts).collect();
        let digests = policyc_ir::parallel::map(&shared, |text| digest::text_digest(text, options.digests));
        let mut shared_digests: HashMap<usize, FileDigest> =
            shared.iter().map(|text| address(text)).zip(digests).collect();
        shared_digests.extend(
            Template::ALL.map(|t| (t.bytes().as_ptr() as usize, digest::object_digest(t.bytes(), options.digests))),
        );
        Shared {
            cluster,
            resolved,
            options,
            names,
            texts,
            identities,
            normalized,
            ipcache,
            shared_digests,
            service_ids,
        }
    }

    /// The digests of a bundle's files: hashed once per emission for the
    /// texts several bundles share, here for the others.
    fn digests(
        &self,
        texts: &BTreeMap<String, Arc<str>>,
        objects: &BTreeMap<String, &'static [u8]>,
    ) -> BTreeMap<String, FileDigest> {
        let texts = texts.iter().map(|(path, text)| {
            let digest = self.shared_digests.get(&address(text)).cloned();
            (path.clone(), digest.unwrap_or_else(|| digest::text_digest(text, self.options.digests)))
        });
        let objects = objects.iter().map(|(path, bytes)| {
            let digest = self.shared_digests.get(&(bytes.as_ptr() as usize)).cloned();
            (path.clone(), digest.unwrap_or_else(|| digest::object_digest(bytes, self.options.digests)))
        });
        texts.chain(objects).collect()
    }

    /// The bundle of `node`.
    fn node(&self, node: &str) -> Result<Bundle, EmitError> {
        let Shared { cluster, resolved, options, ref names, ref texts, .. } = *self;
        let local = maps::local_endpoints(resolved, node);
        let ids = maps::endpoint_ids(&local);
        let mut files = BTreeMap::new();
        let programs: BTreeMap<String, &'static [u8]> = programs::templates().into_iter().collect();

        let (ipcache, ipcache_entries) = self.ipcache.text(node);
        let endpoint_lines = maps::endpoints(&local, &ids);
        let policy_files = maps::policy_files(cluster, &local);
        let mut endpoints = Vec::new();
        let mut rules_used = BTreeSet::new();
        let mut policy_entries = 0;
        for (endpoint, policy_file) in local.iter().zip(policy_files) {
            let lines = endpoint.policy.entries.len();
            let stem = maps::endpoint_stem(cluster, endpoint.index);
            // Endpoints sharing a map share its file: render and check it once.
            if !files.contains_key(&policy_file) {
                check_capacity(node, &format!("policy/{stem}"), lines, options.policy_map_capacity)?;
                rules_used.extend(texts.rules(&endpoint.policy));
                files.insert(policy_file.clone(), texts.text(names, &endpoint.policy));
            }
            policy_entries += lines;
            let id = ids.get(&endpoint.index).copied().unwrap_or(0);
            endpoints.push(manifest::EndpointSpec {
                name: endpoint.name.clone(),
                stem,
                id,
                identity: endpoint.identity.map_or(0, |i| i.get()),
                addresses: endpoint.ips.iter().map(ToString::to_string).collect(),
                policy_file,
                policy_entries: lines,
                config: texts.config(id, &endpoint.policy),
            });
        }
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));

        let counts = [("ipcache", ipcache_entries), ("endpoints", endpoint_lines.len()), ("policy", policy_entries)];
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
        files.insert("maps/ipcache.txt".to_string(), ipcache.into());
        files.insert("maps/endpoints.txt".to_string(), policyc_bundle::join(&endpoint_lines).into());

        let rule_names: Vec<_> = rules_used.into_iter().map(|rule| (names.cookie(rule), names.get(rule))).collect();
        let (rules, rule_lines) =
            rules::table(&rule_names.iter().map(|(cookie, name)| (*cookie, name.as_ref())).collect());
        let tables = vec![
            manifest::TableSpec {
                name: "identities".into(),
                file: "maps/identities.txt".into(),
                entries: self.identities.1,
            },
            manifest::TableSpec { name: "rules".into(), file: "maps/rules.txt".into(), entries: rule_lines },
        ];
        let mut tables = tables;
        if let Some(ids) = &self.service_ids {
            let ids = ids.as_ref().map_err(|e| {
                let (map, capacity) = if e.what == "backend" {
                    ("backends", policyc_ir::service::ids::BACKEND_ID_MAX as usize)
                } else {
                    ("revnat", policyc_ir::service::ids::REV_NAT_ID_MAX as usize)
                };
                EmitError::Capacity(CapacityError {
                    node: node.to_string(),
                    map: map.into(),
                    entries: e.needed,
                    capacity,
                })
            })?;
            let files_of = [
                ("services", policyc_bundle::SERVICES_FILE),
                ("backends", policyc_bundle::BACKENDS_FILE),
                ("revnat", policyc_bundle::REVNAT_FILE),
            ];
            for ((name, file), (text, entries)) in files_of.into_iter().zip(ids.node_files(cluster, node)) {
                check_capacity(node, name, entries, services::SERVICE_MAP_CAPACITY)?;
                tables.push(manifest::TableSpec { name: name.into(), file: file.into(), entries });
                files.insert(file.to_string(), text);
            }
        }
        files.insert("maps/identities.txt".to_string(), Arc::clone(&self.identities.0));
        files.insert("maps/rules.txt".to_string(), rules.into());
        files.insert(NORMALIZED_POLICY_FILE.to_string(), Arc::clone(&self.normalized));

        let manifest = manifest::Manifest {
            format_version: policyc_bundle::FORMAT_VERSION,
            node: node.to_string(),
            source_hash: options.source_hash.clone(),
            maps: specs,
            programs: manifest::ProgramFiles {
                from: programs::template_path(Template::FromContainer),
                to: programs::template_path(Template::ToContainer),
            },
            endpoints,
            tables,
            files: self.digests(&files, &programs),
        };
        files.insert("manifest.json".to_string(), manifest.to_json().into());
        Ok(Bundle { node: node.to_string(), files, programs })
    }
}

/// The text of `normalized-policy.json`: the policy of `cluster` in the
/// normalized form ([`policyc_ir::normalized`]) with the identities of
/// `resolved`, from which the node agent computes the identity and policy
/// of a label set the bundle does not know.
pub fn normalized_policy(cluster: &Cluster, resolved: &Resolved) -> String {
    policyc_bundle::normalized::to_text(&NormalizedPolicy::new(cluster, &resolved.table))
}

/// A text's address: the key of what is done once per shared text.
pub(crate) fn address(text: &Arc<str>) -> usize {
    Arc::as_ptr(text) as *const u8 as usize
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
        self.write_shared(dir, &write::Written::default())
    }

    /// [`Bundle::write_to`], where a text this bundle shares with bundles
    /// written before with the same `written` is hard-linked to the file
    /// written first instead of written again (copied where the file system
    /// cannot link).
    pub fn write_shared(&self, dir: &Path, written: &write::Written) -> Result<(), EmitError> {
        write::replace_dir(dir)?;
        for (relative, text) in &self.files {
            written.write(text, &dir.join(relative))?;
        }
        for (relative, bytes) in &self.programs {
            write::write_file(&dir.join(relative), bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
