//! One generation of the policy-bearing maps ([`crate::generation_maps`]):
//! its entries, the plan that syncs it, and fill levels.

use crate::bundle::Bundle;
use crate::error::LoaderError;
use crate::generation_maps::{
    GenerationMap, ENDPOINTS, GENERATION_MAPS, IPCACHE, LB4_BACKENDS, LB4_REVERSE_NAT, LB4_SERVICES, POLICY,
    POLICY_EXACT,
};
use crate::kernel::Kernel;
use crate::services::ServiceEntries;
use policyc_ebpf::abi::{
    EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, IPCACHE_KEY_DATA, POLICY_KEY_DATA,
    POLICY_KEY_FULL_BITS, POLICY_VALUE,
};
use policyc_ebpf::lb::{Lb4BackendKey, Lb4Key, Lb4ReverseNatKey};
use std::collections::BTreeMap;

const ENDPOINT_KEY: usize = std::mem::size_of::<EndpointKey>();
const POLICY_KEY: usize = std::mem::size_of::<PolicyKey>();
const IPCACHE_KEY: usize = std::mem::size_of::<IpcacheKey>();

/// A trie key as the kernel stores it: prefix length, then data. A
/// single-port policy entry's key in `policy_exact` has the same bytes.
fn trie_key<const N: usize, const D: usize>(len: u32, data: &[u8; D]) -> [u8; N] {
    let mut key = [0; N];
    key[..4].copy_from_slice(&len.to_ne_bytes());
    key[4..].copy_from_slice(data);
    key
}

/// A trie key's prefix length and data, from the kernel's bytes.
fn trie_parts<const D: usize>(key: &[u8]) -> Option<(u32, [u8; D])> {
    let (len, data) = key.split_at_checked(4)?;
    Some((u32::from_ne_bytes(len.try_into().ok()?), data.try_into().ok()?))
}

/// Map operations of a sync, per map.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MapOps {
    /// Entries written that the generation did not hold.
    pub added: usize,
    /// Entries rewritten with another value.
    pub updated: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries already right.
    pub unchanged: usize,
}

/// The writes and removals that make a generation holding `current` hold
/// exactly `wanted`.
pub fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    current: &BTreeMap<K, V>,
    wanted: &BTreeMap<K, V>,
) -> (Vec<(K, V)>, Vec<K>, MapOps) {
    let mut ops = MapOps::default();
    let mut writes = Vec::new();
    for (k, v) in wanted {
        match current.get(k) {
            Some(old) if old == v => ops.unchanged += 1,
            Some(_) => {
                writes.push((k.clone(), v.clone()));
                ops.updated += 1;
            }
            None => {
                writes.push((k.clone(), v.clone()));
                ops.added += 1;
            }
        }
    }
    let removes: Vec<K> = current.keys().filter(|k| !wanted.contains_key(*k)).cloned().collect();
    ops.removed = removes.len();
    (writes, removes, ops)
}

type IpcacheEntries = BTreeMap<(u32, [u8; IPCACHE_KEY_DATA]), [u8; 8]>;
type EndpointEntries = BTreeMap<[u8; ENDPOINT_KEY], [u8; 12]>;
type PolicyEntries = BTreeMap<(u32, [u8; POLICY_KEY_DATA]), [u8; POLICY_VALUE]>;
type Lb4ServiceEntries = BTreeMap<[u8; 12], [u8; 12]>;
type Lb4BackendEntries = BTreeMap<[u8; 8], [u8; 8]>;
type Lb4ReverseNatEntries = BTreeMap<[u8; 4], [u8; 8]>;

/// The entries of one generation of the policy-bearing maps, as the
/// kernel stores them (keys include the generation byte).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// ipcache: (prefix length, key data) → value.
    pub ipcache: IpcacheEntries,
    /// endpoints: key → value.
    pub endpoints: EndpointEntries,
    /// policy: (prefix length, key data) → value.
    pub policy: PolicyEntries,
    /// lb4_services: key → value.
    pub lb4_services: Lb4ServiceEntries,
    /// lb4_backends: key → value.
    pub lb4_backends: Lb4BackendEntries,
    /// lb4_reverse_nat: key → value.
    pub lb4_reverse_nat: Lb4ReverseNatEntries,
}

impl Generation {
    /// `bundle`'s entries in generation `generation`.
    pub fn of_bundle(bundle: &Bundle, generation: u8) -> Generation {
        let mut out = Generation::default();
        out.add_ipcache(generation, &bundle.ipcache);
        out.add_endpoints(generation, bundle.endpoint_entries.iter().copied());
        out.add_policy(generation, None, &bundle.policy);
        out.add_services(generation, &bundle.services);
        out
    }

    /// Adds the service maps' entries, in generation `generation`.
    pub fn add_services(&mut self, generation: u8, entries: &ServiceEntries) {
        for (k, v) in &entries.services {
            self.lb4_services.insert(Lb4Key { generation, ..*k }.to_bytes(), v.to_bytes());
        }
        for (k, v) in &entries.backends {
            self.lb4_backends.insert(Lb4BackendKey { generation, ..*k }.to_bytes(), v.to_bytes());
        }
        for (k, v) in &entries.revnat {
            self.lb4_reverse_nat.insert(Lb4ReverseNatKey { generation, ..*k }.to_bytes(), v.to_bytes());
        }
    }

    /// Adds ipcache entries, in generation `generation`.
    pub fn add_ipcache(&mut self, generation: u8, entries: &[(IpcacheKey, IpcacheValue)]) {
        for (k, v) in entries {
            let k = IpcacheKey { generation, ..*k };
            self.ipcache.insert((k.prefixlen, k.data()), v.to_bytes());
        }
    }

    /// Adds endpoints entries, in generation `generation`.
    pub fn add_endpoints(&mut self, generation: u8, entries: impl IntoIterator<Item = (EndpointKey, EndpointValue)>) {
        for (k, v) in entries {
            self.endpoints.insert(EndpointKey { generation, ..k }.to_bytes(), v.to_bytes());
        }
    }

    /// Adds policy entries, in generation `generation`, for endpoint
    /// `endpoint_id` (`None`: the id the keys hold).
    pub fn add_policy(&mut self, generation: u8, endpoint_id: Option<u16>, entries: &[(PolicyKey, PolicyValue)]) {
        for (k, v) in entries {
            let k = PolicyKey { generation, endpoint_id: endpoint_id.unwrap_or(k.endpoint_id), ..*k };
            self.policy.insert((k.prefixlen, k.data()), v.to_bytes());
        }
    }

    /// What the live maps hold in generation `generation` (reads every
    /// entry of the maps: one syscall each).
    pub fn read_live(kernel: &impl Kernel, generation: u8) -> Result<Generation, LoaderError> {
        let mut out = Generation::default();
        for map in &GENERATION_MAPS {
            for (key, value) in kernel.entries(map)? {
                if map.generation_of(&key) == Some(generation) {
                    out.insert_raw(map, &key, &value)?;
                }
            }
        }
        Ok(out)
    }

    /// Adds an entry of `map` as the kernel stores it.
    fn insert_raw(&mut self, map: &GenerationMap, key: &[u8], value: &[u8]) -> Result<(), LoaderError> {
        let malformed = || LoaderError::Object(format!("an entry of `{}` of another layout", map.name));
        if map.name == IPCACHE.name {
            let key = trie_parts(key).ok_or_else(malformed)?;
            self.ipcache.insert(key, value.try_into().map_err(|_| malformed())?);
        } else if map.name == ENDPOINTS.name {
            self.endpoints.insert(key.try_into().map_err(|_| malformed())?, value.try_into().map_err(|_| malformed())?);
        } else if map.name == LB4_SERVICES.name {
            self.lb4_services
                .insert(key.try_into().map_err(|_| malformed())?, value.try_into().map_err(|_| malformed())?);
        } else if map.name == LB4_BACKENDS.name {
            self.lb4_backends
                .insert(key.try_into().map_err(|_| malformed())?, value.try_into().map_err(|_| malformed())?);
        } else if map.name == LB4_REVERSE_NAT.name {
            self.lb4_reverse_nat
                .insert(key.try_into().map_err(|_| malformed())?, value.try_into().map_err(|_| malformed())?);
        } else {
            // `policy` and `policy_exact` together hold the policy.
            let key = trie_parts(key).ok_or_else(malformed)?;
            self.policy.insert(key, value.try_into().map_err(|_| malformed())?);
        }
        Ok(())
    }
}

/// The writes and removals of one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Changes<K, V> {
    writes: Vec<(K, V)>,
    removes: Vec<K>,
}

impl<const K: usize, const V: usize> Changes<[u8; K], [u8; V]> {
    /// Writes, then removals, of a hash map (whose keys carry the
    /// generation, which no packet reads while it is synced).
    fn execute(&self, kernel: &impl Kernel, map: &GenerationMap) -> Result<(), LoaderError> {
        for (k, v) in &self.writes {
            kernel.write(map, k, v)?;
        }
        for k in &self.removes {
            kernel.delete(map, k)?;
        }
        Ok(())
    }
}

/// The changes of a service map, counted under its name where either side
/// has entries (a node without Services reports no service maps).
fn service_changes<const K: usize, const V: usize>(
    ops: &mut BTreeMap<&'static str, MapOps>,
    name: &'static str,
    current: &BTreeMap<[u8; K], [u8; V]>,
    wanted: &BTreeMap<[u8; K], [u8; V]>,
) -> Changes<[u8; K], [u8; V]> {
    let (writes, removes, o) = diff(current, wanted);
    if !current.is_empty() || !wanted.is_empty() {
        ops.insert(name, o);
    }
    Changes { writes, removes }
}

/// The writes and removals that turn one generation's content into
/// another's, per map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    ipcache: Changes<(u32, [u8; IPCACHE_KEY_DATA]), [u8; 8]>,
    endpoints: Changes<[u8; ENDPOINT_KEY], [u8; 12]>,
    policy: Changes<(u32, [u8; POLICY_KEY_DATA]), [u8; POLICY_VALUE]>,
    lb4_services: Changes<[u8; 12], [u8; 12]>,
    lb4_backends: Changes<[u8; 8], [u8; 8]>,
    lb4_reverse_nat: Changes<[u8; 4], [u8; 8]>,
    /// Operations per map.
    pub ops: BTreeMap<&'static str, MapOps>,
}

impl SyncPlan {
    /// The plan turning `current` into `wanted`.
    pub fn new(current: &Generation, wanted: &Generation) -> SyncPlan {
        let mut ops = BTreeMap::new();
        let (writes, removes, o) = diff(&current.ipcache, &wanted.ipcache);
        ops.insert("ipcache", o);
        let ipcache = Changes { writes, removes };
        let (writes, removes, o) = diff(&current.endpoints, &wanted.endpoints);
        ops.insert("endpoints", o);
        let endpoints = Changes { writes, removes };
        let (writes, removes, o) = diff(&current.policy, &wanted.policy);
        ops.insert("policy", o);
        let policy = Changes { writes, removes };
        let lb4_services = service_changes(&mut ops, LB4_SERVICES.name, &current.lb4_services, &wanted.lb4_services);
        let lb4_backends = service_changes(&mut ops, LB4_BACKENDS.name, &current.lb4_backends, &wanted.lb4_backends);
        let lb4_reverse_nat =
            service_changes(&mut ops, LB4_REVERSE_NAT.name, &current.lb4_reverse_nat, &wanted.lb4_reverse_nat);
        SyncPlan { ipcache, endpoints, policy, lb4_services, lb4_backends, lb4_reverse_nat, ops }
    }

    /// Counts as unchanged, per map, the entries of `totals` (entries of
    /// the new generation) that the plan does not write: for a plan made
    /// from the changed pieces only ([`crate::incremental`]).
    pub fn count_unchanged(&mut self, totals: &[(&'static str, usize)]) {
        for (map, total) in totals {
            let ops = self.ops.entry(*map).or_default();
            ops.unchanged = total.saturating_sub(ops.added + ops.updated);
        }
    }

    /// Map writes and removals the plan makes.
    pub fn syscalls(&self) -> usize {
        self.ops.values().map(|o| o.added + o.updated + o.removed).sum()
    }

    /// Carries the plan out on the pinned maps: writes before removals, so
    /// that a longer prefix never disappears before what replaces it.
    pub fn execute(&self, kernel: &impl Kernel) -> Result<(), LoaderError> {
        for ((len, data), v) in &self.ipcache.writes {
            kernel.write(&IPCACHE, &trie_key::<IPCACHE_KEY, IPCACHE_KEY_DATA>(*len, data), v)?;
        }
        for (k, v) in &self.endpoints.writes {
            kernel.write(&ENDPOINTS, k, v)?;
        }
        for ((len, data), v) in &self.policy.writes {
            kernel.write(policy_map(*len), &trie_key::<POLICY_KEY, POLICY_KEY_DATA>(*len, data), v)?;
        }
        self.lb4_services.execute(kernel, &LB4_SERVICES)?;
        self.lb4_backends.execute(kernel, &LB4_BACKENDS)?;
        self.lb4_reverse_nat.execute(kernel, &LB4_REVERSE_NAT)?;
        for (len, data) in &self.ipcache.removes {
            kernel.delete(&IPCACHE, &trie_key::<IPCACHE_KEY, IPCACHE_KEY_DATA>(*len, data))?;
        }
        for k in &self.endpoints.removes {
            kernel.delete(&ENDPOINTS, k)?;
        }
        for (len, data) in &self.policy.removes {
            kernel.delete(policy_map(*len), &trie_key::<POLICY_KEY, POLICY_KEY_DATA>(*len, data))?;
        }
        Ok(())
    }
}

/// Where a policy entry of prefix length `len` lives: single-port entries
/// in the hash, ranges in the trie (see `struct policy_key`); together they
/// are the policy.
fn policy_map(len: u32) -> &'static GenerationMap {
    if len == POLICY_KEY_FULL_BITS {
        &POLICY_EXACT
    } else {
        &POLICY
    }
}

/// Writes `bundle` into generation `generation`, reading what the live maps
/// hold there to write only the difference; the other generation is not
/// touched.
pub fn write_generation(
    kernel: &impl Kernel,
    bundle: &Bundle,
    generation: u8,
) -> Result<BTreeMap<&'static str, MapOps>, LoaderError> {
    let plan = SyncPlan::new(&Generation::read_live(kernel, generation)?, &Generation::of_bundle(bundle, generation));
    plan.execute(kernel)?;
    Ok(plan.ops)
}

/// Entries per generation of each generation map: `name → [gen0, gen1]`.
pub fn fill_levels(kernel: &impl Kernel) -> Result<BTreeMap<&'static str, [usize; 2]>, LoaderError> {
    let mut out = BTreeMap::new();
    for map in &GENERATION_MAPS {
        let mut n = [0usize; 2];
        for (key, _) in kernel.entries(map)? {
            if let Some(slot) = map.generation_of(&key).and_then(|g| n.get_mut(usize::from(g))) {
                *slot += 1;
            }
        }
        out.insert(map.name, n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_writes_only_what_changed() {
        let current: BTreeMap<u8, u8> = [(1, 1), (2, 2), (3, 3)].into();
        let wanted: BTreeMap<u8, u8> = [(1, 1), (2, 9), (4, 4)].into();
        let (writes, removes, ops) = diff(&current, &wanted);
        assert_eq!(writes, [(2, 9), (4, 4)]);
        assert_eq!(removes, [3]);
        assert_eq!(ops, MapOps { added: 1, updated: 1, removed: 1, unchanged: 1 });
    }
}
