/* SPDX-License-Identifier: GPL-2.0 */
/* Wrappers for the tests and for the dry runs of podlab trace, never
 * attached to a device. BPF_PROG_TEST_RUN cannot hand a program an skb with
 * tunnel metadata, nor show the metadata it left, so these wrap the handlers:
 *  - test_tunnel_probe runs from-container, then reads back the tunnel key
 *    it set (the remote node comes back as local_ipv4, the key's destination
 *    address) into the tunnel_probe map;
 *  - test_overlay_probe sets the tunnel key a VXLAN device would attach to a
 *    received packet (VNI and remote node from the overlay_input map; VNI
 *    0xffffffff means no tunnel metadata at all), then runs from-overlay. */
#define NO_PROGRAM_SECTION
#include "from_container.c"
#include "from_overlay.c"

struct tunnel_probe_result {
	__u32 ret;
	__s32 key_ret;   /* 0 when bpf_skb_get_tunnel_key succeeded */
	__u32 remote_ipv4;
	__u32 tunnel_id;
	__u32 ttl;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tunnel_probe_result);
} tunnel_probe SEC(".maps");

struct overlay_input {
	__u32 vni;
	__u32 remote_ipv4; /* host order */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct overlay_input);
} overlay_input SEC(".maps");

SEC("tc")
int test_tunnel_probe(struct __sk_buff *skb)
{
	struct tunnel_probe_result *r;
	struct bpf_tunnel_key key = {};
	__u32 zero = 0;
	int ret = handle_from_container(skb);

	r = bpf_map_lookup_elem(&tunnel_probe, &zero);
	if (!r)
		return ret;
	r->ret = ret;
	r->key_ret = bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0);
	r->remote_ipv4 = key.local_ipv4;
	r->tunnel_id = key.tunnel_id;
	r->ttl = key.tunnel_ttl;
	return ret;
}

SEC("tc")
int test_overlay_probe(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct overlay_input *in;
	__u32 zero = 0;

	in = bpf_map_lookup_elem(&overlay_input, &zero);
	if (in && in->vni != 0xffffffff) {
		key.remote_ipv4 = in->remote_ipv4;
		key.tunnel_id = in->vni;
		if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 0) < 0)
			return TC_ACT_SHOT;
	}
	return handle_from_overlay(skb);
}

char _license[] SEC("license") = "GPL";
