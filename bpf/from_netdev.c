/* SPDX-License-Identifier: GPL-2.0 */
/* from-netdev: tc ingress of the node's eth0, i.e. everything arriving from
 * the underlay. The datapath's business here is services: NodePort and
 * hostPort frontends on the node's address (lib/nodeport.h), the replies of
 * NodePort connections SNAT-ed to remote backends, and the replies of
 * service connections the node itself opened to remote backends
 * (from-host), which come back to the router address and get their frontend
 * back before the host stack sees them. Everything else (VXLAN, world and
 * node traffic routed to pods, ARP) goes to the stack untouched, as before
 * this program existed, except two things of LoadBalancer and external IP
 * frontends: ARP requests for an address the node announces are answered
 * here (lib/l2announce.h), and connections to such a frontend are
 * load-balanced like a NodePort (the world reaches it through the node that
 * answered its ARP request). */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/lb.h"
#include "lib/nodeport.h"
#include "lib/proxy.h"
#include "lib/l2announce.h"

#define NODE_VXLAN_PORT 8472

static __always_inline int handle_from_netdev(struct __sk_buff *skb)
{
	struct node_config *cfg = node_config();
	struct ct_entry *ct;
	struct ct_key key;
	enum ct_status st;
	struct flow f;
	__u8 first;
	int ret;

	ret = parse_packet(skb, &f);
	if (ret == PARSE_PASS_NON_IP)
		return l2_respond(skb, cfg);
	if (!cfg || ret != PARSE_OK)
		return TC_ACT_OK;
	if (f.proto != IPPROTO_TCP && f.proto != IPPROTO_UDP)
		return TC_ACT_OK;
	if (f.daddr == cfg->node_ip) {
		if (f.proto == IPPROTO_UDP && f.dport == bpf_htons(NODE_VXLAN_PORT))
			return TC_ACT_OK;
		ret = nodeport_handle(skb, cfg, &f);
		return ret >= 0 ? ret : TC_ACT_OK;
	}
	/* LoadBalancer and external IPs: only frames sent to this node (the
	 * one whose MAC answered the ARP request). A frame flooded by the
	 * underlay bridge to every node (its destination MAC unknown there,
	 * e.g. the announcing node's link is down) is another node's business:
	 * serving it here would answer a connection twice. */
	if ((cfg->flags & CFG_HAS_EXTERNAL) && skb->pkt_type == PACKET_HOST &&
	    lb_external_frontend(&f)) {
		ret = nodeport_handle(skb, cfg, &f);
		return ret >= 0 ? ret : TC_ACT_OK;
	}
	if (endpoint_lookup(f.daddr)) {
		/* The answer of a world host to a connection the node's proxy
		 * opened from a local pod's address goes to the proxy. */
		st = ct_lookup(&f, &key, &first, &ct);
		if (st == CT_REPLY && ct && (ct->ct_flags & CT_F_PROXY_UPSTREAM)) {
			trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_STACK, DIR_INGRESS,
				      EV_F_REPLY, ct->dst_identity, ct->src_identity, 0, &f, 0);
			return proxy_reply(skb, &f);
		}
		return TC_ACT_OK;
	}
	if (f.daddr == cfg->router_ip && (cfg->flags & CFG_HAS_SERVICES)) {
		st = ct_lookup(&f, &key, &first, &ct);
		if (st == CT_REPLY && ct && ct->nat_addr) {
			ret = lb_reverse(skb, &f, ct);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, ct->dst_identity,
						   ct->src_identity, 0, &f);
			trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_STACK, DIR_INGRESS,
				      EV_F_REPLY, ct->dst_identity, ct->src_identity, 0, &f, 0);
		}
	}
	return TC_ACT_OK;
}

#ifndef NO_PROGRAM_SECTION
SEC("tc")
int cil_from_netdev(struct __sk_buff *skb)
{
	return handle_from_netdev(skb);
}

char _license[] SEC("license") = "GPL";
#endif
