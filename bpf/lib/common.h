/* SPDX-License-Identifier: GPL-2.0 */
/* Common definitions of the podlab datapath: constants shared with the Go
 * loader (package datapath mirrors every value here), packet layout helpers and
 * the node configuration. */
#pragma once

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* ICMPv4 header (linux/icmp.h pulls in libc headers). */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
	} un;
};

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_SOURCE_QUENCH 4
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Drop reasons: Cilium's numeric codes (bpf/lib/common.h, reported as the
 * positive number in metrics and events). Only the ones this datapath can
 * produce are listed. */
enum drop_reason {
	DROP_INVALID_SIP = 132,     /* Invalid source ip */
	DROP_POLICY = 133,          /* Policy denied */
	DROP_INVALID = 134,         /* Invalid packet */
	DROP_CT_INVALID_HDR = 135,  /* CT: Truncated or invalid header */
	DROP_UNKNOWN_L3 = 139,      /* Unsupported L3 protocol */
	DROP_WRITE_ERROR = 141,     /* Error writing to packet */
	DROP_UNKNOWN_L4 = 142,      /* Unknown L4 protocol */
	DROP_NO_TUNNEL_KEY = 147,   /* Error retrieving tunnel key */
	DROP_UNROUTABLE = 151,      /* Stale or unroutable IP */
	DROP_CSUM_L3 = 153,         /* Error while correcting L3 checksum */
	DROP_CT_CREATE_FAILED = 155,/* CT: Map insertion failed */
	DROP_FRAG_NOSUPPORT = 157,  /* IP fragmentation not supported */
	DROP_NO_SERVICE = 158,      /* Service backend not found */
	DROP_NO_CONFIG = 165,       /* No configuration available to perform policy decision */
	DROP_UNSUPPORTED_L2 = 166,  /* Unsupported L2 protocol */
	DROP_INVALID_IDENTITY = 171,/* Invalid identity */
	DROP_PROXY_LOOKUP_FAILED = 178, /* Socket lookup failed */
	DROP_PROXY_SET_FAILED = 179,/* Socket assign failed */
	DROP_PROXY_UNKNOWN_PROTO = 180, /* Proxy redirection not supported for protocol */
	DROP_POLICY_DENY = 181,     /* Policy denied by denylist */
};

/* Observation points of trace events, numbered as Cilium's TRACE_* values. */
enum obs_point {
	OBS_TO_ENDPOINT = 0,
	OBS_TO_PROXY = 1,
	OBS_TO_HOST = 2,
	OBS_TO_STACK = 3,
	OBS_TO_OVERLAY = 4,
	OBS_FROM_ENDPOINT = 5,
	OBS_FROM_PROXY = 6,
	OBS_FROM_HOST = 7,
	OBS_FROM_STACK = 8,
	OBS_FROM_OVERLAY = 9,
	OBS_FROM_NETWORK = 10,
	OBS_TO_NETWORK = 11,
};

/* Traffic direction, as Cilium's metrics count it. */
enum traffic_dir {
	DIR_UNKNOWN = 0,
	DIR_INGRESS = 1,
	DIR_EGRESS = 2,
};

/* Policy directions used in policy keys (policy.Ingress / policy.Egress). */
enum policy_dir {
	POL_INGRESS = 0,
	POL_EGRESS = 1,
};

/* Reserved identities (datapath/identity). */
#define ID_UNKNOWN 0
#define ID_HOST 1
#define ID_WORLD 2
#define ID_REMOTE_NODE 6

/* skb->mark value set on packets that a redirect path already judged, so
 * that to-container does not judge them a second time. */
#define MARK_JUDGED 0x0c1a0000

/* L7 proxy marks, Cilium's MARK_MAGIC_* values (bpf/lib/common.h there).
 * The magic lives in bits 8-11 (mask 0x0F00):
 *  - TO_PROXY: set by the datapath on a packet it hands to the node's proxy
 *    (the proxy port in the upper 16 bits); a rule in the node namespace
 *    (fwmark 0x200/0xf00 lookup 2004, table 2004: local 0/0 dev lo) delivers
 *    it locally whatever its destination address.
 *  - PROXY_INGRESS / PROXY_EGRESS: set by the proxy (SO_MARK) on what it
 *    sends, with the source identity as Cilium encodes it (low 16 bits in
 *    the upper half, bits 16-23 in the low byte); a rule (fwmark
 *    0xa00/0xe00 lookup 2005, table 2005: default via cilium_host) routes it
 *    through cilium_host, whose egress program delivers it without running
 *    the source's egress policy again. */
#define MARK_MAGIC_HOST_MASK     0x0F00
#define MARK_MAGIC_TO_PROXY      0x0200
#define MARK_MAGIC_PROXY_INGRESS 0x0A00
#define MARK_MAGIC_PROXY_EGRESS  0x0B00

/* Config flags. */
#define CFG_MONITOR_AGGREGATION (1 << 0) /* trace only connection-relevant packets */
#define CFG_NO_REDIRECT_PEER    (1 << 1) /* use bpf_redirect to the lxc instead of redirect_peer */
#define CFG_HAS_SERVICES        (1 << 2) /* the lb_services map is not empty */
#define CFG_HAS_EXTERNAL        (1 << 3) /* LoadBalancer or external IP frontends exist */
#define CFG_HAS_L2_ANNOUNCE     (1 << 4) /* the l2_responder map is not empty */

/* Node configuration, one entry in the config map. */
struct node_config {
	__be32 node_ip;
	__be32 router_ip;
	__u32 vxlan_ifindex;
	__u32 host_ifindex;
	__u32 eth0_ifindex;
	__u32 host_identity;
	__u32 flags;
	__u32 configured; /* 1 once the loader wrote the entry */
};

/* One local endpoint (pod), keyed by its IPv4 address. */
struct endpoint_info {
	__u32 ifindex;        /* host-side lxc veth, node namespace */
	__u32 identity;
	__u8 pod_mac[6];
	__u8 lxc_mac[6];
	__u16 ep_id;
	__u8 flags;           /* EP_F_* */
	__u8 pad;
	/* Per policy direction and protocol class (TCP, UDP, SCTP, ICMP): one
	 * bit per probe (identity level * 4 + port level) that has entries. */
	__u8 levels[2][4];
};

#define EP_F_INGRESS_ENFORCED (1 << 0)
#define EP_F_EGRESS_ENFORCED  (1 << 1)

/* ipcache: LPM prefix -> identity and tunnel endpoint. */
struct ipcache_key {
	__u32 prefixlen;
	__be32 addr;
};

struct ipcache_value {
	__u32 identity;
	__be32 tunnel_ep; /* node IP of the remote node, 0 when not tunnelled */
};

/* Policy map: a hash probed at a few wildcard levels.
 * level: 0 = exact port, 1 = port block (port >> 8), 2 = any port of proto,
 * 3 = any protocol. identity 0 is the wildcard identity. */
struct policy_key {
	__u32 identity;
	__u16 ep_id;
	__u16 port;   /* host order: port, port>>8, or 0 */
	__u8 dir;
	__u8 proto;
	__u8 level;
	__u8 pad;
};

#define POLICY_LEVEL_EXACT 0
#define POLICY_LEVEL_BLOCK 1
#define POLICY_LEVEL_PROTO 2
#define POLICY_LEVEL_ANY   3

struct policy_value {
	__u8 deny;
	__u8 match_type;
	__be16 proxy_port; /* != 0: allowed, redirected to the node's L7 proxy on this port */
};

/* Policy match types, Cilium's POLICY_MATCH_* numbering. */
enum policy_match {
	MATCH_NONE = 0,
	MATCH_L3_ONLY = 1,
	MATCH_L3_L4 = 2,
	MATCH_L4_ONLY = 3,
	MATCH_ALL = 4,
	MATCH_L3_PROTO = 5,
	MATCH_PROTO_ONLY = 6,
};

/* Conntrack: keyed by the connection's tuple in canonical order (the lower
 * address/port side first), so that one lookup finds a connection from
 * either direction; orig_first says which side opened it. */
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct ct_entry {
	__u32 expires;      /* seconds since boot */
	__u32 src_identity;
	__u32 dst_identity;
	__u8 tx_flags;      /* TCP flags seen in the original direction */
	__u8 rx_flags;      /* TCP flags seen in the reply direction */
	__u8 closing;
	__u8 seen_reply;
	__u8 orig_first;    /* 1 when the originator is the key's first side */
	__u8 ct_flags;      /* CT_F_* */
	__be16 proxy_port;  /* CT_F_PROXY_REDIRECT: the proxy port of the connection */
	/* Service connections: the frontend the originator addressed, put
	 * back as the source of replies (0 when not load-balanced). */
	__be32 nat_addr;
	__be16 nat_port;
	__u16 nat_flags;    /* CT_NAT_F_* */
};

/* ct_entry.nat_flags: the connection is a pod reaching itself through a
 * service (hairpin); its source was rewritten to LB_LOOPBACK_IP. */
#define CT_NAT_F_LOOPBACK (1 << 0)

/* ct_entry.ct_flags: the originator's packets go to the node's L7 proxy
 * (replies come back from the proxy's socket); the connection was opened
 * by the proxy (its replies go to the proxy's socket in the node stack). */
#define CT_F_PROXY_REDIRECT (1 << 0)
#define CT_F_PROXY_UPSTREAM (1 << 1)

#define CT_LIFETIME_SYN      60
#define CT_LIFETIME_TCP      21600
#define CT_LIFETIME_CLOSE    10
#define CT_LIFETIME_NONTCP   60

/* Load-balancing: service frontends, their backends by slot (1..count),
 * and the backend each connection to a frontend was given.
 *
 * Scopes: a frontend is looked up in its external scope (LB_SCOPE_EXT)
 * first. Under externalTrafficPolicy: Local the external scope holds the
 * node's own backends and carries LB_F_TWO_SCOPES; its internal scope
 * (LB_SCOPE_INT) holds all the Service's backends. Traffic from inside the
 * cluster (pods, the node itself) is served from the internal scope, traffic
 * from the network from the external one, as kube-proxy and Cilium do. */
#define LB_SCOPE_EXT 0
#define LB_SCOPE_INT 1

struct lb_service_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 scope;       /* LB_SCOPE_* */
};

struct lb_service {
	__u16 count;      /* backends in slots 1..count; 0: no backend */
	__u16 flags;      /* LB_F_*, informational for the datapath */
	__be16 proxy_port; /* L7 load-balancer (CiliumEnvoyConfig): the proxy
			    * listener that takes the frontend's connections,
			    * network order; 0: load-balanced here */
	__u16 pad2;
};

#define LB_F_CLUSTERIP (1 << 0)
#define LB_F_NODEPORT  (1 << 1)
#define LB_F_HOSTPORT  (1 << 2)
#define LB_F_LOCAL     (1 << 3) /* externalTrafficPolicy: Local */
#define LB_F_LOADBALANCER (1 << 4) /* a LoadBalancer ingress IP */
#define LB_F_EXTERNALIP   (1 << 5) /* one of spec.externalIPs */
#define LB_F_EXTERNAL     (LB_F_LOADBALANCER | LB_F_EXTERNALIP)
#define LB_F_TWO_SCOPES   (1 << 6) /* an internal scope exists (LB_SCOPE_INT) */

/* L2 announcements: an address this node answers ARP requests for on one
 * device (the node holds the address's lease). */
struct l2_responder_key {
	__be32 addr;
	__u32 ifindex;
};

struct l2_responder_entry {
	__u8 mac[6];      /* the device's MAC, the answer's sender address */
	__u16 pad;
	__u64 responses;  /* ARP replies sent */
};

/* NodePort connections forwarded to a backend on another node: the source
 * becomes the node's address and a NAT port, so replies come back here. */
struct nodeport_nat {
	__be32 client_addr;
	__be32 frontend_addr;
	__be32 backend_addr;
	__be32 tunnel_ep;
	__be16 client_port;
	__be16 frontend_port;
	__be16 backend_port;
	__be16 nat_port;
	__u32 last_seen;  /* seconds since boot */
};

struct lb_backend_key {
	__be32 addr;      /* frontend */
	__be16 port;
	__u8 proto;
	__u8 scope;       /* LB_SCOPE_* of the frontend */
	__u32 slot;
};

struct lb_backend {
	__be32 addr;
	__be16 port;
	__u16 pad;
};

/* Metrics: per-CPU array indexed by reason * 4 + traffic direction. */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};
#define METRICS_ENTRIES (256 * 4)
/* The last metrics slot counts events lost because the ring buffer was full. */
#define METRICS_EVENTS_LOST (METRICS_ENTRIES - 1)

/* Events written to the ring buffer. */
enum event_type {
	EVENT_DROP = 1,
	EVENT_TRACE = 2,
	EVENT_POLICY_VERDICT = 3,
};

/* Packet bytes an event carries: EVENT_CAP_LEN for every packet, and
 * EVENT_LONG_CAP_LEN for DNS (UDP port 53) so that answers decode whole. */
#define EVENT_CAP_LEN 128
#define EVENT_LONG_CAP_LEN 512

#define EV_F_REPLY   (1 << 0)
#define EV_F_NEW     (1 << 1)
#define EV_F_ALLOWED (1 << 2)

/* Puts the enums the Go side shares (drop reasons, observation points,
 * event types) into every object's BTF, so that bpf2go -type generates
 * their Go constants (datapath/gen.go): one definition, in C. Never called;
 * cilium/ebpf links only the .text functions a program calls. */
int podlab_btf_enums(enum drop_reason r, enum obs_point o, enum event_type e)
{
	return r + o + e;
}

/* What the program translated, recorded with the event so that observation
 * points before the translation show the packet as it was there. */
enum xlate_kind {
	XLATE_NONE = 0,
	XLATE_DNAT = 1,   /* service: xlate_addr/port were the destination (frontend) */
	XLATE_REVNAT = 2, /* reply: xlate_addr/port were the source (backend) */
};

struct event_hdr {
	__u64 ktime_ns;
	__u8 type;
	__u8 code;          /* drop reason or observation point */
	__u8 dir;           /* traffic_dir */
	__u8 flags;         /* EV_F_* */
	__u32 ifindex;
	__u32 src_identity;
	__u32 dst_identity;
	__u16 ep_id;
	__u8 aux;           /* verdicts: match type; traces: 1 + entry observation point, 0 if none */
	__u8 proto;
	__u16 dport;        /* host order; ICMP type for ICMP */
	__u16 cap_len;
	__u32 orig_len;
	__u32 target_ifindex;
	__be32 xlate_addr;  /* enum xlate_kind */
	__be16 xlate_port;
	__u8 xlate;
	__u8 pad;
};

struct event {
	struct event_hdr h;
	__u8 data[EVENT_CAP_LEN];
};

struct event_long {
	struct event_hdr h;
	__u8 data[EVENT_LONG_CAP_LEN];
};

/* Parsed IPv4 packet. */
struct flow {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;       /* conntrack ports (ICMP echo: identifier) */
	__be16 dport;
	__u16 l4port;       /* policy port, host order (ICMP: type) */
	__u8 proto;
	__u8 tcp_flags;
	__u8 ttl;
	__u8 icmp_error;    /* 1 when the packet is an ICMP error with an inner tuple */
	__u16 pad;
	struct ct_key inner; /* ICMP errors: tuple of the offending packet */
	__be32 xlate_addr;   /* see enum xlate_kind */
	__be16 xlate_port;
	__u8 xlate;
	__u8 pad2;
};

#define ETH_HLEN_ 14
#define IP_HLEN 20
