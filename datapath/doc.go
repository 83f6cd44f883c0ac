// Package datapath is the Go side of podlab's eBPF datapath (C sources in
// ../bpf): it loads one set of maps and programs per node, attaches them to
// the node's devices and owns the maps that the control plane fills.
//
// # Programs
//
// One BPF object per attachment role, all sharing the node's maps:
//
//   - from-container (tc ingress of a pod's host-side lxc veth): parse,
//     conntrack, egress policy of the source endpoint, then deliver to a
//     local pod (its ingress policy, MAC rewrite, bpf_redirect_peer), into
//     the overlay (tunnel key: remote node from the ipcache, VNI = the source
//     security identity; redirect to cilium_vxlan), or to the host stack.
//   - from-overlay (tc ingress of cilium_vxlan): source identity from the
//     VNI, ingress policy of the destination endpoint, redirect into it.
//   - to-container (tc egress of the lxc veth): ingress policy for traffic
//     the host stack routes to a pod (host, remote-node or world identity).
//   - from-netdev (tc ingress of eth0) and from-host (tc egress of
//     cilium_host): NodePort, hostPort and the node's own ClusterIP traffic
//     (see Services below).
//
// Two more objects are never attached to a device: tunnel-probe wraps
// from-container and from-overlay for BPF_PROG_TEST_RUN with tunnel
// metadata (tests and podlab trace's dry runs), and lb-bench measures the
// service lookup.
//
// Services (Datapath.UpsertService): a pod's packet to a TCP/UDP service
// frontend is translated to a backend in from-container, before policy, so
// policy judges the backend; the backend is pinned per connection
// (lb_affinity) and replies get the frontend back as source wherever the
// reply enters (from-container for local backends, from-overlay for remote
// ones). A frontend without backends drops with "Service backend not found"
// and answers a TCP SYN with a RST (a UDP datagram with ICMP port
// unreachable), so clients fail at once. from-netdev (eth0 ingress) serves
// NodePort and hostPort frontends: a local backend gets DNAT only, a remote
// one DNAT plus SNAT to the node's address and goes through the tunnel; the
// reply is translated back and leaves eth0. from-host (cilium_host egress)
// translates ClusterIP traffic of the node's own sockets and hostNetwork
// pods, which a route for the service CIDR sends there. A pod reaching
// itself through its service is SNATed to 169.254.42.1 (hairpin). Under
// externalTrafficPolicy: Local a frontend has two scopes, as on Cilium:
// from-netdev (clients in the network) uses the external one, the node's
// own backends; from-container and from-host (pods, the node) use the
// internal one, all the Service's backends (Service.ClusterBackends).
// A pod's connection to another node's NodePort (an address with the
// remote-node identity) is load-balanced in from-container through the
// node's 0.0.0.0:nodePort frontend, as Cilium's bpf_lxc wildcard lookup
// does.
//
// Every drop goes through one BPF function that counts it by Cilium's drop
// reason code and direction and emits a DropEvent with the first 128 bytes
// of the packet; every forward emits TraceEvents with the observation
// points it leaves and enters; every policy decision for a new connection
// (and every denial) emits a PolicyVerdictEvent.
//
// # Maps
//
// Pinned under /sys/fs/bpf/podlab/<lab>/<node>/: config, endpoints (IPv4 →
// endpoint), ipcache (LPM prefix → identity, tunnel endpoint), policy (hash,
// at most eight probes per lookup whatever its size), conntrack (LRU,
// canonical tuple: one lookup per packet), metrics (per-CPU) and events
// (ring buffer), and the service maps lb_services, lb_backends and
// lb_affinity. Links are pinned under links/ so that a datapath outlives
// the process that loaded it; Load in another process takes it over and
// Reload swaps programs without touching maps (conntrack survives).
//
// # Kernel requirements
//
// Developed and tested on Linux 6.18. The oldest kernel expected to work is
// 5.19: bpf_redirect_peer (5.10), ring buffers (5.8), the batch map
// operations used for large policies (5.6, with a per-entry fallback) and
// the local_ipv4 field of struct bpf_tunnel_key used by the tunnel-key test
// program (5.19; the attached programs only need 4.x tunnel-key helpers).
// Attachment uses tcx links (6.6); on older kernels Load falls back to a
// clsact qdisc with direct-action bpf filters (NodeConfig.ForceNetlink
// selects the fallback explicitly; those attachments are not pinned, they
// live as long as the device). Labs use the netlink attachment by default
// (the control plane sets ForceNetlink unless asked for tcx): each tcx
// attach and detach waits for an RCU grace period, which made a 300-pod lab
// take seconds instead of tenths. NodeConfig.NoRedirectPeer replaces
// bpf_redirect_peer by a redirect to the lxc veth (to-container then lets
// the already judged packet pass by its mark) for kernels or setups where
// peer redirection is unavailable.
//
// # Limits
//
// IPv4 only: IPv6 is dropped as "Unsupported L3 protocol"; IPv4 options are
// dropped as "Invalid packet" and fragments as "IP fragmentation not
// supported". Services: IPv4 TCP/UDP only (no SCTP); a node reaching a
// NodePort or hostPort on its own address is not translated (that traffic
// never crosses eth0 or cilium_host); ClusterIP backends outside the pod
// network are unroutable from node namespaces.
package datapath
