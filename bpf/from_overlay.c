/* SPDX-License-Identifier: GPL-2.0 */
/* from-overlay: tc ingress of the node's collect-metadata VXLAN device.
 * The VNI carries the source's security identity; the destination must be a
 * local endpoint (judged by its ingress policy, then redirected into it) or
 * the node itself (handed to the stack). */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/lb.h"
#include "lib/ingress.h"

static __always_inline int handle_from_overlay(struct __sk_buff *skb)
{
	struct node_config *cfg = node_config();
	struct bpf_tunnel_key tkey = {};
	struct endpoint_info *dst;
	struct ingress_out out;
	struct flow f;
	__u32 src_id;
	int ret;

	if (bpf_skb_get_tunnel_key(skb, &tkey, sizeof(tkey), 0) < 0)
		return drop_packet(skb, DROP_NO_TUNNEL_KEY, DIR_INGRESS, 0, 0, 0, 0);
	src_id = tkey.tunnel_id;

	ret = parse_packet(skb, &f);
	if (ret == PARSE_PASS_NON_IP) {
		if (cfg)
			trace_forward(skb, cfg, OBS_FROM_OVERLAY, OBS_TO_STACK, DIR_INGRESS, 0,
				      src_id, 0, 0, 0, 0);
		return TC_ACT_OK;
	}
	if (ret != PARSE_OK)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, 0, 0, ret == DROP_UNKNOWN_L4 ? &f : 0);
	if (!cfg)
		return drop_packet(skb, DROP_NO_CONFIG, DIR_INGRESS, src_id, 0, 0, &f);
	if (src_id == ID_UNKNOWN)
		return drop_packet(skb, DROP_INVALID_IDENTITY, DIR_INGRESS, src_id, 0, 0, &f);

	dst = endpoint_lookup(f.daddr);
	if (!dst) {
		if (host_address(cfg, f.daddr)) {
			__u32 host_id = cfg->host_identity ? cfg->host_identity : ID_HOST;

			trace_forward(skb, cfg, OBS_FROM_OVERLAY, OBS_TO_STACK, DIR_INGRESS,
				      EV_F_NEW, src_id, host_id, 0, &f, 0);
			return TC_ACT_OK;
		}
		return drop_packet(skb, DROP_UNROUTABLE, DIR_INGRESS, src_id, 0, 0, &f);
	}

	ret = ingress_verdict(skb, &f, dst, src_id, 0, 1, &out);
	if (ret)
		return ret;
	if (out.to_proxy)
		return ingress_to_proxy(skb, cfg, &f, dst, src_id, &out, OBS_FROM_OVERLAY);
	trace_forward(skb, cfg, OBS_FROM_OVERLAY, OBS_TO_ENDPOINT, DIR_INGRESS, out.evf, src_id,
		      dst->identity, dst->ep_id, &f, dst->ifindex);
	ret = redirect_to_endpoint(skb, cfg, dst);
	if (ret < 0)
		return drop_packet(skb, -ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, 0);
	return ret;
}

#ifndef NO_PROGRAM_SECTION
SEC("tc")
int cil_from_overlay(struct __sk_buff *skb)
{
	return handle_from_overlay(skb);
}

char _license[] SEC("license") = "GPL";
#endif
