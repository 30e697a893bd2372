//! policyc's datapath templates as Rust sees them.
//!
//! The C sources in `ebpf-templates/` (`from_container.c`,
//! `to_container.c`, shared code in `include/`) are compiled by
//! `cargo xtask build-ebpf` into objects committed beside them, so building
//! policyc needs only Rust; CI rebuilds them and fails if a byte differs.
//! This crate embeds those objects ([`Template`]), mirrors the C ABI in
//! `#[repr(C)]` types ([`abi`], checked against the objects' BTF by a test),
//! and writes an endpoint's settings into a copy of a template
//! ([`specialize`]).
//!
//! Programs are `SEC("classifier")` tc programs attached with tcx:
//! `from_container` on the ingress of a pod's host-side interface (the
//! pod's egress policy), `to_container` on its egress (the pod's ingress
//! policy). They share the maps of [`abi::MAPS`], pinned by name.
#![deny(missing_docs)]

pub mod abi;
pub mod config;
pub mod specialize;

/// A program template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Template {
    /// tcx ingress of the host-side interface: the pod's egress.
    FromContainer,
    /// tcx egress of the host-side interface: the pod's ingress.
    ToContainer,
}

impl Template {
    /// Both templates.
    pub const ALL: [Template; 2] = [Template::FromContainer, Template::ToContainer];

    /// The committed object.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Template::FromContainer => include_bytes!("../from_container.o"),
            Template::ToContainer => include_bytes!("../to_container.o"),
        }
    }

    /// The program's name (its function name in the object).
    pub fn program_name(self) -> &'static str {
        match self {
            Template::FromContainer => "from_container",
            Template::ToContainer => "to_container",
        }
    }

    /// Suffix of the specialized object in a bundle (`<stem>.from.o`).
    pub fn suffix(self) -> &'static str {
        match self {
            Template::FromContainer => "from",
            Template::ToContainer => "to",
        }
    }
}

/// A tc program that only returns `TC_ACT_OK` (`bench/empty.c`): the floor
/// that per-packet costs are compared with.
pub const EMPTY_PROGRAM: &[u8] = include_bytes!("../bench/empty.o");
