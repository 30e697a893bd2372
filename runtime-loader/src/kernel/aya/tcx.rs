//! tcx attachment: a pinned link per endpoint and hook, created on first
//! apply and afterwards switched to the new program with `BPF_LINK_UPDATE`
//! (atomic per hook: every packet sees the old program or the new one).

use super::attach::attach_type;
use crate::error::{kernel, LoaderError, Operation};
use crate::kernel::Attachment;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::SchedClassifier;
use policyc_ebpf::Template;
use std::path::Path;

/// Attaches `program` to `interface` at the hook of `template`, through
/// the link pinned at `pin` if there is one (and it is on the same
/// interface, which the caller checks), else a new link pinned there.
pub fn attach(
    program: &mut SchedClassifier,
    template: Template,
    interface: &str,
    pin: &Path,
) -> Result<Attachment, LoaderError> {
    let object = format!("`{}` on `{interface}`", template.program_name());
    let what = |action: &str| format!("{action} {object}");
    if pin.exists() {
        let pinned = PinnedLink::from_pin(pin)
            .map_err(|e| kernel(Operation::ReplaceLink, &object, what("cannot open the link of"), e))?;
        let link = SchedClassifierLink::try_from(FdLink::from(pinned))
            .map_err(|e| kernel(Operation::ReplaceLink, &object, what("cannot use the link of"), e))?;
        program.attach_to_link(link).map_err(|e| kernel(Operation::ReplaceLink, &object, what("cannot replace"), e))?;
        return Ok(Attachment::Replaced);
    }
    let id = program
        .attach_with_options(interface, attach_type(template), TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(|e| kernel(Operation::Attach, &object, what("cannot attach"), e))?;
    let link =
        program.take_link(id).map_err(|e| kernel(Operation::Attach, &object, what("cannot keep the link of"), e))?;
    let fd_link =
        FdLink::try_from(link).map_err(|e| kernel(Operation::PinLink, &object, what("cannot pin the link of"), e))?;
    fd_link.pin(pin).map_err(|e| kernel(Operation::PinLink, &object, what("cannot pin the link of"), e))?;
    Ok(Attachment::Created)
}

/// Detaches the link pinned at `pin` by removing its pin (the last
/// reference).
pub fn detach(pin: &Path) -> Result<(), LoaderError> {
    let pinned = PinnedLink::from_pin(pin)
        .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot open `{}`", pin.display()), e))?;
    // Unpinning drops the last reference once the fd closes: the kernel
    // detaches the program.
    pinned
        .unpin()
        .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot unpin `{}`", pin.display()), e))?;
    Ok(())
}
