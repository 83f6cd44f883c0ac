/* SPDX-License-Identifier: GPL-2.0 */
/* Drop, trace and policy-verdict notifications, and the metrics they feed.
 * Every drop of the datapath goes through drop_packet(). */
#pragma once

#include "maps.h"

static __always_inline void metrics_add(__u8 reason, __u8 dir, __u32 len)
{
	__u32 idx = ((__u32)reason << 2) | (dir & 3);
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &idx);

	if (m) {
		m->packets += 1;
		m->bytes += len;
	}
}

/* event_fill writes the event header. */
static __always_inline void event_fill(struct event_hdr *h, struct __sk_buff *skb, __u8 type,
				       __u8 code, __u8 dir, __u8 flags, __u32 src_id, __u32 dst_id,
				       __u16 ep_id, const struct flow *f, __u8 match, __u32 target)
{
	h->ktime_ns = bpf_ktime_get_ns();
	h->type = type;
	h->code = code;
	h->dir = dir;
	h->flags = flags;
	h->ifindex = skb->ifindex;
	h->src_identity = src_id;
	h->dst_identity = dst_id;
	h->ep_id = ep_id;
	h->aux = match;
	h->proto = f ? f->proto : 0;
	h->dport = f ? f->l4port : 0;
	h->orig_len = skb->len;
	h->target_ifindex = target;
	h->xlate = f ? f->xlate : 0;
	h->xlate_addr = f ? f->xlate_addr : 0;
	h->xlate_port = f ? f->xlate_port : 0;
	h->pad = 0;
	h->cap_len = 0;
}

static __always_inline void event_lost(void)
{
	__u32 idx = METRICS_EVENTS_LOST;
	struct metrics_value *m = bpf_map_lookup_elem(&metrics, &idx);

	if (m)
		m->packets += 1;
}

/* Waking the reader costs more than writing the record: wake it once every
 * EVENTS_WAKEUP_EVERY records; it polls for the rest. */
static __always_inline __u64 event_wakeup(void)
{
	return (bpf_ringbuf_query(&events, BPF_RB_PROD_POS) / EVENT_RECORD_SIZE) %
			       EVENTS_WAKEUP_EVERY == 0 ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* event_is_dns tells whether the packet is DNS over UDP (port 53 either
 * way), whose events carry EVENT_LONG_CAP_LEN bytes. */
static __always_inline int event_is_dns(const struct flow *f)
{
	return f && f->proto == IPPROTO_UDP &&
	       (f->sport == bpf_htons(53) || f->dport == bpf_htons(53));
}

/* event_submit copies a filled header and the first bytes of the packet
 * (EVENT_CAP_LEN, or EVENT_LONG_CAP_LEN when long is set) into a
 * ring-buffer record. It is a global function: the verifier checks it once
 * per object instead of at every drop, trace and verdict site of every
 * path, which is most of what loading a program costs. */
__attribute__((noinline)) int event_submit(struct __sk_buff *skb, const struct event_hdr *hdr,
					   int long_cap)
{
	__u32 cap;

	if (!skb || !hdr)
		return 0;
	cap = skb->len;
	if (long_cap) {
		struct event_long *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

		if (!ev) {
			event_lost();
			return 0;
		}
		__builtin_memcpy(&ev->h, hdr, sizeof(ev->h));
		if (cap > EVENT_LONG_CAP_LEN)
			cap = EVENT_LONG_CAP_LEN;
		if (cap > 0 && bpf_skb_load_bytes(skb, 0, ev->data, cap & 0x3ff) == 0)
			ev->h.cap_len = cap;
		bpf_ringbuf_submit(ev, event_wakeup());
		return 0;
	}

	struct event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		event_lost();
		return 0;
	}
	__builtin_memcpy(&ev->h, hdr, sizeof(ev->h));
	if (cap > EVENT_CAP_LEN)
		cap = EVENT_CAP_LEN;
	if (cap > 0 && bpf_skb_load_bytes(skb, 0, ev->data, cap & 0xff) == 0)
		ev->h.cap_len = cap;
	bpf_ringbuf_submit(ev, event_wakeup());
	return 0;
}

/* event_emit writes an event: the header from the arguments, then the
 * first bytes of the packet (more for DNS, see event_submit). */
static __always_inline void event_emit(struct __sk_buff *skb, __u8 type, __u8 code,
				       __u8 dir, __u8 flags, __u32 src_id, __u32 dst_id,
				       __u16 ep_id, const struct flow *f, __u8 match,
				       __u32 target)
{
	struct event_hdr h;

	event_fill(&h, skb, type, code, dir, flags, src_id, dst_id, ep_id, f, match, target);
	event_submit(skb, &h, event_is_dns(f));
}

/* drop_packet is the single exit of every drop: it counts the drop by
 * reason and direction, emits a drop event and returns TC_ACT_SHOT. */
static __always_inline int drop_packet(struct __sk_buff *skb, enum drop_reason reason,
				       __u8 dir, __u32 src_id, __u32 dst_id, __u16 ep_id,
				       const struct flow *f)
{
	metrics_add((__u8)reason, dir, skb->len);
	event_emit(skb, EVENT_DROP, (__u8)reason, dir, 0, src_id, dst_id, ep_id, f, 0, 0);
	return TC_ACT_SHOT;
}

/* trace_wanted applies monitor aggregation: with it on, only packets that
 * open, close or first answer a connection are traced. */
static __always_inline int trace_wanted(const struct node_config *cfg, __u8 ev_flags,
					const struct flow *f)
{
	if (!cfg || !(cfg->flags & CFG_MONITOR_AGGREGATION))
		return 1;
	if (ev_flags & EV_F_NEW)
		return 1;
	if (f && f->proto == IPPROTO_TCP &&
	    (f->tcp_flags & (0x01 | 0x02 | 0x04))) /* FIN, SYN, RST */
		return 1;
	return 0;
}

/* trace_forward counts a forwarded packet and emits one trace record for
 * its entry (from) and exit (to) observation points; the reader turns it
 * into two trace events. */
static __always_inline void trace_forward(struct __sk_buff *skb, const struct node_config *cfg,
					  __u8 from_obs, __u8 to_obs, __u8 dir, __u8 ev_flags,
					  __u32 src_id, __u32 dst_id, __u16 ep_id,
					  const struct flow *f, __u32 target)
{
	metrics_add(0, dir, skb->len);
	if (!trace_wanted(cfg, ev_flags, f))
		return;
	event_emit(skb, EVENT_TRACE, to_obs, dir, ev_flags, src_id, dst_id, ep_id, f, from_obs + 1,
		   target);
}

/* policy_verdict_emit reports a policy decision; reason is 0 when allowed,
 * else the drop reason (DROP_POLICY for default deny, DROP_POLICY_DENY for
 * a deny rule), carried in the event's code as Cilium's verdict
 * notification carries it. */
static __always_inline void policy_verdict_emit(struct __sk_buff *skb, __u8 pol_dir,
						enum drop_reason reason, __u8 match,
						__u32 remote_id, __u32 local_id, __u16 ep_id,
						const struct flow *f)
{
	__u8 dir = pol_dir == POL_INGRESS ? DIR_INGRESS : DIR_EGRESS;
	__u32 src = pol_dir == POL_INGRESS ? remote_id : local_id;
	__u32 dst = pol_dir == POL_INGRESS ? local_id : remote_id;

	event_emit(skb, EVENT_POLICY_VERDICT, (__u8)reason, dir, reason ? 0 : EV_F_ALLOWED, src,
		   dst, ep_id, f, match, 0);
}
