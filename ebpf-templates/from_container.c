/* SPDX-License-Identifier: Apache-2.0 */
/* tcx ingress of a pod's host-side interface: traffic leaving the pod,
 * judged by the pod's egress policy. */
#include "include/datapath.h"

SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
