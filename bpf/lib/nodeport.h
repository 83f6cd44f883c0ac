/* SPDX-License-Identifier: GPL-2.0 */
/* NodePort and hostPort frontends on the node's eth0 address, for traffic
 * entering the node from the network (the world, other nodes, pods of other
 * nodes through the underlay).
 *
 * Backend on this node: destination translated, client address preserved,
 * delivered straight to the pod after its ingress policy; conntrack keeps
 * the frontend, and from-container sends the reverse-translated reply out of
 * eth0 (lb_reply_to_network).
 *
 * Backend on another node: the packet is also source-translated to this
 * node's address and a NAT port (SNAT, not DSR: the backend's reply then
 * comes back to this node by plain routing, the client sees the address it
 * dialled, and nothing is needed on the backend's node but the ordinary
 * from-overlay path). It is sent through the tunnel with the remote-node
 * identity, the identity its new source address has in every ipcache. The
 * reply arrives on eth0, is matched in nodeport_rev, translated back to
 * frontend -> client and sent out of eth0 again.
 *
 * externalTrafficPolicy: Local: traffic from the network is served from a
 * frontend's external scope, which the control plane gives only the node's
 * own backends (none: DROP_NO_SERVICE); pods use the internal scope (all
 * backends, lb_lookup). */
#pragma once

#include "lb.h"
#include "deliver.h"
#include "ingress.h"

/* NAT ports for SNAT-ed NodePort connections: above Linux's default
 * ephemeral range (32768-60999), so the node's own sockets do not collide. */
#define NODEPORT_NAT_MIN 61000
#define NODEPORT_NAT_SPAN 4536
#define NODEPORT_NAT_TRIES 8
/* A NAT port whose connection was idle this long may be reused. */
#define NODEPORT_NAT_IDLE 300

static __always_inline void nodeport_key(struct ct_key *k, __be32 saddr, __be32 daddr,
					 __be16 sport, __be16 dport, __u8 proto)
{
	k->saddr = saddr;
	k->daddr = daddr;
	k->sport = sport;
	k->dport = dport;
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

/* nodeport_snat_new picks a free NAT port for a new connection to a remote
 * backend and records both directions. Returns 0 or a drop reason. */
static __always_inline int nodeport_snat_new(const struct node_config *cfg, const struct flow *f,
					     const struct ct_key *fwd_key, __be32 tunnel_ep,
					     struct nodeport_nat *out)
{
	struct ct_key rk = {};
	struct nodeport_nat *old;
	__u32 now = now_sec();
	__u32 start = bpf_get_prandom_u32();
	int i;

	out->client_addr = fwd_key->saddr;
	out->client_port = fwd_key->sport;
	out->frontend_addr = fwd_key->daddr;
	out->frontend_port = fwd_key->dport;
	out->backend_addr = f->daddr;
	out->backend_port = f->dport;
	out->tunnel_ep = tunnel_ep;
	out->last_seen = now;
	for (i = 0; i < NODEPORT_NAT_TRIES; i++) {
		__be16 port = bpf_htons(NODEPORT_NAT_MIN + (start + i * 997) % NODEPORT_NAT_SPAN);

		nodeport_key(&rk, f->daddr, cfg->node_ip, f->dport, port, f->proto);
		old = bpf_map_lookup_elem(&nodeport_rev, &rk);
		if (old && old->last_seen + NODEPORT_NAT_IDLE > now)
			continue;
		out->nat_port = port;
		if (bpf_map_update_elem(&nodeport_rev, &rk, out, BPF_ANY) < 0 ||
		    bpf_map_update_elem(&nodeport_fwd, fwd_key, out, BPF_ANY) < 0)
			return DROP_CT_CREATE_FAILED;
		return 0;
	}
	return DROP_CT_CREATE_FAILED;
}

/* nodeport_forward_remote source-translates a translated packet (f is
 * already backend-addressed) and sends it to the backend's node. */
static __always_inline int nodeport_forward_remote(struct __sk_buff *skb, const struct node_config *cfg,
						   struct flow *f, const struct nodeport_nat *n,
						   __u32 src_id, __u32 dst_id, __u8 evf)
{
	int ret;

	ret = rewrite_addr_port(skb, f->proto, 1, f->saddr, cfg->node_ip, f->sport, n->nat_port);
	if (ret)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, dst_id, 0, f);
	f->saddr = cfg->node_ip;
	f->sport = n->nat_port;
	trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_OVERLAY, DIR_INGRESS, evf, ID_REMOTE_NODE,
		      dst_id, 0, f, cfg->vxlan_ifindex);
	ret = redirect_to_overlay(skb, cfg, n->tunnel_ep, ID_REMOTE_NODE);
	if (ret < 0)
		return drop_packet(skb, -ret, DIR_INGRESS, src_id, dst_id, 0, 0);
	return ret;
}

/* nodeport_reply handles a backend's reply to a SNAT-ed connection:
 * backend -> node:natPort becomes frontend -> client, sent out of eth0.
 * Returns -1 when the packet is no such reply. */
static __always_inline int nodeport_reply(struct __sk_buff *skb, const struct node_config *cfg,
					  struct flow *f)
{
	struct nodeport_nat *n;
	struct ct_key rk;
	__u32 now;
	int ret;

	nodeport_key(&rk, f->saddr, f->daddr, f->sport, f->dport, f->proto);
	n = bpf_map_lookup_elem(&nodeport_rev, &rk);
	if (!n)
		return -1;
	now = now_sec();
	if (n->last_seen != now)
		n->last_seen = now;
	ret = rewrite_addr_port(skb, f->proto, 1, f->saddr, n->frontend_addr, f->sport, n->frontend_port);
	if (!ret)
		ret = rewrite_addr_port(skb, f->proto, 0, f->daddr, n->client_addr, f->dport, n->client_port);
	if (ret)
		return drop_packet(skb, ret, DIR_EGRESS, ID_REMOTE_NODE, 0, 0, f);
	f->saddr = n->frontend_addr;
	f->sport = n->frontend_port;
	f->daddr = n->client_addr;
	f->dport = n->client_port;
	trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_NETWORK, DIR_EGRESS, EV_F_REPLY, ID_REMOTE_NODE,
		      0, 0, f, cfg->eth0_ifindex);
	return bpf_redirect_neigh(cfg->eth0_ifindex, 0, 0, 0);
}

/* nodeport_local delivers a translated packet to a backend on this node:
 * conntrack (keeping the frontend for the reply), the pod's ingress
 * policy, redirect. */
static __always_inline int nodeport_local(struct __sk_buff *skb, const struct node_config *cfg,
					  struct flow *f, const struct endpoint_info *dst,
					  const struct lb_nat *nat, __u32 src_id)
{
	struct ingress_out out;
	int ret;

	/* A client tuple that is the reply of a connection the backend opened
	 * is not a NodePort connection: no reverse translation. */
	ret = ingress_verdict(skb, f, dst, src_id, nat, 0, &out);
	if (ret)
		return ret;
	if (out.to_proxy)
		return ingress_to_proxy(skb, cfg, f, dst, src_id, &out, OBS_FROM_NETWORK);
	trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_ENDPOINT, DIR_INGRESS, out.evf, src_id,
		      dst->identity, dst->ep_id, f, dst->ifindex);
	ret = redirect_to_endpoint(skb, cfg, dst);
	if (ret < 0)
		return drop_packet(skb, -ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, 0);
	return ret;
}

/* nodeport_handle load-balances a packet to one of the node's addresses.
 * Returns -1 when the packet is not for a NodePort/hostPort frontend (nor a
 * reply of one), else the TC verdict. */
static __always_inline int nodeport_handle(struct __sk_buff *skb, const struct node_config *cfg,
					   struct flow *f)
{
	struct ipcache_value *remote;
	struct endpoint_info *dst;
	struct nodeport_nat *n, nn;
	struct ct_key fk;
	struct lb_nat nat;
	__u32 src_id, dst_id;
	int ret;

	ret = nodeport_reply(skb, cfg, f);
	if (ret >= 0)
		return ret;
	if (!(cfg->flags & CFG_HAS_SERVICES))
		return -1;
	nodeport_key(&fk, f->saddr, f->daddr, f->sport, f->dport, f->proto);
	src_id = identity_of_remote(cfg, f->saddr, &remote);
	n = bpf_map_lookup_elem(&nodeport_fwd, &fk);
	if (n) {
		/* Established SNAT-ed connection. */
		__u32 now = now_sec();

		nn = *n;
		if (n->last_seen != now)
			n->last_seen = now;
		ret = rewrite_addr_port(skb, f->proto, 0, f->daddr, nn.backend_addr, f->dport, nn.backend_port);
		if (ret)
			return drop_packet(skb, ret, DIR_INGRESS, src_id, 0, 0, f);
		f->daddr = nn.backend_addr;
		f->dport = nn.backend_port;
		f->l4port = bpf_ntohs(nn.backend_port);
		dst_id = identity_of_remote(cfg, f->daddr, &remote);
		return nodeport_forward_remote(skb, cfg, f, &nn, src_id, dst_id, 0);
	}
	ret = lb_translate(skb, cfg, f, &nat, 0, 0);
	if (ret == DROP_NO_SERVICE)
		return lb_no_backend(skb, DIR_INGRESS, src_id, 0, f, skb->ifindex, 0);
	if (ret)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, 0, 0, f);
	if (!nat.addr)
		return -1;
	dst = endpoint_lookup(f->daddr);
	if (dst)
		return nodeport_local(skb, cfg, f, dst, &nat, src_id);
	dst_id = identity_of_remote(cfg, f->daddr, &remote);
	if (!remote || !remote->tunnel_ep)
		return drop_packet(skb, DROP_UNROUTABLE, DIR_INGRESS, src_id, dst_id, 0, f);
	ret = nodeport_snat_new(cfg, f, &fk, remote->tunnel_ep, &nn);
	if (ret)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, dst_id, 0, f);
	return nodeport_forward_remote(skb, cfg, f, &nn, src_id, dst_id, EV_F_NEW);
}
