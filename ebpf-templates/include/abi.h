/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between policyc's tc programs and userspace: every map key and
 * value, the flow event, and the drop codes. This is the only definition;
 * the Rust mirror (`ebpf-templates/src/abi.rs`) is checked against the BTF
 * of the compiled objects by a test, so a change here that is not made there
 * fails CI.
 *
 * Generations: every map that carries policy (ipcache, endpoints, policy)
 * holds two generations side by side, told apart by a `generation` field at
 * the front of the key. A program reads the active generation once per
 * packet from `state`, so flipping that one slot switches the whole node's
 * policy at once: no packet is judged by a mix of old and new entries.
 */
#ifndef POLICYC_ABI_H
#define POLICYC_ABI_H

#include <linux/types.h>

/* Address families as stored in keys (not AF_* to keep them one byte). */
#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

/* Directions, relative to the endpoint that owns the policy. */
#define DIR_INGRESS 0
#define DIR_EGRESS 1

/*
 * Verdicts, drop codes, body slots and lookup bits are enums rather than
 * #defines so that the objects' BTF carries them (`struct abi_enums` at the
 * end keeps them there), and the ABI test checks their members and values
 * against the Rust mirror as it checks the structs.
 */

/* Policy verdicts (`policy_value.verdict`, `flow_event.verdict`); ordered
 * by strength: deny beats redirect beats allow. */
enum policy_verdict {
	VERDICT_NONE = 0,
	VERDICT_ALLOW = 1,
	VERDICT_REDIRECT = 2,
	VERDICT_DENY = 3,
};

/* Bits of `endpoint_value.flags`. */
#define ENDPOINT_ENFORCE_INGRESS (1 << 0)
#define ENDPOINT_ENFORCE_EGRESS (1 << 1)

/*
 * Drop codes: stable, negative, never renumbered (flow events, counters and
 * the loader's `observe` print them by name). Each takes Cilium's number
 * for the same reason, so that people and tools that know Cilium's codes
 * read ours alike: cilium/cilium `bpf/lib/drop_reasons.h` (formerly in
 * `bpf/lib/common.h`) and `pkg/monitor/api/drop.go`, whose names are given
 * beside each. Unknown target was once -135, which is Cilium's
 * DROP_CT_INVALID_HDR; it was renumbered to -150 once, before anything
 * depended on it, and the codes do not change again.
 */
enum drop_code {
	/* DROP_INVALID_SIP, "Invalid source ip": the source address is not
	 * the endpoint's. */
	DROP_INVALID_SOURCE = -132,
	/* DROP_POLICY, "Policy denied": the direction is enforced and no
	 * entry allows the packet. */
	DROP_POLICY = -133,
	/* DROP_INVALID, "Invalid packet": a truncated or malformed header. */
	DROP_INVALID_PACKET = -134,
	/* DROP_UNKNOWN_TARGET, "Unknown L3 target address": the destination
	 * is not this endpoint. */
	DROP_UNKNOWN_TARGET = -150,
	/* DROP_NO_SERVICE, "Service backend not found": a service frontend
	 * without a backend for the client (no endpoints: the client gets an
	 * ICMP port unreachable; `Local` traffic policy and none on this
	 * node: dropped). */
	DROP_NO_SERVICE = -158,
	/* DROP_POLICY_DENY, "Policy denied by denylist": an explicit deny
	 * entry matched. */
	DROP_POLICY_DENY = -181,
};

/*
 * Stubs and bodies. What runs at an endpoint's hook is a stub made for that
 * endpoint (`endpoint.c`): it puts the endpoint's id in the packet's
 * `cb[ENDPOINT_ID_CB]` and tail-calls a body (`from_container.c`,
 * `to_container.c`, specialized by which lookups it makes) from the node's
 * `bodies` program array. Endpoints with the same lookups share a body, so
 * a node verifies at most BODY_SLOTS bodies plus one small stub per
 * endpoint, where it verified two whole programs per endpoint.
 */
#define ENDPOINT_ID_CB 0

/* Slots of the `bodies` array: the first of each template's bodies, and
 * how many there are. A body's slot is its template's first plus its
 * LOOKUP_* bits. */
enum body_slot {
	BODY_SLOT_FROM_CONTAINER = 0,
	BODY_SLOT_TO_CONTAINER = 16,
	BODY_SLOTS = 32,
};

/* The lookups a body makes (the stub's `config_lookups`), one bit each. */
enum lookup {
	LOOKUP_INGRESS_BY_PEER = 1 << 0,
	LOOKUP_INGRESS_ANY_PEER = 1 << 1,
	LOOKUP_EGRESS_BY_PEER = 1 << 2,
	LOOKUP_EGRESS_ANY_PEER = 1 << 3,
};

/* Kinds of flow events. */
#define EVENT_NEW_ALLOWED 1
#define EVENT_DROP 2

/* `state[0]`: which generation of the policy maps is in force. */
struct state_value {
	__u32 generation;
	__u32 serial; /* bumped by every apply, for `status` */
};

/* `clock[0]`, one per CPU: the coarse clock as last read on this CPU, and
 * the jiffies it was read at (see `coarse_now` in conntrack.h). */
struct clock_value {
	__u64 jiffies;
	__u64 ns;
};

/* ipcache: LPM trie from address to identity. `prefixlen` counts from
 * `generation`: 32 bits of generation, family and padding, then the
 * address prefix. */
struct ipcache_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 family;
	__u16 pad;
	__u8 addr[16];
};

struct ipcache_value {
	__u32 identity;
	__u32 flags;
};

/* endpoints: hash from a local pod address to its endpoint. */
struct endpoint_key {
	__u8 generation;
	__u8 family;
	__u16 pad;
	__u8 addr[16];
};

struct endpoint_value {
	__u32 endpoint_id;
	__u32 identity;
	__u32 flags; /* ENDPOINT_ENFORCE_* */
};

/*
 * policy: one LPM trie for every local endpoint. 72 bits are always exact
 * (generation, direction, endpoint, peer identity, padding); the prefix then
 * runs over protocol (8 bits) and port (16 bits, network order), so a port
 * range is a few aligned blocks. Peer identity 0 is the wildcard (L4-only
 * entries). Entries for a single port (the full prefix) live in
 * `policy_exact`, a hash keyed by the same struct with `prefixlen` always
 * POLICY_KEY_FULL_BITS, and only ranges in the trie: a full-prefix entry is
 * the longest match there can be, so looking up the hash first and the trie
 * on a miss answers as one trie holding both would, in a time that does not
 * grow with the number of single-port entries.
 */
struct policy_key {
	__u32 prefixlen;
	__u8 generation;
	__u8 direction;
	__u16 endpoint_id;
	__u32 peer_identity;
	__u8 pad;
	__u8 protocol;
	__be16 port;
};

#define POLICY_KEY_EXACT_BITS 72
#define POLICY_KEY_FULL_BITS (POLICY_KEY_EXACT_BITS + 24)

/* `precedence` orders the peer's and the wildcard's entries (higher wins):
 * the tier in the top two bits (admin 3, NetworkPolicy 2, baseline 1),
 * then the inverted first-match position in the tier (the verdict's
 * strength in the NetworkPolicy tier), then 1 for an explicit peer. As in
 * Cilium's ordered policy (CFP-23380), the compiler has already resolved
 * the tiers, so comparing two numbers is the whole decision. */
struct policy_value {
	__u8 verdict; /* VERDICT_* */
	__u8 pad;
	__u16 proxy_port;
	__u32 rule_cookie; /* names the rule in the bundle's rules.txt */
	__u32 precedence;
};

/* conntrack6: shared by both hooks. A connection is keyed as its first
 * packet was seen, with the direction of the hook that allowed it. Also
 * the tuple the parser fills for every packet, of either family (IPv4
 * addresses in the first 4 bytes). */
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 direction;
	__u8 pad;
};

/* conntrack4: the same for IPv4, in 16 bytes instead of 40. Hashing and
 * comparing the key is most of what an established packet costs, so the
 * IPv4 connections get a table of their own with the short key (measured
 * with `cargo xtask bench datapath`; see the commit that split the table). */
struct ct4_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 direction;
	__u16 pad;
};

/* Bits of `ct_value.flags`. */
#define CT_SEEN_REPLY (1 << 0)
#define CT_CLOSING (1 << 1)
/* The entry of a connection to a service frontend, keyed by the tuple the
 * client sent (to the frontend): `backend_id` is the backend it goes to. */
#define CT_SERVICE (1 << 2)
/* The connection is a pod's to itself through a service: its source was
 * rewritten to LB4_LOOPBACK (see lb.h). */
#define CT_HAIRPIN (1 << 3)

/* `endpoint_id` is the endpoint whose hook made the entry: an entry only
 * lets that endpoint's packets through, so a pod sending with another
 * pod's address cannot ride that pod's connections. Service connections
 * (see lb.h) have two entries: the client's tuple to the frontend
 * (CT_SERVICE, with the backend), and the translated tuple, whose
 * `rev_nat` names the frontend that replies are rewritten to. */
struct ct_value {
	__u64 expires_ns;
	__u32 rule_cookie;
	__u16 endpoint_id;
	__u16 flags;
	__u32 backend_id;
	__u16 rev_nat;
	__u16 pad;
};

/* metrics: per-CPU packet and byte counts of dropped packets per
 * endpoint, direction and reason (the magnitude of a drop code). Forwarded
 * packets are counted in `forwarded` instead (see maps.h). */
struct metrics_key {
	__u16 endpoint_id;
	__u8 direction;
	__u8 reason;
};

/* The index of an endpoint's forwarded-packet counter in `forwarded`. */
#define FORWARDED_INDEX(endpoint_id, direction) ((__u32)(endpoint_id) * 2 + (direction))
#define FORWARDED_ENTRIES (65536 * 2)

/* One CPU's share of a counter, in `metrics` and `forwarded`. */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

/* A flow event on the `events` ring buffer. */
struct flow_event {
	__u64 timestamp_ns;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 direction;
	__u8 kind; /* EVENT_* */
	__s32 code; /* 0 or a DROP_* code */
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_cookie;
	__u16 endpoint_id;
	__u8 verdict;
	__u8 pad;
	__u32 length;
};

/*
 * Services (IPv4), in the layout of Cilium's `lb4_services_v2`,
 * `lb4_backends_v3` and `lb4_reverse_nat` (cilium/cilium `bpf/lib/lb.h`),
 * with the generation byte in the keys' padding so that services switch
 * with policy. A frontend's entry is slot 0 of `lb4_services` (backend
 * count, reverse-NAT id, flags, affinity timeout); slots 1..count name its
 * backends in order.
 */
#define LB_SCOPE_EXT 0
#define LB_SCOPE_INT 1

/* Bits of `lb4_service.flags` (slot 0). */
/* No backend: refuse with ICMP port unreachable (else drop). */
#define SVC_FLAG_REJECT (1 << 0)
/* An LB_SCOPE_INT entry exists for sources inside the cluster. */
#define SVC_FLAG_TWO_SCOPES (1 << 1)
/* ClientIP session affinity: `backend_id` of slot 0 is its timeout. */
#define SVC_FLAG_AFFINITY (1 << 2)

struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot; /* 0: the frontend; 1..count: its backends */
	__u8 proto;
	__u8 scope; /* LB_SCOPE_* */
	__u8 generation;
	__u8 pad;
};

struct lb4_service {
	/* Slot 0: the affinity timeout in seconds; else the backend id. */
	__u32 backend_id;
	__u16 count;
	__u16 rev_nat;
	__u8 flags; /* SVC_FLAG_* */
	__u8 pad[3];
};

struct lb4_backend_key {
	__u32 backend_id;
	__u8 generation;
	__u8 pad[3];
};

/* Bits of `lb4_backend.flags`. */
#define BACKEND_TERMINATING (1 << 0)

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
};

struct lb4_reverse_nat_key {
	__u16 rev_nat;
	__u8 generation;
	__u8 pad;
};

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};

/* Session affinity, outside the generations (as conntrack): the backend a
 * client last got from a frontend, and when. */
struct lb4_affinity_key {
	__be32 client;
	__u16 rev_nat;
	__u16 pad;
};

struct lb_affinity_value {
	__u64 last_used_ns;
	__u32 backend_id;
	__u32 pad;
};

/*
 * Keeps the enums above in the BTF of every object: clang emits a type's
 * BTF only when something the object keeps refers to it, and the code
 * uses the enums' constants, never their types. A constant global is
 * always kept; it costs 16 bytes of `.rodata`, and no program reads it.
 */
struct abi_enums {
	enum policy_verdict verdict;
	enum drop_code drop_code;
	enum body_slot body_slot;
	enum lookup lookup;
};

const struct abi_enums abi_enums = {};

#endif /* POLICYC_ABI_H */
