/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stub an endpoint's hooks run: it names the endpoint and hands the
 * packet to the body with the endpoint's lookups (see "Stubs and bodies" in
 * include/abi.h). Loaded once per endpoint, it is a handful of
 * instructions, so the verifier passes it in microseconds; its settings are
 * constants to the verifier, so the tail call's slot is too, which the JIT
 * turns into a direct jump.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "include/abi.h"
#include "include/settings.h"

/* The endpoint's id on its node: the key of its policy entries. */
DECLARE_CONFIG(__u32, endpoint_id, "endpoint id on its node")
/* The LOOKUP_* bits of the endpoint's policy: its bodies' slots. */
DECLARE_CONFIG(__u8, lookups, "policy lookups the endpoint needs")

/* The node's bodies. The loader pins one array per pair of templates, so
 * a stub keeps the bodies it was made with until it is replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, BODY_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bodies SEC(".maps");

static __always_inline int enter(struct __sk_buff *skb, __u32 first_slot)
{
	skb->cb[ENDPOINT_ID_CB] = CONFIG(endpoint_id);
	bpf_tail_call(skb, &bodies, first_slot + CONFIG(lookups));
	/* Reached only if the slot is empty, which the loader never lets an
	 * attached stub see (it fills a stub's slots before attaching it):
	 * fail closed. */
	return TC_ACT_SHOT;
}

SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	return enter(skb, BODY_SLOT_FROM_CONTAINER);
}

SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	return enter(skb, BODY_SLOT_TO_CONTAINER);
}

char _license[] SEC("license") = "Dual BSD/GPL";
