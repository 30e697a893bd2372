//! `manifest.json`: what a loader checks before touching anything.
//!
//! The maps are the datapath's shared maps (`ebpf-templates/include/maps.h`,
//! mirrored in [`policyc_ebpf::abi::MAPS`]) with their types, key and value
//! sizes and capacities, which the loader compares with pinned maps it would
//! reuse (aya reuses a pinned map by path without checking), and the number
//! of entries this bundle puts into one generation of each. Each local
//! endpoint lists its id, policy file and the settings of its programs.
//!
//! The program templates travel once per bundle (`programs/*.o`); the
//! loader writes each endpoint's settings into its own copy before loading
//! it (`policyc_ebpf::specialize`). A copy per endpoint in the bundle would
//! be byte-for-byte the template but for a few `.rodata` bytes, and at 10 000
//! pods it made bundles a gigabyte larger and compiles several times slower
//! (measured with `cargo xtask bench compile`).
//!
//! `files` holds the digest of every other file of the bundle
//! ([`crate::digest`]), so that a loader compares two manifests to see
//! which files, and which pieces of long text files, changed, reads only
//! those, and checks what it reads.

use crate::digest::FileDigest;
use crate::FORMAT_VERSION;
use policyc_ebpf::abi::{self, MapLayout};
use policyc_ebpf::config::EndpointConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One shared BPF map of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSpec {
    /// Name, also its pin name under the loader's bpffs root.
    pub name: String,
    /// BPF map type (`lpm_trie`, `hash`, ...).
    #[serde(rename = "type")]
    pub map_type: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity of the map (both generations of a policy-bearing map).
    pub max_entries: u32,
    /// Entries this bundle writes into one generation (`None` for maps the
    /// datapath fills: conntrack, metrics, events, state).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
}

impl MapSpec {
    /// The spec of `layout` holding `entries` of this bundle.
    pub fn new(layout: &MapLayout, entries: Option<usize>) -> Self {
        MapSpec {
            name: layout.name.into(),
            map_type: type_name(layout.map_type).into(),
            key_size: layout.key_size,
            value_size: layout.value_size,
            max_entries: layout.max_entries,
            entries,
        }
    }
}

/// The name a bundle gives a BPF map type number.
pub fn type_name(map_type: u32) -> &'static str {
    match map_type {
        abi::BPF_MAP_TYPE_HASH => "hash",
        abi::BPF_MAP_TYPE_ARRAY => "array",
        abi::BPF_MAP_TYPE_PERCPU_HASH => "percpu_hash",
        abi::BPF_MAP_TYPE_PERCPU_ARRAY => "percpu_array",
        abi::BPF_MAP_TYPE_LRU_HASH => "lru_hash",
        abi::BPF_MAP_TYPE_LPM_TRIE => "lpm_trie",
        abi::BPF_MAP_TYPE_RINGBUF => "ringbuf",
        _ => "unknown",
    }
}

/// The program templates of the bundle, relative to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramFiles {
    /// `from_container` (tcx ingress of the host-side interface).
    pub from: String,
    /// `to_container` (tcx egress of the host-side interface).
    pub to: String,
}

/// One endpoint of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// `<ns>/<pod>`.
    pub name: String,
    /// A file-system-safe name (`<ns>.<pod>`,
    /// `policyc::emit::maps::endpoint_stem`): the loader names the endpoint's
    /// pinned links after it.
    pub stem: String,
    /// Endpoint id on the node.
    pub id: u16,
    /// Its identity.
    pub identity: u32,
    /// Its addresses (none for a host-network pod or a workload).
    pub addresses: Vec<String>,
    /// Its policy map's text file (shared by the endpoints of one identity
    /// whose maps are equal).
    pub policy_file: String,
    /// Entries of its policy map.
    pub policy_entries: usize,
    /// The settings of its programs.
    pub config: EndpointConfig,
}

/// A table of the bundle that is not a BPF map (for people and tools).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// Name.
    pub name: String,
    /// Text file, relative to the bundle.
    pub file: String,
    /// Lines.
    pub entries: usize,
}

/// The manifest of one bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Node name.
    pub node: String,
    /// Content hash of the input manifests.
    pub source_hash: String,
    /// The node's shared maps, in the order of the datapath's declaration.
    pub maps: Vec<MapSpec>,
    /// The program templates.
    pub programs: ProgramFiles,
    /// Local endpoints, by name.
    pub endpoints: Vec<EndpointSpec>,
    /// Other tables.
    pub tables: Vec<TableSpec>,
    /// Every other file of the bundle, by path relative to it.
    pub files: BTreeMap<String, FileDigest>,
}

impl Manifest {
    /// Pretty JSON with a final newline; field order is fixed by the types.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and integers always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Parses `manifest.json`. The version is read first, so that a bundle
    /// of another format says so rather than failing on a field.
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ManifestError::Json(e.to_string()))?;
        let version = value.get("format_version").and_then(serde_json::Value::as_u64).unwrap_or(0);
        if version != u64::from(FORMAT_VERSION) {
            return Err(ManifestError::FormatVersion(u32::try_from(version).unwrap_or(u32::MAX)));
        }
        serde_json::from_value(value).map_err(|e| ManifestError::Json(e.to_string()))
    }
}

/// Why a `manifest.json` does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// It is not JSON of a manifest.
    Json(String),
    /// Its format version is not [`FORMAT_VERSION`].
    FormatVersion(u32),
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Json(e) => f.write_str(e),
            ManifestError::FormatVersion(v) => {
                write!(f, "bundle format version {v} is not supported (this build reads version {FORMAT_VERSION})")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{text_digest, Digests};

    fn manifest() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            node: "node-a".into(),
            source_hash: "sha256:0".into(),
            maps: abi::MAPS.iter().map(|layout| MapSpec::new(layout, Some(1))).collect(),
            programs: ProgramFiles { from: "programs/from_container.o".into(), to: "programs/to_container.o".into() },
            endpoints: vec![EndpointSpec {
                name: "shop/api".into(),
                stem: "shop.api".into(),
                id: 7,
                identity: 256,
                addresses: vec!["10.0.1.2".into()],
                policy_file: "maps/policy/256.txt".into(),
                policy_entries: 1,
                config: EndpointConfig { endpoint_id: 7, ..EndpointConfig::default() },
            }],
            tables: vec![TableSpec { name: "rules".into(), file: "maps/rules.txt".into(), entries: 0 }],
            files: [("maps/policy/256.txt".to_string(), text_digest("x\n", Digests::Sha256))].into(),
        }
    }

    #[test]
    fn reads_what_it_writes() {
        let m = manifest();
        assert_eq!(Manifest::from_json(&m.to_json()), Ok(m));
    }

    #[test]
    fn another_version_is_refused_first() {
        let text = r#"{"format_version": 5, "node": 3}"#;
        assert_eq!(Manifest::from_json(text), Err(ManifestError::FormatVersion(5)));
        assert!(matches!(Manifest::from_json("{"), Err(ManifestError::Json(_))));
    }
}
