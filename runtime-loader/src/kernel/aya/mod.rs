//! The kernel through aya: pinned maps under the bpffs root, programs
//! through the verifier ([`programs`]), tcx links or tc filters
//! ([`attach`]). This is the one place the loader's apply reaches aya from.

pub mod attach;
pub mod programs;
pub mod tc;
pub mod tcx;

use super::{tc_filters, Attachment, Mechanism};
use super::{Kernel, RawEntries};
use crate::error::{kernel, LoaderError, Operation};
use crate::generation_maps::{
    GenerationMap, ENDPOINTS, IPCACHE, LB4_BACKENDS, LB4_REVERSE_NAT, LB4_SERVICES, POLICY, POLICY_EXACT,
};
use crate::manifest::Templates;
use crate::paths::Paths;
use crate::route::{self, Route};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, MapInfo};
use aya::programs::SchedClassifier;
use policyc_ebpf::abi::{self, StateValue, IPCACHE_KEY_DATA, POLICY_KEY_DATA, POLICY_VALUE};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use programs::LoadedEndpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

/// The node's kernel, with everything pinned under `paths.root`.
pub struct AyaKernel {
    paths: Paths,
    /// The generation maps opened so far (opened once per apply).
    open: Mutex<BTreeMap<&'static str, OpenMap>>,
}

/// A generation map, opened as its type.
enum OpenMap {
    Ipcache(LpmTrie<MapData, [u8; IPCACHE_KEY_DATA], [u8; 8]>),
    Endpoints(HashMap<MapData, [u8; 20], [u8; 12]>),
    Policy(LpmTrie<MapData, [u8; POLICY_KEY_DATA], [u8; POLICY_VALUE]>),
    PolicyExact(HashMap<MapData, [u8; 16], [u8; POLICY_VALUE]>),
    Lb4Services(HashMap<MapData, [u8; 12], [u8; 12]>),
    Lb4Backends(HashMap<MapData, [u8; 8], [u8; 8]>),
    Lb4ReverseNat(HashMap<MapData, [u8; 4], [u8; 8]>),
}

fn open(path: &Path) -> Result<Map, LoaderError> {
    let data = MapData::from_pin(path)
        .map_err(|e| kernel(Operation::OpenMap, path.display(), format!("cannot open `{}`", path.display()), e))?;
    Map::from_map_data(data)
        .map_err(|e| kernel(Operation::OpenMap, path.display(), format!("cannot use `{}`", path.display()), e))
}

/// `bytes` as an array of `N` bytes: a key or value of `map`.
fn sized<const N: usize>(map: &GenerationMap, bytes: &[u8]) -> Result<[u8; N], LoaderError> {
    bytes.try_into().map_err(|_| {
        LoaderError::Object(format!("an entry of `{}` of {} bytes where it has {N}", map.name, bytes.len()))
    })
}

/// A trie's key (prefix length, then data) as aya takes it.
fn lpm<const N: usize>(map: &GenerationMap, key: &[u8]) -> Result<Key<[u8; N]>, LoaderError> {
    let (len, data) =
        key.split_at_checked(4).ok_or_else(|| LoaderError::Object(format!("a short key of `{}`", map.name)))?;
    Ok(Key::new(u32::from_ne_bytes(sized(map, len)?), sized(map, data)?))
}

fn lpm_bytes<const N: usize>(key: &Key<[u8; N]>) -> Vec<u8> {
    let mut out = key.prefix_len().to_ne_bytes().to_vec();
    out.extend_from_slice(&key.data());
    out
}

impl AyaKernel {
    /// The kernel, with the loader's pins under `paths.root`.
    pub fn new(paths: &Paths) -> AyaKernel {
        AyaKernel { paths: paths.clone(), open: Mutex::new(BTreeMap::new()) }
    }

    fn with_map<R>(
        &self,
        map: &GenerationMap,
        f: impl FnOnce(&mut OpenMap) -> Result<R, LoaderError>,
    ) -> Result<R, LoaderError> {
        let mut open_maps = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !open_maps.contains_key(map.name) {
            let raw = open(&self.paths.map(map.name))?;
            let typed = |e| kernel(Operation::OpenMap, map.name, map.name, e);
            let opened = match map.name {
                n if n == IPCACHE.name => OpenMap::Ipcache(LpmTrie::try_from(raw).map_err(typed)?),
                n if n == ENDPOINTS.name => OpenMap::Endpoints(HashMap::try_from(raw).map_err(typed)?),
                n if n == POLICY.name => OpenMap::Policy(LpmTrie::try_from(raw).map_err(typed)?),
                n if n == POLICY_EXACT.name => OpenMap::PolicyExact(HashMap::try_from(raw).map_err(typed)?),
                n if n == LB4_SERVICES.name => OpenMap::Lb4Services(HashMap::try_from(raw).map_err(typed)?),
                n if n == LB4_BACKENDS.name => OpenMap::Lb4Backends(HashMap::try_from(raw).map_err(typed)?),
                n if n == LB4_REVERSE_NAT.name => OpenMap::Lb4ReverseNat(HashMap::try_from(raw).map_err(typed)?),
                other => return Err(LoaderError::Object(format!("`{other}` is not a generation map"))),
            };
            open_maps.insert(map.name, opened);
        }
        let opened = open_maps.get_mut(map.name).ok_or_else(|| LoaderError::Object(map.name.to_string()))?;
        f(opened)
    }

    fn state(&self) -> Result<Array<MapData, [u8; 8]>, LoaderError> {
        Array::try_from(open(&self.paths.map("state"))?).map_err(|e| kernel(Operation::OpenMap, "state", "state", e))
    }
}

impl Kernel for AyaKernel {
    type Program = LoadedEndpoint;

    fn existing_maps(&self) -> Result<Vec<&'static str>, LoaderError> {
        let mut existing = Vec::new();
        for layout in abi::MAPS {
            let path = self.paths.map(layout.name);
            if !path.exists() {
                continue;
            }
            let problem = |problem: String| LoaderError::PinnedMap { path: path.display().to_string(), problem };
            let info = MapInfo::from_pin(&path).map_err(|e| problem(format!("cannot open it: {e}")))?;
            let map_type = info.map_type().map(|t| t as u32).map_err(|e| problem(e.to_string()))?;
            let got = (map_type, info.key_size(), info.value_size(), info.max_entries());
            let want = (layout.map_type, layout.key_size, layout.value_size, layout.max_entries);
            if got != want {
                return Err(problem(format!(
                    "(type, key size, value size, max entries) is {got:?}, expected {want:?}"
                )));
            }
            existing.push(layout.name);
        }
        Ok(existing)
    }

    fn is_pinned(&self, pin: &Path) -> bool {
        pin.exists()
    }

    fn read_state(&self) -> Result<StateValue, LoaderError> {
        let bytes = self.state()?.get(&0, 0).map_err(|e| kernel(Operation::ReadState, "state", "reading state", e))?;
        Ok(StateValue::from_bytes(&bytes))
    }

    fn switch(&self, state: StateValue) -> Result<(), LoaderError> {
        self.state()?
            .set(0, state.to_bytes(), 0)
            .map_err(|e| kernel(Operation::Switch, "state", "switching generation", e))
    }

    fn entries(&self, map: &GenerationMap) -> Result<RawEntries, LoaderError> {
        let failed = |e| kernel(Operation::ReadMap, map.name, format!("reading {}", map.name), e);
        self.with_map(map, |opened| match opened {
            OpenMap::Ipcache(m) => {
                m.iter().map(|i| i.map(|(k, v)| (lpm_bytes(&k), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::Policy(m) => {
                m.iter().map(|i| i.map(|(k, v)| (lpm_bytes(&k), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::Endpoints(m) => {
                m.iter().map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::PolicyExact(m) => {
                m.iter().map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::Lb4Services(m) => {
                m.iter().map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::Lb4Backends(m) => {
                m.iter().map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)).collect()
            }
            OpenMap::Lb4ReverseNat(m) => {
                m.iter().map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)).collect()
            }
        })
    }

    fn write(&self, map: &GenerationMap, key: &[u8], value: &[u8]) -> Result<(), LoaderError> {
        let failed = |e| kernel(Operation::WriteEntry, map.name, format!("writing {}", map.name), e);
        self.with_map(map, |opened| match opened {
            OpenMap::Ipcache(m) => m.insert(&lpm(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::Policy(m) => m.insert(&lpm(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::Endpoints(m) => m.insert(sized(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::PolicyExact(m) => m.insert(sized(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::Lb4Services(m) => m.insert(sized(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::Lb4Backends(m) => m.insert(sized(map, key)?, sized(map, value)?, 0).map_err(failed),
            OpenMap::Lb4ReverseNat(m) => m.insert(sized(map, key)?, sized(map, value)?, 0).map_err(failed),
        })
    }

    fn delete(&self, map: &GenerationMap, key: &[u8]) -> Result<(), LoaderError> {
        let failed = |e| kernel(Operation::DeleteEntry, map.name, format!("removing from {}", map.name), e);
        self.with_map(map, |opened| match opened {
            OpenMap::Ipcache(m) => m.remove(&lpm(map, key)?).map_err(failed),
            OpenMap::Policy(m) => m.remove(&lpm(map, key)?).map_err(failed),
            OpenMap::Endpoints(m) => m.remove(&sized(map, key)?).map_err(failed),
            OpenMap::PolicyExact(m) => m.remove(&sized(map, key)?).map_err(failed),
            OpenMap::Lb4Services(m) => m.remove(&sized(map, key)?).map_err(failed),
            OpenMap::Lb4Backends(m) => m.remove(&sized(map, key)?).map_err(failed),
            OpenMap::Lb4ReverseNat(m) => m.remove(&sized(map, key)?).map_err(failed),
        })
    }

    fn load(&self, templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<Vec<LoadedEndpoint>, LoaderError> {
        programs::load_endpoints(&self.paths, templates, jobs)
    }

    fn check_load(&self, templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<(), LoaderError> {
        let scratch = self.paths.scratch();
        let loaded = programs::load_endpoints(&scratch, templates, jobs).map(drop);
        // The programs are unloaded once dropped; their maps and bodies
        // once unpinned. Best effort: the check's own result is what counts.
        let _ = std::fs::remove_dir_all(&scratch.root);
        loaded
    }

    fn attach(
        &self,
        program: &mut LoadedEndpoint,
        template: Template,
        interface: &str,
        pin: &Path,
        mechanism: Mechanism,
    ) -> Result<Attachment, LoaderError> {
        attach::attach(program.program(template)?, template, interface, pin, mechanism)
    }

    fn detach(&self, pin: &Path, interface: &str) -> Result<bool, LoaderError> {
        attach::detach(pin, interface)
    }

    fn unpin_maps_except(&self, kept: &[&str]) {
        for layout in abi::MAPS {
            if !kept.contains(&layout.name) {
                // Best effort: the apply is failing already, with its own error.
                let _ = std::fs::remove_file(self.paths.map(layout.name));
            }
        }
    }

    fn unpin_bodies_except(&self, keep: &BTreeSet<String>) -> Result<(), LoaderError> {
        programs::remove_bodies_except(&self.paths, keep)
    }

    /// tcx programs first, then tc filters by priority: the order in which
    /// `sch_handle_ingress()`/`sch_handle_egress()` run them.
    fn attached(&self, interface: &str, template: Template) -> Result<Vec<u32>, LoaderError> {
        let object = format!("`{}` on `{interface}`", template.program_name());
        let what = format!("cannot query the programs of {object}");
        let (_, programs) = SchedClassifier::query_tcx(interface, attach::attach_type(template))
            .map_err(|e| kernel(Operation::QueryAttached, &object, &what, e))?;
        let filters = tc_filters::list(interface, tc::hook(template))
            .map_err(|e| kernel(Operation::QueryAttached, &object, &what, e))?;
        Ok(programs.iter().map(|p| p.id()).chain(filters.iter().map(|f| f.program_id)).collect())
    }

    fn host_routes(&self) -> Result<Vec<Route>, LoaderError> {
        route::host_routes()
            .map_err(|e| kernel(Operation::ReadRoutes, "/proc/net/route", "cannot read the route tables", e))
    }

    fn host_interfaces(&self) -> Result<BTreeSet<String>, LoaderError> {
        route::host_interfaces()
            .map_err(|e| kernel(Operation::ListInterfaces, "/proc/net/dev", "cannot list the interfaces", e))
    }
}
