// Package pcap captures packets on lab devices and proves what they carried.
//
// It has four parts that build on each other:
//
//   - Capture: an AF_PACKET socket bound to one device inside one lab
//     namespace (pure Go, no libpcap), recording both directions with
//     nanosecond timestamps. Start returns once the socket is bound, so
//     traffic sent afterwards is never missed; Stop drains what the kernel
//     already queued.
//   - pcapng: a writer with one interface block per device (named
//     "<node>/<device>" or "<pod>/eth0"), nanosecond resolution, per-packet
//     comments and direction flags, and a reader for the files it writes.
//   - Match and Filter: a user-facing packet description (with YAML tags, so
//     scenarios can state it) over decoded layers, VXLAN inner frames
//     included, with lab names resolved through a Resolver.
//   - Assertions and Gomega matchers: a packet matching M appears on a device
//     (exactly / at least / at most n times), none does, nothing else does,
//     several appear in order. A failure is an *AssertionError that carries
//     the nearest packets actually seen and the pcapng file to open.
package pcap
