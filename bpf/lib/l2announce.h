/* SPDX-License-Identifier: GPL-2.0 */
/* L2 announcements on the underlay: the node that holds the lease of a
 * LoadBalancer or external IP answers the ARP requests for that address
 * arriving on its eth0, in the datapath, with its own MAC; the kernel never
 * owns the address. The control plane writes the l2_responder map (one
 * entry per announced address and device) and moves entries between nodes
 * when a lease changes hands; the new holder's gratuitous ARP comes from the
 * control plane. Other ARP (node addresses, gratuitous announcements,
 * replies) is left to the stack. */
#pragma once

#include "maps.h"
#include "events.h"
#include "parse.h"

#define ARPHRD_ETHER_ 1
#define ARPOP_REQUEST_ 1
#define ARPOP_REPLY_ 2

/* Ethernet/IPv4 ARP body (RFC 826), after the Ethernet header. */
struct arp_eth_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__be32 spa;
	__u8 tha[6];
	__be32 tpa;
} __attribute__((packed));

/* l2_respond answers an ARP request for an announced address: the request
 * is turned into the reply in place (Ethernet and ARP addresses swapped,
 * the entry's MAC as sender) and sent back out of the device it came in on.
 * Returns the TC verdict, TC_ACT_OK for anything it does not answer. */
static __always_inline int l2_respond(struct __sk_buff *skb, const struct node_config *cfg)
{
	struct l2_responder_entry *e;
	struct l2_responder_key k = {};
	struct arp_eth_ipv4 *arp;
	struct ethhdr *eth;
	void *data, *end;
	__u8 requester[6];
	__be32 sip, tip;

	if (!cfg || !(cfg->flags & CFG_HAS_L2_ANNOUNCE))
		return TC_ACT_OK;
	if (ensure_linear(skb, ETH_HLEN_ + sizeof(*arp)) < 0)
		return TC_ACT_OK;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	arp = data + ETH_HLEN_;
	if ((void *)(arp + 1) > end)
		return TC_ACT_OK;
	if (arp->htype != bpf_htons(ARPHRD_ETHER_) || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4 || arp->op != bpf_htons(ARPOP_REQUEST_))
		return TC_ACT_OK;
	sip = arp->spa;
	tip = arp->tpa;
	/* A gratuitous request (sender = target) announces, it asks nothing. */
	if (sip == tip)
		return TC_ACT_OK;
	k.addr = tip;
	k.ifindex = skb->ifindex;
	e = bpf_map_lookup_elem(&l2_responder, &k);
	if (!e)
		return TC_ACT_OK;
	__builtin_memcpy(requester, arp->sha, 6);
	__builtin_memcpy(eth->h_dest, requester, 6);
	__builtin_memcpy(eth->h_source, e->mac, 6);
	arp->op = bpf_htons(ARPOP_REPLY_);
	__builtin_memcpy(arp->sha, e->mac, 6);
	arp->spa = tip;
	__builtin_memcpy(arp->tha, requester, 6);
	arp->tpa = sip;
	__sync_fetch_and_add(&e->responses, 1);
	trace_forward(skb, cfg, OBS_FROM_NETWORK, OBS_TO_NETWORK, DIR_EGRESS, EV_F_NEW, ID_HOST,
		      ID_WORLD, 0, 0, skb->ifindex);
	return bpf_redirect(skb->ifindex, 0);
}
