package datapath

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/topo"
)

var (
	testLBIP     = netip.MustParseAddr("172.18.255.200")
	testWorldMAC = net.HardwareAddr{0x02, 0x42, 0xac, 0x12, 0xff, 0xfe}
	testEth0MAC  = net.HardwareAddr{0x02, 0x42, 0xac, 0x12, 0x00, 0x02}
	loMAC        = net.HardwareAddr{0, 0, 0, 0, 0, 0}
)

// arpRequest builds "who-has target tell sender" from testWorldMAC.
func arpRequest(t *testing.T, sender, target netip.Addr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: testWorldMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: testWorldMAC, SourceProtAddress: sender.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func arpOf(t *testing.T, b []byte) (*layers.Ethernet, *layers.ARP) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		t.Fatalf("no ARP in %v", p)
	}
	return eth, arp
}

// The node answers ARP requests for an announced address on the device it
// is announced on, and only those.
func TestL2AnnounceAnswersARP(t *testing.T) {
	n := newServiceNode(t)
	world := netip.MustParseAddr("172.18.255.254")
	// Nothing announced: the request goes to the stack untouched.
	if ret, _ := n.run(n.d.progs.fromNetdev, arpRequest(t, world, testLBIP)); ret != tcActOK {
		t.Fatalf("unannounced: verdict %d, want the stack", ret)
	}
	n.d.mu.Lock()
	err := n.d.announceLocked(testLBIP, 1, testEth0MAC)
	n.d.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ret, out := n.run(n.d.progs.fromNetdev, arpRequest(t, world, testLBIP))
	if ret != tcActRedirect {
		t.Fatalf("announced: verdict %d, want the reply redirected out", ret)
	}
	eth, arp := arpOf(t, out[:42])
	if arp.Operation != layers.ARPReply || !bytes.Equal(arp.SourceHwAddress, testEth0MAC) ||
		!bytes.Equal(arp.SourceProtAddress, testLBIP.AsSlice()) || !bytes.Equal(arp.DstHwAddress, testWorldMAC) ||
		!bytes.Equal(arp.DstProtAddress, world.AsSlice()) {
		t.Fatalf("reply %+v", arp)
	}
	if !bytes.Equal(eth.SrcMAC, testEth0MAC) || !bytes.Equal(eth.DstMAC, testWorldMAC) {
		t.Fatalf("reply Ethernet %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToNetwork {
		t.Fatalf("traces %v, want one to-network", tr)
	}
	// Another address, and a gratuitous request for the announced one,
	// are not answered.
	if ret, _ := n.run(n.d.progs.fromNetdev, arpRequest(t, world, netip.MustParseAddr("172.18.255.201"))); ret != tcActOK {
		t.Fatalf("other address: verdict %d", ret)
	}
	if ret, _ := n.run(n.d.progs.fromNetdev, arpRequest(t, testLBIP, testLBIP)); ret != tcActOK {
		t.Fatalf("gratuitous request: verdict %d", ret)
	}
	as, err := n.d.Announcements()
	if err != nil || len(as) != 1 || as[0].Addr != testLBIP || as[0].Responses != 1 {
		t.Fatalf("announcements %+v, %v; want %v with 1 response", as, err, testLBIP)
	}
	if err := n.d.Withdraw(testLBIP); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromNetdev, arpRequest(t, world, testLBIP)); ret != tcActOK {
		t.Fatalf("withdrawn: verdict %d", ret)
	}
}

// A LoadBalancer frontend is served to the network like a NodePort, a
// ClusterIP is not.
func TestLoadBalancerFrontendFromNetwork(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testLBIP, 80)
	backend := netip.AddrPortFrom(epB.IP, 8080)
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceLoadBalancer, Backends: []netip.AddrPort{backend}})
	upsert(t, n, Service{Frontend: netip.MustParseAddrPort("10.96.0.50:80"), Proto: 6, Backends: []netip.AddrPort{backend}})
	// A frame flooded to this node for another node's MAC is not served
	// (the announcing node's link is down, the bridge floods).
	if ret, _ := n.run(n.d.progs.fromNetdev, craft(t, pkt{dstMAC: testEth0MAC, src: testWorldIP, dst: testLBIP, sport: 5555, dport: 80, syn: true})); ret != tcActOK {
		t.Fatalf("SYN for another node's MAC: verdict %d, want the stack", ret)
	}
	// PROG_TEST_RUN's device is lo, whose MAC is all zeros: a frame to it
	// is PACKET_HOST.
	ret, out := n.run(n.d.progs.fromNetdev, craft(t, pkt{dstMAC: loMAC, src: testWorldIP, dst: testLBIP, sport: 5555, dport: 80, syn: true}))
	if ret != tcActRedirect {
		t.Fatalf("LoadBalancer SYN verdict %d", ret)
	}
	if src, dst := checkPacket(t, out[:60]); src != worldPeer || dst != backend {
		t.Fatalf("LoadBalancer SYN %v -> %v, want client preserved, to %v", src, dst, backend)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].ObsPoint != ObsToEndpoint {
		t.Fatalf("traces %v, want to-endpoint", tr)
	}
	// The reply leaves with the LoadBalancer IP as source, to the stack
	// (the address is no address of the node).
	n.asLocal(epB)
	ret, out = n.run(n.d.progs.fromContainer, craft(t, pkt{srcMAC: macB, src: epB.IP, dst: testWorldIP, sport: 8080, dport: 5555, syn: true, ack: true}))
	if ret != tcActOK {
		t.Fatalf("reply verdict %d, want the stack", ret)
	}
	if src, dst := checkPacket(t, out[:60]); src != frontend || dst != worldPeer {
		t.Fatalf("reply %v -> %v, want %v -> %v", src, dst, frontend, worldPeer)
	}
	// A ClusterIP arriving from the network is not load-balanced.
	if ret, out := n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: netip.MustParseAddr("10.96.0.50"), sport: 5555, dport: 80, syn: true})); ret != tcActOK {
		t.Fatalf("ClusterIP from the network: verdict %d", ret)
	} else if _, dst := checkPacket(t, out[:60]); dst != netip.MustParseAddrPort("10.96.0.50:80") {
		t.Fatalf("ClusterIP from the network rewritten to %v", dst)
	}
	svcs, err := n.d.Services()
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, s := range svcs {
		types = append(types, s.Type.String())
	}
	if len(types) != 2 || types[0] != "ClusterIP" || types[1] != "LoadBalancer" {
		t.Fatalf("service types %v", types)
	}
}

func TestGratuitousARPFrame(t *testing.T) {
	eth, arp := arpOf(t, topo.GratuitousARP(testLBIP, testEth0MAC))
	if !bytes.Equal(eth.DstMAC, layers.EthernetBroadcast) || arp.Operation != layers.ARPRequest ||
		!bytes.Equal(arp.SourceProtAddress, testLBIP.AsSlice()) || !bytes.Equal(arp.DstProtAddress, testLBIP.AsSlice()) ||
		!bytes.Equal(arp.SourceHwAddress, testEth0MAC) {
		t.Fatalf("gratuitous ARP %+v", arp)
	}
}

// BenchmarkL2Respond measures from-netdev answering an ARP request for one
// of n announced addresses: one PROG_TEST_RUN per request (the program
// rewrites the request into the reply, so the kernel's repeat loop cannot
// be used); ns/op includes the syscall.
func BenchmarkL2Respond(b *testing.B) {
	for _, n := range []int{1, 4000} {
		b.Run(fmt.Sprintf("announced=%d", n), func(b *testing.B) {
			node := newTestNode(b, func(c *NodeConfig) { c.Lab = "tsvc"; c.Eth0Ifindex = 1 })
			node.d.mu.Lock()
			for i := 0; i < n; i++ {
				if err := node.d.announceLocked(netip.AddrFrom4([4]byte{172, 18, 200 + byte(i>>8), byte(i)}), 1, testEth0MAC); err != nil {
					node.d.mu.Unlock()
					b.Fatal(err)
				}
			}
			node.d.mu.Unlock()
			req := arpRequest(&testing.T{}, netip.MustParseAddr("172.18.255.254"), netip.AddrFrom4([4]byte{172, 18, 200, 0}))
			out := make([]byte, len(req)+64)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				opts := &ebpf.RunOptions{Data: req, DataOut: out}
				ret, err := node.d.progs.fromNetdev.Run(opts)
				if err != nil {
					b.Fatal(err)
				}
				if ret != tcActRedirect {
					b.Fatalf("verdict %d", ret)
				}
			}
		})
	}
}
