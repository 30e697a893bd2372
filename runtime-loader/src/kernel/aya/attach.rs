//! Attaching an endpoint's programs to its interface's hooks, by either
//! mechanism ([`Mechanism`]): a tcx link ([`super::tcx`]) or a legacy tc
//! filter ([`super::tc`]). Both keep something pinned at the endpoint's
//! pin ([`crate::paths::Paths::link`]): the link, or the filter's program.
//! What is pinned decides how an endpoint is changed afterwards, whatever
//! mechanism an apply asks for new endpoints: an endpoint keeps the
//! mechanism it was attached with, and is only ever replaced in place.

use super::{tc, tcx};
use crate::error::{kernel, LoaderError, Operation};
pub use crate::kernel::{Attachment, Mechanism};
use aya::programs::{SchedClassifier, TcAttachType};
use policyc_ebpf::Template;
use std::collections::BTreeMap;
use std::path::Path;

/// The hook of a template on the pod's host-side interface.
pub fn attach_type(template: Template) -> TcAttachType {
    match template {
        // Packets the pod sends arrive on the host side's ingress.
        Template::FromContainer => TcAttachType::Ingress,
        Template::ToContainer => TcAttachType::Egress,
    }
}

/// What a pin holds.
enum Pinned {
    /// A tcx link.
    Link,
    /// The program of a tc filter, by id.
    Filter(u32),
}

fn pinned(pin: &Path) -> Option<Pinned> {
    if !pin.exists() {
        return None;
    }
    Some(tc::pinned_program(pin).map_or(Pinned::Link, Pinned::Filter))
}

/// Attaches `program` to `interface` at the hook of `template` and pins
/// it at `pin`: in place of what is pinned there, by its mechanism, or
/// else by `mechanism`.
pub fn attach(
    program: &mut SchedClassifier,
    template: Template,
    interface: &str,
    pin: &Path,
    mechanism: Mechanism,
) -> Result<Attachment, LoaderError> {
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            kernel(Operation::CreateDirectory, dir.display(), format!("cannot create `{}`", dir.display()), e)
        })?;
    }
    match (pinned(pin), mechanism) {
        (Some(Pinned::Link), _) | (None, Mechanism::Tcx) => tcx::attach(program, template, interface, pin),
        (Some(Pinned::Filter(_)), _) | (None, Mechanism::Tc) => tc::attach(program, template, interface, pin),
    }
}

/// Detaches what is pinned at `pin` from `interface`, if anything is
/// pinned there.
pub fn detach(pin: &Path, interface: &str) -> Result<bool, LoaderError> {
    match pinned(pin) {
        None => Ok(false),
        Some(Pinned::Link) => tcx::detach(pin).map(|()| true),
        Some(Pinned::Filter(id)) => tc::detach(pin, id, interface).map(|()| true),
    }
}

/// The interfaces on which each program runs in the loader's tc slot, by
/// program id: one dump of each hook of each interface, for `uninstall`,
/// which has only the pins.
#[derive(Default)]
pub struct FilterIndex(BTreeMap<u32, Vec<String>>);

impl FilterIndex {
    /// Reads the index from every interface of the host.
    pub fn read() -> Result<FilterIndex, LoaderError> {
        let interfaces = crate::route::host_interfaces()
            .map_err(|e| kernel(Operation::ListInterfaces, "/proc/net/dev", "cannot list the interfaces", e))?;
        let mut index: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for interface in interfaces {
            for id in tc::slot_programs(&interface)? {
                index.entry(id).or_default().push(interface.clone());
            }
        }
        Ok(FilterIndex(index))
    }
}

/// Detaches what is pinned at `pin` wherever it runs: a link knows its
/// interface; a filter's program is looked up in `filters`.
pub fn detach_anywhere(pin: &Path, filters: &FilterIndex) -> Result<bool, LoaderError> {
    match pinned(pin) {
        None => Ok(false),
        Some(Pinned::Link) => tcx::detach(pin).map(|()| true),
        Some(Pinned::Filter(id)) => {
            for interface in filters.0.get(&id).into_iter().flatten() {
                tc::delete_filters_of(interface, id)?;
            }
            std::fs::remove_file(pin)
                .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot unpin `{}`", pin.display()), e))?;
            Ok(true)
        }
    }
}
