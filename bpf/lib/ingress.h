/* SPDX-License-Identifier: GPL-2.0 */
/* The verdict on a packet entering a local endpoint, shared by every path
 * that delivers to a pod from outside it (from-overlay, to-container,
 * NodePort to a local backend). */
#ifndef PODLAB_INGRESS_H
#define PODLAB_INGRESS_H

#include "common.h"
#include "conntrack.h"
#include "policy.h"
#include "lb.h"

/* ingress_verdict runs conntrack for a packet from src_id to the local
 * endpoint dst. A reply (or related ICMP error) passes without a policy
 * lookup; with reverse set, a reply of a load-balanced connection gets its
 * frontend back. Anything else goes through dst's ingress policy, and a new
 * allowed connection gets its conntrack entry (remembering nat, when not
 * NULL). It returns 0 with *evf set for the trace event, or the verdict of
 * the drop it recorded. */
static __always_inline int ingress_verdict(struct __sk_buff *skb, struct flow *f,
					   const struct endpoint_info *dst, __u32 src_id,
					   const struct lb_nat *nat, int reverse, __u8 *evf)
{
	struct ct_entry *ct;
	struct ct_key key;
	enum ct_status st;
	__u8 first;
	int ret;

	st = ct_lookup(f, &key, &first, &ct);
	*evf = st == CT_NEW ? EV_F_NEW : 0;
	if (st == CT_REPLY || st == CT_RELATED) {
		*evf |= EV_F_REPLY;
		if (reverse) {
			ret = lb_reverse(skb, f, ct);
			if (ret)
				return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity,
						   dst->ep_id, f);
		}
		return 0;
	}
	ret = policy_enforce(skb, dst, POL_INGRESS, src_id, f, st == CT_NEW);
	if (ret)
		return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, f);
	if (st == CT_NEW) {
		ret = ct_create(&key, first, f, src_id, dst->identity, nat ? nat->addr : 0,
				nat ? nat->port : 0);
		if (ret)
			return drop_packet(skb, ret, DIR_INGRESS, src_id, dst->identity, dst->ep_id, f);
	}
	return 0;
}

#endif
