//! Legacy tc attachment: a `cls_bpf` filter in direct-action mode on the
//! interface's `clsact` qdisc, in the loader's own slot of each hook
//! ([`PRIORITY`], [`HANDLE`]), with the program it runs pinned where a tcx
//! link would be ([`crate::paths::Paths::link`]).
//!
//! Why it exists beside tcx: a tcx attach that creates an interface's
//! first program waits for a full RCU grace period under the RTNL lock
//! (`tcx_entry_sync()` in `kernel/bpf/tcx.c`), about 18 ms with the
//! kernel's default settings, so 1 000 new endpoints take over 30 s; a
//! `cls_bpf` filter is published through `mini_qdisc_pair_swap()`
//! (`net/sched/sch_generic.c`), which waits only when no grace period has
//! passed since the last swap, about 1 ms (`cargo xtask bench attach`).
//!
//! The promises of tcx links, kept with filters:
//! - **Replace in place**: a filter that exists is changed with
//!   `RTM_NEWTFILTER` without `NLM_F_CREATE`/`NLM_F_EXCL` at the same
//!   priority and handle; `cls_bpf_change()` swaps the program with
//!   `list_replace_rcu()` (`net/sched/cls_bpf.c`), so every packet runs
//!   the old program or the new one, never none.
//! - **Enforcing without the loader**: a filter belongs to the qdisc, not
//!   to a process; aya would delete the filter when its link handle drops,
//!   so the handle is forgotten once the filter is in place.
//! - **Adoption**: the pin names the endpoint's hook as a link pin does;
//!   the filter is found again in its slot (`RTM_GETTFILTER`,
//!   [`crate::kernel::tc_filters`]), and is detached only while it still
//!   runs the pinned program (another endpoint may have taken the slot of
//!   the same interface since).

use super::attach::attach_type;
use crate::error::{kernel, LoaderError, Operation};
use crate::kernel::tc_filters::{self, Filter, Hook};
use crate::kernel::Attachment;
use aya::programs::links::Link;
use aya::programs::tc::{qdisc_add_clsact, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle};
use aya::programs::{ProgramInfo, SchedClassifier};
use policyc_ebpf::Template;
use std::path::Path;

/// The priority of the loader's filters: 1, the first to run, as a tcx
/// program runs before any legacy filter (`sch_handle_ingress()` in
/// `net/core/dev.c`), so what the policy drops no other filter sees first.
pub const PRIORITY: u16 = 1;
/// The handle of the loader's filter within [`PRIORITY`].
pub const HANDLE: u32 = 1;

/// The `clsact` hook of `template` (as [`attach_type`]).
pub fn hook(template: Template) -> Hook {
    match template {
        Template::FromContainer => Hook::Ingress,
        Template::ToContainer => Hook::Egress,
    }
}

/// Whether `filter` is in the loader's slot.
fn in_slot(filter: &Filter) -> bool {
    filter.priority == PRIORITY && filter.handle == HANDLE
}

/// The link handle of the loader's slot of `template`'s hook.
fn slot_link(interface: &str, template: Template) -> std::io::Result<SchedClassifierLink> {
    SchedClassifierLink::attached(interface, attach_type(template), PRIORITY, TcHandle::from(HANDLE), None)
}

/// Attaches `program` to `interface` at the hook of `template`: replaces
/// the program of the loader's filter there, or creates the filter (and
/// the `clsact` qdisc) where there is none; then pins the program at `pin`.
/// A filter in the slot that the loader did not make (another program
/// name) is refused, not replaced.
pub fn attach(
    program: &mut SchedClassifier,
    template: Template,
    interface: &str,
    pin: &Path,
) -> Result<Attachment, LoaderError> {
    let object = format!("`{}` on `{interface}`", template.program_name());
    let what = |action: &str| format!("{action} {object}");
    let filters = tc_filters::list(interface, hook(template))
        .map_err(|e| kernel(Operation::QueryAttached, &object, what("cannot list the tc filters of"), e))?;
    let (id, how) = match filters.iter().find(|f| in_slot(f)) {
        Some(f) if f.name.as_deref() == Some(template.program_name()) => {
            let link =
                slot_link(interface, template).map_err(|e| kernel(Operation::ReplaceLink, &object, what("cannot replace"), e))?;
            let id = program
                .attach_to_link(link)
                .map_err(|e| kernel(Operation::ReplaceLink, &object, what("cannot replace"), e))?;
            (id, Attachment::Replaced)
        }
        Some(f) => {
            return Err(LoaderError::Interface {
                endpoint: interface.to_string(),
                reason: format!(
                    "its tc {} hook has a filter policyc did not attach (`{}`, program id {}) at priority {PRIORITY} handle {HANDLE}",
                    match hook(template) {
                        Hook::Ingress => "ingress",
                        Hook::Egress => "egress",
                    },
                    f.name.as_deref().unwrap_or("unnamed"),
                    f.program_id
                ),
            })
        }
        None => {
            match qdisc_add_clsact(interface) {
                Ok(()) => {}
                Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(kernel(Operation::Attach, &object, what("cannot add the clsact qdisc for"), e)),
            }
            let options = NlOptions { priority: PRIORITY, handle: TcHandle::from(HANDLE), ..NlOptions::default() };
            let id = program
                .attach_with_options(interface, attach_type(template), TcAttachOptions::Netlink(options))
                .map_err(|e| kernel(Operation::Attach, &object, what("cannot attach"), e))?;
            (id, Attachment::Created)
        }
    };
    let link = program.take_link(id).map_err(|e| kernel(Operation::Attach, &object, what("cannot keep"), e))?;
    // Dropped, the handle would delete the filter: the filter must outlive
    // this process. The handle holds no descriptor, only the slot's numbers.
    std::mem::forget(link);
    // The pin follows the filter's program. Killed between the two, the pin
    // names the program the filter ran before (or is gone): the next apply
    // replaces the filter in its slot again, which is where it looks.
    if pin.exists() {
        std::fs::remove_file(pin)
            .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot unpin `{}`", pin.display()), e))?;
    }
    program.pin(pin).map_err(|e| kernel(Operation::PinLink, &object, what("cannot pin the program of"), e))?;
    Ok(how)
}

/// `BPF_PROG_TYPE_SCHED_CLS` (`include/uapi/linux/bpf.h`).
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;

/// The id of the program pinned at `pin`, if a program is pinned there
/// (not a link). `BPF_OBJ_GET_INFO_BY_FD` answers for a link too, with a
/// `bpf_link_info` whose first field is the link's type: a tcx link reads
/// as type `BPF_LINK_TYPE_TCX` (11), never as a classifier (3).
pub fn pinned_program(pin: &Path) -> Option<u32> {
    let info = ProgramInfo::from_pin(pin).ok()?;
    (info.program_type() as u32 == BPF_PROG_TYPE_SCHED_CLS).then(|| info.id())
}

/// The programs in the loader's slot of the hook of `template` on
/// `interface`; `None` when the interface is gone.
fn slot_programs_at(interface: &str, template: Template) -> Result<Option<Vec<u32>>, LoaderError> {
    match tc_filters::list(interface, hook(template)) {
        Ok(filters) => Ok(Some(filters.iter().filter(|f| in_slot(f)).map(|f| f.program_id).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            let object = format!("`{interface}`");
            Err(kernel(Operation::QueryAttached, &object, format!("cannot list the tc filters of {object}"), e))
        }
    }
}

/// The programs in the loader's slot of either hook of `interface`. An
/// interface that is gone has none.
pub fn slot_programs(interface: &str) -> Result<Vec<u32>, LoaderError> {
    let mut out = Vec::new();
    for template in Template::ALL {
        match slot_programs_at(interface, template)? {
            Some(programs) => out.extend(programs),
            None => return Ok(Vec::new()),
        }
    }
    Ok(out)
}

/// Deletes the loader's filters on `interface` (either hook) that run
/// program `id`. An interface that is gone has none.
pub fn delete_filters_of(interface: &str, id: u32) -> Result<(), LoaderError> {
    for template in Template::ALL {
        let Some(programs) = slot_programs_at(interface, template)? else { return Ok(()) };
        if programs.contains(&id) {
            let object = format!("`{}` on `{interface}`", template.program_name());
            let what = format!("cannot detach {object}");
            let link = slot_link(interface, template).map_err(|e| kernel(Operation::Unpin, &object, &what, e))?;
            link.detach().map_err(|e| kernel(Operation::Unpin, &object, &what, e))?;
        }
    }
    Ok(())
}

/// Detaches the filter of the program pinned at `pin` (`id`) from
/// `interface`, if it still runs it, and removes the pin.
pub fn detach(pin: &Path, id: u32, interface: &str) -> Result<(), LoaderError> {
    delete_filters_of(interface, id)?;
    std::fs::remove_file(pin)
        .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot unpin `{}`", pin.display()), e))
}
