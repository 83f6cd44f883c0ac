/* SPDX-License-Identifier: GPL-2.0 */
/* Policy lookup. The control plane writes, per endpoint and direction, hash
 * entries at four port levels (exact port, 256-port block, any port of a
 * protocol, any protocol) for a specific peer identity or for any peer
 * (identity 0). It resolves deny precedence when it writes them, so the
 * first hit in most-specific-first order is the verdict. The endpoint's
 * levels bitmask (per direction and protocol) skips levels that hold no
 * entry: a lookup is at most eight hash probes whatever the number of
 * entries. */
#pragma once

#include "events.h"

/* proto_class indexes endpoint_info.levels: TCP, UDP, SCTP, ICMP. */
static __always_inline __u32 proto_class(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 0;
	case IPPROTO_UDP:
		return 1;
	case 132: /* SCTP */
		return 2;
	}
	return 3;
}

struct policy_result {
	__u8 allowed;
	__u8 deny_rule;   /* denied by a deny entry (vs default deny) */
	__u8 match_type;
	__u8 pad;
	__be16 proxy_port; /* allowed through the L7 proxy on this port */
};

static __always_inline struct policy_value *policy_probe(struct policy_key *k, __u8 levels,
							 __u8 bit, __u32 id, __u8 proto,
							 __u16 port, __u8 level)
{
	if (!(levels & (1 << bit)))
		return 0;
	k->identity = id;
	k->proto = proto;
	k->port = port;
	k->level = level;
	return bpf_map_lookup_elem(&policy, k);
}

/* policy_lookup judges traffic of direction dir between endpoint ep and a
 * peer of identity remote_id. It is a global function: the verifier checks
 * its eight probes once per object instead of on every path that judges a
 * packet. */
__attribute__((noinline)) int policy_lookup(const struct endpoint_info *ep, __u32 dir,
					    __u32 remote_id, const struct flow *f,
					    struct policy_result *res)
{
	struct policy_key k = {};
	struct policy_value *v;
	__u8 levels;
	__u16 port;

	if (!res)
		return 0;
	res->allowed = 0;
	res->deny_rule = 0;
	res->match_type = MATCH_NONE;
	res->proxy_port = 0;
	if (!ep || !f)
		return 0;
	levels = ep->levels[dir & 1][proto_class(f->proto)];
	port = f->l4port;
	k.ep_id = ep->ep_id;
	k.dir = dir;

	v = policy_probe(&k, levels, 0, remote_id, f->proto, port, POLICY_LEVEL_EXACT);
	if (!v)
		v = policy_probe(&k, levels, 1, remote_id, f->proto, port >> 8, POLICY_LEVEL_BLOCK);
	if (!v)
		v = policy_probe(&k, levels, 2, remote_id, f->proto, 0, POLICY_LEVEL_PROTO);
	if (!v)
		v = policy_probe(&k, levels, 3, remote_id, 0, 0, POLICY_LEVEL_ANY);
	if (!v)
		v = policy_probe(&k, levels, 4, 0, f->proto, port, POLICY_LEVEL_EXACT);
	if (!v)
		v = policy_probe(&k, levels, 5, 0, f->proto, port >> 8, POLICY_LEVEL_BLOCK);
	if (!v)
		v = policy_probe(&k, levels, 6, 0, f->proto, 0, POLICY_LEVEL_PROTO);
	if (!v)
		v = policy_probe(&k, levels, 7, 0, 0, 0, POLICY_LEVEL_ANY);
	if (!v)
		return 0;
	res->match_type = v->match_type;
	if (v->deny) {
		res->deny_rule = 1;
		return 0;
	}
	res->allowed = 1;
	res->proxy_port = v->proxy_port;
	return 0;
}

/* policy_enforce runs the policy of one endpoint and direction for a packet
 * of a new or established (not reply) connection. It returns 0 when the
 * packet may pass, or the drop reason. When the allowing entry carries a
 * proxy port, *proxy_port is set to it (network order; 0 otherwise). A
 * verdict event is emitted for the first packet of a connection and for
 * every denied packet. */
static __always_inline int policy_enforce(struct __sk_buff *skb, const struct endpoint_info *ep,
					  __u8 dir, __u32 remote_id, const struct flow *f,
					  int is_new, __be16 *proxy_port)
{
	__u8 flag = dir == POL_INGRESS ? EP_F_INGRESS_ENFORCED : EP_F_EGRESS_ENFORCED;
	struct policy_result res;
	enum drop_reason reason;

	*proxy_port = 0;
	if (!(ep->flags & flag))
		return 0;
	policy_lookup(ep, dir, remote_id, f, &res);
	*proxy_port = res.proxy_port;
	/* A deny rule's drop is Cilium's DROP_POLICY_DENY (181, "Policy denied
	 * by denylist"); no allowing entry is DROP_POLICY (133). */
	reason = res.allowed ? 0 : res.deny_rule ? DROP_POLICY_DENY : DROP_POLICY;
	if (is_new || reason)
		policy_verdict_emit(skb, dir, reason, res.match_type, remote_id, ep->identity,
				    ep->ep_id, f);
	return reason;
}
