package probe_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/topo"
)

// The test lab: client — router — server, joined by veths.
//
//	client 10.0.1.2/24 ── 10.0.1.1 router 10.0.2.1 ── 10.0.2.2/24 server (+10.0.2.3)
//
// The router drops 10.0.9.1 silently (blackhole), answers 10.0.9.2 with
// ICMP host unreachable (unreachable route) and routes the world hosts
// (1.1.1.1, 1.0.0.1) to the server, which also plays the world namespace.
// The client itself has blackhole, unreachable and prohibit routes for
// 10.0.8.1, .2 and .3: the kernel rejects those connects locally.
const lab = "twl"

var (
	clientIP   = netip.MustParseAddr("10.0.1.2")
	routerIP   = netip.MustParseAddr("10.0.1.1")
	serverIP   = netip.MustParseAddr("10.0.2.2")
	serverIP2  = netip.MustParseAddr("10.0.2.3")
	blackholed = netip.MustParseAddr("10.0.9.1")
	unreach    = netip.MustParseAddr("10.0.9.2")
)

type testNet struct {
	client, router, server *topo.Namespace
}

func TestProbeE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "probe end-to-end (root)")
}

func prefix(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// buildNet creates the three namespaces; cleanup is registered before any
// of them exists, so a failure half-way still removes everything.
func buildNet() *testNet {
	shorts := []string{"pr-client", "pr-router", "pr-server"}
	DeferCleanup(func() {
		for _, s := range shorts {
			Expect(topo.DeleteNamespace(topo.NSName(lab, s))).To(Succeed())
		}
	})
	var nss []*topo.Namespace
	for _, s := range shorts {
		// A leftover from a killed run would make CreateNamespace fail.
		Expect(topo.DeleteNamespace(topo.NSName(lab, s))).To(Succeed())
		ns, err := topo.CreateNamespace(lab, s)
		Expect(err).NotTo(HaveOccurred())
		nss = append(nss, ns)
	}
	n := &testNet{client: nss[0], router: nss[1], server: nss[2]}

	rh, err := n.router.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer rh.Close()
	link := func(peer *topo.Namespace, local, remote string) {
		fd, err := peer.Open()
		Expect(err).NotTo(HaveOccurred())
		defer fd.Close()
		err = rh.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: local},
			PeerName:      remote,
			PeerNamespace: netlink.NsFd(int(fd)),
		})
		Expect(err).NotTo(HaveOccurred(), "veth %s/%s", local, remote)
	}
	link(n.client, "to-client", "eth0")
	link(n.server, "to-server", "eth0")

	up := func(h *netlink.Handle, dev string, addrs ...string) {
		l, err := h.LinkByName(dev)
		Expect(err).NotTo(HaveOccurred())
		for _, a := range addrs {
			Expect(h.AddrAdd(l, &netlink.Addr{IPNet: prefix(a)})).To(Succeed())
		}
		Expect(h.LinkSetUp(l)).To(Succeed())
	}
	up(rh, "to-client", "10.0.1.1/24")
	up(rh, "to-server", "10.0.2.1/24")
	for _, r := range []netlink.Route{
		{Dst: prefix("10.0.9.1/32"), Type: unix.RTN_BLACKHOLE},
		{Dst: prefix("10.0.9.2/32"), Type: unix.RTN_UNREACHABLE},
		{Dst: prefix("1.1.1.1/32"), Gw: serverIP.AsSlice()},
		{Dst: prefix("1.0.0.1/32"), Gw: serverIP.AsSlice()},
	} {
		Expect(rh.RouteAdd(&r)).To(Succeed(), "route %s", r.Dst)
	}
	// Forwarding on, and no ICMP rate limit (the tests provoke many errors),
	// in the router namespace only.
	Expect(topo.Do(n.router, func() error {
		return errors.Join(
			os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644),
			os.WriteFile("/proc/sys/net/ipv4/icmp_ratelimit", []byte("0"), 0o644),
		)
	})).To(Succeed())

	end := func(ns *topo.Namespace, addrs []string, gw string) {
		h, err := ns.Handle()
		Expect(err).NotTo(HaveOccurred())
		defer h.Close()
		up(h, "eth0", addrs...)
		Expect(h.RouteAdd(&netlink.Route{Dst: prefix("0.0.0.0/0"), Gw: net.ParseIP(gw)})).To(Succeed())
	}
	end(n.client, []string{"10.0.1.2/24"}, "10.0.1.1")
	// Routes that reject locally, in the client itself.
	ch, err := n.client.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer ch.Close()
	for _, r := range []netlink.Route{
		{Dst: prefix("10.0.8.1/32"), Type: unix.RTN_BLACKHOLE},
		{Dst: prefix("10.0.8.2/32"), Type: unix.RTN_UNREACHABLE},
		{Dst: prefix("10.0.8.3/32"), Type: unix.RTN_PROHIBIT},
	} {
		Expect(ch.RouteAdd(&r)).To(Succeed(), "route %s", r.Dst)
	}
	end(n.server, []string{"10.0.2.2/24", "10.0.2.3/24"}, "10.0.2.1")
	// A new veth drops what it sends until the kernel's link watcher
	// activates its queue (up to a second later); that moment is when the
	// operational state turns up. Wait for it on every end.
	waitOperUp(n.client, "eth0")
	waitOperUp(n.server, "eth0")
	waitOperUp(n.router, "to-client", "to-server")
	return n
}

// waitOperUp waits until the devices in ns are operationally up.
func waitOperUp(ns *topo.Namespace, devs ...string) {
	GinkgoHelper()
	h, err := ns.Handle()
	Expect(err).NotTo(HaveOccurred())
	defer h.Close()
	for _, dev := range devs {
		Eventually(func() netlink.LinkOperState {
			l, err := h.LinkByName(dev)
			if err != nil {
				return netlink.LinkOperState(netlink.OperUnknown)
			}
			return l.Attrs().OperState
		}).WithTimeout(5*time.Second).WithPolling(10*time.Millisecond).Should(Equal(netlink.LinkOperState(netlink.OperUp)), "%s in %s", dev, ns)
	}
}

// rootUntouched records root-namespace sysctls the tests must not change.
func rootSysctls() string {
	var out string
	for _, p := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/icmp_ratelimit"} {
		b, err := os.ReadFile(p)
		Expect(err).NotTo(HaveOccurred())
		out += filepath.Base(p) + "=" + string(b)
	}
	return out
}
