//! policyc's node-side loader: puts a compiled bundle in force on a node.
//!
//! A bundle (see `policyc compile`) holds the node's map entries as sorted
//! text, each local endpoint's settings, and the two program templates
//! (bodies). The loader checks all of it before touching the kernel
//! ([`bundle`]), loads each changed endpoint's stub and the bodies it calls
//! through the verifier ([`programs`]), writes the *inactive*
//! generation of the shared maps ([`maps`]; every policy-bearing map holds
//! two generations told apart by a key byte), flips the one `state` slot
//! that programs read per packet, and then attaches programs as legacy tc
//! filters (the default) or tcx links ([`attach`]), pinned and replaced in
//! place afterwards. Everything it pins lives under one bpffs root
//! ([`paths`]); its record of the last apply, its copy of what each
//! generation holds ([`store`]) and its lock live in a state directory.
//! Each file of a bundle has its digest in the bundle's manifest
//! ([`manifest`]), so an apply reads and parses only the files, and pieces
//! of files, that changed ([`incremental`]).
//!
//! Everything an apply asks of the kernel goes through one trait
//! ([`kernel::Kernel`]): aya's implementation on a node, an in-memory one
//! in unit tests. An apply runs named phases ([`apply`]) over a desired
//! state ([`desired`]) that a bundle directory or memory provides; the maps
//! it writes per generation are declared once ([`generation_maps`]), and
//! its errors keep the operation, the object and the errno ([`error`]).
//!
//! The node agent ([`agent`], `policyc-loader run`) builds that desired
//! state live: the bundle's compiled policy bound to the pods a cluster
//! source and the chained CNI plugin `policyc-cni` announce, re-applied
//! as either changes.
//!
//! The datapath keeps enforcing while no loader runs: maps and links are
//! pinned, so nothing depends on this process.
#![deny(missing_docs)]

pub mod agent;
pub mod apply;
pub mod bpffs;
pub mod bundle;
pub mod bundle_file;
pub mod desired;
pub mod entries;
pub mod error;
pub mod generation_maps;
pub mod incremental;
pub mod kernel;
pub mod lock;
pub mod manifest;
pub mod maps;
pub mod observe;
pub mod packet;
pub mod paths;
pub mod probe;
pub mod record;
pub mod references;
pub mod route;
pub mod services;
pub mod status;
pub mod store;
pub mod uninstall;
pub mod validate;

// Where they were before the kernel seam: the tests and `probe` use them.
pub use kernel::aya::{attach, programs};
