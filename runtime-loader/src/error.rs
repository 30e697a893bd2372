//! The loader's one error type.

use crate::bundle::BundleError;
use std::fmt;

/// Why an apply, status or uninstall failed. Apply fails before its first
/// write for every variant but [`LoaderError::Kernel`] (a syscall refused
/// mid-way, before the switch: the active generation is untouched) and
/// [`LoaderError::Unfinished`] (after the switch: the new one is in force).
#[derive(Debug)]
pub enum LoaderError {
    /// The bundle is refused.
    Bundle(BundleError),
    /// bpffs is not mounted and cannot be.
    Bpffs(String),
    /// A pinned map exists with another layout than this datapath's.
    PinnedMap {
        /// The pin.
        path: String,
        /// What differs.
        problem: String,
    },
    /// The verifier refused a program.
    Verifier {
        /// Whose program: `endpoint `ns/pod``, or the body an endpoint
        /// calls.
        of: String,
        /// The program.
        program: String,
        /// The kernel's error.
        error: String,
        /// Its errno.
        errno: Option<i32>,
        /// The verifier's log.
        log: String,
    },
    /// A program object cannot be used (a program missing from it, a stub
    /// that cannot be specialized).
    Object(String),
    /// A local endpoint's host-side interface cannot be found.
    Interface {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The maps do not exist and this apply loads no program that would
    /// create them.
    NoMaps,
    /// A probe cannot be set up.
    Probe(String),
    /// The node agent cannot start.
    Agent(String),
    /// Another apply holds the lock.
    Locked(String),
    /// The record of the last apply cannot be read or written.
    Record(String),
    /// A syscall failed.
    Kernel(KernelError),
    /// The output cannot be written (other than to a closed pipe, which
    /// ends it quietly).
    Output(std::io::Error),
    /// The bundle is in force (the switch happened), but steps after the
    /// switch failed; each says what runs instead, always a program that
    /// enforces (see [`crate::apply`]). Applying again finishes them.
    Unfinished {
        /// The bundle in force.
        bundle_hash: String,
        /// Its generation, active.
        generation: u8,
        /// What was not done, and why.
        failures: Vec<(String, LoaderError)>,
    },
}

/// What the loader asked of the kernel when it refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Open a pinned map or use it as its type.
    OpenMap,
    /// Read a map's entries.
    ReadMap,
    /// Write a map entry.
    WriteEntry,
    /// Delete a map entry.
    DeleteEntry,
    /// Read the `state` slot.
    ReadState,
    /// Write the `state` slot: the generation flip.
    Switch,
    /// Load an object, creating and pinning the maps it declares.
    LoadObject,
    /// Load a program through the verifier.
    LoadProgram,
    /// Put a body in the stubs' program array, or pin it.
    FillBody,
    /// Attach a program with a new tcx link or tc filter.
    Attach,
    /// Replace the program of a pinned tcx link or of the loader's tc
    /// filter.
    ReplaceLink,
    /// Pin a link (or a tc filter's program).
    PinLink,
    /// Remove a pin (of a link, a map, a body).
    Unpin,
    /// Make a directory under the bpffs root.
    CreateDirectory,
    /// Read the route tables.
    ReadRoutes,
    /// List the network interfaces.
    ListInterfaces,
    /// Query the programs attached to a hook.
    QueryAttached,
    /// Run a program on a packet (`BPF_PROG_TEST_RUN`).
    TestRun,
}

/// A refused syscall: what was asked, of what, the errno where the kernel
/// gave one, and the message as the loader shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelError {
    /// What was asked.
    pub operation: Operation,
    /// Of what: a map, a pin, a program on an interface.
    pub object: String,
    /// The kernel's errno, when the error carries one.
    pub errno: Option<i32>,
    /// What was being done and every cause, as shown.
    pub message: String,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KernelError {}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoaderError::Bundle(e) => write!(f, "bundle refused: {e}"),
            LoaderError::Bpffs(e) => write!(f, "bpffs: {e}"),
            LoaderError::PinnedMap { path, problem } => write!(
                f,
                "pinned map `{path}` does not match this datapath: {problem} \
                 (it was made by another version; `policyc-loader uninstall` removes it)"
            ),
            LoaderError::Verifier { of, program, error, log, .. } => {
                write!(f, "the verifier refused `{program}` of {of}: {error}\nverifier log:\n{log}")
            }
            LoaderError::Object(e) => f.write_str(e),
            LoaderError::Interface { endpoint, reason } => {
                write!(f, "endpoint `{endpoint}`: no host-side interface: {reason} (give one with --interface {endpoint}=IFNAME)")
            }
            LoaderError::NoMaps => f.write_str(
                "the maps do not exist yet and no endpoint of this bundle has an interface to load programs for",
            ),
            LoaderError::Probe(e) => f.write_str(e),
            LoaderError::Agent(e) => f.write_str(e),
            LoaderError::Locked(e) => write!(f, "another apply or uninstall is running: {e}"),
            LoaderError::Record(e) => write!(f, "record of the last apply: {e}"),
            LoaderError::Kernel(e) => e.fmt(f),
            LoaderError::Output(e) => write!(f, "cannot write the output: {e}"),
            LoaderError::Unfinished { bundle_hash, generation, failures } => {
                write!(
                    f,
                    "bundle {bundle_hash} is in force (generation {generation}), but {} step(s) after the switch \
                     failed (`apply` again finishes them)",
                    failures.len()
                )?;
                for (what, e) in failures {
                    write!(f, "\n  {what}: {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoaderError {}

impl LoaderError {
    /// The exit code of `policyc-loader` for this error: 3 when the bundle
    /// is in force but the apply did not finish, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoaderError::Unfinished { .. } => 3,
            _ => 1,
        }
    }
}

impl From<BundleError> for LoaderError {
    fn from(e: BundleError) -> Self {
        LoaderError::Bundle(e)
    }
}

impl LoaderError {
    /// The kernel's errno, when a syscall refused (the verifier's load
    /// included): what a caller decides on whether to retry.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LoaderError::Kernel(e) => e.errno,
            LoaderError::Verifier { errno, .. } => *errno,
            LoaderError::Unfinished { failures, .. } => failures.iter().find_map(|(_, e)| e.errno()),
            _ => None,
        }
    }
}

/// A kernel error: `operation` on `object` refused, shown as `what` and
/// every cause of the error (aya's errors keep the errno in their source,
/// which is kept).
pub fn kernel(
    operation: Operation,
    object: impl fmt::Display,
    what: impl fmt::Display,
    e: impl std::error::Error + 'static,
) -> LoaderError {
    let mut message = format!("{what}: {e}");
    let mut errno = errno_of(&e);
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        errno = errno.or_else(|| errno_of(cause));
        source = cause.source();
    }
    LoaderError::Kernel(KernelError { operation, object: object.to_string(), errno, message })
}

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    e.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("map error")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_kernel_error_keeps_operation_object_and_the_errno_of_its_cause() {
        let e =
            kernel(Operation::WriteEntry, "ipcache", "writing ipcache", Outer(std::io::Error::from_raw_os_error(7)));
        assert_eq!(e.errno(), Some(7));
        let LoaderError::Kernel(k) = &e else { panic!("{e:?}") };
        assert_eq!((k.operation, k.object.as_str()), (Operation::WriteEntry, "ipcache"));
        let shown = e.to_string();
        assert!(shown.starts_with("writing ipcache: map error: "), "{shown}");
    }
}
