//! A bundle read from disk and checked before anything touches the kernel:
//! format version, node, map layouts against this loader's ABI, every text
//! map, and every program's settings against the manifest.

use crate::entries::{self, EntryError};
use policyc_ebpf::abi::{self, EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::specialize::specialize;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The bundle format this loader reads.
pub const FORMAT_VERSION: u32 = 4;

/// Why a bundle is refused.
#[derive(Debug)]
pub enum BundleError {
    /// A file cannot be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// `manifest.json` does not parse.
    Manifest(String),
    /// The bundle's format version is not [`FORMAT_VERSION`].
    FormatVersion(u32),
    /// A map of the manifest differs from this loader's ABI.
    MapLayout(String),
    /// A text map line is malformed.
    Entry(EntryError),
    /// A program template cannot take an endpoint's settings.
    Program(String),
    /// One generation of a map would overflow.
    Capacity {
        /// The map.
        map: String,
        /// Entries the bundle has.
        entries: usize,
        /// Entries one generation holds.
        capacity: u32,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io { path, error } => write!(f, "cannot read `{}`: {error}", path.display()),
            BundleError::Manifest(e) => write!(f, "manifest.json: {e}"),
            BundleError::FormatVersion(v) => write!(
                f,
                "bundle format version {v} is not supported (this loader reads version {FORMAT_VERSION}); \
                 compile the bundle with a policyc that matches this loader"
            ),
            BundleError::MapLayout(e) => write!(f, "manifest.json: {e}"),
            BundleError::Entry(e) => write!(f, "{e}"),
            BundleError::Program(e) => f.write_str(e),
            BundleError::Capacity { map, entries, capacity } => {
                write!(f, "map `{map}` would hold {entries} entries but one generation holds at most {capacity}")
            }
        }
    }
}

impl std::error::Error for BundleError {}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    format_version: u32,
    node: String,
    source_hash: String,
    maps: Vec<MapFile>,
    programs: ProgramsFile,
    endpoints: Vec<EndpointFile>,
}

#[derive(Debug, Deserialize)]
struct MapFile {
    name: String,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

#[derive(Debug, Deserialize)]
struct EndpointFile {
    name: String,
    stem: String,
    id: u16,
    addresses: Vec<String>,
    policy_file: String,
    config: EndpointConfig,
}

#[derive(Debug, Deserialize)]
struct ProgramsFile {
    from: String,
    to: String,
}

/// One local endpoint of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEndpoint {
    /// `<ns>/<pod>`.
    pub name: String,
    /// A file-system-safe name (`<ns>.<pod>`): the name of its pinned
    /// links.
    pub stem: String,
    /// Endpoint id on the node.
    pub id: u16,
    /// Addresses (empty for a host-network pod or a workload).
    pub addresses: Vec<std::net::IpAddr>,
    /// Settings of its programs.
    pub config: EndpointConfig,
    /// Its `from_container` object: the template with its settings.
    pub from_program: Vec<u8>,
    /// Its `to_container` object.
    pub to_program: Vec<u8>,
}

/// A checked bundle: the entries of one generation and the programs.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// Node it was compiled for.
    pub node: String,
    /// Hash of the input manifests it was compiled from.
    pub source_hash: String,
    /// SHA-256 over every file of the bundle (what `status` shows and what
    /// makes a re-apply a no-op).
    pub hash: String,
    /// ipcache entries.
    pub ipcache: Vec<(IpcacheKey, IpcacheValue)>,
    /// endpoints entries.
    pub endpoint_entries: Vec<(EndpointKey, EndpointValue)>,
    /// policy entries of every endpoint.
    pub policy: Vec<(PolicyKey, PolicyValue)>,
    /// Local endpoints, by name.
    pub endpoints: Vec<BundleEndpoint>,
    /// The `from_container` and `to_container` templates.
    pub templates: [Vec<u8>; 2],
}

impl Bundle {
    /// `template` with `config` written in.
    pub fn program(&self, template: policyc_ebpf::Template, config: &EndpointConfig) -> Result<Vec<u8>, BundleError> {
        let bytes = match template {
            policyc_ebpf::Template::FromContainer => &self.templates[0],
            policyc_ebpf::Template::ToContainer => &self.templates[1],
        };
        specialize(bytes, config).map_err(|e| BundleError::Program(format!("`{}`: {e}", template.program_name())))
    }
}

fn read(dir: &Path, relative: &str, hasher: &mut Sha256) -> Result<Vec<u8>, BundleError> {
    // A manifest naming `../x` must not read outside the bundle.
    if relative.split('/').any(|part| part == ".." || part.is_empty()) || relative.starts_with('/') {
        return Err(BundleError::Manifest(format!("path `{relative}` leaves the bundle")));
    }
    let path = dir.join(relative);
    let bytes = std::fs::read(&path).map_err(|error| BundleError::Io { path, error })?;
    hasher.update(relative.as_bytes());
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(&bytes);
    Ok(bytes)
}

fn text(dir: &Path, relative: &str, hasher: &mut Sha256) -> Result<String, BundleError> {
    String::from_utf8(read(dir, relative, hasher)?)
        .map_err(|_| BundleError::Manifest(format!("`{relative}` is not UTF-8 text")))
}

/// The bundle directory `path` names: `path` itself if it holds a
/// `manifest.json`, else the one bundle among its subdirectories (what
/// `policyc compile --node N --out DIR` writes), else an error listing them.
pub fn locate(path: &Path) -> Result<PathBuf, BundleError> {
    if path.join("manifest.json").is_file() {
        return Ok(path.to_path_buf());
    }
    let entries = std::fs::read_dir(path).map_err(|error| BundleError::Io { path: path.to_path_buf(), error })?;
    let mut bundles: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("manifest.json").is_file()).collect();
    bundles.sort();
    match bundles.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(BundleError::Manifest(format!("`{}` holds no bundle (no manifest.json)", path.display()))),
        many => Err(BundleError::Manifest(format!(
            "`{}` holds bundles of several nodes; name this node's: {}",
            path.display(),
            many.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl Bundle {
    /// Reads and checks the bundle in `dir`.
    pub fn read(dir: &Path) -> Result<Bundle, BundleError> {
        let mut hasher = Sha256::new();
        let manifest: ManifestFile = {
            let text = text(dir, "manifest.json", &mut hasher)?;
            // The version first, so an unknown layout says so rather than
            // failing on a field.
            let version: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| BundleError::Manifest(e.to_string()))?;
            let v = version.get("format_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
            if v != u64::from(FORMAT_VERSION) {
                return Err(BundleError::FormatVersion(v as u32));
            }
            serde_json::from_str(&text).map_err(|e| BundleError::Manifest(e.to_string()))?
        };
        debug_assert_eq!(manifest.format_version, FORMAT_VERSION);
        check_layouts(&manifest.maps)?;

        let entry = BundleError::Entry;
        let ipcache =
            entries::ipcache("maps/ipcache.txt", &text(dir, "maps/ipcache.txt", &mut hasher)?).map_err(entry)?;
        let endpoint_lines =
            entries::endpoints("maps/endpoints.txt", &text(dir, "maps/endpoints.txt", &mut hasher)?).map_err(entry)?;
        let cookies = entries::rules("maps/rules.txt", &text(dir, "maps/rules.txt", &mut hasher)?).map_err(entry)?;

        let from_template = read(dir, &manifest.programs.from, &mut hasher)?;
        let to_template = read(dir, &manifest.programs.to, &mut hasher)?;
        let mut policy = Vec::new();
        let mut endpoints = Vec::new();
        // Endpoints of one identity share a policy file: read each once.
        let mut policy_texts: HashMap<&str, String> = HashMap::new();
        for e in &manifest.endpoints {
            let policy_text = match policy_texts.entry(&e.policy_file) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(text(dir, &e.policy_file, &mut hasher)?),
            };
            policy.extend(entries::policy(&e.policy_file, policy_text, e.id, &cookies).map_err(entry)?);
            let config = endpoint_config(e)?;
            let program = |path: &str, template: &[u8]| {
                specialize(template, &config).map_err(|err| BundleError::Program(format!("`{path}`: {err}")))
            };
            let from_program = program(&manifest.programs.from, &from_template)?;
            let to_program = program(&manifest.programs.to, &to_template)?;
            let addresses = e
                .addresses
                .iter()
                .map(|a| {
                    a.parse().map_err(|_| BundleError::Manifest(format!("endpoint `{}`: bad address `{a}`", e.name)))
                })
                .collect::<Result<_, _>>()?;
            // The stem names pinned links: one plain file name.
            let stem = e.stem.as_str();
            if stem.is_empty() || stem.starts_with('.') || stem.contains('/') {
                return Err(BundleError::Manifest(format!("endpoint `{}`: bad stem `{stem}`", e.name)));
            }
            endpoints.push(BundleEndpoint {
                name: e.name.clone(),
                stem: stem.to_string(),
                id: e.id,
                addresses,
                config,
                from_program,
                to_program,
            });
        }
        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
        let endpoint_entries: Vec<(EndpointKey, EndpointValue)> =
            endpoint_lines.into_iter().map(|(k, v, _)| (k, v)).collect();
        for (map, entries) in
            [("ipcache", ipcache.len()), ("endpoints", endpoint_entries.len()), ("policy", policy.len())]
        {
            let capacity = abi::generation_capacity(map).unwrap_or(0);
            if entries > capacity as usize {
                return Err(BundleError::Capacity { map: map.into(), entries, capacity });
            }
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            node: manifest.node,
            source_hash: manifest.source_hash,
            hash: format!("sha256:{:x}", hasher.finalize()),
            ipcache,
            endpoint_entries,
            policy,
            endpoints,
            templates: [from_template, to_template],
        })
    }
}

fn check_layouts(maps: &[MapFile]) -> Result<(), BundleError> {
    for layout in abi::MAPS {
        let m = maps
            .iter()
            .find(|m| m.name == layout.name)
            .ok_or_else(|| BundleError::MapLayout(format!("map `{}` is missing", layout.name)))?;
        let (want, got) =
            ((layout.key_size, layout.value_size, layout.max_entries), (m.key_size, m.value_size, m.max_entries));
        if want != got {
            return Err(BundleError::MapLayout(format!(
                "map `{}` has key/value size and capacity {got:?}, this loader's datapath uses {want:?}",
                layout.name
            )));
        }
    }
    Ok(())
}

fn endpoint_config(e: &EndpointFile) -> Result<EndpointConfig, BundleError> {
    if e.config.endpoint_id != u32::from(e.id) {
        return Err(BundleError::Manifest(format!(
            "endpoint `{}`: settings name endpoint id {}, not {}",
            e.name, e.config.endpoint_id, e.id
        )));
    }
    Ok(e.config)
}
