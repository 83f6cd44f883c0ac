/* SPDX-License-Identifier: GPL-2.0 */
/* Test-only program, never attached: BPF_PROG_TEST_RUN repeats one packet,
 * so every run after the first would be an established connection. To
 * measure the first packet of a connection, lb_bench_first gives each run a
 * new TCP source port (a per-CPU counter, checksum fixed) before running
 * from-container: every run opens a new connection. */
#define NO_PROGRAM_SECTION
#include "from_container.c"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lb_bench_port SEC(".maps");

SEC("tc")
int lb_bench_first(struct __sk_buff *skb)
{
	__u32 zero = 0, *ctr = bpf_map_lookup_elem(&lb_bench_port, &zero);
	__be16 old, port;

	if (!ctr || bpf_skb_load_bytes(skb, L4_SPORT_OFF, &old, 2) < 0)
		return TC_ACT_SHOT;
	*ctr += 1;
	port = bpf_htons(1024 + (*ctr % 64000));
	if (bpf_l4_csum_replace(skb, ETH_HLEN_ + IP_HLEN + 16, old, port, 2) < 0 ||
	    bpf_skb_store_bytes(skb, L4_SPORT_OFF, &port, 2, 0) < 0)
		return TC_ACT_SHOT;
	return handle_from_container(skb);
}

char _license[] SEC("license") = "GPL";
