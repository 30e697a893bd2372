//! The shared pinned maps: layout checks, one generation's sync, the
//! generation flip, fill levels.

use crate::bundle::Bundle;
use crate::error::{kernel, LoaderError};
use crate::paths::Paths;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, MapInfo};
use policyc_ebpf::abi::{self, EndpointKey, IpcacheKey, PolicyKey, StateValue, IPCACHE_KEY_DATA, POLICY_KEY_DATA};
use std::collections::BTreeMap;
use std::path::Path;

const ENDPOINT_KEY: usize = std::mem::size_of::<EndpointKey>();

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

/// Writes `bundle` into generation `generation` of the ipcache, endpoints
/// and policy maps; the other generation is not touched.
pub fn write_generation(
    paths: &Paths,
    bundle: &Bundle,
    generation: u8,
) -> Result<BTreeMap<&'static str, MapOps>, LoaderError> {
    let mut report = BTreeMap::new();

    let mut ipcache: LpmTrie<MapData, [u8; IPCACHE_KEY_DATA], [u8; 8]> =
        LpmTrie::try_from(open(&paths.map("ipcache"))?).map_err(|e| kernel("ipcache", e))?;
    let mut current: BTreeMap<_, _> = BTreeMap::new();
    for item in ipcache.iter() {
        let (key, value) = item.map_err(|e| kernel("reading ipcache", e))?;
        if key.data()[0] == generation {
            current.insert((key.prefix_len(), key.data()), value);
        }
    }
    let wanted: BTreeMap<_, _> = bundle
        .ipcache
        .iter()
        .map(|(k, v)| {
            let k = IpcacheKey { generation, ..*k };
            ((k.prefixlen, k.data()), v.to_bytes())
        })
        .collect();
    let (writes, removes, ops) = diff(&current, &wanted);
    for ((len, data), v) in &writes {
        ipcache.insert(&Key::new(*len, *data), v, 0).map_err(|e| kernel("writing ipcache", e))?;
    }
    for (len, data) in &removes {
        ipcache.remove(&Key::new(*len, *data)).map_err(|e| kernel("removing from ipcache", e))?;
    }
    report.insert("ipcache", ops);

    let mut endpoints: HashMap<MapData, [u8; ENDPOINT_KEY], [u8; 12]> =
        HashMap::try_from(open(&paths.map("endpoints"))?).map_err(|e| kernel("endpoints", e))?;
    let mut current: BTreeMap<_, _> = BTreeMap::new();
    for item in endpoints.iter() {
        let (key, value) = item.map_err(|e| kernel("reading endpoints", e))?;
        if key[0] == generation {
            current.insert(key, value);
        }
    }
    let wanted: BTreeMap<_, _> = bundle
        .endpoint_entries
        .iter()
        .map(|(k, v)| (EndpointKey { generation, ..*k }.to_bytes(), v.to_bytes()))
        .collect();
    let (writes, removes, ops) = diff(&current, &wanted);
    for (k, v) in &writes {
        endpoints.insert(k, v, 0).map_err(|e| kernel("writing endpoints", e))?;
    }
    for k in &removes {
        endpoints.remove(k).map_err(|e| kernel("removing from endpoints", e))?;
    }
    report.insert("endpoints", ops);

    let mut policy: LpmTrie<MapData, [u8; POLICY_KEY_DATA], [u8; 8]> =
        LpmTrie::try_from(open(&paths.map("policy"))?).map_err(|e| kernel("policy", e))?;
    let mut current: BTreeMap<_, _> = BTreeMap::new();
    for item in policy.iter() {
        let (key, value) = item.map_err(|e| kernel("reading policy", e))?;
        if key.data()[0] == generation {
            current.insert((key.prefix_len(), key.data()), value);
        }
    }
    let wanted: BTreeMap<_, _> = bundle
        .policy
        .iter()
        .map(|(k, v)| {
            let k = PolicyKey { generation, ..*k };
            ((k.prefixlen, k.data()), v.to_bytes())
        })
        .collect();
    let (writes, removes, ops) = diff(&current, &wanted);
    for ((len, data), v) in &writes {
        policy.insert(&Key::new(*len, *data), v, 0).map_err(|e| kernel("writing policy", e))?;
    }
    for (len, data) in &removes {
        policy.remove(&Key::new(*len, *data)).map_err(|e| kernel("removing from policy", e))?;
    }
    report.insert("policy", ops);
    Ok(report)
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
    let ipcache: LpmTrie<MapData, [u8; IPCACHE_KEY_DATA], [u8; 8]> =
        LpmTrie::try_from(open(&paths.map("ipcache"))?).map_err(|e| kernel("ipcache", e))?;
    out.insert("ipcache", count(ipcache.keys().filter_map(Result::ok).map(|k| k.data()[0]).collect()));
    let endpoints: HashMap<MapData, [u8; ENDPOINT_KEY], [u8; 12]> =
        HashMap::try_from(open(&paths.map("endpoints"))?).map_err(|e| kernel("endpoints", e))?;
    out.insert("endpoints", count(endpoints.keys().filter_map(Result::ok).map(|k| k[0]).collect()));
    let policy: LpmTrie<MapData, [u8; POLICY_KEY_DATA], [u8; 8]> =
        LpmTrie::try_from(open(&paths.map("policy"))?).map_err(|e| kernel("policy", e))?;
    out.insert("policy", count(policy.keys().filter_map(Result::ok).map(|k| k.data()[0]).collect()));
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
