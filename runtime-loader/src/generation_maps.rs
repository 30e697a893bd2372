//! The maps that hold two generations of the node's policy and services,
//! declared once.
//!
//! Every entry of these maps has the generation it belongs to in one byte
//! of its key, so that an apply writes one generation while packets read
//! the other ([`crate::maps`]); the `state` slot says which one is in
//! force. Reading, writing, counting and removing a generation all go over
//! this table.

/// A map holding two generations of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationMap {
    /// Its pin name (and `abi::MAPS` name).
    pub name: &'static str,
    /// Where the generation byte is in a key as the kernel stores it
    /// (after the prefix length for a trie).
    pub generation_byte: usize,
    /// Size of a key as the kernel stores it.
    pub key_size: usize,
    /// Size of a value.
    pub value_size: usize,
    /// The map whose operations it counts under in reports: single-port
    /// policy entries live in `policy_exact` but are policy entries.
    pub reported_as: &'static str,
}

/// The maps of a generation.
pub const GENERATION_MAPS: [GenerationMap; 7] =
    [IPCACHE, ENDPOINTS, POLICY, POLICY_EXACT, LB4_SERVICES, LB4_BACKENDS, LB4_REVERSE_NAT];

/// The ipcache trie: address prefix to identity.
pub const IPCACHE: GenerationMap =
    GenerationMap { name: "ipcache", generation_byte: 4, key_size: 24, value_size: 8, reported_as: "ipcache" };
/// Endpoint settings by address.
pub const ENDPOINTS: GenerationMap =
    GenerationMap { name: "endpoints", generation_byte: 0, key_size: 20, value_size: 12, reported_as: "endpoints" };
/// Policy entries with port ranges (a trie).
pub const POLICY: GenerationMap =
    GenerationMap { name: "policy", generation_byte: 4, key_size: 16, value_size: 12, reported_as: "policy" };
/// Single-port policy entries (a hash looked up first).
pub const POLICY_EXACT: GenerationMap =
    GenerationMap { name: "policy_exact", generation_byte: 4, key_size: 16, value_size: 12, reported_as: "policy" };

/// Service frontends and their backend slots (`struct lb4_key`: the
/// generation after address, port, slot, protocol and scope).
pub const LB4_SERVICES: GenerationMap = GenerationMap {
    name: "lb4_services",
    generation_byte: 10,
    key_size: 12,
    value_size: 12,
    reported_as: "lb4_services",
};
/// Service backends by id.
pub const LB4_BACKENDS: GenerationMap =
    GenerationMap { name: "lb4_backends", generation_byte: 4, key_size: 8, value_size: 8, reported_as: "lb4_backends" };
/// Service frontends by reverse-NAT id.
pub const LB4_REVERSE_NAT: GenerationMap = GenerationMap {
    name: "lb4_reverse_nat",
    generation_byte: 2,
    key_size: 4,
    value_size: 8,
    reported_as: "lb4_reverse_nat",
};

impl GenerationMap {
    /// The generation a kernel key belongs to.
    pub fn generation_of(&self, key: &[u8]) -> Option<u8> {
        key.get(self.generation_byte).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_datapath_layouts() {
        for map in GENERATION_MAPS {
            let layout = policyc_ebpf::abi::MAPS.iter().find(|l| l.name == map.name).expect("a datapath map");
            assert_eq!(
                (map.key_size, map.value_size),
                (layout.key_size as usize, layout.value_size as usize),
                "{}",
                map.name
            );
            assert!(map.generation_byte < map.key_size);
        }
        // The generation byte of the hash maps' keys, where the ABI puts it.
        use policyc_ebpf::lb::{Lb4BackendKey, Lb4Key, Lb4ReverseNatKey};
        use std::mem::offset_of;
        assert_eq!(LB4_SERVICES.generation_byte, offset_of!(Lb4Key, generation));
        assert_eq!(LB4_BACKENDS.generation_byte, offset_of!(Lb4BackendKey, generation));
        assert_eq!(LB4_REVERSE_NAT.generation_byte, offset_of!(Lb4ReverseNatKey, generation));
        let key = Lb4Key { generation: 1, ..Default::default() }.to_bytes();
        assert_eq!(LB4_SERVICES.generation_of(&key), Some(1));
    }
}
