package topo

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// packetTap is an AF_PACKET socket on one device of a lab namespace: it
// sees every frame the device receives or sends, as tcpdump would.
type packetTap struct {
	fd  int
	dev string
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openTap(ns *Namespace, dev string) (*packetTap, error) {
	h, err := ns.Handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("tap %s in %s: %w", dev, ns, err)
	}
	fd := -1
	err = Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("tap %s in %s: %w", dev, ns, err)
	}
	return &packetTap{fd: fd, dev: dev}, nil
}

func (t *packetTap) Close() { unix.Close(t.fd) }

// echo is an ICMP echo request or reply seen in an Ethernet frame.
type echo struct {
	dstMAC   net.HardwareAddr
	src, dst netip.Addr
	reply    bool
	incoming bool
}

func parseEcho(frame []byte, pkttype uint8) (echo, bool) {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:14]) != unix.ETH_P_IP {
		return echo{}, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != unix.IPPROTO_ICMP || len(ip) < ihl+8 {
		return echo{}, false
	}
	typ := ip[ihl]
	if typ != 8 && typ != 0 {
		return echo{}, false
	}
	return echo{
		dstMAC:   net.HardwareAddr(append([]byte(nil), frame[0:6]...)),
		src:      netip.AddrFrom4([4]byte(ip[12:16])),
		dst:      netip.AddrFrom4([4]byte(ip[16:20])),
		reply:    typ == 0,
		incoming: pkttype != unix.PACKET_OUTGOING,
	}, true
}

// findEcho reads frames until one matches or timeout passes (the timeout only
// bounds a failing wait; nothing asserts on time).
func (t *packetTap) findEcho(timeout time.Duration, match func(echo) bool) (echo, bool) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return echo{}, false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		_ = unix.SetsockoptTimeval(t.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		n, from, err := unix.Recvfrom(t.fd, buf, 0)
		if err != nil {
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			return echo{}, false
		}
		var pkttype uint8
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			pkttype = ll.Pkttype
		}
		if e, ok := parseEcho(buf[:n], pkttype); ok && match(e) {
			return e, true
		}
	}
}

// withNS runs fn with a netlink handle in the lab namespace short of r.
func withNS(r *Raw, short string, fn func(h *netlink.Handle)) {
	GinkgoHelper()
	ns, ok := r.Namespace(short)
	Expect(ok).To(BeTrue(), "namespace %s", short)
	h, err := ns.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer h.Close()
	fn(h)
}

func addrsOf(h *netlink.Handle, dev string) []string {
	GinkgoHelper()
	l, err := h.LinkByName(dev)
	Expect(err).NotTo(HaveOccurred())
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

func routesOf(h *netlink.Handle, family int) []string {
	GinkgoHelper()
	rs, err := h.RouteList(nil, family)
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, r := range rs {
		dst := "default"
		if r.Dst != nil && !(r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask)) {
			dst = r.Dst.String()
		}
		s := dst
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			s += " dev " + l.Attrs().Name
		}
		switch r.Type {
		case unix.RTN_BLACKHOLE:
			s = "blackhole " + s
		case unix.RTN_UNREACHABLE:
			s = "unreachable " + s
		}
		out = append(out, s)
	}
	return out
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}

func linkOf(h *netlink.Handle, dev string) netlink.Link {
	GinkgoHelper()
	l, err := h.LinkByName(dev)
	Expect(err).NotTo(HaveOccurred(), "device %s", dev)
	return l
}

func masterOf(h *netlink.Handle, dev string) string {
	GinkgoHelper()
	l := linkOf(h, dev)
	if l.Attrs().MasterIndex == 0 {
		return ""
	}
	return linkOf2(h, l.Attrs().MasterIndex)
}

func linkOf2(h *netlink.Handle, idx int) string {
	l, err := h.LinkByIndex(idx)
	if err != nil {
		return fmt.Sprintf("ifindex %d", idx)
	}
	return l.Attrs().Name
}

func labNamespaces(lab string) []string {
	GinkgoHelper()
	names, err := ListNamespaces(lab)
	Expect(err).NotTo(HaveOccurred())
	return names
}

var _ = Describe("raw topology: peer-pods", func() {
	const lab = "traw"
	var r *Raw

	BeforeEach(func() {
		requireRoot()
		var err error
		r, err = UpFile(context.Background(), lab, "testdata/peer-pods.yaml", nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			Expect(r.Down()).To(Succeed())
			Expect(labNamespaces(lab)).To(BeEmpty())
		})
	})

	It("comes up as the file says", func() {
		Expect(labNamespaces(lab)).To(ConsistOf(NSName(lab, "worker"), NSName(lab, "pod"), NSName(lab, "podvm"), NSName(lab, "podns")))

		withNS(r, "worker", func(h *netlink.Handle) {
			Expect(addrsOf(h, "br-ex")).To(ConsistOf("192.168.10.163/24"))
			Expect(addrsOf(h, "ovn-k8s-mp0")).To(ConsistOf("10.132.2.2/23"))
			Expect(linkOf(h, "ovn-k8s-mp0").Attrs().MTU).To(Equal(1400))
			Expect(linkOf(h, "ens3").Attrs().HardwareAddr.String()).To(Equal("52:54:00:f9:70:58"))
			Expect(linkOf(h, "8b7266486ea2861").Attrs().HardwareAddr.String()).To(Equal("de:fb:3e:87:0f:d6"))
			Expect(masterOf(h, "ens3")).To(Equal("br-ex"))
			Expect(masterOf(h, "mp0-br")).To(Equal("br-int"))
			Expect(masterOf(h, "8b7266486ea2861")).To(Equal("br-int"))
			Expect(linkOf(h, "br-int").Type()).To(Equal("bridge"))
			Expect(routesOf(h, netlink.FAMILY_V4)).To(ContainElement("10.132.0.0/14 via 10.132.2.1 dev ovn-k8s-mp0"))
			neighs, err := h.NeighList(linkOf(h, "ovn-k8s-mp0").Attrs().Index, netlink.FAMILY_V4)
			Expect(err).NotTo(HaveOccurred())
			var found bool
			for _, n := range neighs {
				if n.IP.String() == "10.132.2.46" {
					found = true
					Expect(n.HardwareAddr.String()).To(Equal("0a:58:0a:84:02:2e"))
					Expect(n.State).To(Equal(netlink.NUD_PERMANENT))
				}
			}
			Expect(found).To(BeTrue(), "neighbour 10.132.2.46 on ovn-k8s-mp0")
		})
		ns, _ := r.Namespace("worker")
		Expect(ReadSysctl(ns, "net.ipv4.ip_forward")).To(Equal("1"))

		withNS(r, "pod", func(h *netlink.Handle) {
			eth0 := linkOf(h, "eth0")
			Expect(eth0.Type()).To(Equal("veth"))
			Expect(eth0.Attrs().HardwareAddr.String()).To(Equal("0a:58:0a:84:02:2e"))
			Expect(eth0.Attrs().MTU).To(Equal(1400))
			Expect(addrsOf(h, "eth0")).To(ConsistOf("10.132.2.46/23"))
			Expect(routesOf(h, netlink.FAMILY_V4)).To(ContainElement("default via 10.132.2.1 dev eth0"))

			vx, ok := linkOf(h, "vxlan1").(*netlink.Vxlan)
			Expect(ok).To(BeTrue(), "vxlan1 is a vxlan device")
			Expect(vx.VxlanId).To(Equal(555005))
			Expect(vx.Port).To(Equal(4789))
			Expect(vx.Group.String()).To(Equal("192.168.10.201"))
			Expect(vx.Attrs().OperState).NotTo(Equal(netlink.OperDown))
			// Created in the worker namespace: its link points at another
			// namespace (the one holding its socket).
			Expect(vx.Attrs().NetNsID).NotTo(Equal(-1))

			ms, err := ListMirred(h, "eth0")
			Expect(err).NotTo(HaveOccurred())
			Expect(ms).To(HaveLen(1))
			Expect(ms[0]).To(matchMirred(Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredRedirect, To: "vxlan1", ToHook: HookEgress, Priority: 1}))
			ms, err = ListMirred(h, "vxlan1")
			Expect(err).NotTo(HaveOccurred())
			Expect(ms).To(HaveLen(1))
			Expect(ms[0]).To(matchMirred(Mirred{Dev: "vxlan1", Hook: HookIngress, Mode: MirredRedirect, To: "eth0", ToHook: HookEgress, Priority: 1}))
		})

		withNS(r, "podvm", func(h *netlink.Handle) {
			Expect(addrsOf(h, "ens2")).To(ConsistOf("192.168.10.201/24"))
			Expect(linkOf(h, "ens2").Attrs().HardwareAddr.String()).To(Equal("52:54:00:e1:58:67"))
			_, err := h.LinkByName("vxlan0")
			Expect(err).To(HaveOccurred(), "vxlan0 was moved out of the pod VM namespace")
		})

		withNS(r, "podns", func(h *netlink.Handle) {
			vx, ok := linkOf(h, "vxlan0").(*netlink.Vxlan)
			Expect(ok).To(BeTrue())
			Expect(vx.VxlanId).To(Equal(555005))
			Expect(vx.Group.String()).To(Equal("192.168.10.163"))
			Expect(vx.Attrs().HardwareAddr.String()).To(Equal("7e:e5:f7:e6:f5:1a"))
			Expect(vx.Attrs().MTU).To(Equal(1400))
			Expect(addrsOf(h, "vxlan0")).To(ConsistOf("10.132.2.46/23"))
			Expect(routesOf(h, netlink.FAMILY_V4)).To(ContainElement("default via 10.132.2.1 dev vxlan0"))
		})

		var vx1 *RawDevice
		for _, d := range r.Devices() {
			if d.Name == "vxlan1" {
				d := d
				vx1 = &d
			}
		}
		Expect(vx1).NotTo(BeNil())
		Expect(vx1.Namespace).To(Equal("pod"))
		Expect(vx1.SocketNamespace).To(Equal("worker"))
		Expect(vx1.VXLAN.VNI).To(Equal(uint32(555005)))
	})

	It("forwards through the tc mirred pair in both directions", func() {
		podns, _ := r.Namespace("podns")
		worker, _ := r.Namespace("worker")

		// eth0 ingress -> vxlan1 egress: the worker's echo request comes out
		// of the tunnel on the pod VM's vxlan0.
		tap, err := openTap(podns, "vxlan0")
		Expect(err).NotTo(HaveOccurred())
		defer tap.Close()
		var req echo
		var ok bool
		for attempt := 1; attempt <= 3 && !ok; attempt++ {
			_ = Ping(worker, netip.MustParseAddr("10.132.2.46"), 300*time.Millisecond)
			req, ok = tap.findEcho(time.Second, func(e echo) bool {
				return !e.reply && e.incoming && e.dst.String() == "10.132.2.46" && e.src.String() == "10.132.2.2"
			})
			fmt.Fprintf(GinkgoWriter, "worker -> pod attempt %d: seen on vxlan0: %v\n", attempt, ok)
		}
		Expect(ok).To(BeTrue(), "echo request from the worker seen on podns/vxlan0")
		// The evidence of the bug: addressed to the worker-side eth0's MAC.
		Expect(req.dstMAC.String()).To(Equal("0a:58:0a:84:02:2e"))

		// vxlan1 ingress -> eth0 egress: an echo request from the pod VM's
		// pod namespace leaves the pod's eth0 (seen on its host-side peer)
		// and reaches the worker's management port.
		tap2, err := openTap(worker, "8b7266486ea2861")
		Expect(err).NotTo(HaveOccurred())
		defer tap2.Close()
		tap3, err := openTap(worker, "ovn-k8s-mp0")
		Expect(err).NotTo(HaveOccurred())
		defer tap3.Close()
		_ = Ping(podns, netip.MustParseAddr("10.132.2.2"), 500*time.Millisecond)
		fromPod := func(e echo) bool {
			return !e.reply && e.incoming && e.src.String() == "10.132.2.46" && e.dst.String() == "10.132.2.2"
		}
		_, ok = tap2.findEcho(2*time.Second, fromPod)
		Expect(ok).To(BeTrue(), "echo request from podns seen on worker/8b7266486ea2861")
		_, ok = tap3.findEcho(2*time.Second, fromPod)
		Expect(ok).To(BeTrue(), "echo request from podns seen on worker/ovn-k8s-mp0")

		// Both mirred actions counted packets.
		withNS(r, "pod", func(h *netlink.Handle) {
			for _, dev := range []string{"eth0", "vxlan1"} {
				ms, err := ListMirred(h, dev)
				Expect(err).NotTo(HaveOccurred())
				Expect(ms).To(HaveLen(1))
				Expect(ms[0].Packets).To(BeNumerically(">", 0), "mirred on %s", dev)
			}
		})
	})

	It("fails to ping the pod until vxlan0 carries the worker-side eth0's MAC", func() {
		worker, _ := r.Namespace("worker")
		pod := netip.MustParseAddr("10.132.2.46")
		Expect(Ping(worker, pod, 500*time.Millisecond)).NotTo(Succeed(), "broken state: no reply")

		withNS(r, "podns", func(h *netlink.Handle) {
			mac, _ := net.ParseMAC("0a:58:0a:84:02:2e")
			Expect(LinkSetMAC(h, "vxlan0", mac)).To(Succeed())
		})
		var err error
		for range 3 {
			if err = Ping(worker, pod, time.Second); err == nil {
				break
			}
		}
		Expect(err).NotTo(HaveOccurred(), "fixed state: the pod answers")
	})
})

// matchMirred compares a Mirred ignoring its packet counter.
func matchMirred(want Mirred) mirredMatcher {
	return func(got Mirred) bool {
		got.Packets = 0
		return got == want
	}
}

// mirredMatcher adapts a predicate on Mirred to a gomega matcher.
type mirredMatcher func(Mirred) bool

// Match implements types.GomegaMatcher.
func (f mirredMatcher) Match(actual any) (bool, error) {
	m, ok := actual.(Mirred)
	if !ok {
		return false, fmt.Errorf("want a Mirred, got %T", actual)
	}
	return f(m), nil
}

// FailureMessage implements types.GomegaMatcher.
func (f mirredMatcher) FailureMessage(actual any) string {
	return fmt.Sprintf("unexpected mirred rule %+v", actual)
}

// NegatedFailureMessage implements types.GomegaMatcher.
func (f mirredMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("unexpected match of mirred rule %+v", actual)
}

var _ = Describe("raw topology: every feature", func() {
	const lab = "traw2"
	var r *Raw

	// Dummy devices need CONFIG_DUMMY, which not every kernel has; the
	// stand-alone devices here are veth ends whose peer sits in namespace b.
	const doc = `apiVersion: podlab.io/v1alpha1
kind: Topology
metadata: {name: features}
namespaces:
  - name: a
    sysctls:
      net.ipv6.conf.all.forwarding: "1"
      net.ipv4.conf.eth0.rp_filter: "2"
    devices:
      - {name: br0, kind: bridge, ports: [d1]}
      - {name: tun0, kind: vxlan, external: true, port: 8472, dev: d0}
    routes:
      - {dst: 198.51.100.0/24, via: 192.0.2.254}
      - {dst: 203.0.113.0/24, type: blackhole}
      - {dst: "2001:db8:1::/48", via: "2001:db8::fe", dev: d0}
      - {dst: 100.64.0.0/10, via: 10.255.0.1, dev: eth0, onlink: true}
    neighbours:
      - {ip: 192.0.2.254, mac: "02:00:00:00:00:fe", dev: d0, permanent: false}
      - {ip: "2001:db8::fe", mac: "02:00:00:00:00:fe", dev: d0}
  - name: b
links:
  - a: {ns: a, name: eth0, addresses: [10.0.0.1/30]}
    b: {ns: b, name: eth0, addresses: [10.0.0.2/30], mtu: 1280}
  - a: {ns: a, name: d0, mac: "02:00:00:00:00:d0", mtu: 9000, addresses: [192.0.2.1/24, "2001:db8::1/64"]}
    b: {ns: b, name: d0, mtu: 9000}
  - a: {ns: a, name: d1, up: false}
    b: {ns: b, name: d1}
  - a: {ns: a, name: mirror0}
    b: {ns: b, name: mirror0}
tc:
  - {ns: a, dev: eth0, hook: egress, action: mirror, to: mirror0}
  - {ns: a, dev: eth0, hook: ingress, action: redirect, to: d0, toDirection: ingress}
`

	BeforeEach(func() {
		requireRoot()
		spec, err := ParseSpec("features.yaml", []byte(doc))
		Expect(err).NotTo(HaveOccurred())
		r, err = NewRaw(lab, spec, nil)
		Expect(err).NotTo(HaveOccurred())
		var steps []string
		r.OnStep(func(step string) { steps = append(steps, step) })
		Expect(r.Up(context.Background())).To(Succeed())
		Expect(steps).To(HaveLen(11))
		Expect(steps[0]).To(Equal("create namespaces"))
		Expect(steps[10]).To(Equal("add tc rules"))
		DeferCleanup(func() {
			Expect(r.Down()).To(Succeed())
			Expect(labNamespaces(lab)).To(BeEmpty())
		})
	})

	It("creates dummies, bridges, external VXLAN, IPv6, typed routes, neighbours, sysctls and tc", func() {
		withNS(r, "a", func(h *netlink.Handle) {
			d0 := linkOf(h, "d0")
			Expect(d0.Attrs().MTU).To(Equal(9000))
			Expect(d0.Attrs().HardwareAddr.String()).To(Equal("02:00:00:00:00:d0"))
			Expect(d0.Attrs().Flags & net.FlagUp).NotTo(BeZero())
			Expect(linkOf(h, "d1").Attrs().Flags & net.FlagUp).To(BeZero())
			Expect(masterOf(h, "d1")).To(Equal("br0"))
			v6, err := h.AddrList(d0, netlink.FAMILY_V6)
			Expect(err).NotTo(HaveOccurred())
			var global []string
			for _, a := range v6 {
				if a.IP.IsGlobalUnicast() {
					global = append(global, a.IPNet.String())
					Expect(a.Flags & unix.IFA_F_TENTATIVE).To(BeZero())
				}
			}
			Expect(global).To(ConsistOf("2001:db8::1/64"))

			tun, ok := linkOf(h, "tun0").(*netlink.Vxlan)
			Expect(ok).To(BeTrue())
			Expect(tun.FlowBased).To(BeTrue())
			Expect(tun.Port).To(Equal(8472))
			Expect(tun.VtepDevIndex).To(Equal(d0.Attrs().Index))

			Expect(routesOf(h, netlink.FAMILY_V4)).To(ContainElements(
				"198.51.100.0/24 via 192.0.2.254 dev d0",
				"blackhole 203.0.113.0/24",
				"100.64.0.0/10 via 10.255.0.1 dev eth0",
			))
			Expect(routesOf(h, netlink.FAMILY_V6)).To(ContainElement("2001:db8:1::/48 via 2001:db8::fe dev d0"))

			states := map[string]int{}
			for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
				ns, err := h.NeighList(d0.Attrs().Index, fam)
				Expect(err).NotTo(HaveOccurred())
				for _, n := range ns {
					states[n.IP.String()] = n.State
				}
			}
			Expect(states).To(HaveKeyWithValue("2001:db8::fe", netlink.NUD_PERMANENT))
			Expect(states).To(HaveKey("192.0.2.254"))
			Expect(states["192.0.2.254"]).NotTo(Equal(netlink.NUD_PERMANENT))

			ms, err := ListMirred(h, "eth0")
			Expect(err).NotTo(HaveOccurred())
			Expect(ms).To(HaveLen(2))
			Expect(ms[0]).To(matchMirred(Mirred{Dev: "eth0", Hook: HookIngress, Mode: MirredRedirect, To: "d0", ToHook: HookIngress, Priority: 2}))
			Expect(ms[1]).To(matchMirred(Mirred{Dev: "eth0", Hook: HookEgress, Mode: MirredMirror, To: "mirror0", ToHook: HookEgress, Priority: 1}))
		})
		a, _ := r.Namespace("a")
		Expect(ReadSysctl(a, "net.ipv6.conf.all.forwarding")).To(Equal("1"))
		Expect(ReadSysctl(a, "net.ipv4.conf.eth0.rp_filter")).To(Equal("2"))
		withNS(r, "b", func(h *netlink.Handle) {
			Expect(linkOf(h, "eth0").Attrs().MTU).To(Equal(1280))
			Expect(addrsOf(h, "eth0")).To(ConsistOf("10.0.0.2/30"))
		})
	})
})

var _ = Describe("raw topology: dummy devices", func() {
	It("creates a dummy, or says clearly that the kernel lacks them", func() {
		requireRoot()
		const lab = "traw5"
		spec := &Spec{APIVersion: SpecAPIVersion, Kind: SpecKind, Metadata: SpecMetadata{Name: "dummy"},
			Namespaces: []NamespaceSpec{{Name: "a", Devices: []DeviceSpec{{
				Name: "d0", Kind: DeviceDummy, Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")},
			}}}}}
		r, err := NewRaw(lab, spec, nil)
		Expect(err).NotTo(HaveOccurred())
		err = r.Up(context.Background())
		DeferCleanup(func() {
			Expect(r.Down()).To(Succeed())
			Expect(labNamespaces(lab)).To(BeEmpty())
		})
		if err != nil {
			Expect(err.Error()).To(ContainSubstring("CONFIG_DUMMY"))
			Expect(labNamespaces(lab)).To(BeEmpty())
			return
		}
		withNS(r, "a", func(h *netlink.Handle) {
			Expect(linkOf(h, "d0").Type()).To(Equal("dummy"))
			Expect(addrsOf(h, "d0")).To(ConsistOf("192.0.2.1/24"))
		})
	})
})

var _ = Describe("raw topology: failed bring-up", func() {
	It("removes what it created when a step fails half-way", func() {
		requireRoot()
		const lab = "traw3"
		doc := strings.Join([]string{
			"apiVersion: podlab.io/v1alpha1",
			"kind: Topology",
			"metadata: {name: half}",
			"namespaces:",
			"  - name: a",
			"    sysctls: {net.ipv4.ip_forward: banana}",
			"  - name: b",
			"links:",
			"  - a: {ns: a, name: eth0}",
			"    b: {ns: b, name: eth0}",
		}, "\n")
		DeferCleanup(func() {
			for _, n := range labNamespaces(lab) {
				_ = DeleteNamespace(n)
			}
		})
		spec, err := ParseSpec("half.yaml", []byte(doc))
		Expect(err).NotTo(HaveOccurred(), "the spec is valid; the kernel refuses the value")
		r, err := NewRaw(lab, spec, nil)
		Expect(err).NotTo(HaveOccurred())
		err = r.Up(context.Background())
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("set sysctls"))
		Expect(labNamespaces(lab)).To(BeEmpty())
		Expect(r.Namespaces()).To(BeEmpty())
		Expect(r.Devices()).To(BeEmpty())
	})

	It("refuses to start over a namespace that already exists", func() {
		requireRoot()
		const lab = "traw4"
		ns, err := CreateNamespace(lab, "b")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(DeleteNamespace(ns.Name)).To(Succeed()) })
		spec := &Spec{APIVersion: SpecAPIVersion, Kind: SpecKind, Metadata: SpecMetadata{Name: "x"},
			Namespaces: []NamespaceSpec{{Name: "a"}, {Name: "b"}}}
		r, err := NewRaw(lab, spec, nil)
		Expect(err).NotTo(HaveOccurred())
		err = r.Up(context.Background())
		Expect(err).To(MatchError(ContainSubstring("already exists")))
		Expect(labNamespaces(lab)).To(ConsistOf(ns.Name))
		_, statErr := os.Stat(ns.Path())
		Expect(statErr).NotTo(HaveOccurred(), "the pre-existing namespace is left alone")
	})
})
