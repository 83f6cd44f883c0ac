// Package trace walks a packet through a running lab the way an expert
// would by hand, and names the first thing that stops it (podlab trace),
// and says who owns an address (podlab whois).
//
// # The walk
//
// Run starts in the source namespace and follows one crafted packet (ICMP
// echo, TCP SYN or UDP datagram, DF set) with the kernel's own answers,
// printing one Hop per lookup or decision:
//
//   - route: netlink RouteGet inside the namespace (with the source address,
//     and with the input interface for a forwarded packet, so that the
//     kernel's reverse-path filter and forwarding switches decide as they
//     would for the real packet);
//   - neigh: the neighbour entry of the next hop; without a usable entry the
//     walk predicts ARP by sending a broadcast through the same machinery
//     and seeing who would answer (NOARP devices, arp_ignore);
//   - dev: what the egress device is: a veth (its peer, found by ifindex and
//     link-netnsid among the lab's namespaces), a VXLAN device (VNI, UDP
//     port, remote, and the namespace its socket lives in, which for a device
//     moved across namespaces is where it was created), a bridge (the port
//     the destination MAC is learned on in its FDB, or a flood, of which the
//     walk follows the branch that gets somewhere);
//   - tc: u32 mirred filters on each hook, followed to their target;
//   - bpf and policy: the verdict of every BPF program attached to the hook
//     (tcx, or a classic tc bpf filter); see below;
//   - the receiving device's MAC check: a frame whose destination MAC is not
//     the receiver's is what the kernel drops (PACKET_OTHERHOST), and the
//     anomaly then names the neighbour entry that chose that MAC.
//
// A VXLAN hop continues with the outer UDP packet from the socket's
// namespace (with DF as the device's df policy sets it, so an oversized
// outer packet is fragmented or dropped as the kernel would); on arrival
// the device whose socket listens on that port (and VNI) decapsulates it.
// A TCP or UDP packet that arrives needs a listening socket for its port
// (read from /proc/thread-self/net inside the namespace). When the request arrives, the reply is walked back
// from there. The walk ends at the first anomaly (Result.Anomaly, one
// sentence) or where the packet arrives (Result.Reached).
//
// # BPF verdicts without side effects
//
// Judging a packet means running the attached program on it, but the
// attached program writes to the node's maps: conntrack (new entries,
// refreshed timers and flags), service affinity, NodePort state, metrics
// counters and the event ring buffer. datapath.DryRunner avoids all of that:
// it loads a fresh copy of the program from podlab's embedded object (for
// from-container and from-overlay, the test wrapper that reads back or
// supplies the tunnel metadata around the same handler), hands it the
// attached program's own maps (found through the program's map IDs) for
// what the programs only read (config, endpoints, ipcache, policy, service
// frontends and backends), and scratch maps for everything they write:
// conntrack and affinity maps seeded with the live entries between the
// packet's two addresses, fresh metrics and a small private ring buffer,
// whose events (drop reason, trace observation points, policy verdict) the
// walk reads to explain the verdict. The copy runs once with
// BPF_PROG_TEST_RUN on a thread inside the node's namespace with the
// device's ifindex in the skb, as on the real hook; a redirect only sets
// the run's return code. Conntrack entries the copy creates are carried to
// the next dry runs on the same node, so the reply is judged as a reply.
// The deciding policy entry is then looked up read-only in the live policy
// map the way bpf/lib/policy.h probes it. The result notes when the
// attached program's instructions differ from the embedded object's
// (another podlab build), since the verdict may then differ.
//
// Nothing else in the walk writes either: netlink dumps and route lookups,
// sysctl reads, FDB and neighbour reads. The package's specs snapshot every
// pinned map (conntrack and metrics included), the ring buffers, neighbour
// and FDB tables, links and tc counters before and after tracing and
// require them equal.
//
// # Live probes
//
// Live sends one real probe from the source namespace (ICMP echo, TCP
// connect or UDP datagram) while capturing (package pcap, AF_PACKET) on
// every device of the computed path, and reports on which devices the
// request and reply were seen and where the request vanished. Unlike Run,
// a live probe is real traffic and changes what real traffic changes.
//
// # Limits
//
// IPv4 only. Devices other than veth, bridge, VXLAN, dummy and loopback
// are reported as "not supported yet". Policy routing rules are honoured by
// the kernel's route lookups but marks set by tc or BPF are not. BPF
// programs other than podlab's are listed without a verdict; netfilter
// (iptables/nftables) rules are not evaluated. A bridge flood is followed
// along the branch that gets furthest.
package trace
