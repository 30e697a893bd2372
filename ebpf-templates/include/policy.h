/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy lookup: the peer's own entry (L3+L4) and the wildcard entry
 * (L4-only, peer identity 0) of the endpoint's policy, longest prefix over
 * protocol and port (the single-port entries first, in their hash); the
 * entry of higher precedence wins (`struct policy_value`: admin tier, then
 * NetworkPolicy tier with deny, then redirect, then allow, then baseline).
 * The compiler has already combined every rule into disjoint blocks, so
 * one lookup per peer kind is the whole answer.
 */
#ifndef POLICYC_POLICY_H
#define POLICYC_POLICY_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "config.h"
#include "maps.h"

struct policy_result {
	__u8 verdict;
	__u32 rule_cookie;
	__u32 precedence;
};

static __always_inline void policy_consider(struct policy_result *r, __u8 generation, __u8 direction,
					    __u32 peer, const struct packet *p)
{
	struct policy_key key = {
		.prefixlen = POLICY_KEY_FULL_BITS,
		.generation = generation,
		.direction = direction,
		.endpoint_id = p->endpoint_id,
		.peer_identity = peer,
		.protocol = p->tuple.protocol,
		.port = p->policy_port,
	};
	struct policy_value *v = bpf_map_lookup_elem(&policy_exact, &key);

	if (!v)
		v = bpf_map_lookup_elem(&policy, &key);
	if (v && v->precedence > r->precedence) {
		r->verdict = v->verdict;
		r->rule_cookie = v->rule_cookie;
		r->precedence = v->precedence;
	}
}

/* The verdict for packet `p` of its endpoint, with `peer` in `direction`;
 * lookups the endpoint's policy never needs are pruned by the program's
 * configuration. */
static __always_inline struct policy_result policy_decide(__u8 generation, __u8 direction, __u32 peer,
							  const struct packet *p)
{
	struct policy_result r = {};
	int by_peer = direction == DIR_INGRESS ? CONFIG(ingress_by_peer) : CONFIG(egress_by_peer);
	int any_peer = direction == DIR_INGRESS ? CONFIG(ingress_any_peer) : CONFIG(egress_any_peer);

	if (by_peer)
		policy_consider(&r, generation, direction, peer, p);
	if (any_peer)
		policy_consider(&r, generation, direction, 0, p);
	return r;
}

#endif /* POLICYC_POLICY_H */
