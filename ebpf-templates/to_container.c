/* SPDX-License-Identifier: Apache-2.0 */
/* The body for tcx egress of a pod's host-side interface: traffic entering
 * the pod, judged by the pod's ingress policy. Reached by a tail call from
 * the endpoint's stub (endpoint.c). */
#include "include/datapath.h"

SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
