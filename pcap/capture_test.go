package pcap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/onsi/gomega"
	"github.com/vishvananda/netlink"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// testLab is the lab name of this package's root tests.
const testLab = "tpcap"

func needRoot(tb testing.TB) {
	tb.Helper()
	e2e.Require(tb, e2e.Root)
}

// pair is two namespaces joined by a veth: veth-a (10.99.0.1/24) in a,
// veth-b (10.99.0.2/24) in b.
type pair struct {
	a, b *topo.Namespace
}

var (
	addrA = net.IPv4(10, 99, 0, 1)
	addrB = net.IPv4(10, 99, 0, 2)
)

// testT is what the helpers need from testing.TB and GinkgoT alike.
type testT interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

func newPair(tb testT, suffix string) *pair {
	tb.Helper()
	p := &pair{}
	for i, short := range []string{"a" + suffix, "b" + suffix} {
		ns, err := topo.CreateNamespace(testLab, short)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			if err := topo.DeleteNamespace(ns.Name); err != nil {
				tb.Errorf("cleanup: %v", err)
			}
		})
		if i == 0 {
			p.a = ns
		} else {
			p.b = ns
		}
	}
	ha, err := p.a.Handle()
	if err != nil {
		tb.Fatal(err)
	}
	defer ha.Close()
	hb, err := p.b.Handle()
	if err != nil {
		tb.Fatal(err)
	}
	defer hb.Close()
	fd, err := p.b.Open()
	if err != nil {
		tb.Fatal(err)
	}
	defer fd.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth-a"}, PeerName: "veth-b", PeerNamespace: netlink.NsFd(int(fd))}
	if err := ha.LinkAdd(veth); err != nil {
		tb.Fatalf("add veth: %v", err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		ip   net.IP
	}{{ha, "veth-a", addrA}, {hb, "veth-b", addrB}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			tb.Fatal(err)
		}
		if err := side.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: side.ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
			tb.Fatalf("address on %s: %v", side.name, err)
		}
		if err := side.h.LinkSetUp(l); err != nil {
			tb.Fatal(err)
		}
	}
	// Wait for the kernel to activate both ends (until then the queue
	// discards packets); this is readiness, not a timed assertion.
	waitUp(tb, p.a, "veth-a")
	waitUp(tb, p.b, "veth-b")
	return p
}

// waitUp waits until dev in ns is operationally up.
func waitUp(tb testT, ns *topo.Namespace, dev string) {
	tb.Helper()
	h, err := ns.Handle()
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	for i := 0; ; i++ {
		l, err := h.LinkByName(dev)
		if err != nil {
			tb.Fatal(err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return
		}
		if i == 1000 {
			tb.Fatalf("%s never came up: %s", dev, l.Attrs().OperState)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startCapture starts a capture stopped at test end (before the namespace
// is deleted).
func startCapture(tb testing.TB, ns *topo.Namespace, dev string, opts Options) *Capture {
	tb.Helper()
	c, err := Start(context.Background(), ns, dev, "", opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Stop() })
	return c
}

// udpExchange sends n datagrams from a to b:9000 ("seq N" payloads), waits
// until b received them all and answers the first one.
func udpExchange(tb testing.TB, p *pair, n int) {
	tb.Helper()
	var srv, cli net.PacketConn
	if err := topo.Do(p.b, func() (err error) {
		srv, err = net.ListenPacket("udp4", "10.99.0.2:9000")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer srv.Close()
	if err := topo.Do(p.a, func() (err error) {
		cli, err = net.ListenPacket("udp4", "10.99.0.1:0")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	// A large receive buffer so a burst is not dropped by the receiver.
	if uc, ok := srv.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		_ = srv.SetReadDeadline(time.Now().Add(20 * time.Second))
		for i := 0; i < n; i++ {
			k, from, err := srv.ReadFrom(buf)
			if err != nil {
				done <- fmt.Errorf("server received %d of %d: %w", i, n, err)
				return
			}
			if i == 0 {
				if _, err := srv.WriteTo(append([]byte("re: "), buf[:k]...), from); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	dst := &net.UDPAddr{IP: addrB, Port: 9000}
	for i := 0; i < n; i++ {
		if _, err := cli.WriteTo([]byte(fmt.Sprintf("seq %d", i)), dst); err != nil {
			tb.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := cli.ReadFrom(buf); err != nil {
		tb.Fatalf("reply: %v", err)
	}
}

// ping sends one ICMP echo request from a to b and reads the reply.
func ping(tb testing.TB, p *pair, seq uint16) {
	tb.Helper()
	var c net.PacketConn
	if err := topo.Do(p.a, func() (err error) {
		c, err = net.ListenPacket("ip4:icmp", "10.99.0.1")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	buf := gopacket.NewSerializeBuffer()
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 77, Seq: seq}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, icmp, gopacket.Payload("podlab ping")); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.WriteTo(buf.Bytes(), &net.IPAddr{IP: addrB}); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rb := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(rb)
		if err != nil {
			tb.Fatalf("echo reply: %v", err)
		}
		if n >= 8 && rb[0] == 0 && binary.BigEndian.Uint16(rb[6:]) == seq {
			return
		}
	}
}

func TestCaptureVethPair(t *testing.T) {
	needRoot(t)
	p := newPair(t, "")
	before := time.Now()
	capA := startCapture(t, p.a, "veth-a", Options{})
	capB := startCapture(t, p.b, "veth-b", Options{Promiscuous: true, Resolver: StaticResolver{}})
	if capA.Interface() != "a/veth-a" || capA.LinkType() != LinkTypeEthernet || capA.Ifindex() == 0 {
		t.Errorf("capture A: %s %v %d", capA.Interface(), capA.LinkType(), capA.Ifindex())
	}
	if !isPromisc(t, p.b, "veth-b") {
		t.Error("veth-b not promiscuous while captured with Promiscuous")
	}

	const n = 50
	udpExchange(t, p, n)
	ping(t, p, 1)
	for _, c := range []*Capture{capA, capB} {
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()
	if isPromisc(t, p.b, "veth-b") {
		t.Error("veth-b still promiscuous after Stop")
	}

	udpAB := MustCompile(Match{Proto: "udp", Src: "10.99.0.1", Dst: "10.99.0.2", DPort: 9000}, nil)
	reply := MustCompile(Match{Proto: "udp", Src: "10.99.0.2", SPort: 9000, Payload: "re: seq 0"}, nil)
	echo := MustCompile(Match{Proto: "icmp", ICMP: &ICMPMatch{Type: "echo-request"}, Payload: "podlab ping"}, nil)
	echoReply := MustCompile(Match{Proto: "icmp", ICMP: &ICMPMatch{Type: "echo-reply"}, Dst: "10.99.0.1"}, nil)
	checks := []struct {
		c    *Capture
		f    *Filter
		dir  Direction
		want int
	}{
		{capA, udpAB, DirectionOutbound, n},
		{capB, udpAB, DirectionInbound, n},
		{capA, reply, DirectionInbound, 1},
		{capB, reply, DirectionOutbound, 1},
		{capA, echo, DirectionOutbound, 1},
		{capB, echo, DirectionInbound, 1},
		{capA, echoReply, DirectionInbound, 1},
		{capB, echoReply, DirectionOutbound, 1},
	}
	for _, ck := range checks {
		if err := AssertCount(ck.c, ck.f, Exactly(ck.want)); err != nil {
			t.Error(err)
		}
		// Every matching packet has the right direction.
		for _, pk := range ck.c.Packets() {
			if ck.f.Match(&pk) && pk.Direction != ck.dir {
				t.Errorf("%s: %s has direction %s, want %s", ck.c.Interface(), Summary(&pk), pk.Direction, ck.dir)
			}
		}
	}
	// ARP resolution happened on the wire too, and in order.
	arp := MustCompile(Match{Proto: "arp"}, nil)
	first := MustCompile(Match{Proto: "udp", Payload: "seq 0"}, nil)
	last := MustCompile(Match{Proto: "udp", Payload: fmt.Sprintf("seq %d", n-1)}, nil)
	if err := AssertInOrder(capA, arp, first, last, echo, echoReply); err != nil {
		t.Error(err)
	}
	if err := AssertInOrder(capB, first, reply); err != nil {
		t.Error(err)
	}
	g := gomega.NewWithT(t)
	g.Expect(capB).To(HavePackets(Match{Proto: "udp", DPort: 9000, Direction: "in"}, n))
	g.Expect(capB).To(HaveNoPacket(Match{Proto: "tcp"}))

	// Timestamps: within the test, nanosecond resolution, and each datagram
	// seen on veth-b no earlier than on veth-a. The two sides are stamped by
	// different code paths (the sender's copy when the packet socket
	// receives the clone, the receiver's in netif_rx), so under load the
	// receive stamp can precede the send stamp by some microseconds.
	const clockSkew = time.Millisecond
	sentAt := map[string]time.Time{}
	subMicro := false
	for _, c := range []*Capture{capA, capB} {
		for _, pk := range c.Packets() {
			if pk.Time.Before(before) || pk.Time.After(after) {
				t.Errorf("%s: timestamp %v outside [%v, %v]", c.Interface(), pk.Time, before, after)
			}
			if pk.Time.Nanosecond()%1000 != 0 {
				subMicro = true
			}
			fr := DecodePacket(&pk)
			if !udpAB.MatchFrame(fr, &pk) {
				continue
			}
			key := string(fr.Payload)
			if c == capA {
				sentAt[key] = pk.Time
			} else if ta, ok := sentAt[key]; !ok || pk.Time.Before(ta.Add(-clockSkew)) {
				t.Errorf("%q seen on veth-b at %v, before veth-a (%v, seen %v)", key, pk.Time, ta, ok)
			}
		}
	}
	if !subMicro {
		t.Error("no timestamp has sub-microsecond digits: not nanosecond resolution")
	}
	for _, c := range []*Capture{capA, capB} {
		st := c.Stats()
		if st.Dropped != 0 || st.Overflow != 0 || st.Received != st.Captured || int(st.Captured) != c.Count() {
			t.Errorf("%s stats %+v, count %d", c.Interface(), st, c.Count())
		}
	}

	// Files: one per device plus the merged one, read back and by tshark.
	dir := t.TempDir()
	for _, c := range []*Capture{capA, capB} {
		path := filepath.Join(dir, strings.ReplaceAll(c.Interface(), "/", "_")+".pcapng")
		if err := c.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		if c.Path() != path {
			t.Errorf("Path() = %q", c.Path())
		}
		f, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Packets) != c.Count() || f.Stats[c.Interface()].Delivered != uint64(c.Count()) {
			t.Errorf("%s: file has %d packets (stats %+v), capture %d", path, len(f.Packets), f.Stats, c.Count())
		}
		if haveTshark(t) {
			out := tsharkRead(t, path, "-T", "fields", "-e", "frame.number")
			if got := strings.Count(out, "\n"); got != c.Count() {
				t.Errorf("tshark sees %d packets in %s, want %d", got, path, c.Count())
			}
		}
	}
	merged := filepath.Join(dir, "capture.pcapng")
	drop := Packet{Time: after, Data: capA.Packets()[0].Data, InterfaceName: "a/veth-a", Direction: DirectionOutbound, Comment: "DROPPED: test comment"}
	if err := WriteMerged(merged, []*Capture{capA, capB}, []Packet{drop}); err != nil {
		t.Fatal(err)
	}
	if haveTshark(t) {
		out := tsharkRead(t, merged, "-Y", "frame.comment", "-T", "fields", "-e", "frame.interface_name", "-e", "frame.comment")
		if out != "a/veth-a\tDROPPED: test comment\n" {
			t.Errorf("merged comments: %q", out)
		}
	}
	mf, err := ReadFile(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(mf.Packets) != capA.Count()+capB.Count()+1 || len(mf.Interfaces) != 2 {
		t.Errorf("merged: %d packets on %d interfaces", len(mf.Packets), len(mf.Interfaces))
	}
	for i := 1; i < len(mf.Packets); i++ {
		if mf.Packets[i].Time.Before(mf.Packets[i-1].Time) {
			t.Fatalf("merged file not in time order at %d", i)
		}
	}
}

func isPromisc(t *testing.T, ns *topo.Namespace, dev string) bool {
	t.Helper()
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	// A packet socket's promiscuity shows in IFLA_PROMISCUITY, not in the
	// user-visible IFF_PROMISC flag.
	return l.Attrs().Promisc > 0
}

func TestCaptureBurst(t *testing.T) {
	needRoot(t)
	p := newPair(t, "burst")
	capA := startCapture(t, p.a, "veth-a", Options{})
	capB := startCapture(t, p.b, "veth-b", Options{})
	const n = 3000
	udpExchange(t, p, n)
	if st := capA.Stats(); st.Received < n { // read while running
		t.Errorf("running stats %+v", st)
	}
	for _, c := range []*Capture{capA, capB} {
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := AssertCount(c, MustCompile(Match{Proto: "udp", DPort: 9000}, nil), Exactly(n)); err != nil {
			t.Error(err)
		}
		if st := c.Stats(); st.Dropped != 0 || st.Received != st.Captured {
			t.Errorf("%s: %+v", c.Interface(), st)
		}
	}
}

func TestCaptureErrors(t *testing.T) {
	needRoot(t)
	p := newPair(t, "err")
	_, err := Start(context.Background(), p.a, "nope0", "", Options{})
	if err == nil || !strings.Contains(err.Error(), "device nope0") {
		t.Errorf("missing device: %v", err)
	}
	if _, err := Start(context.Background(), nil, "lo", "", Options{}); err == nil || !strings.Contains(err.Error(), "lab namespaces only") {
		t.Errorf("no namespace: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, p.a, "veth-a", "", Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// Cancelling the context stops a running capture.
	ctx, cancel = context.WithCancel(context.Background())
	c, err := Start(ctx, p.a, "veth-a", "node/veth-a", Options{File: filepath.Join(t.TempDir(), "x.pcapng")})
	if err != nil {
		t.Fatal(err)
	}
	ping(t, p, 5)
	cancel()
	<-c.Done()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if c.Path() == "" || c.Count() < 2 {
		t.Errorf("stopped by context: path %q, %d packets", c.Path(), c.Count())
	}
	if err := AssertSeen(c, MustCompile(Match{ICMP: &ICMPMatch{Type: "echo-reply"}}, nil)); err != nil {
		t.Error(err)
	}
}

// TestCaptureLinkFlap takes the captured device down and up (a scenario
// fault) and checks the capture goes on.
func TestCaptureLinkFlap(t *testing.T) {
	needRoot(t)
	p := newPair(t, "flap")
	c := startCapture(t, p.b, "veth-b", Options{})
	ping(t, p, 1)
	h, err := p.b.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("veth-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	waitUp(t, p.a, "veth-a")
	waitUp(t, p.b, "veth-b")
	ping(t, p, 2)
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop after a link flap: %v", err)
	}
	echo := MustCompile(Match{ICMP: &ICMPMatch{Type: "echo-request"}}, nil)
	if err := AssertCount(c, echo, Exactly(2)); err != nil {
		t.Error(err)
	}
	if st := c.Stats(); st.LinkDown != 1 {
		t.Errorf("stats after one flap: %+v", st)
	}
}
