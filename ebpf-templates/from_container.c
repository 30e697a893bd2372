/* SPDX-License-Identifier: Apache-2.0 */
/* The body for tcx ingress of a pod's host-side interface: traffic leaving
 * the pod, judged by the pod's egress policy. Reached by a tail call from
 * the endpoint's stub (endpoint.c). */
#include "include/datapath.h"

SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
