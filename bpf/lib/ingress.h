/* SPDX-License-Identifier: GPL-2.0 */
/* The verdict on a packet entering a local endpoint, shared by every path
 * that delivers to a pod from outside it (from-overlay, to-container,
 * NodePort to a local backend). */
#ifndef PODLAB_INGRESS_H
#define PODLAB_INGRESS_H

#include "common.h"
#include "conntrack.h"
#include "policy.h"
#include "lb.h"
#include "proxy.h"

/* ingress_out.to_proxy: where the packet goes instead of the endpoint. */
#define INGRESS_TO_ENDPOINT     0
#define INGRESS_PROXY_REDIRECT  1 /* to the L7 proxy on proxy_port */
#define INGRESS_PROXY_REPLY     2 /* a reply to a connection the proxy opened */

struct ingress_out {
	__u8 evf;         /* EV_F_* of the trace event */
	__u8 to_proxy;    /* INGRESS_* */
	__be16 proxy_port;
};

/* ingress_verdict runs conntrack for a packet from src_id to the local
 * endpoint dst. A reply (or related ICMP error) passes without a policy
 * lookup; with reverse set, a reply of a load-balanced connection gets its
 * frontend back. Anything else goes through dst's ingress policy, and a new
 * allowed connection gets its conntrack entry (remembering nat, when not
 * NULL). A connection whose allowing entry carries a proxy port (or whose
 * conntrack entry says it is proxied) is for the L7 proxy, and a reply of
 * a connection the proxy opened is for the proxy's socket: out->to_proxy
 * tells. It returns 0 with *out set, or the verdict of the drop it
 * recorded. */
static __always_inline int ingress_verdict(struct __sk_buff *skb, struct flow *f,
					   const struct endpoint_info *dst, __u32 src_id,
					   const struct lb_nat *nat, int reverse,
					   struct ingress_out *out)
{
	struct ct_entry *ct;
	struct ct_key key;
	enum ct_status st;
	__be16 proxy_port;
	__u8 first;
	int ret;

	out->to_proxy = INGRESS_TO_ENDPOINT;
	out->proxy_port = 0;
	st = ct_lookup(f, &key, &first, &ct);
	out->evf = st == CT_NEW ? EV_F_NEW : 0;
	if (st == CT_REPLY || st == CT_RELATED) {
		out->evf |= EV_F_REPLY;
		if (ct && (ct->ct_flags & CT_F_PROXY_UPSTREAM)) {
			out->to_proxy = INGRESS_PROXY_REPLY;
			return 0;
		}
		if (reverse) {
			ret = lb_reverse(skb, f, ct);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity,
						   dst->ep_id, f);
		}
		return 0;
	}
	ret = policy_enforce(skb, dst, POL_INGRESS, src_id, f, st == CT_NEW, &proxy_port);
	if (ret)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, f);
	if (st == CT_NEW) {
		ret = ct_create(&key, first, f, src_id, dst->identity, nat ? nat->addr : 0,
				nat ? nat->port : 0, proxy_port ? CT_F_PROXY_REDIRECT : 0,
				proxy_port);
		if (ret)
			return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, f);
	} else {
		/* An established connection keeps the path it started on. */
		proxy_port = ct && (ct->ct_flags & CT_F_PROXY_REDIRECT) ? ct->proxy_port : 0;
	}
	if (proxy_port) {
		out->to_proxy = INGRESS_PROXY_REDIRECT;
		out->proxy_port = proxy_port;
	}
	return 0;
}

/* ingress_to_proxy finishes a packet ingress_verdict sent to the proxy (tc
 * ingress only): from is the observation point the packet entered at. */
static __always_inline int ingress_to_proxy(struct __sk_buff *skb, const struct node_config *cfg,
					    struct flow *f, const struct endpoint_info *dst,
					    __u32 src_id, const struct ingress_out *out, __u8 from)
{
	int ret;

	if (out->to_proxy == INGRESS_PROXY_REPLY) {
		trace_forward(skb, cfg, from, OBS_TO_STACK, DIR_INGRESS, out->evf, src_id,
			      dst->identity, dst->ep_id, f, 0);
		return proxy_reply(skb, f);
	}
	ret = proxy_redirect(skb, f, out->proxy_port);
	if (ret < 0)
		return drop_packet(skb, -ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, f);
	trace_forward(skb, cfg, from, OBS_TO_PROXY, DIR_INGRESS, out->evf, src_id, dst->identity,
		      dst->ep_id, f, 0);
	return ret;
}

#endif
