/* SPDX-License-Identifier: Apache-2.0 */
/* tcx egress of a pod's host-side interface: traffic entering the pod,
 * judged by the pod's ingress policy. */
#include "include/datapath.h"

SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
