//! The desired state of a node: what an apply puts in force.
//!
//! It is the content of one generation of the maps and the node's local
//! endpoints with the settings of their programs. It comes from a bundle
//! directory (read lazily: an apply reads only the pieces of its files
//! that changed) or is held whole in memory (as the node agent builds it,
//! and as tests do).

use crate::bundle::{locate, Bundle, BundleError};
use crate::manifest::{BundleEndpoint, Manifest, Templates};
use std::path::Path;

/// What an apply puts in force.
#[derive(Clone, Debug)]
pub enum DesiredState {
    /// A bundle directory, by its checked manifest.
    Directory(Manifest),
    /// Every entry and both templates, in memory.
    Memory(Bundle),
}

impl DesiredState {
    /// The bundle in `dir` (a bundle, or a directory holding one): its
    /// manifest is read and checked, nothing else.
    pub fn from_directory(dir: &Path) -> Result<DesiredState, BundleError> {
        Ok(DesiredState::Directory(Manifest::read(&locate(dir)?)?))
    }

    /// Its manifest: hash, node, endpoints, templates' digests.
    pub fn manifest(&self) -> &Manifest {
        match self {
            DesiredState::Directory(m) => m,
            DesiredState::Memory(b) => &b.manifest,
        }
    }

    /// The local endpoints.
    pub fn endpoints(&self) -> &[BundleEndpoint] {
        match self {
            DesiredState::Directory(m) => &m.endpoints,
            DesiredState::Memory(b) => &b.endpoints,
        }
    }

    /// The program templates (read and checked from a directory).
    pub fn templates(&self) -> Result<Templates, BundleError> {
        match self {
            DesiredState::Directory(m) => m.templates(),
            DesiredState::Memory(b) => Ok(b.templates.clone()),
        }
    }

    /// Every entry: a directory's files are read whole, each checked
    /// against its digest.
    pub fn whole(&self) -> Result<std::borrow::Cow<'_, Bundle>, BundleError> {
        match self {
            DesiredState::Directory(m) => Ok(std::borrow::Cow::Owned(Bundle::read_with(m.clone())?)),
            DesiredState::Memory(b) => Ok(std::borrow::Cow::Borrowed(b)),
        }
    }
}
