/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking. A connection is stored once per hook that allowed
 * it, keyed by its first packet's tuple and that hook's direction: the
 * source's egress and the destination's ingress each keep their own entry,
 * so an entry made by one pod's egress never lets a packet skip another
 * pod's ingress. A packet is established if its own tuple is stored for its
 * hook's direction, and a reply if its reverse tuple is stored for the
 * opposite direction (the other hook of the same pod allowed the request).
 * IPv4 connections are in `conntrack4` under a 16-byte key, IPv6 ones in
 * `conntrack6` under the parsed tuple itself.
 */
#ifndef POLICYC_CONNTRACK_H
#define POLICYC_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "config.h"
#include "maps.h"
#include "parse.h"

#define NS_PER_SEC 1000000000ULL
#define CT_LIFETIME_TCP_OPENING (60 * NS_PER_SEC)
#define CT_LIFETIME_TCP (21600 * NS_PER_SEC)
#define CT_LIFETIME_CLOSING (10 * NS_PER_SEC)
#define CT_LIFETIME_OTHER (60 * NS_PER_SEC)

#define CT_NEW 0
#define CT_ESTABLISHED 1
#define CT_REPLY 2

/*
 * The time in nanoseconds, as the coarse clock (`bpf_ktime_get_coarse_ns`,
 * which moves once a tick) tells it. Calling that helper cost about 10 ns a
 * packet here (a helper call and its return, with the CPU's return-stack
 * mitigations), while `bpf_jiffies64` is inlined by the verifier into one
 * load. So the clock is read once per tick and CPU: while jiffies has not
 * moved, the coarse clock has not either (both move in the tick), and this
 * CPU's copy is still its value, give or take the one tick that is the
 * coarse clock's own resolution. Conntrack lifetimes are 10 s and more.
 */
static __always_inline __u64 coarse_now(void)
{
	__u32 zero = 0;
	struct clock_value *c = bpf_map_lookup_elem(&clock, &zero);
	__u64 jiffies = bpf_jiffies64();

	if (!c)
		return bpf_ktime_get_coarse_ns();
	/* A zero `ns` is a slot no packet has filled yet. */
	if (c->jiffies != jiffies || !c->ns) {
		c->ns = bpf_ktime_get_coarse_ns();
		c->jiffies = jiffies;
	}
	return c->ns;
}

static __always_inline __u64 ct_lifetime(const struct packet *p, __u16 flags)
{
	if (flags & CT_CLOSING)
		return CT_LIFETIME_CLOSING;
	if (p->tuple.protocol != IPPROTO_TCP)
		return CT_LIFETIME_OTHER;
	/* A service entry sees the client's packets only (replies refresh
	 * the translated tuple's entry), so it never learns of a reply: it
	 * lives as long as an established connection's. */
	return (flags & (CT_SEEN_REPLY | CT_SERVICE)) ? CT_LIFETIME_TCP : CT_LIFETIME_TCP_OPENING;
}

/* Refreshes a live entry for packet `p`; `reply` says which side sent it.
 * The expiry is written only when it moves by more than a second, so the
 * packets of a busy connection do not all dirty its cache line. */
static __always_inline void ct_refresh(struct ct_value *v, const struct packet *p, __u64 now, int reply)
{
	__u16 flags = v->flags;
	__u64 expires;

	if (reply)
		flags |= CT_SEEN_REPLY;
	if (p->tuple.protocol == IPPROTO_TCP && (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)))
		flags |= CT_CLOSING;
	expires = now + ct_lifetime(p, flags);
	if (flags != v->flags) {
		v->flags = flags;
		v->expires_ns = expires;
	} else if (expires > v->expires_ns + NS_PER_SEC) {
		v->expires_ns = expires;
	}
}

/* A SYN without ACK on a closing connection starts a new one, which policy
 * judges again. */
static __always_inline int ct_reopens(const struct packet *p, const struct ct_value *v)
{
	return p->tuple.protocol == IPPROTO_TCP && (v->flags & CT_CLOSING) &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

/* Whether entry `v` is live and lets this endpoint's packet `p` through. */
static __always_inline int ct_usable(const struct packet *p, const struct ct_value *v, __u64 now)
{
	return v && v->expires_ns > now && v->endpoint_id == p->endpoint_id && !ct_reopens(p, v);
}

static __always_inline void ct_reverse(struct ct_key *rev, const struct ct_key *fwd, __u8 direction)
{
	__builtin_memcpy(rev->saddr, fwd->daddr, 16);
	__builtin_memcpy(rev->daddr, fwd->saddr, 16);
	rev->sport = fwd->dport;
	rev->dport = fwd->sport;
	rev->protocol = fwd->protocol;
	rev->family = fwd->family;
	rev->direction = direction;
	rev->pad = 0;
}

/* The conntrack4 key of IPv4 tuple `t` (reversed if `reverse`). */
static __always_inline void ct4_key_of(struct ct4_key *k, const struct ct_key *t, int reverse, __u8 direction)
{
	if (reverse) {
		__builtin_memcpy(&k->saddr, t->daddr, 4);
		__builtin_memcpy(&k->daddr, t->saddr, 4);
		k->sport = t->dport;
		k->dport = t->sport;
	} else {
		__builtin_memcpy(&k->saddr, t->saddr, 4);
		__builtin_memcpy(&k->daddr, t->daddr, 4);
		k->sport = t->sport;
		k->dport = t->dport;
	}
	k->protocol = t->protocol;
	k->direction = direction;
	k->pad = 0;
}

/* The entry of packet `p`'s connection as its hook's direction stored it,
 * or (`reverse`) as the opposite hook stored the connection `p` answers. */
static __always_inline struct ct_value *ct_find(const struct packet *p, int reverse)
{
	__u8 direction = reverse ? p->tuple.direction ^ 1 : p->tuple.direction;
	struct ct_key rev;

	if (p->tuple.family == FAMILY_IPV4) {
		struct ct4_key k;

		ct4_key_of(&k, &p->tuple, reverse, direction);
		return bpf_map_lookup_elem(&conntrack4, &k);
	}
	if (!reverse)
		return bpf_map_lookup_elem(&conntrack6, &p->tuple);
	ct_reverse(&rev, &p->tuple, direction);
	return bpf_map_lookup_elem(&conntrack6, &rev);
}

/* Classifies packet `p` seen by the hook of `direction` (whose value is
 * already in `p->tuple.direction`); `*found` is the entry that decided
 * (for the service translation of established and reply packets). */
static __always_inline int ct_lookup(const struct packet *p, __u64 now, struct ct_value **found)
{
	struct ct_value *v;

	v = ct_find(p, 0);
	if (ct_usable(p, v, now)) {
		ct_refresh(v, p, now, 0);
		*found = v;
		return CT_ESTABLISHED;
	}
	v = ct_find(p, 1);
	if (ct_usable(p, v, now)) {
		ct_refresh(v, p, now, 1);
		*found = v;
		return CT_REPLY;
	}
	return CT_NEW;
}

/* Stores entry `v` for `tuple` as the hook of `direction` sees it. */
static __always_inline void ct_store(const struct ct_key *tuple, __u8 direction, const struct ct_value *v)
{
	if (tuple->family == FAMILY_IPV4) {
		struct ct4_key k;

		ct4_key_of(&k, tuple, 0, direction);
		bpf_map_update_elem(&conntrack4, &k, v, BPF_ANY);
		return;
	}
	bpf_map_update_elem(&conntrack6, tuple, v, BPF_ANY);
}

/* Records a new connection allowed by the rule `cookie`; `rev_nat` names
 * the service frontend its replies are rewritten to (0: none), `flags`
 * adds CT_HAIRPIN. */
static __always_inline void ct_create(const struct packet *p, __u64 now, __u32 cookie, __u16 rev_nat, __u16 flags)
{
	struct ct_value v = {};

	v.rule_cookie = cookie;
	v.endpoint_id = p->endpoint_id;
	v.rev_nat = rev_nat;
	v.flags = flags;
	ct_refresh(&v, p, now, 0);
	ct_store(&p->tuple, p->tuple.direction, &v);
}

#endif /* POLICYC_CONNTRACK_H */
