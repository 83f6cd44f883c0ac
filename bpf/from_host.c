/* SPDX-License-Identifier: GPL-2.0 */
/* from-host: tc egress of cilium_host. Each node namespace routes the
 * service CIDR to cilium_host (the datapath adds the route), so sockets of
 * the node itself and of hostNetwork pods reach ClusterIPs through here.
 * The packet is load-balanced with the host identity and delivered to the
 * backend: into the pod's veth when it is local (its ingress policy judged
 * here), through the tunnel when it is remote. Replies are translated back
 * before the host stack sees them: by from-container for a local backend,
 * by from-netdev (they come back to the router address over the underlay)
 * for a remote one.
 *
 * Why a route and not a cgroup socket hook (connect4/sendmsg4): a cgroup
 * hook attaches to a cgroup shared with the namespace podlab runs in, which
 * DESIGN.md's first hard rule forbids; a route and a tc program stay inside
 * the lab's node namespace and translate real packets. */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/events.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/policy.h"
#include "lib/deliver.h"
#include "lib/lb.h"
#include "lib/proxy.h"

/* from_proxy_deliver takes what the node's L7 proxy sends (marked by the
 * proxy, routed here by the node's proxy rule): its answers to redirected
 * clients (replies of their conntrack entries, frontend restored for
 * service connections) and its upstream connections, which the source's
 * egress policy already allowed (the proxy enforced it) and the
 * destination's ingress policy still judges when the destination is local
 * (an ingress proxy port counts as allowed: the proxy applied those L7
 * rules too). Upstream connections get CT_F_PROXY_UPSTREAM, so that their
 * replies reach the proxy's socket. */
static __always_inline int from_proxy_deliver(struct __sk_buff *skb, const struct node_config *cfg,
					      struct flow *f)
{
	struct ipcache_value *remote;
	struct endpoint_info *src, *dst;
	struct ct_entry *ct;
	struct ct_key key;
	enum ct_status st;
	__u32 src_id, dst_id;
	__be16 pp;
	__u8 first, evf;
	int ret;

	src_id = proxy_mark_identity(skb->mark);
	if (!src_id) {
		src = endpoint_lookup(f->saddr);
		src_id = src ? src->identity : identity_of_remote(cfg, f->saddr, &remote);
	}
	skb->mark = 0;
	dst = endpoint_lookup(f->daddr);
	if (dst)
		dst_id = dst->identity;
	else
		dst_id = identity_of_remote(cfg, f->daddr, &remote);
	st = ct_lookup(f, &key, &first, &ct);
	evf = st == CT_NEW ? EV_F_NEW : 0;
	if (st == CT_REPLY || st == CT_RELATED) {
		evf |= EV_F_REPLY;
		ret = lb_reverse(skb, f, ct);
		if (ret)
			return drop_packet(skb, ret, DIR_EGRESS, src_id, dst_id, 0, f);
	} else {
		if (dst) {
			ret = policy_enforce(skb, dst, POL_INGRESS, src_id, f, st == CT_NEW, &pp);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, src_id, dst_id, dst->ep_id, f);
		}
		if (st == CT_NEW) {
			ret = ct_create(&key, first, f, src_id, dst_id, 0, 0, CT_F_PROXY_UPSTREAM, 0);
			if (ret)
				return drop_packet(skb, ret, DIR_EGRESS, src_id, dst_id, 0, f);
		}
	}
	if (dst) {
		trace_forward(skb, cfg, OBS_FROM_PROXY, OBS_TO_ENDPOINT, DIR_EGRESS, evf, src_id,
			      dst_id, dst->ep_id, f, dst->ifindex);
		if (bpf_skb_store_bytes(skb, 0, dst->pod_mac, 6, 0) < 0 ||
		    bpf_skb_store_bytes(skb, 6, dst->lxc_mac, 6, 0) < 0)
			return drop_packet(skb, DROP_WRITE_ERROR, DIR_EGRESS, src_id, dst_id, 0, 0);
		skb->mark = MARK_JUDGED;
		return bpf_redirect(dst->ifindex, 0);
	}
	if (remote && remote->tunnel_ep) {
		trace_forward(skb, cfg, OBS_FROM_PROXY, OBS_TO_OVERLAY, DIR_EGRESS, evf, src_id,
			      dst_id, 0, f, cfg->vxlan_ifindex);
		ret = redirect_to_overlay(skb, cfg, remote->tunnel_ep, src_id);
		if (ret < 0)
			return drop_packet(skb, -ret, DIR_EGRESS, src_id, dst_id, 0, 0);
		return ret;
	}
	trace_forward(skb, cfg, OBS_FROM_PROXY, OBS_TO_NETWORK, DIR_EGRESS, evf, src_id, dst_id, 0,
		      f, cfg->eth0_ifindex);
	return bpf_redirect_neigh(cfg->eth0_ifindex, 0, 0, 0);
}

static __always_inline int handle_from_host(struct __sk_buff *skb)
{
	struct node_config *cfg = node_config();
	struct ipcache_value *remote;
	struct endpoint_info *dst;
	struct ct_entry *ct;
	struct ct_key key;
	enum ct_status st;
	struct lb_nat nat;
	struct flow f;
	__u32 host_id, dst_id;
	__u8 first, evf;
	int ret;

	if (!cfg || parse_packet(skb, &f) != PARSE_OK)
		return TC_ACT_OK;
	if (from_proxy(skb))
		return from_proxy_deliver(skb, cfg, &f);
	host_id = cfg->host_identity ? cfg->host_identity : ID_HOST;
	ret = lb_translate(skb, cfg, &f, &nat, LB_LOOKUP_INTERNAL, 0);
	if (ret == DROP_NO_SERVICE)
		return lb_no_backend(skb, DIR_EGRESS, host_id, 0, &f, skb->ifindex, 1);
	if (ret)
		return drop_packet(skb, ret, DIR_EGRESS, host_id, 0, 0, &f);
	if (!nat.addr)
		return TC_ACT_OK;

	dst = endpoint_lookup(f.daddr);
	if (dst)
		dst_id = dst->identity;
	else
		dst_id = identity_of_remote(cfg, f.daddr, &remote);
	st = ct_lookup(&f, &key, &first, &ct);
	evf = st == CT_NEW ? EV_F_NEW : 0;
	if (st == CT_NEW || st == CT_ESTABLISHED) {
		if (dst) {
			__be16 pp;

			ret = policy_enforce(skb, dst, POL_INGRESS, host_id, &f, st == CT_NEW, &pp);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, host_id, dst_id, dst->ep_id, &f);
		}
		if (st == CT_NEW) {
			ret = ct_create(&key, first, &f, host_id, dst_id, nat.addr, nat.port, 0, 0);
			if (ret)
				return drop_packet(skb, ret, DIR_EGRESS, host_id, dst_id, 0, &f);
		}
	}
	if (dst) {
		trace_forward(skb, cfg, OBS_FROM_HOST, OBS_TO_ENDPOINT, DIR_EGRESS, evf, host_id,
			      dst_id, dst->ep_id, &f, dst->ifindex);
		/* From an egress hook the peer redirect is not available: go
		 * through the lxc's egress, where to-container lets an
		 * already judged packet pass. */
		if (bpf_skb_store_bytes(skb, 0, dst->pod_mac, 6, 0) < 0 ||
		    bpf_skb_store_bytes(skb, 6, dst->lxc_mac, 6, 0) < 0)
			return drop_packet(skb, DROP_WRITE_ERROR, DIR_EGRESS, host_id, dst_id, 0, 0);
		skb->mark = MARK_JUDGED;
		return bpf_redirect(dst->ifindex, 0);
	}
	if (remote && remote->tunnel_ep) {
		trace_forward(skb, cfg, OBS_FROM_HOST, OBS_TO_OVERLAY, DIR_EGRESS, evf, host_id,
			      dst_id, 0, &f, cfg->vxlan_ifindex);
		ret = redirect_to_overlay(skb, cfg, remote->tunnel_ep, ID_REMOTE_NODE);
		if (ret < 0)
			return drop_packet(skb, -ret, DIR_EGRESS, host_id, dst_id, 0, 0);
		return ret;
	}
	/* Backends outside the pod network (hostNetwork, external) are not
	 * supported from the node itself. */
	return drop_packet(skb, DROP_UNROUTABLE, DIR_EGRESS, host_id, dst_id, 0, &f);
}

#ifndef NO_PROGRAM_SECTION
SEC("tc")
int cil_from_host(struct __sk_buff *skb)
{
	return handle_from_host(skb);
}

char _license[] SEC("license") = "GPL";
#endif
