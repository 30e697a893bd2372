/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packet parsing: Ethernet, IPv4 (with options), IPv6 (with up to four
 * extension headers), TCP, UDP, SCTP, ICMP and ICMPv6, into the tuple that
 * conntrack and policy use.
 */
#ifndef POLICYC_PARSE_H
#define POLICYC_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"

/* Outcomes of parsing. */
#define PARSE_OK 0
#define PARSE_NOT_IP 1 /* ARP and the like: not subject to policy */
#define PARSE_INVALID -1

#define IPPROTO_ICMPV6_ 58
#define IPV6_MAX_EXTENSIONS 4

struct packet {
	struct ct_key tuple; /* direction left 0: the hook sets it */
	__be16 policy_port; /* destination port, or the ICMP type */
	__u8 tcp_flags;
	__u8 neighbor_discovery; /* ICMPv6 NDP/MLD: link plumbing, always passes */
	__u32 length;
	/* Where the L4 header starts (for the service translation's checksum
	 * updates, lb.h). */
	__u16 l4_offset;
	/* The endpoint whose hook runs: its id on the node, from the stub
	 * (`endpoint.c`) that tail-called this program. */
	__u16 endpoint_id;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* Bounds-checks `size` bytes at `offset` and returns a pointer to them. */
static __always_inline void *header(struct __sk_buff *skb, __u32 offset, __u32 size)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* The verifier needs the offset bounded before the pointer sum. */
	if (offset > 512)
		return NULL;
	if (data + offset + size > data_end)
		return NULL;
	return data + offset;
}

/* ICMP echo: the identifier acts as the port of the asker, so that the
 * reply is found as the reverse of the request. Other types are flows of
 * their own, one per type, so that an allowed type never lets another
 * through as "established". */
static __always_inline void icmp_tuple(struct packet *p, __u8 type, __be16 id, __u8 request, __u8 reply)
{
	p->policy_port = bpf_htons(type);
	if (type == request)
		p->tuple.sport = id;
	else if (type == reply)
		p->tuple.dport = id;
	else
		p->tuple.dport = bpf_htons(type);
}

/* IPv6 traffic that stays on the link: multicast destination, or a
 * link-local (fe80::/10) source or destination. */
static __always_inline int link_scope(const struct packet *p)
{
	if (p->tuple.family != FAMILY_IPV6)
		return 0;
	if (p->tuple.daddr[0] == 0xff)
		return 1;
	return (p->tuple.saddr[0] == 0xfe && (p->tuple.saddr[1] & 0xc0) == 0x80) ||
	       (p->tuple.daddr[0] == 0xfe && (p->tuple.daddr[1] & 0xc0) == 0x80);
}

static __always_inline int parse_l4(struct __sk_buff *skb, struct packet *p, __u32 offset)
{
	p->l4_offset = offset;
	switch (p->tuple.protocol) {
	case IPPROTO_TCP: {
		__u8 *tcp = header(skb, offset, 14);

		if (!tcp)
			return PARSE_INVALID;
		__builtin_memcpy(&p->tuple.sport, tcp, 2);
		__builtin_memcpy(&p->tuple.dport, tcp + 2, 2);
		p->tcp_flags = tcp[13];
		p->policy_port = p->tuple.dport;
		return PARSE_OK;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__u8 *l4 = header(skb, offset, 4);

		if (!l4)
			return PARSE_INVALID;
		__builtin_memcpy(&p->tuple.sport, l4, 2);
		__builtin_memcpy(&p->tuple.dport, l4 + 2, 2);
		p->policy_port = p->tuple.dport;
		return PARSE_OK;
	}
	case IPPROTO_ICMP: {
		__u8 *icmp = header(skb, offset, 8);
		__be16 id;

		if (!icmp)
			return PARSE_INVALID;
		__builtin_memcpy(&id, icmp + 4, 2);
		icmp_tuple(p, icmp[0], id, 8, 0);
		return PARSE_OK;
	}
	case IPPROTO_ICMPV6_: {
		__u8 *icmp = header(skb, offset, 8);
		__be16 id;
		__u8 type;

		if (!icmp)
			return PARSE_INVALID;
		type = icmp[0];
		/* MLD (130-132, 143) and NDP (133-137) keep the link working.
		 * They never leave the link, so only link-scope ones pass without
		 * policy: to a multicast group or from or to a link-local
		 * address. The same types between routable addresses are judged
		 * like any other packet. */
		if (((type >= 130 && type <= 137) || type == 143) && link_scope(p))
			p->neighbor_discovery = 1;
		__builtin_memcpy(&id, icmp + 4, 2);
		icmp_tuple(p, type, id, 128, 129);
		return PARSE_OK;
	}
	default:
		/* Other protocols are judged by protocol alone (port 0). */
		return PARSE_OK;
	}
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct packet *p)
{
	struct iphdr *ip = header(skb, ETH_HLEN, sizeof(struct iphdr));
	__u32 ihl;

	if (!ip)
		return PARSE_INVALID;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(struct iphdr))
		return PARSE_INVALID;
	p->tuple.family = FAMILY_IPV4;
	p->tuple.protocol = ip->protocol;
	__builtin_memcpy(p->tuple.saddr, &ip->saddr, 4);
	__builtin_memcpy(p->tuple.daddr, &ip->daddr, 4);
	/* A later fragment has no L4 header: it is judged as port 0. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return PARSE_OK;
	return parse_l4(skb, p, ETH_HLEN + ihl);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, struct packet *p)
{
	struct ipv6hdr *ip6 = header(skb, ETH_HLEN, sizeof(struct ipv6hdr));
	__u32 offset = ETH_HLEN + sizeof(struct ipv6hdr);
	__u8 next;
	int i;

	if (!ip6)
		return PARSE_INVALID;
	p->tuple.family = FAMILY_IPV6;
	__builtin_memcpy(p->tuple.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->tuple.daddr, &ip6->daddr, 16);
	next = ip6->nexthdr;
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXTENSIONS; i++) {
		__u8 *ext;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS &&
		    next != IPPROTO_FRAGMENT)
			break;
		ext = header(skb, offset, 8);
		if (!ext)
			return PARSE_INVALID;
		if (next == IPPROTO_FRAGMENT) {
			__be16 frag;

			__builtin_memcpy(&frag, ext + 2, 2);
			p->tuple.protocol = ext[0];
			/* A later fragment has no L4 header: judged as port 0. */
			if (frag & bpf_htons(0xfff8))
				return PARSE_OK;
			next = ext[0];
			offset += 8;
			continue;
		}
		next = ext[0];
		offset += (ext[1] + 1) * 8;
	}
	p->tuple.protocol = next;
	return parse_l4(skb, p, offset);
}

/* Parses the packet of `skb` into `p` (zeroed by the caller). */
static __always_inline int parse_packet(struct __sk_buff *skb, struct packet *p)
{
	p->length = skb->len;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, p);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, p);
	return PARSE_NOT_IP;
}

#endif /* POLICYC_PARSE_H */
