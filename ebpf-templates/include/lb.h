/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Services (IPv4): a pod's new connection to a frontend (ClusterIP,
 * NodePort on a node address, external or load-balancer IP) is given a
 * backend and translated (DNAT) in the pod's `from_container`, before the
 * policy lookup, so that policy judges the backend's address, identity and
 * port, as Cilium does (bpf/bpf_lxc.c: the service lookup comes before
 * the policy of `handle_ipv4_from_lxc`). Conntrack remembers the backend
 * (`CT_SERVICE` entry under the tuple the client sent) and the frontend
 * (`rev_nat` of the translated tuple's entry), so the connection keeps its
 * backend across applies and its replies are rewritten back to the
 * frontend in the client's `to_container` (reverse NAT).
 *
 * Backend selection follows Cilium's `lb4_local`: ClientIP affinity first
 * (`lb4_affinity`, outside the generations), else slot `hash % count + 1`
 * of the frontend, the hash being one of the 5-tuple (`lb4_flow_hash`).
 * A frontend without backends refuses the connection with an ICMP port
 * unreachable (kube-proxy's REJECT: the client sees ECONNREFUSED), or
 * drops it where the compiler said so (`Local` traffic policy).
 */
#ifndef POLICYC_LB_H
#define POLICYC_LB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "conntrack.h"
#include "maps.h"
#include "parse.h"

/*
 * The source a pod's connection to itself through a service is given, so
 * that its own kernel accepts the packet (a packet arriving from outside
 * with one of its own addresses as source is a martian and dropped):
 * Cilium's IPv4 service loopback address, `--ipv4-service-loopback-address`
 * (default 169.254.42.1, cilium/cilium `pkg/defaults`). The pod routes the
 * reply to it by its default route, back through `from_container`.
 */
#define LB4_LOOPBACK 0xa9fe2a01 /* 169.254.42.1, host order */

#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_SADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IP_DADDR_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))

/* Outcomes of `lb4_new`. */
#define LB_NONE 0 /* not a frontend: the packet goes on as it is */
#define LB_TRANSLATED 1
#define LB_NO_BACKEND 2
#define LB_REJECTED 3 /* turned into an ICMP error to the client */
#define LB_ERROR -1

/* What a new service connection became. */
struct lb_nat {
	__u32 backend_id;
	__u16 rev_nat;
	__u8 hairpin;
};

static __always_inline int lb_translatable(const struct packet *p)
{
	/* SCTP's CRC32c covers the ports: not translated (README). */
	return p->tuple.family == FAMILY_IPV4 &&
	       (p->tuple.protocol == IPPROTO_TCP || p->tuple.protocol == IPPROTO_UDP);
}

static __always_inline __be32 addr4(const __u8 *addr)
{
	__be32 a;

	__builtin_memcpy(&a, addr, 4);
	return a;
}

/*
 * Rewrites the IPv4 address at `addr_off` from `from` to `to` and the L4
 * port at `port_off` (of the L4 header) from `pfrom` to `pto`, with their
 * checksums: the IP header's, and the TCP/UDP one, whose pseudo-header
 * holds the addresses (BPF_F_PSEUDO_HDR, which also keeps a
 * CHECKSUM_PARTIAL packet right: only its pseudo-header sum is in the
 * field). A UDP checksum of 0 (none) stays 0 (BPF_F_MARK_MANGLED_0).
 */
static __always_inline int lb4_rewrite(struct __sk_buff *skb, const struct packet *p, __u32 addr_off, __be32 from,
				       __be32 to, __u32 port_off, __be16 pfrom, __be16 pto)
{
	__u32 csum_off = p->l4_offset + (p->tuple.protocol == IPPROTO_TCP ? 16 : 6);
	__u64 mangled = p->tuple.protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (from != to) {
		if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, from, to, 4))
			return -1;
		if (bpf_l4_csum_replace(skb, csum_off, from, to, BPF_F_PSEUDO_HDR | mangled | 4))
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &to, 4, 0))
			return -1;
	}
	if (pfrom != pto) {
		if (bpf_l4_csum_replace(skb, csum_off, pfrom, pto, mangled | 2))
			return -1;
		if (bpf_skb_store_bytes(skb, p->l4_offset + port_off, &pto, 2, 0))
			return -1;
	}
	return 0;
}

/* Translates packet `p` of a service connection to `backend`: destination
 * to the backend, and source to LB4_LOOPBACK for a hairpin; `p`'s tuple
 * follows. */
static __always_inline int lb4_dnat(struct __sk_buff *skb, struct packet *p, const struct lb4_backend *backend,
				    int hairpin)
{
	__be32 daddr = addr4(p->tuple.daddr);
	__be32 saddr = addr4(p->tuple.saddr);
	__be32 loopback = bpf_htonl(LB4_LOOPBACK);

	if (lb4_rewrite(skb, p, IP_DADDR_OFF, daddr, backend->address, 2, p->tuple.dport, backend->port))
		return -1;
	__builtin_memcpy(p->tuple.daddr, &backend->address, 4);
	p->tuple.dport = backend->port;
	p->policy_port = backend->port;
	if (hairpin) {
		if (lb4_rewrite(skb, p, IP_SADDR_OFF, saddr, loopback, 0, 0, 0))
			return -1;
		__builtin_memcpy(p->tuple.saddr, &loopback, 4);
	}
	return 0;
}

/* Reverse NAT of a reply of a service connection (its conntrack entry
 * `v` names the frontend): the source becomes the frontend, and a
 * hairpin's destination the pod again (the reply's own source). */
static __always_inline int lb4_rev_nat(struct __sk_buff *skb, struct packet *p, const struct ct_value *v,
				       __u8 generation)
{
	struct lb4_reverse_nat_key k = { .rev_nat = v->rev_nat, .generation = generation };
	struct lb4_reverse_nat *rn = bpf_map_lookup_elem(&lb4_reverse_nat, &k);
	__be32 saddr = addr4(p->tuple.saddr);

	/* A frontend the new generation no longer has: the reply goes on as
	 * the backend sent it, and the client's stack resets it. */
	if (!rn)
		return 0;
	if (v->flags & CT_HAIRPIN) {
		if (lb4_rewrite(skb, p, IP_DADDR_OFF, addr4(p->tuple.daddr), saddr, 0, 0, 0))
			return -1;
	}
	return lb4_rewrite(skb, p, IP_SADDR_OFF, saddr, rn->address, 0, p->tuple.sport, rn->port);
}

/* The backend `id` in `generation`. */
static __always_inline struct lb4_backend *lb4_backend(__u32 id, __u8 generation)
{
	struct lb4_backend_key k = { .backend_id = id, .generation = generation };

	return bpf_map_lookup_elem(&lb4_backends, &k);
}

/* The frontend entry (slot 0) of `p`'s destination, in `key`; the
 * source is a pod, inside the cluster, so a frontend with two scopes
 * answers from its internal one (Cilium's `lb4_lookup_service`). */
static __always_inline struct lb4_service *lb4_lookup(__u8 generation, const struct packet *p, struct lb4_key *key)
{
	struct lb4_service *svc;

	key->address = addr4(p->tuple.daddr);
	key->dport = p->tuple.dport;
	key->proto = p->tuple.protocol;
	key->scope = LB_SCOPE_EXT;
	key->generation = generation;
	svc = bpf_map_lookup_elem(&lb4_services, key);
	if (svc && (svc->flags & SVC_FLAG_TWO_SCOPES)) {
		key->scope = LB_SCOPE_INT;
		svc = bpf_map_lookup_elem(&lb4_services, key);
	}
	return svc;
}

/* A hash of the 5-tuple (murmur3's finalizer over the addresses and
 * ports): cheaper than the skb's flow hash, which `bpf_get_hash_recalc`
 * computes with the flow dissector where the skb has none, and the same
 * for every packet of the connection. */
static __always_inline __u32 lb4_flow_hash(const struct packet *p)
{
	__u32 h = addr4(p->tuple.saddr) ^ (addr4(p->tuple.daddr) * 0x9e3779b1u) ^
		  ((((__u32)p->tuple.sport << 16) | p->tuple.dport) * 0x85ebca6bu) ^ p->tuple.protocol;

	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* Picks the backend of a new connection of `svc` (`key` is its slot 0),
 * and records it for affinity. */
static __always_inline struct lb4_backend *lb4_select(__u8 generation, const struct packet *p,
						      struct lb4_key *key, const struct lb4_service *svc, __u64 now,
						      __u32 *backend_id)
{
	struct lb4_affinity_key ak = { .client = addr4(p->tuple.saddr), .rev_nat = svc->rev_nat };
	struct lb4_backend *b = NULL;
	struct lb4_service *slot;

	if (svc->flags & SVC_FLAG_AFFINITY) {
		struct lb_affinity_value *a = bpf_map_lookup_elem(&lb4_affinity, &ak);

		if (a && a->last_used_ns + (__u64)svc->backend_id * NS_PER_SEC > now) {
			*backend_id = a->backend_id;
			b = lb4_backend(a->backend_id, generation);
		}
	}
	if (!b) {
		key->backend_slot = (__u16)(lb4_flow_hash(p) % svc->count) + 1;
		slot = bpf_map_lookup_elem(&lb4_services, key);
		if (!slot)
			return NULL;
		*backend_id = slot->backend_id;
		b = lb4_backend(slot->backend_id, generation);
		if (!b)
			return NULL;
	}
	if (svc->flags & SVC_FLAG_AFFINITY) {
		struct lb_affinity_value v = { .last_used_ns = now, .backend_id = *backend_id };

		bpf_map_update_elem(&lb4_affinity, &ak, &v, BPF_ANY);
	}
	return b;
}

/* Swaps the Ethernet addresses, for a packet sent back where it came
 * from. */
static __always_inline int lb_swap_macs(struct __sk_buff *skb)
{
	__u8 macs[12], swapped[12];

	if (bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)))
		return -1;
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	return bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0);
}

/*
 * A hairpin packet (either way) goes straight back into the pod it came
 * from (`bpf_redirect_peer` from tc ingress of the host-side veth), as
 * Cilium redirects it to the endpoint: through the host's routing it would
 * meet reverse-path filtering (a source of 169.254.42.1 or of a service
 * address arriving from the pod's interface), and the pod's own ingress
 * policy is not asked (see lb_ct_create).
 */
static __always_inline int lb_hairpin_redirect(struct __sk_buff *skb)
{
	if (lb_swap_macs(skb))
		return TC_ACT_SHOT;
	return bpf_redirect_peer(skb->ifindex, 0);
}

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 c = (__u32)sum;

	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

/* An ICMP error as the reject builds it: a new IPv4 header, the ICMP
 * header, and the start of the refused packet (its IP header and 8 bytes
 * of L4, RFC 792), by which the client's stack finds its socket. */
struct lb4_icmp_error {
	struct iphdr ip;
	__u8 icmp[8];
	__u8 original[sizeof(struct iphdr) + 8];
};

/*
 * Turns the client's packet into an ICMP port unreachable from the
 * frontend and hands it straight back into the pod (`bpf_redirect_peer`
 * from tc ingress of the host-side veth to its peer, skipping the
 * `to_container` hook: it is the datapath's own answer to the pod's own
 * packet). Only a packet without IP options (the common case) is rejected
 * so; `LB_ERROR` for the others, which are then dropped.
 */
static __always_inline int lb4_reject(struct __sk_buff *skb, const struct packet *p)
{
	struct lb4_icmp_error e = {};

	if (p->l4_offset != ETH_HLEN + sizeof(struct iphdr))
		return LB_ERROR;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, e.original, sizeof(e.original)))
		return LB_ERROR;
	if (bpf_skb_change_tail(skb, ETH_HLEN + sizeof(e), 0))
		return LB_ERROR;
	e.ip.version = 4;
	e.ip.ihl = 5;
	e.ip.ttl = 64;
	e.ip.protocol = IPPROTO_ICMP;
	e.ip.tot_len = bpf_htons(sizeof(e));
	e.ip.saddr = addr4(p->tuple.daddr);
	e.ip.daddr = addr4(p->tuple.saddr);
	e.ip.check = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&e.ip, sizeof(e.ip), 0));
	e.icmp[0] = 3; /* destination unreachable */
	e.icmp[1] = 3; /* port unreachable */
	{
		__u16 c = csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)e.icmp, sizeof(e.icmp) + sizeof(e.original), 0));

		__builtin_memcpy(&e.icmp[2], &c, 2);
	}
	if (lb_swap_macs(skb))
		return LB_ERROR;
	if (bpf_skb_store_bytes(skb, ETH_HLEN, &e, sizeof(e), 0))
		return LB_ERROR;
	/* The checksums are whole now: the receiver checks them. */
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	return LB_REJECTED;
}

/*
 * A new connection from the pod: when its destination is a frontend, picks
 * the backend and translates the packet (`p` then holds the translated
 * tuple, and `nat` what conntrack keeps), or rejects it.
 */
static __always_inline int lb4_new(struct __sk_buff *skb, struct packet *p, __u8 generation, __u64 now,
				   struct lb_nat *nat)
{
	struct lb4_key key = {};
	struct lb4_service *svc;
	struct lb4_backend *b;
	__u32 id = 0;

	if (!lb_translatable(p))
		return LB_NONE;
	svc = lb4_lookup(generation, p, &key);
	if (!svc)
		return LB_NONE;
	if (!svc->count) {
		if (!(svc->flags & SVC_FLAG_REJECT))
			return LB_NO_BACKEND;
		return lb4_reject(skb, p) == LB_REJECTED ? LB_REJECTED : LB_NO_BACKEND;
	}
	nat->rev_nat = svc->rev_nat;
	b = lb4_select(generation, p, &key, svc, now, &id);
	if (!b)
		return LB_NO_BACKEND;
	nat->backend_id = id;
	nat->hairpin = b->address == addr4(p->tuple.saddr);
	if (lb4_dnat(skb, p, b, nat->hairpin))
		return LB_ERROR;
	return LB_TRANSLATED;
}

/* The client's packet of an established service connection (its entry
 * `ct`): to the backend the connection has. `LB_NONE` where the backend
 * is gone from generation `generation`. */
static __always_inline int lb4_established(struct __sk_buff *skb, struct packet *p, const struct ct_value *ct,
					   __u8 generation)
{
	struct lb4_backend *b = lb4_backend(ct->backend_id, generation);

	if (!b)
		return LB_NONE;
	return lb4_dnat(skb, p, b, ct->flags & CT_HAIRPIN) ? LB_ERROR : LB_TRANSLATED;
}

/*
 * Records a new service connection allowed by rule `cookie`: the tuple the
 * client sent (`original`) with its backend, for the client's next
 * packets; and the translated tuple (`p`'s) with the frontend, for the
 * replies. A hairpin's translated packet comes back into the same pod's
 * `to_container`, so its entry is that hook's (ingress): it lets the
 * packet in (Cilium skips ingress policy for loopback connections too,
 * `ct_state.loopback` in bpf/bpf_lxc.c), and the pod's reply, leaving by
 * `from_container`, finds it as the connection it answers.
 */
static __always_inline void lb_ct_create(struct packet *p, const struct ct_key *original, const struct lb_nat *nat,
					 __u64 now, __u32 cookie)
{
	struct ct_value v = {};
	__u16 hairpin = nat->hairpin ? CT_HAIRPIN : 0;

	v.rule_cookie = cookie;
	v.endpoint_id = p->endpoint_id;
	v.flags = CT_SERVICE | hairpin;
	v.backend_id = nat->backend_id;
	ct_refresh(&v, p, now, 0);
	ct_store(original, DIR_EGRESS, &v);
	if (hairpin)
		p->tuple.direction = DIR_INGRESS;
	ct_create(p, now, cookie, nat->rev_nat, hairpin);
}

#endif /* POLICYC_LB_H */
