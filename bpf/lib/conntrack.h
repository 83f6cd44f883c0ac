/* SPDX-License-Identifier: GPL-2.0 */
/* Connection tracking: one LRU entry per connection, keyed by the tuple of
 * the packet that opened it. Replies (and ICMP errors about a tracked
 * connection) are recognised by the reversed tuple and skip policy. */
#pragma once

#include "maps.h"

enum ct_status {
	CT_NEW = 0,
	CT_ESTABLISHED = 1,
	CT_REPLY = 2,
	CT_RELATED = 3,
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static __always_inline __u32 now_sec(void)
{
	return (__u32)(bpf_ktime_get_ns() / 1000000000ULL);
}

/* ct_key_canonical fills k with the tuple in canonical order and returns 1
 * when the packet's source is the key's first side. */
static __always_inline int ct_key_canonical(struct ct_key *k, __be32 saddr, __be32 daddr,
					    __be16 sport, __be16 dport, __u8 proto)
{
	int src_first = saddr < daddr || (saddr == daddr && sport <= dport);

	if (src_first) {
		k->saddr = saddr;
		k->daddr = daddr;
		k->sport = sport;
		k->dport = dport;
	} else {
		k->saddr = daddr;
		k->daddr = saddr;
		k->sport = dport;
		k->dport = sport;
	}
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
	return src_first;
}

static __always_inline __u32 ct_lifetime(const struct ct_entry *e, __u8 proto)
{
	if (proto != IPPROTO_TCP)
		return CT_LIFETIME_NONTCP;
	if (e->closing)
		return CT_LIFETIME_CLOSE;
	if (e->seen_reply)
		return CT_LIFETIME_TCP;
	return CT_LIFETIME_SYN;
}

/* ct_refresh records the packet's TCP flags and extends the lifetime. The
 * entry is written only when something changed, to keep cache lines clean. */
static __always_inline void ct_refresh(struct ct_entry *e, const struct flow *f, int reply,
				       __u32 now)
{
	__u8 flags = f->proto == IPPROTO_TCP ? f->tcp_flags : 0;
	__u32 exp;

	if (reply) {
		if ((e->rx_flags | flags) != e->rx_flags)
			e->rx_flags |= flags;
		if (!e->seen_reply)
			e->seen_reply = 1;
	} else if ((e->tx_flags | flags) != e->tx_flags) {
		e->tx_flags |= flags;
	}
	if (f->proto == IPPROTO_TCP && !e->closing &&
	    ((flags & TCP_RST) || ((e->tx_flags & TCP_FIN) && (e->rx_flags & TCP_FIN))))
		e->closing = 1;
	exp = now + ct_lifetime(e, f->proto);
	if (exp != e->expires)
		e->expires = exp;
}

/* ct_lookup classifies the packet. *key is set to the connection's
 * canonical tuple and *first to the side the packet comes from, both used to
 * create the entry when the connection is new. */
static __always_inline enum ct_status ct_lookup(const struct flow *f, struct ct_key *key,
						__u8 *first, struct ct_entry **out)
{
	struct ct_key inner;
	struct ct_entry *e;
	__u32 now = now_sec();

	*out = 0;
	*first = ct_key_canonical(key, f->saddr, f->daddr, f->sport, f->dport, f->proto);
	e = bpf_map_lookup_elem(&conntrack, key);
	if (e && e->expires >= now) {
		int reply = *first != e->orig_first;

		/* A new SYN on a closed connection starts a new one. */
		if (reply || !(f->proto == IPPROTO_TCP && e->closing &&
			       (f->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)) {
			ct_refresh(e, f, reply, now);
			*out = e;
			return reply ? CT_REPLY : CT_ESTABLISHED;
		}
	}
	if (f->icmp_error) {
		/* The quoted packet belongs to a tracked connection (it
		 * travelled in either direction). */
		ct_key_canonical(&inner, f->inner.saddr, f->inner.daddr, f->inner.sport,
				 f->inner.dport, f->inner.proto);
		e = bpf_map_lookup_elem(&conntrack, &inner);
		if (e && e->expires >= now)
			return CT_RELATED;
	}
	return CT_NEW;
}

/* ct_create inserts the entry of a new, allowed connection; ct_flags and
 * proxy_port record a connection redirected to or opened by the L7 proxy. */
static __always_inline int ct_create(const struct ct_key *key, __u8 first, const struct flow *f,
				     __u32 src_id, __u32 dst_id, __be32 nat_addr, __be16 nat_port,
				     __u8 ct_flags, __be16 proxy_port)
{
	struct ct_entry e = {};

	e.orig_first = first;
	e.ct_flags = ct_flags;
	e.proxy_port = proxy_port;
	e.nat_addr = nat_addr;
	e.nat_port = nat_port;
	e.src_identity = src_id;
	e.dst_identity = dst_id;
	e.tx_flags = f->proto == IPPROTO_TCP ? f->tcp_flags : 0;
	if (f->proto == IPPROTO_TCP && (f->tcp_flags & TCP_RST))
		e.closing = 1;
	e.expires = now_sec() + ct_lifetime(&e, f->proto);
	if (bpf_map_update_elem(&conntrack, key, &e, BPF_ANY) < 0)
		return DROP_CT_CREATE_FAILED;
	return 0;
}
