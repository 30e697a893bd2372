//! The shared pinned maps: layout checks, one generation's sync, the
//! generation flip, fill levels.

use crate::bundle::Bundle;
use crate::error::{kernel, LoaderError};
use crate::paths::Paths;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, MapInfo};
use policyc_ebpf::abi::{
    self, EndpointKey, EndpointValue, IpcacheKey, IpcacheValue, PolicyKey, PolicyValue, StateValue, IPCACHE_KEY_DATA,
    POLICY_KEY_DATA, POLICY_KEY_FULL_BITS,
};
use std::collections::BTreeMap;
use std::path::Path;

const ENDPOINT_KEY: usize = std::mem::size_of::<EndpointKey>();
const POLICY_KEY: usize = std::mem::size_of::<PolicyKey>();

/// A single-port policy entry's key in `policy_exact`: the trie's key bytes
/// (prefix length, then data).
fn exact_key(data: &[u8; POLICY_KEY_DATA]) -> [u8; POLICY_KEY] {
    let mut key = [0; POLICY_KEY];
    key[..4].copy_from_slice(&POLICY_KEY_FULL_BITS.to_ne_bytes());
    key[4..].copy_from_slice(data);
    key
}

/// Checks every pinned map that exists against the datapath's layout;
/// returns the names of those that exist.
pub fn check_pinned(paths: &Paths) -> Result<Vec<&'static str>, LoaderError> {
    let mut existing = Vec::new();
    for layout in abi::MAPS {
        let path = paths.map(layout.name);
        if !path.exists() {
            continue;
        }
        let problem = |problem: String| LoaderError::PinnedMap { path: path.display().to_string(), problem };
        let info = MapInfo::from_pin(&path).map_err(|e| problem(format!("cannot open it: {e}")))?;
        let map_type = info.map_type().map(|t| t as u32).map_err(|e| problem(e.to_string()))?;
        let got = (map_type, info.key_size(), info.value_size(), info.max_entries());
        let want = (layout.map_type, layout.key_size, layout.value_size, layout.max_entries);
        if got != want {
            return Err(problem(format!("(type, key size, value size, max entries) is {got:?}, expected {want:?}")));
        }
        existing.push(layout.name);
    }
    Ok(existing)
}

fn open(path: &Path) -> Result<Map, LoaderError> {
    let data = MapData::from_pin(path).map_err(|e| kernel(format!("cannot open `{}`", path.display()), e))?;
    Map::from_map_data(data).map_err(|e| kernel(format!("cannot use `{}`", path.display()), e))
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
type PolicyEntries = BTreeMap<(u32, [u8; POLICY_KEY_DATA]), [u8; 8]>;

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
}

impl Generation {
    /// `bundle`'s entries in generation `generation`.
    pub fn of_bundle(bundle: &Bundle, generation: u8) -> Generation {
        let mut out = Generation::default();
        out.add_ipcache(generation, &bundle.ipcache);
        out.add_endpoints(generation, bundle.endpoint_entries.iter().copied());
        out.add_policy(generation, None, &bundle.policy);
        out
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
    pub fn read_live(paths: &Paths, generation: u8) -> Result<Generation, LoaderError> {
        let mut out = Generation::default();
        let ipcache = ipcache_map(paths)?;
        for item in ipcache.iter() {
            let (key, value) = item.map_err(|e| kernel("reading ipcache", e))?;
            if key.data()[0] == generation {
                out.ipcache.insert((key.prefix_len(), key.data()), value);
            }
        }
        let endpoints = endpoints_map(paths)?;
        for item in endpoints.iter() {
            let (key, value) = item.map_err(|e| kernel("reading endpoints", e))?;
            if key[0] == generation {
                out.endpoints.insert(key, value);
            }
        }
        let policy = policy_map(paths)?;
        for item in policy.iter() {
            let (key, value) = item.map_err(|e| kernel("reading policy", e))?;
            if key.data()[0] == generation {
                out.policy.insert((key.prefix_len(), key.data()), value);
            }
        }
        for item in policy_exact_map(paths)?.iter() {
            let (key, value) = item.map_err(|e| kernel("reading policy_exact", e))?;
            let mut data = [0; POLICY_KEY_DATA];
            data.copy_from_slice(&key[4..]);
            if data[0] == generation {
                out.policy.insert((POLICY_KEY_FULL_BITS, data), value);
            }
        }
        Ok(out)
    }
}

/// The writes and removals of one map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Changes<K, V> {
    writes: Vec<(K, V)>,
    removes: Vec<K>,
}

/// The writes and removals that turn one generation's content into
/// another's, per map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPlan {
    ipcache: Changes<(u32, [u8; IPCACHE_KEY_DATA]), [u8; 8]>,
    endpoints: Changes<[u8; ENDPOINT_KEY], [u8; 12]>,
    policy: Changes<(u32, [u8; POLICY_KEY_DATA]), [u8; 8]>,
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
        SyncPlan { ipcache, endpoints, policy: Changes { writes, removes }, ops }
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
    pub fn execute(&self, paths: &Paths) -> Result<(), LoaderError> {
        let mut ipcache = ipcache_map(paths)?;
        for ((len, data), v) in &self.ipcache.writes {
            ipcache.insert(&Key::new(*len, *data), v, 0).map_err(|e| kernel("writing ipcache", e))?;
        }
        let mut endpoints = endpoints_map(paths)?;
        for (k, v) in &self.endpoints.writes {
            endpoints.insert(k, v, 0).map_err(|e| kernel("writing endpoints", e))?;
        }
        // Single-port entries go to the hash, ranges to the trie (see
        // `struct policy_key`); together they are the policy.
        let (mut policy, mut exact) = (policy_map(paths)?, policy_exact_map(paths)?);
        for ((len, data), v) in &self.policy.writes {
            if *len == POLICY_KEY_FULL_BITS {
                exact.insert(exact_key(data), v, 0).map_err(|e| kernel("writing policy_exact", e))?;
            } else {
                policy.insert(&Key::new(*len, *data), v, 0).map_err(|e| kernel("writing policy", e))?;
            }
        }
        for (len, data) in &self.ipcache.removes {
            ipcache.remove(&Key::new(*len, *data)).map_err(|e| kernel("removing from ipcache", e))?;
        }
        for k in &self.endpoints.removes {
            endpoints.remove(k).map_err(|e| kernel("removing from endpoints", e))?;
        }
        for (len, data) in &self.policy.removes {
            if *len == POLICY_KEY_FULL_BITS {
                exact.remove(&exact_key(data)).map_err(|e| kernel("removing from policy_exact", e))?;
            } else {
                policy.remove(&Key::new(*len, *data)).map_err(|e| kernel("removing from policy", e))?;
            }
        }
        Ok(())
    }
}

fn ipcache_map(paths: &Paths) -> Result<LpmTrie<MapData, [u8; IPCACHE_KEY_DATA], [u8; 8]>, LoaderError> {
    LpmTrie::try_from(open(&paths.map("ipcache"))?).map_err(|e| kernel("ipcache", e))
}

fn endpoints_map(paths: &Paths) -> Result<HashMap<MapData, [u8; ENDPOINT_KEY], [u8; 12]>, LoaderError> {
    HashMap::try_from(open(&paths.map("endpoints"))?).map_err(|e| kernel("endpoints", e))
}

fn policy_map(paths: &Paths) -> Result<LpmTrie<MapData, [u8; POLICY_KEY_DATA], [u8; 8]>, LoaderError> {
    LpmTrie::try_from(open(&paths.map("policy"))?).map_err(|e| kernel("policy", e))
}

fn policy_exact_map(paths: &Paths) -> Result<HashMap<MapData, [u8; POLICY_KEY], [u8; 8]>, LoaderError> {
    HashMap::try_from(open(&paths.map("policy_exact"))?).map_err(|e| kernel("policy_exact", e))
}

/// Writes `bundle` into generation `generation`, reading what the live maps
/// hold there to write only the difference; the other generation is not
/// touched.
pub fn write_generation(
    paths: &Paths,
    bundle: &Bundle,
    generation: u8,
) -> Result<BTreeMap<&'static str, MapOps>, LoaderError> {
    let plan = SyncPlan::new(&Generation::read_live(paths, generation)?, &Generation::of_bundle(bundle, generation));
    plan.execute(paths)?;
    Ok(plan.ops)
}

/// The active generation and apply serial.
pub fn read_state(paths: &Paths) -> Result<StateValue, LoaderError> {
    let state: Array<MapData, [u8; 8]> = Array::try_from(open(&paths.map("state"))?).map_err(|e| kernel("state", e))?;
    let bytes = state.get(&0, 0).map_err(|e| kernel("reading state", e))?;
    Ok(StateValue::from_bytes(&bytes))
}

/// Makes `state` the node's state: the single write that switches every
/// program to another generation at once.
pub fn write_state(paths: &Paths, state: StateValue) -> Result<(), LoaderError> {
    let mut map: Array<MapData, [u8; 8]> =
        Array::try_from(open(&paths.map("state"))?).map_err(|e| kernel("state", e))?;
    map.set(0, state.to_bytes(), 0).map_err(|e| kernel("switching generation", e))
}

/// Entries per generation of the policy-bearing maps: `name → [gen0, gen1]`.
pub fn fill_levels(paths: &Paths) -> Result<BTreeMap<&'static str, [usize; 2]>, LoaderError> {
    let mut out = BTreeMap::new();
    let count = |first_bytes: Vec<u8>| {
        let mut n = [0usize; 2];
        for g in first_bytes {
            if let Some(slot) = n.get_mut(usize::from(g)) {
                *slot += 1;
            }
        }
        n
    };
    let ipcache = ipcache_map(paths)?;
    out.insert("ipcache", count(ipcache.keys().filter_map(Result::ok).map(|k| k.data()[0]).collect()));
    let endpoints = endpoints_map(paths)?;
    out.insert("endpoints", count(endpoints.keys().filter_map(Result::ok).map(|k| k[0]).collect()));
    let policy = policy_map(paths)?;
    out.insert("policy", count(policy.keys().filter_map(Result::ok).map(|k| k.data()[0]).collect()));
    let exact = policy_exact_map(paths)?;
    out.insert("policy_exact", count(exact.keys().filter_map(Result::ok).map(|k| k[4]).collect()));
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
