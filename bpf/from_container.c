/* SPDX-License-Identifier: GPL-2.0 */
/* from-container: tc ingress of a pod's host-side lxc veth, i.e. every
 * packet the pod sends. Parse, conntrack, egress policy of the source
 * endpoint, then deliver: to a local pod (after its ingress policy), into the
 * overlay towards the remote pod's node, or to the host stack. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/lb.h"
#include "lib/proxy.h"

static __always_inline int handle_from_container(struct __sk_buff *skb)
{
	struct node_config *cfg = node_config();
	struct endpoint_info *src, *dst;
	struct ipcache_value *remote = 0;
	struct ct_entry *ct;
	struct ct_key key;
	__u8 first;
	struct flow f;
	struct lb_nat nat;
	enum ct_status st;
	__be16 proxy_port = 0, pp, l7lb = 0;
	__u32 dst_id;
	__u8 evf;
	int ret;

	ret = parse_packet(skb, &f);
	if (ret == PARSE_PASS_NON_IP) {
		if (cfg)
			trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_STACK, DIR_EGRESS, 0,
				      0, 0, 0, 0, 0);
		return TC_ACT_OK;
	}
	if (ret != PARSE_OK)
		return drop_packet(skb, ret, DIR_EGRESS, 0, 0, 0, ret == DROP_UNKNOWN_L4 ? &f : 0);
	if (!cfg)
		return drop_packet(skb, DROP_NO_CONFIG, DIR_EGRESS, 0, 0, 0, &f);

	src = endpoint_lookup(f.saddr);
	if (!src || src->ifindex != skb->ifindex)
		return drop_packet(skb, DROP_INVALID_SIP, DIR_EGRESS, 0, 0, 0, &f);

	/* Services are translated first: policy judges the backend. An L7
	 * load-balanced frontend is left alone: its connections go to the
	 * proxy, which picks the backend. */
	ret = lb_translate(skb, cfg, &f, &nat, LB_LOOKUP_INTERNAL | LB_LOOKUP_WILDCARD, &l7lb);
	if (ret == DROP_NO_SERVICE)
		return lb_no_backend(skb, DIR_EGRESS, src->identity, src->ep_id, &f, skb->ifindex, 0);
	if (ret)
		return drop_packet(skb, ret, DIR_EGRESS, src->identity, 0, src->ep_id, &f);

	dst = endpoint_lookup(f.daddr);
	if (dst)
		dst_id = dst->identity;
	else
		dst_id = identity_of_remote(cfg, f.daddr, &remote);

	st = ct_lookup(&f, &key, &first, &ct);
	evf = st == CT_NEW ? EV_F_NEW : 0;
	if (st == CT_REPLY || st == CT_RELATED) {
		evf |= EV_F_REPLY;
		if (ct && (ct->ct_flags & CT_F_PROXY_UPSTREAM)) {
			/* The answer to a connection the node's proxy opened. */
			trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_STACK, DIR_EGRESS, evf,
				      src->identity, dst_id, src->ep_id, &f, 0);
			return proxy_reply(skb, &f);
		}
		ret = lb_reverse(skb, &f, ct);
		if (ret)
			return drop_packet(skb, ret, DIR_EGRESS, src->identity, dst_id, src->ep_id, &f);
		if (ct && (ct->nat_flags & CT_NAT_F_LOOPBACK)) /* hairpin reply: back to the pod */
			dst = endpoint_lookup(f.daddr);
	} else if (l7lb) {
		/* To the L7 load balancer before policy, as Cilium does (the
		 * proxy enforces it). */
		proxy_port = l7lb;
		if (st == CT_NEW) {
			ret = ct_create(&key, first, &f, src->identity, dst_id, 0, 0,
					CT_F_PROXY_REDIRECT, proxy_port);
			if (ret)
				return drop_packet(skb, ret, DIR_EGRESS, src->identity, dst_id,
						   src->ep_id, &f);
		}
		ret = proxy_redirect(skb, &f, proxy_port);
		if (ret < 0)
			return drop_packet(skb, -ret, DIR_EGRESS, src->identity, dst_id, src->ep_id, &f);
		trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_PROXY, DIR_EGRESS, evf, src->identity,
			      dst_id, src->ep_id, &f, 0);
		return ret;
	} else {
		ret = policy_enforce(skb, src, POL_EGRESS, dst_id, &f, st == CT_NEW, &proxy_port);
		if (ret)
			return drop_packet(skb, ret, DIR_EGRESS, src->identity, dst_id, src->ep_id, &f);
		if (dst) {
			ret = policy_enforce(skb, dst, POL_INGRESS, src->identity, &f, st == CT_NEW,
					     &pp);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, src->identity, dst_id,
						   dst->ep_id, &f);
			/* One proxy per node: it applies the L7 rules of both
			 * sides of a local connection. */
			if (!proxy_port)
				proxy_port = pp;
		}
		if (st == CT_NEW) {
			ret = ct_create(&key, first, &f, src->identity, dst_id, nat.addr, nat.port,
					proxy_port ? CT_F_PROXY_REDIRECT : 0, proxy_port);
			if (ret)
				return drop_packet(skb, ret, DIR_EGRESS, src->identity, dst_id,
						   src->ep_id, &f);
			lb_ct_flag(&key, &nat);
		} else {
			/* An established connection keeps the path it started on. */
			proxy_port = ct && (ct->ct_flags & CT_F_PROXY_REDIRECT) ? ct->proxy_port : 0;
		}
		if (proxy_port) {
			ret = proxy_redirect(skb, &f, proxy_port);
			if (ret < 0)
				return drop_packet(skb, -ret, DIR_EGRESS, src->identity, dst_id,
						   src->ep_id, &f);
			trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_PROXY, DIR_EGRESS, evf,
				      src->identity, dst_id, src->ep_id, &f, 0);
			return ret;
		}
	}

	if (dst) {
		trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_ENDPOINT, DIR_EGRESS, evf,
			      src->identity, dst_id, src->ep_id, &f, dst->ifindex);
		ret = redirect_to_endpoint(skb, cfg, dst);
		if (ret < 0)
			return drop_packet(skb, -ret, DIR_EGRESS, src->identity, dst_id, src->ep_id, 0);
		return ret;
	}
	if (remote && remote->tunnel_ep) {
		trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_OVERLAY, DIR_EGRESS, evf,
			      src->identity, dst_id, src->ep_id, &f, cfg->vxlan_ifindex);
		ret = redirect_to_overlay(skb, cfg, remote->tunnel_ep, src->identity);
		if (ret < 0)
			return drop_packet(skb, -ret, DIR_EGRESS, src->identity, dst_id, src->ep_id, 0);
		return ret;
	}
	if (lb_reply_to_network(cfg, &f, evf)) {
		trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_NETWORK, DIR_EGRESS, evf,
			      src->identity, dst_id, src->ep_id, &f, cfg->eth0_ifindex);
		return bpf_redirect_neigh(cfg->eth0_ifindex, 0, 0, 0);
	}
	trace_forward(skb, cfg, OBS_FROM_ENDPOINT, OBS_TO_STACK, DIR_EGRESS, evf, src->identity,
		      dst_id, src->ep_id, &f, 0);
	return TC_ACT_OK;
}

#ifndef NO_PROGRAM_SECTION
SEC("tc")
int cil_from_container(struct __sk_buff *skb)
{
	return handle_from_container(skb);
}

char _license[] SEC("license") = "GPL";
#endif
