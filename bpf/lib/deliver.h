/* SPDX-License-Identifier: GPL-2.0 */
/* Lookups of endpoints and identities, and the three ways out of the
 * datapath: to a local endpoint, into the overlay, to the host stack. */
#pragma once

#include "events.h"

static __always_inline struct endpoint_info *endpoint_lookup(__be32 addr)
{
	return bpf_map_lookup_elem(&endpoints, &addr);
}

static __always_inline struct ipcache_value *ipcache_lookup(__be32 addr)
{
	struct ipcache_key k = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&ipcache, &k);
}

/* host_address reports whether addr is one of the node's own addresses. */
static __always_inline int host_address(const struct node_config *cfg, __be32 addr)
{
	return addr == cfg->node_ip || addr == cfg->router_ip;
}

/* identity_of_remote returns the security identity of an address that is not
 * a local endpoint: the node's own addresses are the host, then the ipcache,
 * and anything unknown is the world. */
static __always_inline __u32 identity_of_remote(const struct node_config *cfg, __be32 addr,
						struct ipcache_value **info)
{
	struct ipcache_value *v;

	*info = 0;
	if (host_address(cfg, addr))
		return cfg->host_identity ? cfg->host_identity : ID_HOST;
	v = ipcache_lookup(addr);
	if (v) {
		*info = v;
		return v->identity;
	}
	return ID_WORLD;
}

/* redirect_to_endpoint rewrites the MACs as the pod's gateway would and
 * redirects the packet into the pod. */
static __always_inline int redirect_to_endpoint(struct __sk_buff *skb, const struct node_config *cfg,
						const struct endpoint_info *ep)
{
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 6, ep->lxc_mac, 6, 0) < 0)
		return -DROP_WRITE_ERROR;
	/* Packets decapsulated from the overlay were addressed to the VXLAN
	 * device's MAC: make them the pod's own again. */
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
	if (cfg->flags & CFG_NO_REDIRECT_PEER) {
		skb->mark = MARK_JUDGED;
		return bpf_redirect(ep->ifindex, 0);
	}
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* redirect_to_overlay sets the tunnel key (remote node, VNI = the source's
 * security identity) and redirects to the node's collect-metadata VXLAN
 * device. */
static __always_inline int redirect_to_overlay(struct __sk_buff *skb, const struct node_config *cfg,
					       __be32 tunnel_ep, __u32 src_identity)
{
	struct bpf_tunnel_key key = {};

	key.remote_ipv4 = bpf_ntohl(tunnel_ep);
	key.tunnel_id = src_identity;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return -DROP_WRITE_ERROR;
	return bpf_redirect(cfg->vxlan_ifindex, 0);
}
