/* SPDX-License-Identifier: GPL-2.0 */
/* to-container: tc egress of a pod's host-side lxc veth, i.e. packets the
 * host stack routes to the pod. Packets from the node itself carry the host
 * identity, from other nodes the remote-node identity (ipcache), anything
 * else the world identity. Packets a redirect path already judged carry
 * MARK_JUDGED and pass untouched. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/lb.h"
#include "lib/ingress.h"

static __always_inline int handle_to_container(struct __sk_buff *skb)
{
	struct node_config *cfg = node_config();
	struct ipcache_value *remote;
	struct endpoint_info *dst;
	struct ingress_out out;
	struct flow f;
	__u32 src_id;
	int ret;

	if (skb->mark == MARK_JUDGED) {
		skb->mark = 0;
		return TC_ACT_OK;
	}
	ret = parse_packet(skb, &f);
	if (ret == PARSE_PASS_NON_IP) {
		if (cfg)
			trace_forward(skb, cfg, OBS_FROM_STACK, OBS_TO_ENDPOINT, DIR_INGRESS, 0, 0,
				      0, 0, 0, skb->ifindex);
		return TC_ACT_OK;
	}
	if (ret != PARSE_OK)
		return drop_packet(skb, ret, DIR_INGRESS, 0, 0, 0, ret == DROP_UNKNOWN_L4 ? &f : 0);
	if (!cfg)
		return drop_packet(skb, DROP_NO_CONFIG, DIR_INGRESS, 0, 0, 0, &f);

	dst = endpoint_lookup(f.daddr);
	if (!dst || dst->ifindex != skb->ifindex)
		return drop_packet(skb, DROP_UNROUTABLE, DIR_INGRESS, 0, 0, 0, &f);
	src_id = identity_of_remote(cfg, f.saddr, &remote);

	ret = ingress_verdict(skb, &f, dst, src_id, 0, 1, &out);
	if (ret)
		return ret;
	/* The proxy is reached with bpf_sk_assign, which only works at tc
	 * ingress: traffic the node's stack routes to a pod (host, world
	 * through the stack) cannot be proxied here. */
	if (out.to_proxy == INGRESS_PROXY_REDIRECT)
		return drop_packet(skb, DROP_PROXY_LOOKUP_FAILED, DIR_INGRESS, src_id,
				   dst->identity, dst->ep_id, &f);
	trace_forward(skb, cfg, OBS_FROM_STACK, OBS_TO_ENDPOINT, DIR_INGRESS, out.evf, src_id,
		      dst->identity, dst->ep_id, &f, skb->ifindex);
	return TC_ACT_OK;
}

#ifndef NO_PROGRAM_SECTION
SEC("tc")
int cil_to_container(struct __sk_buff *skb)
{
	return handle_to_container(skb);
}

char _license[] SEC("license") = "GPL";
#endif
