//! policyc's datapath templates as Rust sees them.
//!
//! The C sources in `ebpf-templates/` (`from_container.c`,
//! `to_container.c`, shared code in `include/`) are compiled by
//! `cargo xtask build-ebpf` into objects committed beside them, so building
//! policyc needs only Rust; CI rebuilds them and fails if a byte differs.
//! This crate embeds those objects ([`Template`], [`ENDPOINT_STUB`]),
//! mirrors the C ABI in `#[repr(C)]` types ([`abi`], checked against the
//! objects' BTF by a test), and writes settings into copies of them
//! ([`specialize`]).
//!
//! Programs are `SEC("classifier")` tc programs attached with tcx:
//! `from_container` on the ingress of a pod's host-side interface (the
//! pod's egress policy), `to_container` on its egress (the pod's ingress
//! policy). They share the maps of [`abi::MAPS`], pinned by name.
//!
//! Both are *bodies*, specialized by the policy lookups they make and shared
//! by every endpoint that needs those lookups. What runs at an endpoint's
//! hook is its *stub* ([`ENDPOINT_STUB`]), which puts the endpoint's id in
//! the packet's `cb[0]` and tail-calls its body from the node's `bodies`
//! program array: a node of N endpoints verifies N tiny stubs and at most
//! 32 bodies, not 2N whole programs.
#![deny(missing_docs)]

pub mod abi;
pub mod config;
pub mod lb;
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

    /// The slot in the `bodies` array of this template's body making the
    /// `lookups` ([`config::EndpointConfig::lookups`]): the template's first
    /// slot (`BODY_SLOT_*` of `include/abi.h`) plus the lookup bits, as the
    /// stub computes it.
    pub fn body_slot(self, lookups: u8) -> u32 {
        let first = match self {
            Template::FromContainer => abi::BODY_SLOT_FROM_CONTAINER,
            Template::ToContainer => abi::BODY_SLOT_TO_CONTAINER,
        };
        first + u32::from(lookups)
    }

    /// Suffix of the specialized object in a bundle (`<stem>.from.o`).
    pub fn suffix(self) -> &'static str {
        match self {
            Template::FromContainer => "from",
            Template::ToContainer => "to",
        }
    }
}

/// The stub every endpoint's hooks run (`endpoint.c`): it names the
/// endpoint and tail-calls the body with its lookups from the node's
/// `bodies` array ([`abi::BODIES`]).
pub const ENDPOINT_STUB: &[u8] = include_bytes!("../endpoint.o");

/// A tc program that only returns `TC_ACT_OK` (`bench/empty.c`): the floor
/// that per-packet costs are compared with.
pub const EMPTY_PROGRAM: &[u8] = include_bytes!("../bench/empty.o");

/// The reference programs the datapath benchmark times beside policyc's
/// (`bench/reference.c`): `parse_only`, `parse_ct` (parse and one
/// conntrack hash lookup in `ref_conntrack`) and `cilium_style` (parse, an
/// LPM lookup in `ref_ipcache`, a policy hash lookup in `ref_policy`).
pub const REFERENCE_PROGRAMS: &[u8] = include_bytes!("../bench/reference.o");
