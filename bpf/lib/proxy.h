/* SPDX-License-Identifier: GPL-2.0 */
/* Redirection to the node's L7 proxy (transparent proxy, the way Cilium
 * does it with tproxy sockets):
 *
 *  - a policy entry allowing a connection may carry a proxy port; the tc
 *    ingress program that judges the connection's first packet then assigns
 *    the packet to the proxy's listening socket in the node namespace
 *    (bpf_sk_assign, only valid at tc ingress), marks it TO_PROXY so that
 *    the node's routing delivers it locally, and records the proxy port in
 *    the conntrack entry (CT_F_PROXY_REDIRECT): every later packet of the
 *    originator goes the same way (to the accepted socket), even when the
 *    policy changes, and the proxy's answers are replies of the entry;
 *  - the proxy opens its upstream connection from the client's address
 *    (IP_TRANSPARENT) with a PROXY_INGRESS/PROXY_EGRESS mark carrying the
 *    source identity; the node routes marked packets to cilium_host, where
 *    from-host delivers them without running the source's egress policy a
 *    second time and records the connection as CT_F_PROXY_UPSTREAM, so that
 *    its replies are handed to the proxy's socket instead of the pod that
 *    owns the address. */
#pragma once

#include "common.h"

#define PROXY_LOOPBACK 0x7f000001 /* 127.0.0.1, where the proxy listens */

/* proxy_mark_identity returns the source identity a proxy mark carries
 * (Cilium's layout: low 16 bits in the upper half, bits 16-23 in the low
 * byte), 0 when the mark is not a proxy mark. */
static __always_inline __u32 proxy_mark_identity(__u32 mark)
{
	__u32 magic = mark & MARK_MAGIC_HOST_MASK;

	if (magic != MARK_MAGIC_PROXY_INGRESS && magic != MARK_MAGIC_PROXY_EGRESS)
		return 0;
	return (mark >> 16) | ((mark & 0xff) << 16);
}

/* from_proxy reports whether the packet was sent by the node's proxy. */
static __always_inline int from_proxy(const struct __sk_buff *skb)
{
	__u32 magic = skb->mark & MARK_MAGIC_HOST_MASK;

	return magic == MARK_MAGIC_PROXY_INGRESS || magic == MARK_MAGIC_PROXY_EGRESS;
}

static __always_inline int proxy_assign_tcp(struct __sk_buff *skb, struct bpf_sock_tuple *t,
					    int established)
{
	struct bpf_sock *sk;
	int ret;

	sk = bpf_skc_lookup_tcp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -DROP_PROXY_LOOKUP_FAILED;
	if (established && (sk->state == BPF_TCP_LISTEN || sk->state == BPF_TCP_TIME_WAIT)) {
		bpf_sk_release(sk);
		return -DROP_PROXY_LOOKUP_FAILED;
	}
	ret = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return ret ? -DROP_PROXY_SET_FAILED : 0;
}

static __always_inline int proxy_assign_udp(struct __sk_buff *skb, struct bpf_sock_tuple *t)
{
	struct bpf_sock *sk;
	int ret;

	sk = bpf_sk_lookup_udp(skb, t, sizeof(t->ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return -DROP_PROXY_LOOKUP_FAILED;
	ret = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	return ret ? -DROP_PROXY_SET_FAILED : 0;
}

/* to_local_stack makes the node's stack deliver the packet locally (the
 * TO_PROXY routing rule) whatever its destination address; port is the
 * proxy port recorded in the mark (0 for replies to the proxy). */
static __always_inline void to_local_stack(struct __sk_buff *skb, __be16 port)
{
	skb->mark = MARK_MAGIC_TO_PROXY | ((__u32)bpf_ntohs(port) << 16);
	/* Frames addressed to another MAC (the pod's gateway, a VXLAN
	 * device) would be dropped by ip_rcv as PACKET_OTHERHOST. */
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
}

/* proxy_redirect hands a packet of the originator of a proxied connection
 * to the proxy listening on proxy_port (network order): to the proxy's
 * socket of the connection when it exists, else to its listener on
 * 127.0.0.1 (or any address). tc ingress only. It returns TC_ACT_OK, or
 * -reason when no socket takes the packet. */
static __always_inline int proxy_redirect(struct __sk_buff *skb, const struct flow *f,
					  __be16 proxy_port)
{
	struct bpf_sock_tuple t = {};
	int ret;

	t.ipv4.saddr = f->saddr;
	t.ipv4.daddr = f->daddr;
	t.ipv4.sport = f->sport;
	t.ipv4.dport = f->dport;
	switch (f->proto) {
	case IPPROTO_TCP:
		ret = proxy_assign_tcp(skb, &t, 1);
		if (ret) {
			t.ipv4.daddr = bpf_htonl(PROXY_LOOPBACK);
			t.ipv4.dport = proxy_port;
			t.ipv4.sport = 0;
			t.ipv4.saddr = 0;
			ret = proxy_assign_tcp(skb, &t, 0);
		}
		if (ret) {
			t.ipv4.daddr = 0;
			ret = proxy_assign_tcp(skb, &t, 0);
		}
		break;
	case IPPROTO_UDP:
		t.ipv4.daddr = bpf_htonl(PROXY_LOOPBACK);
		t.ipv4.dport = proxy_port;
		ret = proxy_assign_udp(skb, &t);
		if (ret) {
			t.ipv4.daddr = 0;
			ret = proxy_assign_udp(skb, &t);
		}
		break;
	default:
		return -DROP_PROXY_UNKNOWN_PROTO;
	}
	if (ret)
		return ret;
	to_local_stack(skb, proxy_port);
	return TC_ACT_OK;
}

/* proxy_reply hands a reply of a connection the proxy opened
 * (CT_F_PROXY_UPSTREAM) to the proxy's socket in the node stack. tc
 * ingress only; when no socket is found the stack's own lookup decides. */
static __always_inline int proxy_reply(struct __sk_buff *skb, const struct flow *f)
{
	struct bpf_sock_tuple t = {};

	t.ipv4.saddr = f->saddr;
	t.ipv4.daddr = f->daddr;
	t.ipv4.sport = f->sport;
	t.ipv4.dport = f->dport;
	if (f->proto == IPPROTO_TCP)
		proxy_assign_tcp(skb, &t, 1);
	to_local_stack(skb, 0);
	return TC_ACT_OK;
}
