//! The Rust mirror of the service structs of `include/abi.h` (maps of
//! `include/lb.h`): frontends and their backend slots (`lb4_services`),
//! backends (`lb4_backends`), reverse NAT (`lb4_reverse_nat`) and ClientIP
//! affinity (`lb4_affinity`), in the layouts of Cilium's `lb4_*` maps
//! (cilium/cilium `bpf/lib/lb.h`) with a generation byte in the keys.
//! Addresses and ports are in network order in the kernel's bytes; here
//! addresses are their octets and ports host-order numbers.

use crate::abi::{get, put};
use std::mem::{offset_of, size_of};

/// `lb4_key.scope` of what every source gets.
pub const LB_SCOPE_EXT: u8 = 0;
/// `lb4_key.scope` of sources inside the cluster.
pub const LB_SCOPE_INT: u8 = 1;
/// `lb4_service.flags`: no backend, refuse with ICMP port unreachable.
pub const SVC_FLAG_REJECT: u8 = 1 << 0;
/// `lb4_service.flags`: an [`LB_SCOPE_INT`] entry exists too.
pub const SVC_FLAG_TWO_SCOPES: u8 = 1 << 1;
/// `lb4_service.flags`: ClientIP affinity, timeout in `backend_id`.
pub const SVC_FLAG_AFFINITY: u8 = 1 << 2;
/// `lb4_backend.flags`: a terminating endpoint.
pub const BACKEND_TERMINATING: u8 = 1 << 0;
/// `ct_value.flags`: the client's entry of a service connection.
pub const CT_SERVICE: u16 = 1 << 2;
/// `ct_value.flags`: a pod's connection to itself through a service.
pub const CT_HAIRPIN: u16 = 1 << 3;
/// The source of a hairpin connection (`LB4_LOOPBACK`, Cilium's default
/// IPv4 service loopback address).
pub const LB4_LOOPBACK: [u8; 4] = [169, 254, 42, 1];

/// `struct lb4_key`: a frontend (slot 0) or one of its backend slots.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Key {
    /// Frontend address.
    pub address: [u8; 4],
    /// Frontend port.
    pub dport: u16,
    /// 0: the frontend; 1..=count: its backends in order.
    pub backend_slot: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// [`LB_SCOPE_EXT`] or [`LB_SCOPE_INT`].
    pub scope: u8,
    /// Generation 0 or 1.
    pub generation: u8,
    /// Zero.
    pub pad: u8,
}

impl Lb4Key {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4Key>()] {
        let mut out = [0; size_of::<Lb4Key>()];
        put(&mut out, offset_of!(Lb4Key, address), &self.address);
        put(&mut out, offset_of!(Lb4Key, dport), &self.dport.to_be_bytes());
        put(&mut out, offset_of!(Lb4Key, backend_slot), &self.backend_slot.to_ne_bytes());
        put(&mut out, offset_of!(Lb4Key, proto), &[self.proto]);
        put(&mut out, offset_of!(Lb4Key, scope), &[self.scope]);
        put(&mut out, offset_of!(Lb4Key, generation), &[self.generation]);
        out
    }
}

/// `struct lb4_service`: slot 0 describes the frontend, slot n names its
/// n-th backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Service {
    /// Slot 0: the affinity timeout in seconds; else the backend id.
    pub backend_id: u32,
    /// Backends (slot 0).
    pub count: u16,
    /// Reverse-NAT id of the frontend.
    pub rev_nat: u16,
    /// `SVC_FLAG_*` (slot 0).
    pub flags: u8,
    /// Zero.
    pub pad: [u8; 3],
}

impl Lb4Service {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4Service>()] {
        let mut out = [0; size_of::<Lb4Service>()];
        put(&mut out, offset_of!(Lb4Service, backend_id), &self.backend_id.to_ne_bytes());
        put(&mut out, offset_of!(Lb4Service, count), &self.count.to_ne_bytes());
        put(&mut out, offset_of!(Lb4Service, rev_nat), &self.rev_nat.to_ne_bytes());
        put(&mut out, offset_of!(Lb4Service, flags), &[self.flags]);
        out
    }
}

/// `struct lb4_backend_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4BackendKey {
    /// The backend id (never 0).
    pub backend_id: u32,
    /// Generation 0 or 1.
    pub generation: u8,
    /// Zero.
    pub pad: [u8; 3],
}

impl Lb4BackendKey {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4BackendKey>()] {
        let mut out = [0; size_of::<Lb4BackendKey>()];
        put(&mut out, offset_of!(Lb4BackendKey, backend_id), &self.backend_id.to_ne_bytes());
        put(&mut out, offset_of!(Lb4BackendKey, generation), &[self.generation]);
        out
    }
}

/// `struct lb4_backend`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4Backend {
    /// Backend address.
    pub address: [u8; 4],
    /// Backend port.
    pub port: u16,
    /// IANA protocol number.
    pub proto: u8,
    /// `BACKEND_*`.
    pub flags: u8,
}

impl Lb4Backend {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4Backend>()] {
        let mut out = [0; size_of::<Lb4Backend>()];
        put(&mut out, offset_of!(Lb4Backend, address), &self.address);
        put(&mut out, offset_of!(Lb4Backend, port), &self.port.to_be_bytes());
        put(&mut out, offset_of!(Lb4Backend, proto), &[self.proto]);
        put(&mut out, offset_of!(Lb4Backend, flags), &[self.flags]);
        out
    }
}

/// `struct lb4_reverse_nat_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4ReverseNatKey {
    /// The reverse-NAT id (never 0).
    pub rev_nat: u16,
    /// Generation 0 or 1.
    pub generation: u8,
    /// Zero.
    pub pad: u8,
}

impl Lb4ReverseNatKey {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4ReverseNatKey>()] {
        let mut out = [0; size_of::<Lb4ReverseNatKey>()];
        put(&mut out, offset_of!(Lb4ReverseNatKey, rev_nat), &self.rev_nat.to_ne_bytes());
        put(&mut out, offset_of!(Lb4ReverseNatKey, generation), &[self.generation]);
        out
    }
}

/// `struct lb4_reverse_nat`: the frontend replies come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4ReverseNat {
    /// Frontend address.
    pub address: [u8; 4],
    /// Frontend port.
    pub port: u16,
    /// Zero.
    pub pad: u16,
}

impl Lb4ReverseNat {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<Lb4ReverseNat>()] {
        let mut out = [0; size_of::<Lb4ReverseNat>()];
        put(&mut out, offset_of!(Lb4ReverseNat, address), &self.address);
        put(&mut out, offset_of!(Lb4ReverseNat, port), &self.port.to_be_bytes());
        out
    }
}

/// `struct lb4_affinity_key`: a client of a frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb4AffinityKey {
    /// Client address.
    pub client: [u8; 4],
    /// Reverse-NAT id of the frontend.
    pub rev_nat: u16,
    /// Zero.
    pub pad: u16,
}

/// `struct lb_affinity_value`: the backend a client last got.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LbAffinityValue {
    /// Coarse clock of the last new connection.
    pub last_used_ns: u64,
    /// The backend id.
    pub backend_id: u32,
    /// Zero.
    pub pad: u32,
}

impl LbAffinityValue {
    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<LbAffinityValue>()]) -> Self {
        LbAffinityValue {
            last_used_ns: u64::from_ne_bytes(get(bytes, offset_of!(LbAffinityValue, last_used_ns))),
            backend_id: u32::from_ne_bytes(get(bytes, offset_of!(LbAffinityValue, backend_id))),
            pad: 0,
        }
    }
}
