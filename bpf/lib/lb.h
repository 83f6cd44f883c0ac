/* SPDX-License-Identifier: GPL-2.0 */
/* Service load-balancing for pod traffic: a packet to a service frontend is
 * translated to a backend before policy (so policy judges the backend), the
 * backend is kept for the connection's life (lb_affinity), and replies get
 * the frontend back as their source (conntrack keeps it). TCP and UDP. */
#pragma once

#include "conntrack.h"

#define IP_CSUM_OFF (ETH_HLEN_ + 10)
#define IP_SADDR_OFF (ETH_HLEN_ + 12)
#define IP_DADDR_OFF (ETH_HLEN_ + 16)
#define L4_SPORT_OFF (ETH_HLEN_ + IP_HLEN)
#define L4_DPORT_OFF (ETH_HLEN_ + IP_HLEN + 2)

struct lb_nat {
	__be32 addr; /* frontend, 0 when the packet is not load-balanced */
	__be16 port;
};

static __always_inline int l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? ETH_HLEN_ + IP_HLEN + 16 : ETH_HLEN_ + IP_HLEN + 6;
}

/* rewrite_addr_port replaces the source (src=1) or destination address and
 * port of a TCP/UDP packet, fixing the IP and L4 checksums. */
static __always_inline int rewrite_addr_port(struct __sk_buff *skb, __u8 proto, int src,
					     __be32 old_addr, __be32 new_addr,
					     __be16 old_port, __be16 new_port)
{
	int csum = l4_csum_off(proto);
	__u64 mangled = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum, old_addr, new_addr, BPF_F_PSEUDO_HDR | mangled | 4) < 0 ||
	    bpf_l4_csum_replace(skb, csum, old_port, new_port, mangled | 2) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
		return DROP_CSUM_L3;
	if (bpf_skb_store_bytes(skb, src ? IP_SADDR_OFF : IP_DADDR_OFF, &new_addr, 4, 0) < 0 ||
	    bpf_skb_store_bytes(skb, src ? L4_SPORT_OFF : L4_DPORT_OFF, &new_port, 2, 0) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* lb_translate load-balances a packet addressed to a service frontend. It
 * returns 0 (nat->addr is 0 when the destination is no service) or a drop
 * reason; f is updated to the translated tuple. */
static __always_inline int lb_translate(struct __sk_buff *skb, struct flow *f, struct lb_nat *nat)
{
	struct lb_service_key sk = {};
	struct lb_backend_key bk = {};
	struct lb_backend *be, chosen;
	struct lb_service *svc;
	struct ct_key ak = {};
	int ret;

	nat->addr = 0;
	nat->port = 0;
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	sk.addr = f->daddr;
	sk.port = f->dport;
	sk.proto = f->proto;
	svc = bpf_map_lookup_elem(&lb_services, &sk);
	if (!svc)
		return 0;
	ak.saddr = f->saddr;
	ak.daddr = f->daddr;
	ak.sport = f->sport;
	ak.dport = f->dport;
	ak.proto = f->proto;
	be = bpf_map_lookup_elem(&lb_affinity, &ak);
	if (be) {
		chosen = *be;
	} else {
		if (svc->count == 0)
			return DROP_NO_SERVICE;
		bk.addr = sk.addr;
		bk.port = sk.port;
		bk.proto = sk.proto;
		bk.slot = (bpf_get_prandom_u32() % svc->count) + 1;
		be = bpf_map_lookup_elem(&lb_backends, &bk);
		if (!be)
			return DROP_NO_SERVICE;
		chosen = *be;
		if (bpf_map_update_elem(&lb_affinity, &ak, &chosen, BPF_ANY) < 0)
			return DROP_CT_CREATE_FAILED;
	}
	ret = rewrite_addr_port(skb, f->proto, 0, f->daddr, chosen.addr, f->dport, chosen.port);
	if (ret)
		return ret;
	nat->addr = f->daddr;
	nat->port = f->dport;
	f->daddr = chosen.addr;
	f->dport = chosen.port;
	f->l4port = bpf_ntohs(chosen.port);
	return 0;
}

/* lb_reverse gives a reply of a load-balanced connection its frontend back
 * as source. */
static __always_inline int lb_reverse(struct __sk_buff *skb, struct flow *f, const struct ct_entry *ct)
{
	int ret;

	if (!ct || !ct->nat_addr)
		return 0;
	ret = rewrite_addr_port(skb, f->proto, 1, f->saddr, ct->nat_addr, f->sport, ct->nat_port);
	if (ret)
		return ret;
	f->saddr = ct->nat_addr;
	f->sport = ct->nat_port;
	return 0;
}
