package trace

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podlab/podlab/topo"
)

// direct is two namespaces on one veth: a0 10.0.0.1/24 -- b0 10.0.0.2/24.
const direct = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: direct}
namespaces:
  - name: a
  - name: b
%[1]s
links:
  - a: {ns: a, name: a0, addresses: [10.0.0.1/24]}
    b: {ns: b, name: b0, addresses: [10.0.0.2/24]}
`

func arpOff(r *topo.Raw, short, dev string) {
	h, err := ns(r, short).Handle()
	Expect(err).NotTo(HaveOccurred())
	defer h.Close()
	ln, err := h.LinkByName(dev)
	Expect(err).NotTo(HaveOccurred())
	Expect(h.LinkSetARPOff(ln)).To(Succeed())
}

// vxlanPair is two hosts on an underlay with a point-to-point VXLAN tunnel
// carrying 10.9.0.0/24; %[1]s and %[2]s are the UDP ports of each end.
const vxlanPair = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: vxlan-pair}
namespaces:
  - name: h1
    devices:
      - {name: vx, kind: vxlan, vni: 42, port: %[1]s, remote: 192.168.50.2, mac: "02:00:00:00:00:01", addresses: [10.9.0.1/24]}
    neighbours:
      - {ip: 10.9.0.2, mac: "02:00:00:00:00:02", dev: vx}
  - name: h2
    devices:
      - {name: vx, kind: vxlan, vni: 42, port: %[2]s, remote: 192.168.50.1, mac: "02:00:00:00:00:02", addresses: [10.9.0.2/24]}
    neighbours:
      - {ip: 10.9.0.1, mac: "02:00:00:00:00:01", dev: vx}
links:
  - a: {ns: h1, name: eth0, addresses: [192.168.50.1/24]}
    b: {ns: h2, name: eth0, addresses: [192.168.50.2/24]}
`

// asym: b is reached from r over r1-b0 but routes back over b1-r2; with
// rp_filter %[1]s in b.
const asym = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: asym}
namespaces:
  - name: a
    routes:
      - {dst: default, via: 10.0.1.254}
  - name: r
    sysctls:
      net.ipv4.ip_forward: "1"
  - name: b
    sysctls:
      net.ipv4.conf.all.rp_filter: "%[1]s"
      net.ipv4.conf.default.rp_filter: "%[1]s"
    routes:
      - {dst: default, via: 10.0.3.254}
links:
  - a: {ns: a, name: a0, addresses: [10.0.1.1/24]}
    b: {ns: r, name: r0, addresses: [10.0.1.254/24]}
  - a: {ns: r, name: r1, addresses: [10.0.2.254/24]}
    b: {ns: b, name: b0, addresses: [10.0.2.1/24]}
  - a: {ns: r, name: r2, addresses: [10.0.3.254/24]}
    b: {ns: b, name: b1, addresses: [10.0.3.1/24]}
`

var _ = Describe("hand-made broken topologies (L2 and tunnels)", func() {
	BeforeEach(needRoot)

	It("names a missing neighbour on a NOARP link", func() {
		r, l := upYAML("ttrna", sprintf(direct, ""))
		arpOff(r, "a", "a0")
		res := mustTrace(l, Options{From: "a", To: "10.0.0.2"})
		Expect(res.Anomaly).To(HavePrefix("there is no neighbour entry for 10.0.0.2 on a0 in a, which has NOARP, so the kernel addresses the frame to a0's own MAC"))
		Expect(res.Anomaly).To(ContainSubstring("delivered to b0 in b"))
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.0.2"), 300*time.Millisecond)).NotTo(Succeed())
	})

	It("names a neighbour nobody will resolve when the other end does not answer ARP", func() {
		r, l := upYAML("ttrnb", sprintf(direct, ""))
		arpOff(r, "b", "b0")
		res := mustTrace(l, Options{From: "a", To: "10.0.0.2", Proto: "udp", DPort: 5353})
		Expect(res.Anomaly).To(Equal("a has no entry for 10.0.0.2 on a0 and ARP cannot resolve it: b0 in b has NOARP and does not answer ARP for 10.0.0.2"))
	})

	It("names arp_ignore=8 on the other end", func() {
		_, l := upYAML("ttrnc", sprintf(direct, "    sysctls:\n      net.ipv4.conf.all.arp_ignore: \"8\""))
		res := mustTrace(l, Options{From: "a", To: "10.0.0.2"})
		Expect(res.Anomaly).To(Equal("a has no entry for 10.0.0.2 on a0 and ARP cannot resolve it: b0 in b holds 10.0.0.2 but has arp_ignore=8: it never answers ARP"))
	})

	It("names a VXLAN port mismatch (4789 vs 8472)", func() {
		r, l := upYAML("ttrvx", sprintf(vxlanPair, "4789", "8472"))
		res := mustTrace(l, Options{From: "h1", To: "10.9.0.2"})
		Expect(res.Anomaly).To(Equal("the VXLAN packet reaches h2 on UDP port 4789, but nothing listens there (vx in h2 uses UDP 8472): the kernel answers ICMP port unreachable"))
		Expect(topo.Ping(ns(r, "h1"), mustAddr("10.9.0.2"), 300*time.Millisecond)).NotTo(Succeed())
	})

	It("finds no anomaly on matching VXLAN ports, and pings agree", func() {
		r, l := upYAML("ttrvy", sprintf(vxlanPair, "8472", "8472"))
		res := mustTrace(l, Options{From: "h1", To: "10.9.0.2"})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(res.Reached).To(Equal("10.9.0.2 in h2 (vx), and the reply comes back to h1"))
		Expect(topo.Ping(ns(r, "h1"), mustAddr("10.9.0.2"), 2*time.Second)).To(Succeed())
	})

	It("names strict rp_filter on an asymmetric path, and accepts it with loose mode", func() {
		r, l := upYAML("ttrrp", sprintf(asym, "1"))
		res := mustTrace(l, Options{From: "a", To: "10.0.2.1"})
		Expect(res.Anomaly).To(Equal("strict reverse-path filtering (rp_filter=1) in b drops the packet from 10.0.1.1 arriving on b0: the route back to 10.0.1.1 leaves by b1"))
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 300*time.Millisecond)).NotTo(Succeed())

		Expect(topo.SetSysctl(ns(r, "b"), "net.ipv4.conf.all.rp_filter", "2")).To(Succeed())
		Expect(topo.SetSysctl(ns(r, "b"), "net.ipv4.conf.b0.rp_filter", "2")).To(Succeed())
		res = mustTrace(l, Options{From: "a", To: "10.0.2.1"})
		Expect(res.Anomaly).To(BeEmpty())
		Expect(topo.Ping(ns(r, "a"), mustAddr("10.0.2.1"), 2*time.Second)).To(Succeed())
	})
})
