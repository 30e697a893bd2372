//! Everything the loader asks of the kernel, behind one trait.
//!
//! As aya keeps `aya-obj` (pure) apart from its syscalls, the loader's
//! logic (what to check, plan, write, and in what order) is apart from the
//! syscalls that carry it out: [`aya::AyaKernel`] makes them on bpffs and
//! tcx, [`memory::MemoryKernel`] keeps the same state in memory so that
//! unit tests drive a whole apply without root, and fail any call they
//! choose.
//!
//! Maps are named by their row in [`crate::generation_maps`] and keys and
//! values are bytes as the kernel stores them; pins are paths under the
//! loader's bpffs root ([`crate::paths::Paths`]).

pub mod aya;
pub mod memory;
pub mod tc_filters;

use crate::error::LoaderError;
use crate::generation_maps::GenerationMap;
use crate::manifest::Templates;
use crate::route::Route;
use policyc_ebpf::abi::StateValue;
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;
use std::collections::BTreeSet;
use std::path::Path;

/// How a program was put in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Attachment {
    /// A new link on the interface.
    Created,
    /// The pinned link now runs the new program.
    Replaced,
}

/// How an apply attaches the programs of an endpoint it attaches afresh
/// (an endpoint attached before keeps its mechanism, replaced in place).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// A legacy tc `cls_bpf` filter (direct action) on the interface's
    /// `clsact` qdisc: about 1 ms an attach with the kernel's default RCU
    /// settings, so 1 000 endpoints attach in about 2 s.
    #[default]
    Tc,
    /// A tcx link (`BPF_LINK_CREATE`): waits for an RCU grace period per
    /// interface's first program, about 18 ms an attach with the kernel's
    /// default settings.
    Tcx,
}

/// A map's entries as the kernel stores them: `(key, value)` bytes.
pub type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// What the loader asks of the kernel. Calls take `&self`: programs are
/// attached from many threads.
pub trait Kernel: Sync {
    /// One endpoint's stub, loaded and verified, not attached.
    type Program: Send;

    /// The names of the datapath's maps that are pinned, each checked
    /// against the datapath's layout (type, sizes, capacity: aya reuses a
    /// pinned map without checking).
    fn existing_maps(&self) -> Result<Vec<&'static str>, LoaderError>;

    /// Whether something is pinned at `pin`.
    fn is_pinned(&self, pin: &Path) -> bool;

    /// The `state` slot: the generation in force and the apply serial.
    fn read_state(&self) -> Result<StateValue, LoaderError>;

    /// Writes the `state` slot: the one write that switches every program
    /// of the node to another generation.
    fn switch(&self, state: StateValue) -> Result<(), LoaderError>;

    /// Every entry of `map` (one syscall per entry).
    fn entries(&self, map: &GenerationMap) -> Result<RawEntries, LoaderError>;

    /// Writes one entry of `map`.
    fn write(&self, map: &GenerationMap, key: &[u8], value: &[u8]) -> Result<(), LoaderError>;

    /// Deletes one entry of `map`.
    fn delete(&self, map: &GenerationMap, key: &[u8]) -> Result<(), LoaderError>;

    /// Loads the stub of each `(endpoint, settings)` of `jobs` through the
    /// verifier, in order, and the bodies they call; the first load creates
    /// and pins the maps that are not pinned yet.
    fn load(&self, templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<Vec<Self::Program>, LoaderError>;

    /// Loads what [`Kernel::load`] would for `jobs` through the verifier,
    /// but against maps and bodies of a scratch root that is removed
    /// afterwards: nothing of the node changes (for `apply --dry-run`).
    fn check_load(&self, templates: &Templates, jobs: &[(&str, EndpointConfig)]) -> Result<(), LoaderError>;

    /// Attaches `program`'s hook `template` to `interface` through what is
    /// pinned at `pin` (a link or filter, replaced in place by its own
    /// mechanism) or else afresh by `mechanism`, pinned there.
    fn attach(
        &self,
        program: &mut Self::Program,
        template: Template,
        interface: &str,
        pin: &Path,
        mechanism: Mechanism,
    ) -> Result<Attachment, LoaderError>;

    /// Detaches what is pinned at `pin` (attached to `interface`), if
    /// anything is.
    fn detach(&self, pin: &Path, interface: &str) -> Result<bool, LoaderError>;

    /// Unpins the datapath's maps but `kept` (best effort: after a refusal,
    /// the maps this apply created).
    fn unpin_maps_except(&self, kept: &[&str]);

    /// Unpins the bodies of every pair of templates but those of the
    /// digests `keep`.
    fn unpin_bodies_except(&self, keep: &BTreeSet<String>) -> Result<(), LoaderError>;

    /// The ids of the programs attached to `interface` at the hook of
    /// `template`, in the order they run.
    fn attached(&self, interface: &str, template: Template) -> Result<Vec<u32>, LoaderError>;

    /// The host routes (to find a pod's host-side interface).
    fn host_routes(&self) -> Result<Vec<Route>, LoaderError>;

    /// The names of the network interfaces.
    fn host_interfaces(&self) -> Result<BTreeSet<String>, LoaderError>;
}
