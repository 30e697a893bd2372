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

use policyc_ebpf::abi::{self, MapLayout};
use policyc_ebpf::config::EndpointConfig;
use serde::Serialize;

/// Version of the bundle layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 4;

/// One shared BPF map of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgramFiles {
    /// `from_container` (tcx ingress of the host-side interface).
    pub from: String,
    /// `to_container` (tcx egress of the host-side interface).
    pub to: String,
}

/// One endpoint of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// `<ns>/<pod>`.
    pub name: String,
    /// A file-system-safe name (`<ns>.<pod>`,
    /// [`super::maps::endpoint_stem`]): the loader names the endpoint's
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// Name.
    pub name: String,
    /// Text file, relative to the bundle.
    pub file: String,
    /// Lines.
    pub entries: usize,
}

/// The manifest of one bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
}

impl Manifest {
    /// Pretty JSON with a final newline; field order is fixed by the types.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and integers always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}
