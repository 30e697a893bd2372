//! `manifest.json`: what a loader checks before touching anything.
//!
//! Key and value sizes are those of the map layouts of the datapath ABI
//! (`ebpf-templates/include/`); the loader compares them, and
//! `max_entries`, with the pinned maps it would reuse, since aya reuses a
//! pinned map by path without checking.

use serde::Serialize;

/// Version of the bundle layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Capacity of the ipcache (Cilium's default).
pub const IPCACHE_MAX_ENTRIES: usize = 512_000;
/// Capacity of the endpoints map (one entry per local pod IP).
pub const ENDPOINTS_MAX_ENTRIES: usize = 65_535;

/// `struct ipcache_key`: LPM prefix length (u32), family (u8), 3 bytes of
/// padding, address (16 bytes).
pub const IPCACHE_KEY_SIZE: u32 = 24;
/// `struct ipcache_value`: identity (u32), flags (u32).
pub const IPCACHE_VALUE_SIZE: u32 = 8;
/// `struct endpoint_key`: address (16 bytes), family (u8), 3 bytes padding.
pub const ENDPOINT_KEY_SIZE: u32 = 20;
/// `struct endpoint_value`: endpoint id (u32), identity (u32), flags (u32).
pub const ENDPOINT_VALUE_SIZE: u32 = 12;
/// `struct policy_key`: LPM prefix length (u32), peer identity (u32),
/// direction (u8), protocol (u8), port (u16, network order).
pub const POLICY_KEY_SIZE: u32 = 12;
/// `struct policy_value`: verdict (u8), padding (u8), proxy port (u16),
/// rule cookie (u32).
pub const POLICY_VALUE_SIZE: u32 = 8;

/// One BPF map of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapSpec {
    /// Name, also its pin name under the bundle's bpffs root.
    pub name: String,
    /// Text file with its entries, relative to the bundle.
    pub file: String,
    /// BPF map type (`lpm_trie`, `hash`).
    #[serde(rename = "type")]
    pub map_type: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: usize,
    /// Entries in this bundle.
    pub entries: usize,
}

impl MapSpec {
    /// The ipcache LPM trie with `entries` entries.
    pub fn ipcache(entries: usize) -> Self {
        MapSpec {
            name: "ipcache".into(),
            file: "maps/ipcache.txt".into(),
            map_type: "lpm_trie".into(),
            key_size: IPCACHE_KEY_SIZE,
            value_size: IPCACHE_VALUE_SIZE,
            max_entries: IPCACHE_MAX_ENTRIES,
            entries,
        }
    }

    /// The endpoints hash with `entries` entries.
    pub fn endpoints(entries: usize) -> Self {
        MapSpec {
            name: "endpoints".into(),
            file: "maps/endpoints.txt".into(),
            map_type: "hash".into(),
            key_size: ENDPOINT_KEY_SIZE,
            value_size: ENDPOINT_VALUE_SIZE,
            max_entries: ENDPOINTS_MAX_ENTRIES,
            entries,
        }
    }

    /// The policy LPM trie of endpoint `stem` (`<ns>.<pod>`).
    pub fn policy(stem: &str, entries: usize, capacity: usize) -> Self {
        MapSpec {
            name: format!("policy/{stem}"),
            file: format!("maps/policy/{stem}.txt"),
            map_type: "lpm_trie".into(),
            key_size: POLICY_KEY_SIZE,
            value_size: POLICY_VALUE_SIZE,
            max_entries: capacity,
            entries,
        }
    }
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
    /// BPF maps, ipcache and endpoints first, then policy maps by name.
    pub maps: Vec<MapSpec>,
    /// Other tables.
    pub tables: Vec<TableSpec>,
}

impl Manifest {
    /// A manifest for `node`.
    pub fn new(node: &str, source_hash: &str, maps: Vec<MapSpec>, tables: Vec<TableSpec>) -> Self {
        Manifest { format_version: FORMAT_VERSION, node: node.into(), source_hash: source_hash.into(), maps, tables }
    }

    /// Pretty JSON with a final newline; field order is fixed by the types.
    pub fn to_json(&self) -> String {
        // Plain structs of strings and integers always serialize.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}
