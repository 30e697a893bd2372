/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-packet path shared by both hooks: parse, find the endpoint in the
 * active generation, conntrack, identities from the ipcache, policy,
 * counters and events. `direction` is the endpoint's: egress on
 * `from_container` (the packet leaves the pod), ingress on `to_container`.
 */
#ifndef POLICYC_DATAPATH_H
#define POLICYC_DATAPATH_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "config.h"
#include "conntrack.h"
#include "lb.h"
#include "maps.h"
#include "observe.h"
#include "parse.h"
#include "policy.h"

/* With tcx, "unspecified" hands the packet to the next program (or lets it
 * pass when there is none), so policyc composes with a CNI's programs. */
#define VERDICT_PASS TC_ACT_UNSPEC
#define VERDICT_DROP TC_ACT_SHOT

/* The drop code as a counter reason (its magnitude). */
#define DROP_REASON(code) ((__u8)(-(code)))

static __always_inline __u8 active_generation(void)
{
	__u32 zero = 0;
	struct state_value *s = bpf_map_lookup_elem(&state, &zero);

	return s ? (__u8)s->generation : 0;
}

static __always_inline __u32 ipcache_identity(__u8 generation, __u8 family, const __u8 *addr)
{
	struct ipcache_key key = {
		.prefixlen = 32 + (family == FAMILY_IPV4 ? 32 : 128),
		.generation = generation,
		.family = family,
	};
	struct ipcache_value *v;

	__builtin_memcpy(key.addr, addr, 16);
	v = bpf_map_lookup_elem(&ipcache, &key);
	/* The ipcache holds both /0s; a miss can only mean an empty map. */
	return v ? v->identity : 2 /* world */;
}

static __always_inline int drop(struct packet *p, __u8 direction, __s32 code)
{
	count_drop(p, direction, DROP_REASON(code));
	return VERDICT_DROP;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction)
{
	struct packet p = {};
	struct endpoint_key ek = {};
	struct endpoint_value *ep;
	struct policy_result r;
	struct event_info info = {};
	struct ct_value *ct = NULL;
	struct ct_key original;
	struct lb_nat nat = {};
	int lb = LB_NONE;
	__u32 peer, enforce;
	__u8 generation;
	__u64 now;
	int ret;

	p.endpoint_id = (__u16)skb->cb[ENDPOINT_ID_CB];
	ret = parse_packet(skb, &p);
	if (ret == PARSE_NOT_IP)
		return VERDICT_PASS;
	if (ret != PARSE_OK)
		return drop(&p, direction, DROP_INVALID_PACKET);
	p.tuple.direction = direction;
	if (p.neighbor_discovery) {
		count_forwarded(&p, direction);
		return VERDICT_PASS;
	}

	/* Established and reply packets first: conntrack alone decides them,
	 * so they skip the generation, endpoint and policy lookups. That
	 * keeps anti-spoofing: an entry is made only after this endpoint's
	 * endpoint lookup accepted the tuple's address, and serves only the
	 * endpoint that made it (`ct_usable`), so another pod sending with
	 * that address finds no usable entry and takes the full path below.
	 * Conntrack carries no policy, so there is no generation to read:
	 * the state slot is read once, below, for a packet that needs policy. */
	now = coarse_now();
	ret = ct_lookup(&p, now, &ct);
	if (ret != CT_NEW) {
		/* Only service connections' entries carry a backend or a
		 * frontend: other connections pay two tests of a flag word. */
		if (ct && (ct->flags & CT_SERVICE)) {
			ret = lb4_established(skb, &p, ct, active_generation());
			if (ret == LB_ERROR)
				return drop(&p, direction, DROP_INVALID_PACKET);
			if (ret == LB_TRANSLATED && (ct->flags & CT_HAIRPIN)) {
				count_forwarded(&p, direction);
				return lb_hairpin_redirect(skb);
			}
		} else if (ct && ct->rev_nat && ret == CT_REPLY) {
			if (lb4_rev_nat(skb, &p, ct, active_generation()))
				return drop(&p, direction, DROP_INVALID_PACKET);
			if (ct->flags & CT_HAIRPIN) {
				count_forwarded(&p, direction);
				return lb_hairpin_redirect(skb);
			}
		}
		/* A service connection whose backend is gone is a new one: it
		 * gets another backend (for TCP, which answers a segment of a
		 * connection it does not know with a reset). */
		if (ret != LB_NONE) {
			count_forwarded(&p, direction);
			return VERDICT_PASS;
		}
	}

	generation = active_generation();
	ek.generation = generation;
	ek.family = p.tuple.family;
	__builtin_memcpy(ek.addr, direction == DIR_EGRESS ? p.tuple.saddr : p.tuple.daddr, 16);
	ep = bpf_map_lookup_elem(&endpoints, &ek);
	if (!ep || ep->endpoint_id != p.endpoint_id)
		return drop(&p, direction, direction == DIR_EGRESS ? DROP_INVALID_SOURCE : DROP_UNKNOWN_TARGET);

	/* A connection to a service is judged on the backend it gets. */
	if (direction == DIR_EGRESS) {
		__builtin_memcpy(&original, &p.tuple, sizeof(original));
		lb = lb4_new(skb, &p, generation, now, &nat);
		if (lb == LB_REJECTED) {
			count_drop(&p, direction, DROP_REASON(DROP_NO_SERVICE));
			return bpf_redirect_peer(skb->ifindex, 0);
		}
		if (lb == LB_NO_BACKEND)
			return drop(&p, direction, DROP_NO_SERVICE);
		if (lb == LB_ERROR)
			return drop(&p, direction, DROP_INVALID_PACKET);
	}

	peer = ipcache_identity(generation, p.tuple.family, direction == DIR_EGRESS ? p.tuple.daddr : p.tuple.saddr);
	r = policy_decide(generation, direction, peer, &p);
	enforce = direction == DIR_INGRESS ? ENDPOINT_ENFORCE_INGRESS : ENDPOINT_ENFORCE_EGRESS;

	info.verdict = r.verdict;
	info.rule_cookie = r.rule_cookie;
	info.src_identity = direction == DIR_EGRESS ? ep->identity : peer;
	info.dst_identity = direction == DIR_EGRESS ? peer : ep->identity;
	if (r.verdict == VERDICT_DENY)
		info.code = DROP_POLICY_DENY;
	else if (r.verdict == VERDICT_NONE && (ep->flags & enforce))
		info.code = DROP_POLICY;
	if (info.code) {
		info.kind = EVENT_DROP;
		emit_event(&p, &info);
		return drop(&p, direction, info.code);
	}

	/* Redirect entries pass at L4: the L7 rules travel in the bundle for a
	 * proxy, which this datapath does not run. */
	info.kind = EVENT_NEW_ALLOWED;
	emit_event(&p, &info);
	if (lb == LB_TRANSLATED) {
		lb_ct_create(&p, &original, &nat, now, r.rule_cookie);
	} else {
		ct_create(&p, now, r.rule_cookie, 0, 0);
	}
	count_forwarded(&p, direction);
	if (lb == LB_TRANSLATED && nat.hairpin)
		return lb_hairpin_redirect(skb);
	return VERDICT_PASS;
}

#endif /* POLICYC_DATAPATH_H */
