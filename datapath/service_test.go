package datapath

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/policy"
)

var clusterIP = netip.MustParseAddr("10.96.0.10")

// checkPacket decodes an output packet, verifies its IPv4 and TCP/UDP
// checksums and returns its addresses and ports.
func checkPacket(t *testing.T, b []byte) (src, dst netip.AddrPort) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		t.Fatalf("no IPv4 in output: %v", p)
	}
	s, _ := netip.AddrFromSlice(ip.SrcIP)
	d, _ := netip.AddrFromSlice(ip.DstIP)
	fixed := *ip
	buf := gopacket.NewSerializeBuffer()
	var l4 gopacket.SerializableLayer
	var sport, dport uint16
	var got uint16
	switch {
	case p.Layer(layers.LayerTypeTCP) != nil:
		tcp := *p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		got, sport, dport = tcp.Checksum, uint16(tcp.SrcPort), uint16(tcp.DstPort)
		tcp.SetNetworkLayerForChecksum(&fixed)
		l4 = &tcp
	case p.Layer(layers.LayerTypeUDP) != nil:
		udp := *p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		got, sport, dport = udp.Checksum, uint16(udp.SrcPort), uint16(udp.DstPort)
		udp.SetNetworkLayerForChecksum(&fixed)
		l4 = &udp
	default:
		t.Fatal("no TCP or UDP in output")
	}
	var payload gopacket.Payload
	if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		payload = tcp.LayerPayload()
	} else {
		payload = p.Layer(layers.LayerTypeUDP).(*layers.UDP).LayerPayload()
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &fixed, l4, payload); err != nil {
		t.Fatal(err)
	}
	re := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
	if want := re.Layer(layers.LayerTypeIPv4).(*layers.IPv4).Checksum; want != ip.Checksum {
		t.Fatalf("IPv4 checksum %#04x, want %#04x", ip.Checksum, want)
	}
	var want uint16
	if tcp, ok := re.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		want = tcp.Checksum
	} else {
		want = re.Layer(layers.LayerTypeUDP).(*layers.UDP).Checksum
	}
	if got != want {
		t.Fatalf("L4 checksum %#04x, want %#04x", got, want)
	}
	return netip.AddrPortFrom(s, sport), netip.AddrPortFrom(d, dport)
}

func TestServiceDNATAndReverseNAT(t *testing.T) {
	n := newTestNode(t)
	backend := netip.AddrPortFrom(epB.IP, 8080)
	if err := n.d.UpsertService(Service{Frontend: netip.AddrPortFrom(clusterIP, 80), Proto: 6, Backends: []netip.AddrPort{backend}}); err != nil {
		t.Fatal(err)
	}
	ret, out := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, 40000, 80))
	if ret != tcActRedirect {
		t.Fatalf("SYN to the ClusterIP: verdict %d", ret)
	}
	src, dst := checkPacket(t, out[:60])
	if dst != backend || src != netip.AddrPortFrom(epA.IP, 40000) {
		t.Fatalf("translated %v -> %v, want -> %v", src, dst, backend)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].DstIdentity != epB.Identity || tr[1].ObsPoint != ObsToEndpoint {
		t.Fatalf("traces %+v", tr)
	}
	// The backend answers from its own address; the client sees the frontend.
	b, a := epB, epA
	b.Ifindex, a.Ifindex = 1, 43
	n.endpoint(a)
	n.endpoint(b)
	reply := craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, sport: 8080, dport: 40000, syn: true, ack: true})
	ret, out = n.run(n.d.progs.fromContainer, reply)
	if ret != tcActRedirect {
		t.Fatalf("reply verdict %d", ret)
	}
	src, dst = checkPacket(t, out[:60])
	if src != netip.AddrPortFrom(clusterIP, 80) || dst != netip.AddrPortFrom(epA.IP, 40000) {
		t.Fatalf("reply %v -> %v, want from the frontend", src, dst)
	}
}

func TestServiceUDPAndRemoteBackend(t *testing.T) {
	n := newTestNode(t)
	backend := netip.AddrPortFrom(remotePodIP, 53)
	if err := n.d.UpsertService(Service{Frontend: netip.AddrPortFrom(clusterIP, 53), Proto: 17, Backends: []netip.AddrPort{backend}}); err != nil {
		t.Fatal(err)
	}
	q := craft(t, pkt{src: epA.IP, dst: clusterIP, proto: layers.IPProtocolUDP, sport: 5353, dport: 53, payload: []byte("query")})
	ret, out := n.run(n.d.progs.fromContainer, q)
	if ret != tcActRedirect {
		t.Fatalf("verdict %d", ret)
	}
	if _, dst := checkPacket(t, out[:len(q)]); dst != backend {
		t.Fatalf("translated to %v, want %v", dst, backend)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].ObsPoint != ObsToOverlay || tr[1].DstIdentity != remoteID {
		t.Fatalf("traces %+v", tr)
	}
	// The answer comes back through the overlay and leaves with the frontend.
	o := newOverlayProbe(t, n)
	a := craft(t, pkt{src: remotePodIP, dst: epA.IP, proto: layers.IPProtocolUDP, sport: 53, dport: 5353, payload: []byte("answer")})
	ret, out = o.run(uint32(remoteID), a)
	if ret != tcActRedirect {
		t.Fatalf("answer verdict %d", ret)
	}
	if src, _ := checkPacket(t, out[:len(a)]); src != netip.AddrPortFrom(clusterIP, 53) {
		t.Fatalf("answer from %v, want the frontend", src)
	}
}

func TestServiceBackendPinnedAndSpread(t *testing.T) {
	n := newTestNode(t)
	b1, b2 := netip.AddrPortFrom(epB.IP, 8080), netip.AddrPortFrom(remotePodIP, 8080)
	frontend := netip.AddrPortFrom(clusterIP, 80)
	if err := n.d.UpsertService(Service{Frontend: frontend, Proto: 6, Backends: []netip.AddrPort{b1, b2}}); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.AddrPort]int{}
	// 64 connections: both backends are chosen (a miss has probability 2^-63).
	for port := uint16(20000); port < 20064; port++ {
		_, out := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, port, 80))
		_, first := checkPacket(t, out[:60])
		seen[first]++
		// Every later packet of the connection goes to the same backend.
		for i := 0; i < 3; i++ {
			_, out = n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: clusterIP, sport: port, dport: 80, ack: true}))
			if _, again := checkPacket(t, out[:60]); again != first {
				t.Fatalf("connection from port %d moved from %v to %v", port, first, again)
			}
		}
	}
	n.events()
	if seen[b1] == 0 || seen[b2] == 0 {
		t.Fatalf("backends chosen %v, want both", seen)
	}
	// Scale down to b1: connections pinned to b2 move, those on b1 stay.
	if err := n.d.UpsertService(Service{Frontend: frontend, Proto: 6, Backends: []netip.AddrPort{b1}}); err != nil {
		t.Fatal(err)
	}
	for port := uint16(20000); port < 20064; port++ {
		_, out := n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: clusterIP, sport: port, dport: 80, ack: true}))
		if _, dst := checkPacket(t, out[:60]); dst != b1 {
			t.Fatalf("after scale-down, port %d goes to %v", port, dst)
		}
	}
}

func TestServicePolicyJudgesBackend(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.UpsertService(Service{Frontend: netip.AddrPortFrom(clusterIP, 80), Proto: 6, Backends: []netip.AddrPort{netip.AddrPortFrom(epB.IP, 8080)}}); err != nil {
		t.Fatal(err)
	}
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 8080},
	}}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, 1000, 80)); ret != tcActRedirect {
		t.Fatalf("allowed backend port: verdict %d", ret)
	}
	n.events()
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
	}}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, 1001, 80)); ret != tcActShot {
		t.Fatalf("denied backend port: verdict %d", ret)
	}
	ds := drops(n.events())
	if len(ds) != 1 || ds[0].Reason != DropPolicy || ds[0].DstIdentity != epB.Identity || ds[0].DPort != 8080 {
		t.Fatalf("drops %+v: policy must see the backend", ds)
	}
	// The dropped packet is shown as translated, addressed to the backend.
	if _, dst := checkPacket(t, ds[0].Data); dst != netip.AddrPortFrom(epB.IP, 8080) {
		t.Fatalf("drop event packet goes to %v", dst)
	}
}
