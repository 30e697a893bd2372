/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reference programs the datapath benchmark times beside policyc's, each
 * a floor for one of its paths (issue 17: "report each path as a ratio to
 * them"):
 * - `parse_only`: the policyc parser, then pass;
 * - `parse_ct`: the parser, then one conntrack hash lookup (an LRU hash
 *   keyed like policyc's IPv4 conntrack), then pass: the floor of the
 *   established path;
 * - `cilium_style`: the parser, the source's identity from an LPM
 *   ipcache, then one policy hash lookup keyed {identity, direction,
 *   protocol, port}, drop when no entry allows: the shape of Cilium's
 *   ingress policy check (bpf/lib/policy.h: ipcache lookup, then the
 *   policy map keyed by identity and port), the floor of a new
 *   connection's verdict.
 * Their maps are their own (not pinned, filled by the benchmark with as
 * many entries as policyc's) and use policyc's key layouts, so that a
 * difference in time is a difference in work.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "../include/abi.h"
#include "../include/parse.h"

#ifndef BPF_F_NO_PREALLOC
#define BPF_F_NO_PREALLOC (1U << 0)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct ct4_key);
	__type(value, struct ct_value);
} ref_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024000);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ref_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4194304);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} ref_policy SEC(".maps");

SEC("classifier")
int parse_only(struct __sk_buff *skb)
{
	struct packet p = {};

	if (parse_packet(skb, &p) < 0)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("classifier")
int parse_ct(struct __sk_buff *skb)
{
	struct packet p = {};
	struct ct4_key k = {};

	if (parse_packet(skb, &p) != PARSE_OK)
		return TC_ACT_SHOT;
	__builtin_memcpy(&k.saddr, p.tuple.saddr, 4);
	__builtin_memcpy(&k.daddr, p.tuple.daddr, 4);
	k.sport = p.tuple.sport;
	k.dport = p.tuple.dport;
	k.protocol = p.tuple.protocol;
	if (!bpf_map_lookup_elem(&ref_conntrack, &k))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("classifier")
int cilium_style(struct __sk_buff *skb)
{
	struct packet p = {};
	/* The key header (generation, family, pad) is 32 bits, as in policyc. */
	struct ipcache_key ik = { .prefixlen = 32 + 32, .family = FAMILY_IPV4 };
	struct policy_key pk = { .prefixlen = POLICY_KEY_FULL_BITS, .direction = DIR_INGRESS };
	struct ipcache_value *source;
	struct policy_value *entry;

	if (parse_packet(skb, &p) != PARSE_OK)
		return TC_ACT_SHOT;
	__builtin_memcpy(ik.addr, p.tuple.saddr, 4);
	source = bpf_map_lookup_elem(&ref_ipcache, &ik);
	pk.peer_identity = source ? source->identity : 2; /* reserved: world */
	pk.protocol = p.tuple.protocol;
	pk.port = p.tuple.dport;
	entry = bpf_map_lookup_elem(&ref_policy, &pk);
	if (!entry || entry->verdict != VERDICT_ALLOW)
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "Dual BSD/GPL";
