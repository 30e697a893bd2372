//! A kernel in memory, for unit tests: maps, pins and links as plain
//! data, every call counted and journaled, and any call made to fail.
//!
//! `fail(Call::Write, 3, EIO)` makes the third map write refuse with `EIO`,
//! as the kernel would (the write does not happen). The journal lists the
//! calls that changed something, in order, so that tests check what an
//! apply did and when.

use super::{Attachment, Kernel, Mechanism, RawEntries};
use crate::error::{KernelError, LoaderError, Operation};
use crate::generation_maps::GenerationMap;
use crate::manifest::Templates;
use crate::paths::Paths;
use crate::route::Route;
use policyc_ebpf::abi::{self, StateValue};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A call of the [`Kernel`] trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Call {
    /// [`Kernel::existing_maps`].
    ExistingMaps,
    /// [`Kernel::read_state`].
    ReadState,
    /// [`Kernel::switch`].
    Switch,
    /// [`Kernel::entries`].
    Entries,
    /// [`Kernel::write`].
    Write,
    /// [`Kernel::delete`].
    Delete,
    /// [`Kernel::load`] (once per program loaded).
    Load,
    /// [`Kernel::check_load`] (once per program checked).
    CheckLoad,
    /// [`Kernel::attach`].
    Attach,
    /// [`Kernel::detach`].
    Detach,
    /// [`Kernel::unpin_bodies_except`].
    UnpinBodies,
    /// [`Kernel::attached`].
    Attached,
    /// [`Kernel::host_routes`].
    HostRoutes,
    /// [`Kernel::host_interfaces`].
    HostInterfaces,
}

impl Call {
    /// Every call.
    pub const ALL: [Call; 14] = [
        Call::ExistingMaps,
        Call::ReadState,
        Call::Switch,
        Call::Entries,
        Call::Write,
        Call::Delete,
        Call::Load,
        Call::CheckLoad,
        Call::Attach,
        Call::Detach,
        Call::UnpinBodies,
        Call::Attached,
        Call::HostRoutes,
        Call::HostInterfaces,
    ];

    fn operation(self) -> Operation {
        match self {
            Call::ExistingMaps => Operation::OpenMap,
            Call::ReadState => Operation::ReadState,
            Call::Switch => Operation::Switch,
            Call::Entries => Operation::ReadMap,
            Call::Write => Operation::WriteEntry,
            Call::Delete => Operation::DeleteEntry,
            Call::Load | Call::CheckLoad => Operation::LoadProgram,
            Call::Attach => Operation::Attach,
            Call::Detach | Call::UnpinBodies => Operation::Unpin,
            Call::Attached => Operation::QueryAttached,
            Call::HostRoutes => Operation::ReadRoutes,
            Call::HostInterfaces => Operation::ListInterfaces,
        }
    }
}

/// A change the kernel made, in the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A map was created and pinned.
    CreateMap(&'static str),
    /// An entry of a map was written.
    Write(&'static str),
    /// An entry of a map was deleted.
    Delete(&'static str),
    /// The state slot was written.
    Switch(StateValue),
    /// A link was created or updated to run program `program`.
    Attach {
        /// The link's pin.
        pin: PathBuf,
        /// The program id.
        program: u32,
    },
    /// A link was removed.
    Detach(PathBuf),
    /// A map pin was removed.
    UnpinMap(&'static str),
    /// The bodies of templates `digest` were unpinned.
    UnpinBodies(String),
}

/// A loaded program in memory: its id and settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryProgram {
    /// Program id (both hooks share it here).
    pub id: u32,
    /// The endpoint it was loaded for.
    pub endpoint: String,
    /// Its settings.
    pub config: EndpointConfig,
}

/// A pinned tcx link or tc filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The interface.
    pub interface: String,
    /// The hook.
    pub template: Template,
    /// The program it runs.
    pub program: u32,
    /// How it was attached.
    pub mechanism: Mechanism,
}

/// What the memory kernel holds.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Pinned maps of the datapath, with their entries (the state slot's
    /// value under the empty key).
    pub maps: BTreeMap<&'static str, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Pinned links.
    pub links: BTreeMap<PathBuf, Link>,
    /// Digests of the templates whose bodies are pinned.
    pub bodies: BTreeSet<String>,
    /// The interfaces that exist.
    pub interfaces: BTreeSet<String>,
    /// The routes.
    pub routes: Vec<Route>,
    /// Changes made, in order.
    pub journal: Vec<Change>,
    next_program: u32,
    calls: BTreeMap<Call, usize>,
    failures: BTreeMap<(Call, usize), i32>,
}

/// The kernel in memory; [`Memory`] is what it holds.
#[derive(Debug)]
pub struct MemoryKernel {
    paths: Paths,
    memory: Mutex<Memory>,
}

impl MemoryKernel {
    /// An empty kernel (nothing pinned) with interfaces `interfaces`; pins
    /// are named after `paths`.
    pub fn new(paths: &Paths, interfaces: &[&str]) -> MemoryKernel {
        let memory = Memory { interfaces: interfaces.iter().map(|i| i.to_string()).collect(), ..Memory::default() };
        MemoryKernel { paths: paths.clone(), memory: Mutex::new(memory) }
    }

    /// Makes the `nth` call (from 1, counted from now) of `call` fail with
    /// `errno`.
    pub fn fail(&self, call: Call, nth: usize, errno: i32) {
        let mut m = self.lock();
        let done = m.calls.get(&call).copied().unwrap_or(0);
        m.failures.insert((call, done + nth), errno);
    }

    /// What it holds now.
    pub fn memory(&self) -> Memory {
        self.lock().clone()
    }

    /// How many times `call` was made.
    pub fn calls(&self, call: Call) -> usize {
        self.lock().calls.get(&call).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a call of `call` on `object`, and fails it if told to.
    fn call(&self, call: Call, object: impl std::fmt::Display) -> Result<MutexGuard<'_, Memory>, LoaderError> {
        let mut m = self.lock();
        let n = m.calls.entry(call).or_insert(0);
        *n += 1;
        let n = *n;
        match m.failures.remove(&(call, n)) {
            Some(errno) => Err(LoaderError::Kernel(KernelError {
                operation: call.operation(),
                object: object.to_string(),
                errno: Some(errno),
                message: format!("{call:?} of `{object}`: errno {errno} (injected)"),
            })),
            None => Ok(m),
        }
    }

    fn map_name(&self, pin: &Path) -> Option<&'static str> {
        abi::MAPS.iter().map(|l| l.name).find(|name| self.paths.map(name) == pin)
    }
}

fn missing(map: &str) -> LoaderError {
    LoaderError::Kernel(KernelError {
        operation: Operation::OpenMap,
        object: map.to_string(),
        errno: Some(2),
        message: format!("cannot open `{map}`: not pinned"),
    })
}

impl Memory {
    fn map_mut(&mut self, name: &str) -> Result<&mut BTreeMap<Vec<u8>, Vec<u8>>, LoaderError> {
        self.maps.get_mut(name).ok_or_else(|| missing(name))
    }
}

impl Kernel for MemoryKernel {
    type Program = MemoryProgram;

    fn existing_maps(&self) -> Result<Vec<&'static str>, LoaderError> {
        let m = self.call(Call::ExistingMaps, "maps")?;
        Ok(abi::MAPS.iter().map(|l| l.name).filter(|name| m.maps.contains_key(name)).collect())
    }

    fn is_pinned(&self, pin: &Path) -> bool {
        let m = self.lock();
        m.links.contains_key(pin) || self.map_name(pin).is_some_and(|name| m.maps.contains_key(name))
    }

    fn read_state(&self) -> Result<StateValue, LoaderError> {
        let mut m = self.call(Call::ReadState, "state")?;
        let state = m.map_mut("state")?;
        Ok(state
            .get(&Vec::new())
            .map(|v| StateValue::from_bytes(&v[..].try_into().unwrap_or([0; 8])))
            .unwrap_or_default())
    }

    fn switch(&self, state: StateValue) -> Result<(), LoaderError> {
        let mut m = self.call(Call::Switch, "state")?;
        m.map_mut("state")?.insert(Vec::new(), state.to_bytes().to_vec());
        m.journal.push(Change::Switch(state));
        Ok(())
    }

    fn entries(&self, map: &GenerationMap) -> Result<RawEntries, LoaderError> {
        let mut m = self.call(Call::Entries, map.name)?;
        Ok(m.map_mut(map.name)?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn write(&self, map: &GenerationMap, key: &[u8], value: &[u8]) -> Result<(), LoaderError> {
        let mut m = self.call(Call::Write, map.name)?;
        if key.len() != map.key_size || value.len() != map.value_size {
            return Err(LoaderError::Object(format!("an entry of `{}` of another layout", map.name)));
        }
        m.map_mut(map.name)?.insert(key.to_vec(), value.to_vec());
        m.journal.push(Change::Write(map.name));
        Ok(())
    }

    fn delete(&self, map: &GenerationMap, key: &[u8]) -> Result<(), LoaderError> {
        let mut m = self.call(Call::Delete, map.name)?;
        if m.map_mut(map.name)?.remove(key).is_none() {
            return Err(LoaderError::Kernel(KernelError {
                operation: Operation::DeleteEntry,
                object: map.name.to_string(),
                errno: Some(2),
                message: format!("removing from {}: no such entry", map.name),
            }));
        }
        m.journal.push(Change::Delete(map.name));
        Ok(())
    }

    fn load(&self, templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<Vec<MemoryProgram>, LoaderError> {
        let mut out = Vec::new();
        for (endpoint, config) in jobs {
            let mut m = self.call(Call::Load, format!("endpoint `{endpoint}`"))?;
            // As with aya, the first load creates the maps not pinned yet.
            for layout in abi::MAPS {
                if !m.maps.contains_key(layout.name) {
                    m.maps.insert(layout.name, BTreeMap::new());
                    m.journal.push(Change::CreateMap(layout.name));
                }
            }
            m.bodies.insert(templates.digest().to_string());
            m.next_program += 1;
            out.push(MemoryProgram { id: m.next_program, endpoint: endpoint.to_string(), config: *config });
        }
        Ok(out)
    }

    fn check_load(&self, _templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<(), LoaderError> {
        for (endpoint, _) in jobs {
            drop(self.call(Call::CheckLoad, format!("endpoint `{endpoint}`"))?);
        }
        Ok(())
    }

    fn attach(
        &self,
        program: &mut MemoryProgram,
        template: Template,
        interface: &str,
        pin: &Path,
        mechanism: Mechanism,
    ) -> Result<Attachment, LoaderError> {
        let mut m = self.call(Call::Attach, pin.display())?;
        if !m.interfaces.contains(interface) {
            return Err(LoaderError::Kernel(KernelError {
                operation: Operation::Attach,
                object: interface.to_string(),
                errno: Some(19),
                message: format!("cannot attach `{}` on `{interface}`: no such device", template.program_name()),
            }));
        }
        // What is pinned keeps its mechanism: replaced in place.
        let mechanism = m.links.get(pin).map_or(mechanism, |l| l.mechanism);
        let link = Link { interface: interface.to_string(), template, program: program.id, mechanism };
        let how = match m.links.insert(pin.to_path_buf(), link) {
            Some(_) => Attachment::Replaced,
            None => Attachment::Created,
        };
        m.journal.push(Change::Attach { pin: pin.to_path_buf(), program: program.id });
        Ok(how)
    }

    fn detach(&self, pin: &Path, _interface: &str) -> Result<bool, LoaderError> {
        let mut m = self.call(Call::Detach, pin.display())?;
        let removed = m.links.remove(pin).is_some();
        if removed {
            m.journal.push(Change::Detach(pin.to_path_buf()));
        }
        Ok(removed)
    }

    fn unpin_maps_except(&self, kept: &[&str]) {
        let mut m = self.lock();
        for layout in abi::MAPS {
            if !kept.contains(&layout.name) && m.maps.remove(layout.name).is_some() {
                m.journal.push(Change::UnpinMap(layout.name));
            }
        }
    }

    fn unpin_bodies_except(&self, keep: &BTreeSet<String>) -> Result<(), LoaderError> {
        let mut m = self.call(Call::UnpinBodies, "bodies")?;
        let gone: Vec<String> = m.bodies.iter().filter(|d| !keep.contains(*d)).cloned().collect();
        for digest in gone {
            m.bodies.remove(&digest);
            m.journal.push(Change::UnpinBodies(digest));
        }
        Ok(())
    }

    fn attached(&self, interface: &str, template: Template) -> Result<Vec<u32>, LoaderError> {
        let m = self.call(Call::Attached, interface)?;
        Ok(m.links.values().filter(|l| l.interface == interface && l.template == template).map(|l| l.program).collect())
    }

    fn host_routes(&self) -> Result<Vec<Route>, LoaderError> {
        Ok(self.call(Call::HostRoutes, "routes")?.routes.clone())
    }

    fn host_interfaces(&self) -> Result<BTreeSet<String>, LoaderError> {
        Ok(self.call(Call::HostInterfaces, "interfaces")?.interfaces.clone())
    }
}
