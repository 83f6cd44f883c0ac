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

static __always_inline void ct_key_from_flow(struct ct_key *k, const struct flow *f)
{
	k->saddr = f->saddr;
	k->daddr = f->daddr;
	k->sport = f->sport;
	k->dport = f->dport;
	k->proto = f->proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

static __always_inline void ct_key_reverse(struct ct_key *r, const struct ct_key *k)
{
	r->saddr = k->daddr;
	r->daddr = k->saddr;
	r->sport = k->dport;
	r->dport = k->sport;
	r->proto = k->proto;
	r->pad[0] = r->pad[1] = r->pad[2] = 0;
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

/* ct_lookup classifies the packet. *key is set to the original-direction
 * tuple of the packet (used to create the entry when it is new). */
static __always_inline enum ct_status ct_lookup(const struct flow *f, struct ct_key *key,
						struct ct_entry **out)
{
	struct ct_key rev;
	struct ct_entry *e;
	__u32 now = now_sec();

	*out = 0;
	ct_key_from_flow(key, f);
	e = bpf_map_lookup_elem(&conntrack, key);
	if (e && e->expires >= now) {
		/* A new SYN on a closed connection starts a new one. */
		if (!(f->proto == IPPROTO_TCP && e->closing &&
		      (f->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)) {
			ct_refresh(e, f, 0, now);
			*out = e;
			return CT_ESTABLISHED;
		}
	}
	ct_key_reverse(&rev, key);
	e = bpf_map_lookup_elem(&conntrack, &rev);
	if (e && e->expires >= now) {
		ct_refresh(e, f, 1, now);
		*out = e;
		return CT_REPLY;
	}
	if (f->icmp_error) {
		/* The quoted packet travelled in either direction of a
		 * tracked connection. */
		e = bpf_map_lookup_elem(&conntrack, &f->inner);
		if (e && e->expires >= now)
			return CT_RELATED;
		ct_key_reverse(&rev, &f->inner);
		e = bpf_map_lookup_elem(&conntrack, &rev);
		if (e && e->expires >= now)
			return CT_RELATED;
	}
	return CT_NEW;
}

/* ct_create inserts the entry of a new, allowed connection. */
static __always_inline int ct_create(const struct ct_key *key, const struct flow *f,
				     __u32 src_id, __u32 dst_id)
{
	struct ct_entry e = {};

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
