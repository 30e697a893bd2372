//! `uninstall`: detach and unpin everything under the loader's root, and
//! nothing else.

use crate::attach;
use crate::error::{kernel, LoaderError, Operation};
use crate::lock::{lock, LockWait};
use crate::paths::Paths;

/// What was removed.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Removed {
    /// Links detached.
    pub links: Vec<String>,
    /// Map pins removed.
    pub maps: Vec<String>,
}

/// Detaches every pinned link and removes every pinned map of the root,
/// waiting for the appliers' lock as long as [`LockWait::default`] says.
pub fn uninstall(paths: &Paths) -> Result<Removed, LoaderError> {
    uninstall_waiting(paths, &LockWait::default())
}

/// [`uninstall`], waiting for the appliers' lock as `wait` says.
pub fn uninstall_waiting(paths: &Paths, wait: &LockWait) -> Result<Removed, LoaderError> {
    let _lock = lock(paths, wait)?;
    let mut removed = Removed::default();
    let list = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> =
            std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
        v.sort();
        v
    };
    let pins = list(&paths.links());
    // Where the pinned filters' programs run, read once for all pins.
    let filters = if pins.is_empty() { attach::FilterIndex::default() } else { attach::FilterIndex::read()? };
    for pin in pins {
        attach::detach_anywhere(&pin, &filters)?;
        removed.links.push(pin.display().to_string());
    }
    for layout in policyc_ebpf::abi::MAPS {
        let pin = paths.map(layout.name);
        if pin.exists() {
            std::fs::remove_file(&pin)
                .map_err(|e| kernel(Operation::Unpin, pin.display(), format!("cannot unpin `{}`", pin.display()), e))?;
            removed.maps.push(pin.display().to_string());
        }
    }
    if paths.bodies().exists() {
        std::fs::remove_dir_all(paths.bodies()).map_err(|e| {
            kernel(
                Operation::Unpin,
                paths.bodies().display(),
                format!("cannot unpin `{}`", paths.bodies().display()),
                e,
            )
        })?;
        removed.maps.push(paths.bodies().display().to_string());
    }
    for dir in [paths.links(), paths.maps(), paths.root.clone()] {
        // Only empty directories go: anything else there is not ours.
        let _ = std::fs::remove_dir(&dir);
    }
    // The copies of what each generation held go with the maps.
    for generation in [0, 1] {
        let _ = std::fs::remove_file(paths.generation_copy(generation));
    }
    let _ = std::fs::remove_dir_all(paths.pieces());
    match std::fs::remove_file(paths.record()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LoaderError::Record(format!("cannot remove `{}`: {e}", paths.record().display()))),
    }
    Ok(removed)
}
