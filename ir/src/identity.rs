//! Numeric security identities, numbered as Cilium numbers them.
//!
//! - `0` is the wildcard ([`Identity::ANY`]) of policy map keys, never an
//!   identity of a peer;
//! - `1..=10` are the reserved identities (`host`, `world`, ...), each with
//!   the label set `reserved:<name>`;
//! - `256..=65535` are cluster-local identities, one per distinct
//!   identity-relevant label set of the cluster's endpoints;
//! - `1<<24 | n` are CIDR identities (Cilium's local scope), one per prefix
//!   named by a CIDR rule.
//!
//! Cluster-local numbers must survive unrelated changes: [`IdentityTable`]
//! keeps the numbers of a previous table for label sets that are still
//! present, and places new label sets at a stable hash of their canonical
//! text (FNV-1a 64, linear probing), in sorted order, so the number of a label
//! set depends on the label sets that collide with it, not on everything
//! else in the cluster.

use crate::labels::{Labels, RESERVED_PREFIX};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

/// A numeric security identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity(pub u32);

/// First cluster-local identity.
pub const CLUSTER_LOCAL_MIN: u32 = 256;
/// Last cluster-local identity.
pub const CLUSTER_LOCAL_MAX: u32 = 65535;
/// Scope bit of CIDR (local-scope) identities.
pub const CIDR_SCOPE: u32 = 1 << 24;
/// Largest `n` of a CIDR identity `1<<24 | n`.
pub const CIDR_INDEX_MAX: u32 = (1 << 24) - 1;

impl Identity {
    /// The wildcard of policy map keys: any peer.
    pub const ANY: Identity = Identity(0);
    /// The local node.
    pub const HOST: Identity = Identity(1);
    /// Everything outside the cluster.
    pub const WORLD: Identity = Identity(2);
    /// Pods not managed by Cilium.
    pub const UNMANAGED: Identity = Identity(3);
    /// Cilium health endpoints.
    pub const HEALTH: Identity = Identity(4);
    /// Endpoints whose identity is not resolved yet.
    pub const INIT: Identity = Identity(5);
    /// The other nodes of the cluster.
    pub const REMOTE_NODE: Identity = Identity(6);
    /// The Kubernetes API server.
    pub const KUBE_APISERVER: Identity = Identity(7);
    /// Cilium's ingress proxy.
    pub const INGRESS: Identity = Identity(8);
    /// IPv4 addresses outside the cluster (`0.0.0.0/0`).
    pub const WORLD_IPV4: Identity = Identity(9);
    /// IPv6 addresses outside the cluster (`::/0`).
    pub const WORLD_IPV6: Identity = Identity(10);

    /// Every reserved identity, in numeric order.
    pub const RESERVED: [Identity; 10] = [
        Identity::HOST,
        Identity::WORLD,
        Identity::UNMANAGED,
        Identity::HEALTH,
        Identity::INIT,
        Identity::REMOTE_NODE,
        Identity::KUBE_APISERVER,
        Identity::INGRESS,
        Identity::WORLD_IPV4,
        Identity::WORLD_IPV6,
    ];

    /// The CIDR identity `1<<24 | n`; `None` if `n` is 0 or does not fit in
    /// 24 bits.
    pub fn cidr(n: u32) -> Option<Identity> {
        (1..=CIDR_INDEX_MAX).contains(&n).then_some(Identity(CIDR_SCOPE | n))
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether this is the wildcard `0`.
    pub fn is_any(self) -> bool {
        self.0 == 0
    }

    /// Whether this is one of the reserved identities `1..=10`.
    pub fn is_reserved(self) -> bool {
        (1..=10).contains(&self.0)
    }

    /// Whether this is a cluster-local identity (`256..=65535`).
    pub fn is_cluster_local(self) -> bool {
        (CLUSTER_LOCAL_MIN..=CLUSTER_LOCAL_MAX).contains(&self.0)
    }

    /// Whether this is a CIDR identity (`1<<24 | n`, `n > 0`).
    pub fn is_cidr(self) -> bool {
        self.0 & !CIDR_INDEX_MAX == CIDR_SCOPE && self.0 & CIDR_INDEX_MAX != 0
    }

    /// Whether the peer is outside the cluster: `world`, `world-ipv4`,
    /// `world-ipv6` or a CIDR identity.
    pub fn is_world(self) -> bool {
        matches!(self, Identity::WORLD | Identity::WORLD_IPV4 | Identity::WORLD_IPV6) || self.is_cidr()
    }

    /// The name of a reserved identity (`remote-node`).
    pub fn reserved_name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "host",
            2 => "world",
            3 => "unmanaged",
            4 => "health",
            5 => "init",
            6 => "remote-node",
            7 => "kube-apiserver",
            8 => "ingress",
            9 => "world-ipv4",
            10 => "world-ipv6",
            _ => return None,
        })
    }

    /// The label set of a reserved identity: `reserved:<name>`.
    pub fn reserved_labels(self) -> Option<Labels> {
        self.reserved_name().map(|name| Labels::from_pairs([(format!("{RESERVED_PREFIX}{name}"), "")]))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// FNV-1a, 64 bits: a small hash whose value never changes between Rust
/// versions or runs (unlike std's `DefaultHasher`), so identity numbers are
/// the same on every machine.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The cluster-local identity a label set hashes to before probing.
pub fn home_slot(labels: &Labels) -> Identity {
    let span = u64::from(CLUSTER_LOCAL_MAX - CLUSTER_LOCAL_MIN + 1);
    let offset = fnv1a64(labels.to_string().as_bytes()) % span;
    // `offset < span <= u32::MAX`, so the conversion cannot fail.
    Identity(CLUSTER_LOCAL_MIN + u32::try_from(offset).unwrap_or(0))
}

/// Cluster-local identities of label sets, with stable numbering.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IdentityTable {
    by_labels: BTreeMap<Labels, Identity>,
}

/// The outcome of [`IdentityTable::allocate`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// The table.
    pub table: IdentityTable,
    /// Label sets that found no free cluster-local identity (more than
    /// 65280 distinct label sets), in sorted order.
    pub exhausted: Vec<Labels>,
}

impl IdentityTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allocates an identity to every label set in `label_sets`.
    ///
    /// Label sets present in `previous` keep their identity there (if it is a
    /// cluster-local identity and not claimed twice); the others, in sorted
    /// order, take the first free identity from their [`home_slot`] on,
    /// wrapping around the cluster-local range.
    pub fn allocate<'a>(
        label_sets: impl IntoIterator<Item = &'a Labels>,
        previous: Option<&IdentityTable>,
    ) -> Allocation {
        // Many endpoints share a label set: deduplicate by hash, then sort
        // the distinct sets (comparing label sets is slow, hashing is not).
        let distinct: HashSet<&Labels> = label_sets.into_iter().collect();
        let wanted: BTreeSet<&Labels> = distinct.into_iter().collect();
        let mut by_labels = BTreeMap::new();
        let mut used = BTreeSet::new();
        if let Some(previous) = previous {
            for (labels, &id) in &previous.by_labels {
                if wanted.contains(labels) && id.is_cluster_local() && used.insert(id) {
                    by_labels.insert(labels.clone(), id);
                }
            }
        }
        let span = CLUSTER_LOCAL_MAX - CLUSTER_LOCAL_MIN + 1;
        let mut exhausted = Vec::new();
        for labels in wanted {
            if by_labels.contains_key(labels) {
                continue;
            }
            if used.len() >= span as usize {
                exhausted.push(labels.clone());
                continue;
            }
            let home = home_slot(labels).0 - CLUSTER_LOCAL_MIN;
            let id = (0..span)
                .map(|probe| Identity(CLUSTER_LOCAL_MIN + (home + probe) % span))
                .find(|id| !used.contains(id));
            match id {
                Some(id) => {
                    used.insert(id);
                    by_labels.insert(labels.clone(), id);
                }
                None => exhausted.push(labels.clone()),
            }
        }
        Allocation { table: IdentityTable { by_labels }, exhausted }
    }

    /// Builds a table from explicit assignments (a previous bundle's
    /// identity list). No check is made here; [`IdentityTable::allocate`]
    /// ignores assignments that are out of range or duplicated.
    pub fn from_assignments(assignments: impl IntoIterator<Item = (Labels, Identity)>) -> Self {
        IdentityTable { by_labels: assignments.into_iter().collect() }
    }

    /// The identity of `labels`.
    pub fn get(&self, labels: &Labels) -> Option<Identity> {
        self.by_labels.get(labels).copied()
    }

    /// `(labels, identity)` in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, Identity)> {
        self.by_labels.iter().map(|(l, &id)| (l, id))
    }

    /// Number of label sets.
    pub fn len(&self) -> usize {
        self.by_labels.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_labels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(s: &str) -> Labels {
        Labels::from_pairs(s.split(',').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))))
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn reserved_numbering() {
        assert_eq!(Identity::HOST.reserved_labels().unwrap().to_string(), "reserved:host");
        assert_eq!(Identity::REMOTE_NODE.reserved_name(), Some("remote-node"));
        assert_eq!(Identity::WORLD_IPV6.0, 10);
        assert!(Identity::RESERVED.iter().all(|id| id.is_reserved()));
        assert_eq!(Identity::cidr(1), Some(Identity(0x0100_0001)));
        assert!(Identity::cidr(1).unwrap().is_cidr() && Identity::cidr(0).is_none());
        assert!(!Identity(CIDR_SCOPE).is_cidr() && !Identity(256).is_cidr());
    }

    #[test]
    fn allocation_is_in_range_unique_and_deterministic() {
        let sets: Vec<Labels> = (0..50).map(|i| labels(&format!("app=a{i},ns=x"))).collect();
        let a = IdentityTable::allocate(&sets, None);
        assert!(a.exhausted.is_empty());
        let ids: BTreeSet<Identity> = a.table.iter().map(|(_, id)| id).collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.iter().all(|id| id.is_cluster_local()));
        let b = IdentityTable::allocate(sets.iter().rev(), None);
        assert_eq!(a, b);
    }

    #[test]
    fn previous_assignments_win_and_bad_ones_are_ignored() {
        let x = labels("app=x");
        let y = labels("app=y");
        let gone = labels("app=gone");
        let prev = IdentityTable::from_assignments([
            (x.clone(), Identity(300)),
            (y.clone(), Identity(300)), // claimed twice: the second is dropped
            (gone, Identity(301)),
        ]);
        let a = IdentityTable::allocate([&x, &y], Some(&prev)).table;
        assert_eq!(a.get(&x), Some(Identity(300)));
        assert_ne!(a.get(&y), Some(Identity(300)));
        assert_eq!(a.len(), 2);
        let out_of_range = IdentityTable::from_assignments([(x.clone(), Identity(7))]);
        assert!(IdentityTable::allocate([&x], Some(&out_of_range)).table.get(&x).unwrap().is_cluster_local());
    }

    fn label_set() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-d]{1,2}", "[a-z0-9]{0,3}", 0..4).prop_map(Labels)
    }

    proptest! {
        #[test]
        fn adding_a_label_set_keeps_existing_numbers(
            sets in proptest::collection::btree_set(label_set(), 0..40),
            extra in proptest::collection::btree_set(label_set(), 1..5),
            removed in proptest::collection::btree_set(0usize..40, 0..5),
        ) {
            let before = IdentityTable::allocate(&sets, None).table;
            let kept: Vec<&Labels> = sets.iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, l)| l).collect();
            let after = IdentityTable::allocate(kept.iter().copied().chain(&extra), Some(&before)).table;
            for l in kept {
                prop_assert_eq!(before.get(l), after.get(l));
            }
            let ids: BTreeSet<Identity> = after.iter().map(|(_, id)| id).collect();
            prop_assert_eq!(ids.len(), after.len());
        }

        #[test]
        fn without_previous_only_collisions_renumber(
            sets in proptest::collection::btree_set(label_set(), 0..40),
            extra in label_set(),
        ) {
            let before = IdentityTable::allocate(&sets, None).table;
            let after = IdentityTable::allocate(sets.iter().chain([&extra]), None).table;
            let homes: BTreeSet<Identity> = sets.iter().map(home_slot).collect();
            // With no home-slot collision every set sits at its home slot,
            // whatever else is in the table.
            if homes.len() == sets.len() && !homes.contains(&home_slot(&extra)) {
                for l in &sets {
                    prop_assert_eq!(before.get(l), Some(home_slot(l)));
                    prop_assert_eq!(after.get(l), Some(home_slot(l)));
                }
            }
        }
    }
}
