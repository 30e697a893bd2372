//! The Rust mirror of `include/abi.h`: map keys and values, the flow event,
//! the drop codes and the map capacities of `include/maps.h`.
//!
//! Each struct is `#[repr(C)]` with the C field order, and converts to and
//! from the exact bytes the kernel stores (native byte order, except the
//! fields the C header marks `__be16`, which are network order). A test
//! compares every size and field offset with the BTF of the compiled
//! objects ([`layouts`]), and every member of the C enums (verdicts, drop
//! codes, body slots, lookup bits) with the constants here ([`enums`]).

use std::mem::{offset_of, size_of};

/// Address family byte of IPv4 keys.
pub const FAMILY_IPV4: u8 = 4;
/// Address family byte of IPv6 keys.
pub const FAMILY_IPV6: u8 = 6;
/// Direction byte of ingress (traffic entering the endpoint).
pub const DIR_INGRESS: u8 = 0;
/// Direction byte of egress (traffic leaving the endpoint).
pub const DIR_EGRESS: u8 = 1;
/// Verdict of no entry (`policy_verdict` of `include/abi.h`).
pub const VERDICT_NONE: u8 = 0;
/// Verdict of an allow entry.
pub const VERDICT_ALLOW: u8 = 1;
/// Verdict of an entry that redirects to an L7 proxy.
pub const VERDICT_REDIRECT: u8 = 2;
/// Verdict of a deny entry.
pub const VERDICT_DENY: u8 = 3;
/// `EndpointValue::flags` bit: ingress is default-deny.
pub const ENDPOINT_ENFORCE_INGRESS: u32 = 1 << 0;
/// `EndpointValue::flags` bit: egress is default-deny.
pub const ENDPOINT_ENFORCE_EGRESS: u32 = 1 << 1;
/// Bits of a policy key that are always matched exactly (generation,
/// direction, endpoint, peer, padding); the prefix runs over the 24 bits of
/// protocol and port after them.
pub const POLICY_KEY_EXACT_BITS: u32 = 72;
/// The prefix length of a single-port policy entry: such entries live in
/// the `policy_exact` hash (`POLICY_KEY_FULL_BITS`).
pub const POLICY_KEY_FULL_BITS: u32 = POLICY_KEY_EXACT_BITS + 24;
/// Bits of an ipcache key before the address (generation, family, padding).
pub const IPCACHE_KEY_HEADER_BITS: u32 = 32;
/// Flow event kind: a new connection was allowed.
pub const EVENT_NEW_ALLOWED: u8 = 1;
/// Flow event kind: a packet was dropped.
pub const EVENT_DROP: u8 = 2;

/// A stable drop code of the datapath (`drop_code` of `include/abi.h`),
/// numbered as Cilium numbers the same reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropCode {
    /// The source address is not the endpoint's.
    InvalidSource,
    /// The direction is enforced and no entry allows the packet.
    Policy,
    /// A truncated or malformed header.
    InvalidPacket,
    /// The destination is not this endpoint.
    UnknownTarget,
    /// A service frontend has no backend for the client.
    NoService,
    /// An explicit deny entry matched.
    PolicyDeny,
}

impl DropCode {
    /// Every code.
    pub const ALL: [DropCode; 6] = [
        DropCode::InvalidSource,
        DropCode::Policy,
        DropCode::InvalidPacket,
        DropCode::UnknownTarget,
        DropCode::NoService,
        DropCode::PolicyDeny,
    ];

    /// The negative number the programs use.
    pub fn code(self) -> i32 {
        match self {
            DropCode::InvalidSource => -132,
            DropCode::Policy => -133,
            DropCode::InvalidPacket => -134,
            DropCode::UnknownTarget => -150,
            DropCode::NoService => -158,
            DropCode::PolicyDeny => -181,
        }
    }

    /// The C enumerator's name.
    pub fn c_name(self) -> &'static str {
        match self {
            DropCode::InvalidSource => "DROP_INVALID_SOURCE",
            DropCode::Policy => "DROP_POLICY",
            DropCode::InvalidPacket => "DROP_INVALID_PACKET",
            DropCode::UnknownTarget => "DROP_UNKNOWN_TARGET",
            DropCode::NoService => "DROP_NO_SERVICE",
            DropCode::PolicyDeny => "DROP_POLICY_DENY",
        }
    }

    /// The code with number `code`.
    pub fn from_code(code: i32) -> Option<DropCode> {
        DropCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short name for people.
    pub fn name(self) -> &'static str {
        match self {
            DropCode::InvalidSource => "invalid-source",
            DropCode::Policy => "policy-denied",
            DropCode::InvalidPacket => "invalid-packet",
            DropCode::UnknownTarget => "unknown-target",
            DropCode::NoService => "no-service-backend",
            DropCode::PolicyDeny => "policy-deny-rule",
        }
    }
}

/// A map the programs share, with the layout `include/maps.h` declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    /// Name, and pin name under the loader's bpffs root.
    pub name: &'static str,
    /// `BPF_MAP_TYPE_*` number.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
}

/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_HASH`.
pub const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
/// `BPF_MAP_TYPE_PROG_ARRAY`.
pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// `BPF_MAP_TYPE_LRU_HASH`.
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
/// `BPF_MAP_TYPE_LPM_TRIE`.
pub const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
/// `BPF_MAP_TYPE_RINGBUF`.
pub const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// The first slot of the `from_container` bodies in `bodies`.
pub const BODY_SLOT_FROM_CONTAINER: u32 = 0;
/// The first slot of the `to_container` bodies in `bodies`.
pub const BODY_SLOT_TO_CONTAINER: u32 = 16;
/// Slots of `bodies`: every lookup combination of both templates.
pub const BODY_SLOTS: u32 = 32;

/// Lookup bit (`EndpointConfig::lookups`): ingress per-peer entries.
pub const LOOKUP_INGRESS_BY_PEER: u8 = 1 << 0;
/// Lookup bit: ingress wildcard-peer entries.
pub const LOOKUP_INGRESS_ANY_PEER: u8 = 1 << 1;
/// Lookup bit: egress per-peer entries.
pub const LOOKUP_EGRESS_BY_PEER: u8 = 1 << 2;
/// Lookup bit: egress wildcard-peer entries.
pub const LOOKUP_EGRESS_ANY_PEER: u8 = 1 << 3;

/// The `bodies` program array of the stub (`endpoint.c`): one pinned per
/// pair of body templates, [`BODY_SLOTS`] slots (see "Stubs and bodies" in
/// `include/abi.h`).
pub const BODIES: MapLayout = MapLayout {
    name: "bodies",
    map_type: BPF_MAP_TYPE_PROG_ARRAY,
    key_size: 4,
    value_size: 4,
    max_entries: BODY_SLOTS,
};

/// Which of a packet's `cb` words carries the endpoint id from the stub to
/// the body (`ENDPOINT_ID_CB`).
pub const ENDPOINT_ID_CB: usize = 0;

/// Every shared map, in the order of `include/maps.h`.
pub const MAPS: [MapLayout; 16] = [
    MapLayout { name: "state", map_type: BPF_MAP_TYPE_ARRAY, key_size: 4, value_size: 8, max_entries: 1 },
    MapLayout { name: "clock", map_type: BPF_MAP_TYPE_PERCPU_ARRAY, key_size: 4, value_size: 16, max_entries: 1 },
    MapLayout { name: "ipcache", map_type: BPF_MAP_TYPE_LPM_TRIE, key_size: 24, value_size: 8, max_entries: 1_024_000 },
    MapLayout { name: "endpoints", map_type: BPF_MAP_TYPE_HASH, key_size: 20, value_size: 12, max_entries: 131_070 },
    MapLayout { name: "policy", map_type: BPF_MAP_TYPE_LPM_TRIE, key_size: 16, value_size: 12, max_entries: 4_194_304 },
    MapLayout {
        name: "policy_exact",
        map_type: BPF_MAP_TYPE_HASH,
        key_size: 16,
        value_size: 12,
        max_entries: 4_194_304,
    },
    MapLayout {
        name: "conntrack4",
        map_type: BPF_MAP_TYPE_LRU_HASH,
        key_size: 16,
        value_size: 24,
        max_entries: 262_144,
    },
    MapLayout {
        name: "conntrack6",
        map_type: BPF_MAP_TYPE_LRU_HASH,
        key_size: 40,
        value_size: 24,
        max_entries: 262_144,
    },
    MapLayout { name: "lb4_services", map_type: BPF_MAP_TYPE_HASH, key_size: 12, value_size: 12, max_entries: 131_072 },
    MapLayout { name: "lb4_backends", map_type: BPF_MAP_TYPE_HASH, key_size: 8, value_size: 8, max_entries: 131_072 },
    MapLayout {
        name: "lb4_reverse_nat",
        map_type: BPF_MAP_TYPE_HASH,
        key_size: 4,
        value_size: 8,
        max_entries: 131_072,
    },
    MapLayout {
        name: "lb4_affinity",
        map_type: BPF_MAP_TYPE_LRU_HASH,
        key_size: 8,
        value_size: 16,
        max_entries: 65_536,
    },
    MapLayout { name: "metrics", map_type: BPF_MAP_TYPE_PERCPU_HASH, key_size: 4, value_size: 16, max_entries: 65_536 },
    MapLayout {
        name: "forwarded",
        map_type: BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: 16,
        max_entries: FORWARDED_ENTRIES,
    },
    MapLayout { name: "events", map_type: BPF_MAP_TYPE_RINGBUF, key_size: 0, value_size: 0, max_entries: 1 << 20 },
    MapLayout { name: "events_lost", map_type: BPF_MAP_TYPE_PERCPU_ARRAY, key_size: 4, value_size: 8, max_entries: 1 },
];

/// Entries of the `forwarded` counters: two directions of every endpoint
/// id a `u16` can hold (`FORWARDED_ENTRIES` of `include/abi.h`).
pub const FORWARDED_ENTRIES: u32 = 65_536 * 2;

/// The index of the forwarded-packet counter of `endpoint_id` in
/// `direction` (`FORWARDED_INDEX` of `include/abi.h`).
pub fn forwarded_index(endpoint_id: u16, direction: u8) -> u32 {
    u32::from(endpoint_id) * 2 + u32::from(direction)
}

/// The layout of the shared map `name`.
pub fn map_layout(name: &str) -> Option<&'static MapLayout> {
    MAPS.iter().find(|m| m.name == name)
}

/// Entries of one generation of the policy-bearing maps: half of each
/// capacity, since both generations live in one map.
pub fn generation_capacity(name: &str) -> Option<u32> {
    map_layout(name).map(|m| m.max_entries / 2)
}

/// Writes `value`'s native bytes at `offset` of `out`.
pub(crate) fn put(out: &mut [u8], offset: usize, bytes: &[u8]) {
    out[offset..offset + bytes.len()].copy_from_slice(bytes);
}

pub(crate) fn get<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

/// `struct state_value`: the active generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateValue {
    /// 0 or 1.
    pub generation: u32,
    /// Bumped by every apply.
    pub serial: u32,
}

impl StateValue {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<StateValue>()] {
        let mut out = [0; size_of::<StateValue>()];
        put(&mut out, offset_of!(StateValue, generation), &self.generation.to_ne_bytes());
        put(&mut out, offset_of!(StateValue, serial), &self.serial.to_ne_bytes());
        out
    }

    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<StateValue>()]) -> Self {
        StateValue {
            generation: u32::from_ne_bytes(get(bytes, offset_of!(StateValue, generation))),
            serial: u32::from_ne_bytes(get(bytes, offset_of!(StateValue, serial))),
        }
    }
}

/// `struct clock_value` (one CPU's copy): the datapath's cache of the
/// coarse clock. Userspace never writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockValue {
    /// Jiffies when `ns` was read.
    pub jiffies: u64,
    /// `bpf_ktime_get_coarse_ns` then.
    pub ns: u64,
}

/// `struct ipcache_key` without its leading prefix length (aya's LPM key
/// carries that separately).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpcacheKey {
    /// LPM prefix length, counted from `generation`.
    pub prefixlen: u32,
    /// Generation 0 or 1.
    pub generation: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Zero.
    pub pad: u16,
    /// Address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

/// Bytes of an ipcache key after its prefix length.
pub const IPCACHE_KEY_DATA: usize = size_of::<IpcacheKey>() - 4;

impl IpcacheKey {
    /// The bytes after `prefixlen`, as aya's `lpm_trie::Key` data.
    pub fn data(&self) -> [u8; IPCACHE_KEY_DATA] {
        let mut out = [0; IPCACHE_KEY_DATA];
        let base = offset_of!(IpcacheKey, generation);
        put(&mut out, 0, &[self.generation]);
        put(&mut out, offset_of!(IpcacheKey, family) - base, &[self.family]);
        put(&mut out, offset_of!(IpcacheKey, addr) - base, &self.addr);
        out
    }

    /// Reads a key from its prefix length and data.
    pub fn from_data(prefixlen: u32, data: &[u8; IPCACHE_KEY_DATA]) -> Self {
        let base = offset_of!(IpcacheKey, generation);
        IpcacheKey {
            prefixlen,
            generation: data[0],
            family: data[offset_of!(IpcacheKey, family) - base],
            pad: 0,
            addr: get(data, offset_of!(IpcacheKey, addr) - base),
        }
    }
}

/// `struct ipcache_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpcacheValue {
    /// Identity of the addresses.
    pub identity: u32,
    /// Reserved, zero.
    pub flags: u32,
}

impl IpcacheValue {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<IpcacheValue>()] {
        let mut out = [0; size_of::<IpcacheValue>()];
        put(&mut out, offset_of!(IpcacheValue, identity), &self.identity.to_ne_bytes());
        put(&mut out, offset_of!(IpcacheValue, flags), &self.flags.to_ne_bytes());
        out
    }

    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<IpcacheValue>()]) -> Self {
        IpcacheValue {
            identity: u32::from_ne_bytes(get(bytes, offset_of!(IpcacheValue, identity))),
            flags: u32::from_ne_bytes(get(bytes, offset_of!(IpcacheValue, flags))),
        }
    }
}

/// `struct endpoint_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    /// Generation 0 or 1.
    pub generation: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Zero.
    pub pad: u16,
    /// Address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl EndpointKey {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<EndpointKey>()] {
        let mut out = [0; size_of::<EndpointKey>()];
        put(&mut out, offset_of!(EndpointKey, generation), &[self.generation]);
        put(&mut out, offset_of!(EndpointKey, family), &[self.family]);
        put(&mut out, offset_of!(EndpointKey, addr), &self.addr);
        out
    }

    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<EndpointKey>()]) -> Self {
        EndpointKey {
            generation: bytes[offset_of!(EndpointKey, generation)],
            family: bytes[offset_of!(EndpointKey, family)],
            pad: 0,
            addr: get(bytes, offset_of!(EndpointKey, addr)),
        }
    }
}

/// `struct endpoint_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointValue {
    /// The endpoint's id on its node.
    pub endpoint_id: u32,
    /// The endpoint's identity.
    pub identity: u32,
    /// `ENDPOINT_ENFORCE_*` bits.
    pub flags: u32,
}

impl EndpointValue {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<EndpointValue>()] {
        let mut out = [0; size_of::<EndpointValue>()];
        put(&mut out, offset_of!(EndpointValue, endpoint_id), &self.endpoint_id.to_ne_bytes());
        put(&mut out, offset_of!(EndpointValue, identity), &self.identity.to_ne_bytes());
        put(&mut out, offset_of!(EndpointValue, flags), &self.flags.to_ne_bytes());
        out
    }

    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<EndpointValue>()]) -> Self {
        EndpointValue {
            endpoint_id: u32::from_ne_bytes(get(bytes, offset_of!(EndpointValue, endpoint_id))),
            identity: u32::from_ne_bytes(get(bytes, offset_of!(EndpointValue, identity))),
            flags: u32::from_ne_bytes(get(bytes, offset_of!(EndpointValue, flags))),
        }
    }
}

/// `struct policy_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    /// LPM prefix length, counted from `generation`:
    /// [`POLICY_KEY_EXACT_BITS`] plus 0..=24 bits of protocol and port.
    pub prefixlen: u32,
    /// Generation 0 or 1.
    pub generation: u8,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// The endpoint owning the entry.
    pub endpoint_id: u16,
    /// Peer identity; 0 for every peer.
    pub peer_identity: u32,
    /// Zero.
    pub pad: u8,
    /// IANA protocol number.
    pub protocol: u8,
    /// Port (or ICMP type) in host order; stored in network order.
    pub port: u16,
}

/// Bytes of a policy key after its prefix length.
pub const POLICY_KEY_DATA: usize = size_of::<PolicyKey>() - 4;
/// Bytes of a policy value.
pub const POLICY_VALUE: usize = size_of::<PolicyValue>();

impl PolicyKey {
    /// The bytes after `prefixlen`, as aya's `lpm_trie::Key` data.
    pub fn data(&self) -> [u8; POLICY_KEY_DATA] {
        let mut out = [0; POLICY_KEY_DATA];
        let base = offset_of!(PolicyKey, generation);
        put(&mut out, 0, &[self.generation]);
        put(&mut out, offset_of!(PolicyKey, direction) - base, &[self.direction]);
        put(&mut out, offset_of!(PolicyKey, endpoint_id) - base, &self.endpoint_id.to_ne_bytes());
        put(&mut out, offset_of!(PolicyKey, peer_identity) - base, &self.peer_identity.to_ne_bytes());
        put(&mut out, offset_of!(PolicyKey, protocol) - base, &[self.protocol]);
        put(&mut out, offset_of!(PolicyKey, port) - base, &self.port.to_be_bytes());
        out
    }

    /// Reads a key from its prefix length and data.
    pub fn from_data(prefixlen: u32, data: &[u8; POLICY_KEY_DATA]) -> Self {
        let base = offset_of!(PolicyKey, generation);
        PolicyKey {
            prefixlen,
            generation: data[0],
            direction: data[offset_of!(PolicyKey, direction) - base],
            endpoint_id: u16::from_ne_bytes(get(data, offset_of!(PolicyKey, endpoint_id) - base)),
            peer_identity: u32::from_ne_bytes(get(data, offset_of!(PolicyKey, peer_identity) - base)),
            pad: 0,
            protocol: data[offset_of!(PolicyKey, protocol) - base],
            port: u16::from_be_bytes(get(data, offset_of!(PolicyKey, port) - base)),
        }
    }
}

/// `struct policy_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyValue {
    /// `VERDICT_*`.
    pub verdict: u8,
    /// Zero.
    pub pad: u8,
    /// L7 proxy port of a redirect (0: none).
    pub proxy_port: u16,
    /// Names the deciding rule in the bundle's `rules.txt`.
    pub rule_cookie: u32,
    /// Orders the peer's and the wildcard's entries (higher wins; see
    /// `policyc_bundle::policy::PolicyLine::precedence`).
    pub precedence: u32,
}

impl PolicyValue {
    /// The kernel's bytes.
    pub fn to_bytes(&self) -> [u8; size_of::<PolicyValue>()] {
        let mut out = [0; size_of::<PolicyValue>()];
        put(&mut out, offset_of!(PolicyValue, verdict), &[self.verdict]);
        put(&mut out, offset_of!(PolicyValue, proxy_port), &self.proxy_port.to_ne_bytes());
        put(&mut out, offset_of!(PolicyValue, rule_cookie), &self.rule_cookie.to_ne_bytes());
        put(&mut out, offset_of!(PolicyValue, precedence), &self.precedence.to_ne_bytes());
        out
    }

    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<PolicyValue>()]) -> Self {
        PolicyValue {
            verdict: bytes[offset_of!(PolicyValue, verdict)],
            pad: 0,
            proxy_port: u16::from_ne_bytes(get(bytes, offset_of!(PolicyValue, proxy_port))),
            rule_cookie: u32::from_ne_bytes(get(bytes, offset_of!(PolicyValue, rule_cookie))),
            precedence: u32::from_ne_bytes(get(bytes, offset_of!(PolicyValue, precedence))),
        }
    }
}

/// `struct ct_key`: the key of `conntrack6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source address of the connection's first packet.
    pub saddr: [u8; 16],
    /// Its destination address.
    pub daddr: [u8; 16],
    /// Source port (network order in the kernel).
    pub sport: u16,
    /// Destination port (network order in the kernel).
    pub dport: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Address family byte.
    pub family: u8,
    /// Direction of the hook that allowed it.
    pub direction: u8,
    /// Zero.
    pub pad: u8,
}

/// `struct ct4_key`: the key of `conntrack4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ct4Key {
    /// Source address of the connection's first packet (network order).
    pub saddr: [u8; 4],
    /// Its destination address (network order).
    pub daddr: [u8; 4],
    /// Source port (network order in the kernel).
    pub sport: u16,
    /// Destination port (network order in the kernel).
    pub dport: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Direction of the hook that allowed it.
    pub direction: u8,
    /// Zero.
    pub pad: u16,
}

/// `struct ct_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtValue {
    /// `bpf_ktime_get_ns` after which the entry is dead.
    pub expires_ns: u64,
    /// The rule that allowed the connection.
    pub rule_cookie: u32,
    /// The endpoint whose hook made the entry (the only one it serves).
    pub endpoint_id: u16,
    /// `CT_*` bits.
    pub flags: u16,
    /// The backend of a service connection (`CT_SERVICE` entries).
    pub backend_id: u32,
    /// The frontend replies are rewritten to (0: none).
    pub rev_nat: u16,
    /// Zero.
    pub pad: u16,
}

/// `struct metrics_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricsKey {
    /// The endpoint counted.
    pub endpoint_id: u16,
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// The magnitude of a [`DropCode`] (forwarded packets are counted
    /// in the `forwarded` map).
    pub reason: u8,
}

impl MetricsKey {
    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<MetricsKey>()]) -> Self {
        MetricsKey {
            endpoint_id: u16::from_ne_bytes(get(bytes, offset_of!(MetricsKey, endpoint_id))),
            direction: bytes[offset_of!(MetricsKey, direction)],
            reason: bytes[offset_of!(MetricsKey, reason)],
        }
    }
}

/// `struct metrics_value` (one CPU's share).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricsValue {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

impl MetricsValue {
    /// Reads the kernel's bytes.
    pub fn from_bytes(bytes: &[u8; size_of::<MetricsValue>()]) -> Self {
        MetricsValue {
            packets: u64::from_ne_bytes(get(bytes, offset_of!(MetricsValue, packets))),
            bytes: u64::from_ne_bytes(get(bytes, offset_of!(MetricsValue, bytes))),
        }
    }
}

/// `struct flow_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns` of the packet.
    pub timestamp_ns: u64,
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port (host order here).
    pub sport: u16,
    /// Destination port (host order here).
    pub dport: u16,
    /// IANA protocol number.
    pub protocol: u8,
    /// Address family byte.
    pub family: u8,
    /// Direction of the hook.
    pub direction: u8,
    /// `EVENT_*`.
    pub kind: u8,
    /// 0 or a [`DropCode`] number.
    pub code: i32,
    /// Source identity.
    pub src_identity: u32,
    /// Destination identity.
    pub dst_identity: u32,
    /// The deciding rule (0: the default).
    pub rule_cookie: u32,
    /// The endpoint whose hook saw it.
    pub endpoint_id: u16,
    /// `VERDICT_*` of the policy lookup (0: no entry).
    pub verdict: u8,
    /// Zero.
    pub pad: u8,
    /// Packet length.
    pub length: u32,
}

impl FlowEvent {
    /// Reads an event from the ring buffer's bytes; `None` if too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<FlowEvent>() {
            return None;
        }
        let u16be = |field: usize| u16::from_be_bytes(get(bytes, field));
        let u32ne = |field: usize| u32::from_ne_bytes(get(bytes, field));
        Some(FlowEvent {
            timestamp_ns: u64::from_ne_bytes(get(bytes, offset_of!(FlowEvent, timestamp_ns))),
            saddr: get(bytes, offset_of!(FlowEvent, saddr)),
            daddr: get(bytes, offset_of!(FlowEvent, daddr)),
            sport: u16be(offset_of!(FlowEvent, sport)),
            dport: u16be(offset_of!(FlowEvent, dport)),
            protocol: bytes[offset_of!(FlowEvent, protocol)],
            family: bytes[offset_of!(FlowEvent, family)],
            direction: bytes[offset_of!(FlowEvent, direction)],
            kind: bytes[offset_of!(FlowEvent, kind)],
            code: i32::from_ne_bytes(get(bytes, offset_of!(FlowEvent, code))),
            src_identity: u32ne(offset_of!(FlowEvent, src_identity)),
            dst_identity: u32ne(offset_of!(FlowEvent, dst_identity)),
            rule_cookie: u32ne(offset_of!(FlowEvent, rule_cookie)),
            endpoint_id: u16::from_ne_bytes(get(bytes, offset_of!(FlowEvent, endpoint_id))),
            verdict: bytes[offset_of!(FlowEvent, verdict)],
            pad: 0,
            length: u32ne(offset_of!(FlowEvent, length)),
        })
    }
}

/// The size and field offsets of one ABI struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructLayout {
    /// The C struct's name.
    pub name: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// `(field, byte offset)` in declaration order.
    pub fields: Vec<(&'static str, usize)>,
}

/// The layout of every ABI struct, for the comparison with the BTF.
pub fn layouts() -> Vec<StructLayout> {
    use crate::lb::*;
    macro_rules! layout {
        ($c:literal, $t:ty, [$($field:ident),*]) => {
            StructLayout {
                name: $c,
                size: size_of::<$t>(),
                fields: vec![$((stringify!($field), offset_of!($t, $field))),*],
            }
        };
    }
    vec![
        layout!("state_value", StateValue, [generation, serial]),
        layout!("clock_value", ClockValue, [jiffies, ns]),
        layout!("ipcache_key", IpcacheKey, [prefixlen, generation, family, pad, addr]),
        layout!("ipcache_value", IpcacheValue, [identity, flags]),
        layout!("endpoint_key", EndpointKey, [generation, family, pad, addr]),
        layout!("endpoint_value", EndpointValue, [endpoint_id, identity, flags]),
        layout!(
            "policy_key",
            PolicyKey,
            [prefixlen, generation, direction, endpoint_id, peer_identity, pad, protocol, port]
        ),
        layout!("policy_value", PolicyValue, [verdict, pad, proxy_port, rule_cookie, precedence]),
        layout!("ct_key", CtKey, [saddr, daddr, sport, dport, protocol, family, direction, pad]),
        layout!("ct4_key", Ct4Key, [saddr, daddr, sport, dport, protocol, direction, pad]),
        layout!("ct_value", CtValue, [expires_ns, rule_cookie, endpoint_id, flags, backend_id, rev_nat, pad]),
        layout!("lb4_key", Lb4Key, [address, dport, backend_slot, proto, scope, generation, pad]),
        layout!("lb4_service", Lb4Service, [backend_id, count, rev_nat, flags, pad]),
        layout!("lb4_backend_key", Lb4BackendKey, [backend_id, generation, pad]),
        layout!("lb4_backend", Lb4Backend, [address, port, proto, flags]),
        layout!("lb4_reverse_nat_key", Lb4ReverseNatKey, [rev_nat, generation, pad]),
        layout!("lb4_reverse_nat", Lb4ReverseNat, [address, port, pad]),
        layout!("lb4_affinity_key", Lb4AffinityKey, [client, rev_nat, pad]),
        layout!("lb_affinity_value", LbAffinityValue, [last_used_ns, backend_id, pad]),
        layout!("metrics_key", MetricsKey, [endpoint_id, direction, reason]),
        layout!("metrics_value", MetricsValue, [packets, bytes]),
        layout!(
            "flow_event",
            FlowEvent,
            [
                timestamp_ns,
                saddr,
                daddr,
                sport,
                dport,
                protocol,
                family,
                direction,
                kind,
                code,
                src_identity,
                dst_identity,
                rule_cookie,
                endpoint_id,
                verdict,
                pad,
                length
            ]
        ),
    ]
}

/// The members of one C enum of the ABI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumLayout {
    /// The C enum's tag.
    pub name: &'static str,
    /// `(enumerator, value)` in declaration order.
    pub members: Vec<(&'static str, i64)>,
}

/// Every C enum of the ABI, for the comparison with the BTF.
pub fn enums() -> Vec<EnumLayout> {
    macro_rules! members {
        ($($constant:ident),*) => {
            vec![$((stringify!($constant), i64::from($constant))),*]
        };
    }
    vec![
        EnumLayout {
            name: "policy_verdict",
            members: members!(VERDICT_NONE, VERDICT_ALLOW, VERDICT_REDIRECT, VERDICT_DENY),
        },
        EnumLayout {
            name: "drop_code",
            members: DropCode::ALL.iter().map(|c| (c.c_name(), i64::from(c.code()))).collect(),
        },
        EnumLayout {
            name: "body_slot",
            members: members!(BODY_SLOT_FROM_CONTAINER, BODY_SLOT_TO_CONTAINER, BODY_SLOTS),
        },
        EnumLayout {
            name: "lookup",
            members: members!(
                LOOKUP_INGRESS_BY_PEER,
                LOOKUP_INGRESS_ANY_PEER,
                LOOKUP_EGRESS_BY_PEER,
                LOOKUP_EGRESS_ANY_PEER
            ),
        },
    ]
}
