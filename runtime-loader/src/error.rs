//! The loader's one error type.

use crate::bundle::BundleError;
use std::fmt;

/// Why an apply, status or uninstall failed. Apply fails before its first
/// write for every variant but [`LoaderError::Kernel`] (a syscall refused
/// mid-way), and even then the active generation is untouched.
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
        /// The verifier's log.
        log: String,
    },
    /// A local endpoint's host-side interface cannot be found.
    Interface {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// Another apply holds the lock.
    Locked(String),
    /// The record of the last apply cannot be read or written.
    Record(String),
    /// A syscall failed.
    Kernel(String),
}

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
            LoaderError::Verifier { of, program, error, log } => {
                write!(f, "the verifier refused `{program}` of {of}: {error}\nverifier log:\n{log}")
            }
            LoaderError::Interface { endpoint, reason } => {
                write!(f, "endpoint `{endpoint}`: no host-side interface: {reason} (give one with --interface {endpoint}=IFNAME)")
            }
            LoaderError::Locked(e) => write!(f, "another apply or uninstall is running: {e}"),
            LoaderError::Record(e) => write!(f, "record of the last apply: {e}"),
            LoaderError::Kernel(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for LoaderError {}

impl From<BundleError> for LoaderError {
    fn from(e: BundleError) -> Self {
        LoaderError::Bundle(e)
    }
}

/// A kernel error with what was being done, and every cause of the error
/// (aya's errors keep the errno in their source).
pub fn kernel(what: impl fmt::Display, e: impl std::error::Error) -> LoaderError {
    let mut message = format!("{what}: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    LoaderError::Kernel(message)
}
