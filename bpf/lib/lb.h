/* SPDX-License-Identifier: GPL-2.0 */
/* Service load-balancing: a packet to a service frontend is translated to a
 * backend before policy (so policy judges the backend), the backend is kept
 * for the connection's life (lb_affinity), and replies get the frontend back
 * as their source (conntrack keeps it). TCP and UDP.
 *
 * Hairpin: when a pod reaches its own service and is picked as the backend,
 * the packet would arrive with the pod's own address as source, which Linux
 * drops as a martian. Such connections are source-translated to
 * LB_LOOPBACK_IP (a link-local address owned by nobody) and the conntrack
 * entry carries CT_NAT_F_LOOPBACK, so that the reply, addressed to
 * LB_LOOPBACK_IP, is turned back into frontend -> pod.
 *
 * A frontend without backends drops with DROP_NO_SERVICE; a TCP SYN is
 * answered with a RST, a UDP datagram with an ICMP port unreachable, both
 * built in place, so the client fails at once. */
#pragma once

#include "conntrack.h"
#include "deliver.h"

#define IP_CSUM_OFF (ETH_HLEN_ + 10)
#define IP_SADDR_OFF (ETH_HLEN_ + 12)
#define IP_DADDR_OFF (ETH_HLEN_ + 16)
#define L4_SPORT_OFF (ETH_HLEN_ + IP_HLEN)
#define L4_DPORT_OFF (ETH_HLEN_ + IP_HLEN + 2)

/* 169.254.42.1, network order. */
#define LB_LOOPBACK_IP bpf_htonl(0xa9fe2a01)

struct lb_nat {
	__be32 addr; /* frontend, 0 when the packet is not load-balanced */
	__be16 port;
	__u16 flags; /* CT_NAT_F_* */
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

	if (old_addr == new_addr && old_port == new_port)
		return 0;
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

/* lb_lookup finds the frontend of sk (address, port, protocol set): its
 * external scope, or for traffic from inside the cluster (internal set) its
 * internal scope when it has one. sk->scope tells which was found. */
static __always_inline struct lb_service *lb_lookup(struct lb_service_key *sk, int internal)
{
	struct lb_service *svc, *in;

	sk->scope = LB_SCOPE_EXT;
	svc = bpf_map_lookup_elem(&lb_services, sk);
	if (!svc || !internal || !(svc->flags & LB_F_TWO_SCOPES))
		return svc;
	sk->scope = LB_SCOPE_INT;
	in = bpf_map_lookup_elem(&lb_services, sk);
	if (in)
		return in;
	/* Written before the flag and removed after it: not found only
	 * while the control plane rewrites the frontend. */
	sk->scope = LB_SCOPE_EXT;
	return svc;
}

/* lb_lookup_wildcard finds the NodePort frontend of another node's address
 * (an ipcache entry with the remote-node identity): the node's 0.0.0.0
 * NodePort frontend, internal scope, as Cilium's bpf_lxc does
 * (lb4_lookup_wildcard_service), so a pod's connection to any node's
 * NodePort is load-balanced at its source. */
static __always_inline struct lb_service *lb_lookup_wildcard(struct lb_service_key *sk)
{
	struct ipcache_value *info;
	struct lb_service *svc;
	__be32 addr = sk->addr;

	/* The hash lookup first: most destinations are no NodePort, and
	 * they skip the ipcache's trie. */
	sk->addr = 0;
	svc = lb_lookup(sk, 1);
	if (!svc || !(svc->flags & LB_F_NODEPORT))
		return 0;
	info = ipcache_lookup(addr);
	if (!info || info->identity != ID_REMOTE_NODE)
		return 0;
	return svc;
}

/* Lookups of lb_translate. */
#define LB_LOOKUP_INTERNAL 1 /* the client is in the cluster: internal scope */
#define LB_LOOKUP_WILDCARD 2 /* other nodes' NodePorts too (lb_lookup_wildcard) */

/* lb_translate load-balances a packet addressed to a service frontend
 * (nothing to do while the node has no service: CFG_HAS_SERVICES), from
 * the frontend's internal scope with LB_LOOKUP_INTERNAL (a pod or the node
 * itself is the client), else from its external scope (a client in the
 * network). It returns 0 (nat->addr is 0 when the destination is no
 * service) or a drop reason; f is updated to the translated tuple. With l7
 * set, *l7 is the proxy port of an L7 load-balanced frontend (then nothing
 * is translated), else 0. */
static __always_inline int lb_translate(struct __sk_buff *skb, const struct node_config *cfg,
					struct flow *f, struct lb_nat *nat, int lookup, __be16 *l7)
{
	struct lb_service_key sk = {};
	struct lb_backend_key bk = {};
	struct lb_backend *be, chosen;
	struct lb_service *svc;
	struct ct_key ak = {};
	int ret;

	nat->addr = 0;
	nat->port = 0;
	nat->flags = 0;
	if (l7)
		*l7 = 0;
	/* Nodes without any service skip the lookup altogether. */
	if (!(cfg->flags & CFG_HAS_SERVICES))
		return 0;
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	sk.addr = f->daddr;
	sk.port = f->dport;
	sk.proto = f->proto;
	svc = lb_lookup(&sk, lookup & LB_LOOKUP_INTERNAL);
	if (l7 && svc && f->proto == IPPROTO_TCP && svc->proxy_port) {
		/* An L7 load-balanced frontend (a Service a CiliumEnvoyConfig
		 * lists in spec.services) is not translated: its connections go
		 * to the node proxy's listener before any policy (the proxy
		 * picks the backend and enforces the policy), as Cilium's
		 * lb4_svc_is_l7_loadbalancer path does. */
		*l7 = svc->proxy_port;
		return 0;
	}
	if (!svc && (lookup & LB_LOOKUP_WILDCARD))
		svc = lb_lookup_wildcard(&sk);
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
		bk.scope = sk.scope;
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
	f->xlate = XLATE_DNAT;
	f->xlate_addr = f->daddr;
	f->xlate_port = f->dport;
	f->daddr = chosen.addr;
	f->dport = chosen.port;
	f->l4port = bpf_ntohs(chosen.port);
	if (f->daddr == f->saddr) {
		/* Hairpin: the client is its own backend. */
		ret = rewrite_addr_port(skb, f->proto, 1, f->saddr, LB_LOOPBACK_IP, f->sport, f->sport);
		if (ret)
			return ret;
		f->saddr = LB_LOOPBACK_IP;
		nat->flags = CT_NAT_F_LOOPBACK;
	}
	return 0;
}

/* lb_external_frontend reports whether the packet's destination is a
 * LoadBalancer or external IP frontend: those (and not ClusterIPs) are
 * served to traffic that enters the node from the network. */
static __always_inline int lb_external_frontend(const struct flow *f)
{
	struct lb_service_key sk = {};
	struct lb_service *svc;

	sk.addr = f->daddr;
	sk.port = f->dport;
	sk.proto = f->proto;
	svc = bpf_map_lookup_elem(&lb_services, &sk);
	return svc && (svc->flags & LB_F_EXTERNAL);
}

/* lb_ct_flag records nat flags on a connection ct_create just made. */
static __always_inline void lb_ct_flag(const struct ct_key *key, const struct lb_nat *nat)
{
	struct ct_entry *e;

	if (!nat->flags)
		return;
	e = bpf_map_lookup_elem(&conntrack, key);
	if (e)
		e->nat_flags = nat->flags;
}

/* lb_reverse gives a reply of a load-balanced connection its frontend back
 * as source (and, for a hairpin connection, the pod back as destination). */
static __always_inline int lb_reverse(struct __sk_buff *skb, struct flow *f, const struct ct_entry *ct)
{
	__be32 client;
	int ret;

	if (!ct || !ct->nat_addr)
		return 0;
	client = f->saddr;
	ret = rewrite_addr_port(skb, f->proto, 1, f->saddr, ct->nat_addr, f->sport, ct->nat_port);
	if (ret)
		return ret;
	f->xlate = XLATE_REVNAT;
	f->xlate_addr = f->saddr;
	f->xlate_port = f->sport;
	f->saddr = ct->nat_addr;
	f->sport = ct->nat_port;
	if ((ct->nat_flags & CT_NAT_F_LOOPBACK) && f->daddr == LB_LOOPBACK_IP) {
		ret = rewrite_addr_port(skb, f->proto, 0, f->daddr, client, f->dport, f->dport);
		if (ret)
			return ret;
		f->daddr = client;
	}
	return 0;
}

/* lb_reply_to_network reports whether a reverse-translated reply now has
 * one of the node's own addresses as source (a NodePort or hostPort
 * frontend) and leaves for outside the node: handed to the stack, Linux
 * would drop it as a martian (a packet arriving with a local source), so
 * the caller sends it out of eth0 with bpf_redirect_neigh, which routes it
 * and fills in the next hop's MAC. */
static __always_inline int lb_reply_to_network(const struct node_config *cfg, const struct flow *f,
					       __u8 evf)
{
	return (evf & EV_F_REPLY) && cfg->eth0_ifindex && f->saddr == cfg->node_ip;
}

static __always_inline __u16 csum_fold32(__u32 c)
{
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

struct lb_rst_hdr {
	struct iphdr ip;
	struct tcphdr tcp;
};

/* lb_reject_tcp turns a TCP segment (a SYN to a frontend without backends)
 * into the RST the frontend would answer with: addresses, ports and MACs
 * swapped, options and payload cut, checksums recomputed. The caller sends
 * it back where the segment came from. Returns 0 or a drop reason. */
static __always_inline int lb_reject_tcp(struct __sk_buff *skb, const struct flow *f)
{
	struct {
		__be32 saddr, daddr;
		__u8 zero, proto;
		__be16 len;
	} pseudo = {};
	struct lb_rst_hdr h = {};
	__u8 macs[12], swapped[12];
	struct tcphdr th;
	__u32 seq, ack, paylen;
	__u16 tot;
	__s64 sum;

	if (bpf_skb_load_bytes(skb, ETH_HLEN_ + IP_HLEN, &th, sizeof(th)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN_ + 2, &tot, sizeof(tot)) < 0 ||
	    bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
		return DROP_INVALID;
	if (th.rst)
		return DROP_INVALID; /* never answer a RST */
	tot = bpf_ntohs(tot);
	paylen = tot - IP_HLEN - th.doff * 4;
	if (th.ack) {
		seq = th.ack_seq;
		ack = 0;
	} else {
		seq = 0;
		ack = bpf_htonl(bpf_ntohl(th.seq) + paylen + (th.syn ? 1 : 0) + (th.fin ? 1 : 0));
	}
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h));
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_TCP;
	h.ip.saddr = f->daddr;
	h.ip.daddr = f->saddr;
	sum = bpf_csum_diff(0, 0, (__be32 *)&h.ip, sizeof(h.ip), 0);
	if (sum < 0)
		return DROP_CSUM_L3;
	h.ip.check = csum_fold32((__u32)sum);
	h.tcp.source = th.dest;
	h.tcp.dest = th.source;
	h.tcp.seq = seq;
	h.tcp.ack_seq = ack;
	h.tcp.doff = 5;
	h.tcp.rst = 1;
	h.tcp.ack = th.ack ? 0 : 1;
	pseudo.saddr = h.ip.saddr;
	pseudo.daddr = h.ip.daddr;
	pseudo.proto = IPPROTO_TCP;
	pseudo.len = bpf_htons(sizeof(h.tcp));
	sum = bpf_csum_diff(0, 0, (__be32 *)&pseudo, sizeof(pseudo), 0);
	if (sum < 0)
		return DROP_WRITE_ERROR;
	sum = bpf_csum_diff(0, 0, (__be32 *)&h.tcp, sizeof(h.tcp), (__u32)sum);
	if (sum < 0)
		return DROP_WRITE_ERROR;
	h.tcp.check = csum_fold32((__u32)sum);
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	if (bpf_skb_change_tail(skb, ETH_HLEN_ + sizeof(h), 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN_, &h, sizeof(h), BPF_F_INVALIDATE_HASH) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* lb_reject_udp turns a UDP datagram into the ICMP port unreachable the
 * frontend would answer with (quoting the datagram's IP header and first 8
 * bytes), so that a connected UDP socket fails at once. */
static __always_inline int lb_reject_udp(struct __sk_buff *skb, const struct flow *f)
{
	struct {
		struct iphdr ip;
		struct icmphdr icmp;
		__u8 quote[IP_HLEN + 8];
	} h = {};
	__u8 macs[12], swapped[12];
	__s64 sum;

	if (bpf_skb_load_bytes(skb, ETH_HLEN_, h.quote, sizeof(h.quote)) < 0 ||
	    bpf_skb_load_bytes(skb, 0, macs, sizeof(macs)) < 0)
		return DROP_INVALID;
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h));
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = f->daddr;
	h.ip.daddr = f->saddr;
	sum = bpf_csum_diff(0, 0, (__be32 *)&h.ip, sizeof(h.ip), 0);
	if (sum < 0)
		return DROP_CSUM_L3;
	h.ip.check = csum_fold32((__u32)sum);
	h.icmp.type = ICMP_DEST_UNREACH;
	h.icmp.code = 3; /* port unreachable */
	sum = bpf_csum_diff(0, 0, (__be32 *)&h.icmp, sizeof(h.icmp) + sizeof(h.quote), 0);
	if (sum < 0)
		return DROP_WRITE_ERROR;
	h.icmp.checksum = csum_fold32((__u32)sum);
	__builtin_memcpy(swapped, macs + 6, 6);
	__builtin_memcpy(swapped + 6, macs, 6);
	if (bpf_skb_change_tail(skb, ETH_HLEN_ + sizeof(h), 0) < 0)
		return DROP_WRITE_ERROR;
	if (bpf_skb_store_bytes(skb, 0, swapped, sizeof(swapped), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN_, &h, sizeof(h), BPF_F_INVALIDATE_HASH) < 0)
		return DROP_WRITE_ERROR;
	return 0;
}

/* lb_no_backend drops a packet to a frontend without backends through the
 * single drop function and answers: a RST for TCP, an ICMP port
 * unreachable for UDP. It
 * returns the TC verdict: the RST redirected back where the packet came
 * from (ingress of ifindex when ingress is set, else its egress), or
 * TC_ACT_SHOT. */
static __always_inline int lb_no_backend(struct __sk_buff *skb, __u8 dir, __u32 src_id,
					 __u16 ep_id, const struct flow *f, __u32 ifindex,
					 int ingress)
{
	int verdict = drop_packet(skb, DROP_NO_SERVICE, dir, src_id, 0, ep_id, f);

	if (f->proto == IPPROTO_TCP ? lb_reject_tcp(skb, f) : lb_reject_udp(skb, f))
		return verdict;
	skb->mark = MARK_JUDGED;
	return bpf_redirect(ifindex, ingress ? BPF_F_INGRESS : 0);
}
