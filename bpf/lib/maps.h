/* SPDX-License-Identifier: GPL-2.0 */
/* Every map of the datapath, declared once. Each program object includes
 * this header; the loader creates the maps once per node (pinned under the
 * lab's bpffs directory) and hands them to every object it loads. */
#pragma once

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, struct endpoint_info);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct lb_backend_key);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

/* Client tuple (original direction, towards the frontend) -> backend. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct lb_backend);
} lb_affinity SEC(".maps");

/* NodePort SNAT: client tuple (client -> node:nodePort) and reply tuple
 * (backend -> node:natPort) of connections forwarded to remote backends. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct nodeport_nat);
} nodeport_fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct nodeport_nat);
} nodeport_rev SEC(".maps");

/* Addresses the node announces on the underlay (LoadBalancer and external
 * IPs whose lease it holds): from-netdev answers ARP requests for them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct l2_responder_key);
	__type(value, struct l2_responder_entry);
} l2_responder SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, METRICS_ENTRIES);
	__type(key, __u32);
	__type(value, struct metrics_value);
} metrics SEC(".maps");

#define EVENTS_WAKEUP_EVERY 64
/* Ring-buffer space of one event: 8-byte record header, rounded to 8. */
#define EVENT_RECORD_SIZE ((sizeof(struct event) + 8 + 7) / 8 * 8)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

static __always_inline struct node_config *node_config(void)
{
	__u32 zero = 0;
	struct node_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || !cfg->configured)
		return 0;
	return cfg;
}
