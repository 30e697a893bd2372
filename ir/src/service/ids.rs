//! Backend and reverse-NAT ids that stay stable across compiles.
//!
//! Connection tracking and session affinity remember a backend by id and a
//! reply's service address by reverse-NAT id; both live outside the
//! generation flip, so an apply must not renumber what is still there.
//! The ids are placed as identities are ([`crate::identity`]): a key
//! present in the previous table keeps its id; a new key, in sorted order,
//! takes the first free id from a stable hash of its text (FNV-1a 64,
//! linear probing). An id then depends only on the keys that collide with
//! it, so adding a Service does not renumber the others.
//!
//! Keys are Cilium's: a backend is its address, protocol and port (one id
//! per L3n4 address, shared by every Service that uses it); a reverse-NAT
//! entry is a frontend's address, protocol and port. The ranges are the
//! widths of Cilium's map fields: backend ids are `u32`, reverse-NAT ids
//! (`rev_nat_index`) `u16`; 0 means none in both.

use crate::identity::fnv1a64;
use std::collections::{BTreeMap, BTreeSet};

/// Stable ids for keys of type `K` in `1..=max`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IdTable<K: Ord> {
    by_key: BTreeMap<K, u32>,
}

impl<K: Ord> Default for IdTable<K> {
    fn default() -> Self {
        IdTable { by_key: BTreeMap::new() }
    }
}

/// The largest backend id.
pub const BACKEND_ID_MAX: u32 = u32::MAX;
/// The largest reverse-NAT id.
pub const REV_NAT_ID_MAX: u32 = u16::MAX as u32;

impl<K: Ord + Clone + std::fmt::Display> IdTable<K> {
    /// Ids in `1..=max` for every key of `keys`, keeping the ids of
    /// `previous` that are in range and not claimed twice. `None` if
    /// there are more keys than ids.
    pub fn allocate(keys: impl IntoIterator<Item = K>, max: u32, previous: Option<&IdTable<K>>) -> Option<Self> {
        let wanted: BTreeSet<K> = keys.into_iter().collect();
        if wanted.len() as u64 > u64::from(max) {
            return None;
        }
        let mut by_key = BTreeMap::new();
        let mut used = BTreeSet::new();
        for (key, &id) in previous.map(|p| &p.by_key).into_iter().flatten() {
            if wanted.contains(key) && (1..=max).contains(&id) && used.insert(id) {
                by_key.insert(key.clone(), id);
            }
        }
        for key in wanted {
            if by_key.contains_key(&key) {
                continue;
            }
            let span = u64::from(max);
            let home = fnv1a64(key.to_string().as_bytes()) % span;
            // At most `used.len() + 1` probes: there is a free id.
            let id = (0..span)
                .map(|probe| 1 + ((home + probe) % span) as u32)
                .find(|id| !used.contains(id))
                .expect("fewer keys than ids, so one is free");
            used.insert(id);
            by_key.insert(key, id);
        }
        Some(IdTable { by_key })
    }

    /// The id of `key`.
    pub fn get(&self, key: &K) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    /// `(key, id)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, u32)> {
        self.by_key.iter().map(|(k, &id)| (k, id))
    }

    /// Builds a table from explicit assignments (a previous bundle's).
    pub fn from_assignments(assignments: impl IntoIterator<Item = (K, u32)>) -> Self {
        IdTable { by_key: assignments.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_in_range_unique_and_deterministic() {
        let keys: Vec<String> = (0..300).map(|i| format!("10.200.{}.{}:80/TCP", i / 250, i % 250)).collect();
        let a = IdTable::allocate(keys.clone(), REV_NAT_ID_MAX, None).unwrap();
        let b = IdTable::allocate(keys.iter().rev().cloned(), REV_NAT_ID_MAX, None).unwrap();
        assert_eq!(a, b);
        let ids: BTreeSet<u32> = a.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 300);
        assert!(ids.iter().all(|&id| (1..=REV_NAT_ID_MAX).contains(&id)));
        assert!(IdTable::allocate(keys, 299, None).is_none());
    }

    #[test]
    fn a_tiny_range_probes_and_previous_ids_win() {
        let keys = ["a", "b", "c"].map(String::from);
        let t = IdTable::allocate(keys.clone(), 3, None).unwrap();
        let ids: BTreeSet<u32> = t.iter().map(|(_, id)| id).collect();
        assert_eq!(ids, BTreeSet::from([1, 2, 3]));
        let previous = IdTable::from_assignments([("a".to_string(), 3), ("b".to_string(), 3), ("z".to_string(), 1)]);
        let t = IdTable::allocate(keys, 3, Some(&previous)).unwrap();
        assert_eq!(t.get(&"a".to_string()), Some(3), "a keeps its previous id");
        assert_ne!(t.get(&"b".to_string()), Some(3), "an id claimed twice is kept once");
    }

    proptest! {
        #[test]
        fn adding_keys_keeps_existing_ids(base in proptest::collection::btree_set("[a-z]{1,6}", 1..40),
                                          extra in proptest::collection::btree_set("[A-Z]{1,6}", 1..10)) {
            let before = IdTable::allocate(base.iter().cloned(), BACKEND_ID_MAX, None).unwrap();
            let after = IdTable::allocate(base.iter().chain(&extra).cloned(), BACKEND_ID_MAX, Some(&before)).unwrap();
            for (k, id) in before.iter() {
                prop_assert_eq!(after.get(k), Some(id));
            }
            // Without the previous table too: a 2^32 range makes collisions
            // (the only thing that moves an id) practically absent here.
            let fresh = IdTable::allocate(base.iter().chain(&extra).cloned(), BACKEND_ID_MAX, None).unwrap();
            for (k, id) in before.iter() {
                prop_assert_eq!(fresh.get(k), Some(id));
            }
        }
    }
}
