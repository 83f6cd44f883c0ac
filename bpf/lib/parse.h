/* SPDX-License-Identifier: GPL-2.0 */
/* Packet parsing: Ethernet + IPv4 (no options, no fragments) + TCP, UDP,
 * SCTP or ICMP. Anything else is refused with the matching drop reason. */
#pragma once

#include "common.h"

#define PARSE_OK 0
#define PARSE_PASS_NON_IP (-1) /* ARP: handed to the stack untouched */

#define IPPROTO_SCTP_ 132

/* ensure_linear makes the first n bytes of the packet directly accessible. */
static __always_inline int ensure_linear(struct __sk_buff *skb, __u32 n)
{
	if ((long)skb->data + n <= (long)skb->data_end)
		return 0;
	if (skb->len < n)
		return -1;
	if (bpf_skb_pull_data(skb, n) < 0)
		return -1;
	if ((long)skb->data + n > (long)skb->data_end)
		return -1;
	return 0;
}

/* parse_icmp_inner fills f->inner with the tuple of the packet an ICMP error
 * quotes; f->icmp_error stays 0 when it cannot be read. */
static __always_inline void parse_icmp_inner(struct __sk_buff *skb, struct flow *f)
{
	const __u32 off = ETH_HLEN_ + IP_HLEN + 8;
	struct iphdr *ip;
	void *data, *end;
	__be16 *ports;

	if (ensure_linear(skb, off + IP_HLEN + 4) < 0)
		return;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + off;
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->version != 4)
		return;
	ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > end)
		return;
	f->inner.saddr = ip->saddr;
	f->inner.daddr = ip->daddr;
	f->inner.proto = ip->protocol;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP ||
	    ip->protocol == IPPROTO_SCTP_) {
		f->inner.sport = ports[0];
		f->inner.dport = ports[1];
	} else if (ip->protocol == IPPROTO_ICMP) {
		struct icmphdr *ic = (void *)(ip + 1);

		if ((void *)(ic + 1) > end || ic->type != ICMP_ECHO)
			return;
		f->inner.sport = ic->un.echo.id;
		f->inner.dport = 0;
	} else {
		return;
	}
	f->icmp_error = 1;
}

/* parse_packet returns PARSE_OK with f filled, PARSE_PASS_NON_IP for ARP, or
 * a drop reason (> 0). */
static __always_inline int parse_packet(struct __sk_buff *skb, struct flow *f)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u16 proto, tot;

	__builtin_memset(f, 0, sizeof(*f));
	if (ensure_linear(skb, ETH_HLEN_) < 0)
		return DROP_UNSUPPORTED_L2;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return DROP_UNSUPPORTED_L2;
	proto = bpf_ntohs(eth->h_proto);
	if (proto < ETH_P_802_3_MIN)
		return DROP_UNSUPPORTED_L2;
	if (proto == ETH_P_ARP)
		return PARSE_PASS_NON_IP;
	if (proto != ETH_P_IP)
		return DROP_UNKNOWN_L3;

	if (ensure_linear(skb, ETH_HLEN_ + IP_HLEN) < 0)
		return DROP_INVALID;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + ETH_HLEN_;
	if ((void *)(ip + 1) > end)
		return DROP_INVALID;
	if (ip->version != 4 || ip->ihl < 5)
		return DROP_INVALID;
	if (ip->ihl != 5) /* IP options are not supported */
		return DROP_INVALID;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < IP_HLEN || tot > skb->len - ETH_HLEN_)
		return DROP_INVALID;
	if (ip->frag_off & bpf_htons(0x3fff)) /* MF or a fragment offset */
		return DROP_FRAG_NOSUPPORT;
	f->saddr = ip->saddr;
	f->daddr = ip->daddr;
	f->proto = ip->protocol;
	f->ttl = ip->ttl;

	switch (f->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th;

		if (tot < IP_HLEN + sizeof(*th) ||
		    ensure_linear(skb, ETH_HLEN_ + IP_HLEN + sizeof(*th)) < 0)
			return DROP_CT_INVALID_HDR;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		th = data + ETH_HLEN_ + IP_HLEN;
		if ((void *)(th + 1) > end || th->doff < 5)
			return DROP_CT_INVALID_HDR;
		f->sport = th->source;
		f->dport = th->dest;
		f->l4port = bpf_ntohs(th->dest);
		f->tcp_flags = ((__u8 *)th)[13];
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_SCTP_: {
		__be16 *ports;
		__u32 need = f->proto == IPPROTO_UDP ? 8 : 12;

		if (tot < IP_HLEN + need || ensure_linear(skb, ETH_HLEN_ + IP_HLEN + need) < 0)
			return DROP_CT_INVALID_HDR;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		ports = data + ETH_HLEN_ + IP_HLEN;
		if ((void *)(ports + 2) > end)
			return DROP_CT_INVALID_HDR;
		f->sport = ports[0];
		f->dport = ports[1];
		f->l4port = bpf_ntohs(ports[1]);
		break;
	}
	case IPPROTO_ICMP: {
		struct icmphdr *ic;

		if (tot < IP_HLEN + sizeof(*ic) ||
		    ensure_linear(skb, ETH_HLEN_ + IP_HLEN + sizeof(*ic)) < 0)
			return DROP_CT_INVALID_HDR;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
		ic = data + ETH_HLEN_ + IP_HLEN;
		if ((void *)(ic + 1) > end)
			return DROP_CT_INVALID_HDR;
		f->l4port = ic->type;
		switch (ic->type) {
		case ICMP_ECHO:
			f->sport = ic->un.echo.id;
			break;
		case ICMP_ECHOREPLY:
			f->dport = ic->un.echo.id;
			break;
		case ICMP_DEST_UNREACH:
		case ICMP_TIME_EXCEEDED:
		case ICMP_PARAMETERPROB:
		case ICMP_SOURCE_QUENCH:
			parse_icmp_inner(skb, f);
			break;
		default:
			break;
		}
		break;
	}
	default:
		return DROP_UNKNOWN_L4;
	}
	return PARSE_OK;
}
