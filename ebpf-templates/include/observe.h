/* SPDX-License-Identifier: Apache-2.0 */
/* Counters and flow events. */
#ifndef POLICYC_OBSERVE_H
#define POLICYC_OBSERVE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"
#include "config.h"
#include "maps.h"
#include "parse.h"

/* Counts a forwarded packet `p` of its endpoint. */
static __always_inline void count_forwarded(const struct packet *p, __u8 direction)
{
	__u32 index = FORWARDED_INDEX(p->endpoint_id, direction);
	struct metrics_value *v = bpf_map_lookup_elem(&forwarded, &index);

	/* Per-CPU values: no other CPU writes this copy. The lookup fails
	 * only for an index beyond the array, which a __u16 id cannot make. */
	if (v) {
		v->packets += 1;
		v->bytes += p->length;
	}
}

/* Counts packet `p` of its endpoint, dropped for `reason`. */
static __always_inline void count_drop(const struct packet *p, __u8 direction, __u8 reason)
{
	struct metrics_key key = {
		.endpoint_id = p->endpoint_id,
		.direction = direction,
		.reason = reason,
	};
	struct metrics_value *v = bpf_map_lookup_elem(&metrics, &key);

	if (v) {
		/* Per-CPU values, as above. */
		v->packets += 1;
		v->bytes += p->length;
		return;
	}
	struct metrics_value init = { .packets = 1, .bytes = p->length };

	bpf_map_update_elem(&metrics, &key, &init, BPF_NOEXIST);
}

struct event_info {
	__u8 kind;
	__u8 verdict;
	__s32 code;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 rule_cookie;
};

/* Unread bytes of `events` past which an event wakes the reader: 64
 * events. Below it the reader is not woken: waking it is an irq_work per
 * event, which cost about a microsecond on the new-connection path
 * (1.3 us in all against 0.19 us for a drop), and `observe --follow`
 * polls the ring buffer on a timer anyway (see its reader), so events
 * still reach it within that period. Above it the reader is woken as
 * usual, so a reader that waits on the ring buffer's descriptor sees a
 * burst promptly. Flags of bpf_ringbuf_output and the BPF_RB_AVAIL_DATA
 * query: include/uapi/linux/bpf.h; the same batching is what the kernel's
 * BPF ring buffer documentation suggests for high-rate producers
 * (Documentation/bpf/ringbuf.rst, "notification of new data"). */
#define EVENTS_WAKEUP_BYTES (64 * sizeof(struct flow_event))

/* Sends a flow event; a full ring buffer loses the event (counted in
 * `events_lost`), never the packet.
 * Not inlined on purpose: a subprogram's signature puts `struct
 * flow_event` into the object's BTF, where the ABI test checks its layout
 * (a type used only by a local variable would not be there), and events
 * are rare enough (drops and new connections) for the call not to matter. */
static __noinline void send_event(struct flow_event *ev)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= EVENTS_WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), flags) < 0) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);

		/* Per-CPU value: no other CPU writes this copy. */
		if (lost)
			*lost += 1;
	}
}

/* Fills and sends the flow event of packet `p`. */
static __always_inline void emit_event(const struct packet *p, const struct event_info *info)
{
	struct flow_event ev = {};

	ev.timestamp_ns = bpf_ktime_get_ns();
	__builtin_memcpy(ev.saddr, p->tuple.saddr, 16);
	__builtin_memcpy(ev.daddr, p->tuple.daddr, 16);
	ev.sport = p->tuple.sport;
	ev.dport = p->tuple.dport;
	ev.protocol = p->tuple.protocol;
	ev.family = p->tuple.family;
	ev.direction = p->tuple.direction;
	ev.kind = info->kind;
	ev.code = info->code;
	ev.src_identity = info->src_identity;
	ev.dst_identity = info->dst_identity;
	ev.rule_cookie = info->rule_cookie;
	ev.endpoint_id = p->endpoint_id;
	ev.verdict = info->verdict;
	ev.length = p->length;
	send_event(&ev);
}

#endif /* POLICYC_OBSERVE_H */
