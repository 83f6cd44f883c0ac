package datapath

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	lbLoopback = netip.MustParseAddr("169.254.42.1")
	worldPeer  = netip.AddrPortFrom(testWorldIP, 5555)
)

// newServiceNode is a test node of the tsvc lab whose configuration knows
// eth0 and cilium_host (ifindex 1, the PROG_TEST_RUN device); nothing is
// attached.
func newServiceNode(t *testing.T) *testNode {
	return newTestNode(t, func(c *NodeConfig) {
		c.Lab = "tsvc"
		c.Eth0Ifindex = 1
		c.HostIfindex = 1
	})
}

// asLocal makes ep the endpoint whose from-container PROG_TEST_RUN
// exercises (ifindex 1), and the other test endpoint not.
func (n *testNode) asLocal(ep Endpoint) {
	a, b := epA, epB
	a.Ifindex, b.Ifindex = 43, 42
	if ep.ID == epA.ID {
		a.Ifindex = 1
	} else {
		b.Ifindex = 1
	}
	n.endpoint(a)
	n.endpoint(b)
}

func tcpOf(t *testing.T, b []byte) *layers.TCP {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil {
		t.Fatalf("no TCP in %v", p)
	}
	return tcp
}

func upsert(t *testing.T, n *testNode, s Service) {
	t.Helper()
	if err := n.d.UpsertService(s); err != nil {
		t.Fatal(err)
	}
}

func TestServiceNoBackendRejects(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(clusterIP, 80)
	upsert(t, n, Service{Frontend: frontend, Proto: 6})
	upsert(t, n, Service{Frontend: netip.AddrPortFrom(clusterIP, 53), Proto: 17})

	in := craft(t, pkt{src: epA.IP, dst: clusterIP, sport: 1234, dport: 80, syn: true, payload: []byte("early data")})
	ret, out := n.run(n.d.progs.fromContainer, in)
	if ret != tcActRedirect {
		t.Fatalf("SYN to a frontend without backends: verdict %d, want the RST redirected back", ret)
	}
	ds := drops(n.events())
	if len(ds) != 1 || ds[0].Reason != DropNoService || ds[0].Reason.Text() != "Service backend not found" {
		t.Fatalf("drops %+v, want one %q", ds, DropNoService.Text())
	}
	src, dst := checkPacket(t, out[:54])
	if src != frontend || dst != netip.AddrPortFrom(epA.IP, 1234) {
		t.Fatalf("RST %v -> %v, want from the frontend to the client", src, dst)
	}
	rst := tcpOf(t, out[:54])
	req := tcpOf(t, in)
	if !rst.RST || !rst.ACK || rst.SYN || rst.Ack != req.Seq+1+uint32(len("early data")) {
		t.Fatalf("reply flags rst=%v ack=%v syn=%v ack# %d, want RST|ACK acking %d", rst.RST, rst.ACK, rst.SYN, rst.Ack, req.Seq+11)
	}
	eth := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if eth.DstMAC.String() != macA.String() {
		t.Fatalf("RST to MAC %v, want the client's %v", eth.DstMAC, macA)
	}

	// UDP: dropped, answered with an ICMP port unreachable quoting it.
	q := craft(t, pkt{src: epA.IP, dst: clusterIP, proto: layers.IPProtocolUDP, sport: 999, dport: 53, payload: []byte("query")})
	ret, out = n.run(n.d.progs.fromContainer, q)
	if ret != tcActRedirect {
		t.Fatalf("UDP to a frontend without backends: verdict %d", ret)
	}
	if ds := drops(n.events()); len(ds) != 1 || ds[0].Reason != DropNoService {
		t.Fatalf("drops %+v", ds)
	}
	p := gopacket.NewPacket(out[:14+20+8+28], layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ip == nil || icmp == nil || icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 3) ||
		!ip.SrcIP.Equal(clusterIP.AsSlice()) || !ip.DstIP.Equal(epA.IP.AsSlice()) {
		t.Fatalf("answer %v, want an ICMP port unreachable from the frontend", p)
	}
	if !bytes.Equal(icmp.Payload, q[14:14+28]) {
		t.Fatalf("ICMP quotes %x, want %x", icmp.Payload, q[14:14+28])
	}
	// Checksums: recompute and compare.
	ipc, icc := ip.Checksum, icmp.Checksum
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ip, icmp, gopacket.Payload(icmp.Payload)); err != nil {
		t.Fatal(err)
	}
	re := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
	if re.Layer(layers.LayerTypeIPv4).(*layers.IPv4).Checksum != ipc || re.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).Checksum != icc {
		t.Fatal("bad IPv4 or ICMP checksum")
	}

	// Without the service the packet is plain traffic to an unknown address.
	if err := n.d.DeleteService(frontend, 6); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, 1235, 80)); ret != tcActOK {
		t.Fatalf("after delete: verdict %d", ret)
	}
}

func TestServiceHairpin(t *testing.T) {
	n := newServiceNode(t)
	self := netip.AddrPortFrom(epA.IP, 8080)
	upsert(t, n, Service{Frontend: netip.AddrPortFrom(clusterIP, 80), Proto: 6, Backends: []netip.AddrPort{self}})
	ret, out := n.run(n.d.progs.fromContainer, syn(t, epA.IP, clusterIP, 40000, 80))
	if ret != tcActRedirect {
		t.Fatalf("hairpin SYN verdict %d", ret)
	}
	src, dst := checkPacket(t, out[:60])
	if src != netip.AddrPortFrom(lbLoopback, 40000) || dst != self {
		t.Fatalf("hairpin SYN %v -> %v, want %v -> %v", src, dst, netip.AddrPortFrom(lbLoopback, 40000), self)
	}
	// The pod answers the loopback address; it gets frontend -> itself.
	reply := craft(t, pkt{src: epA.IP, dst: lbLoopback, sport: 8080, dport: 40000, syn: true, ack: true})
	ret, out = n.run(n.d.progs.fromContainer, reply)
	if ret != tcActRedirect {
		t.Fatalf("hairpin reply verdict %d", ret)
	}
	src, dst = checkPacket(t, out[:60])
	if src != netip.AddrPortFrom(clusterIP, 80) || dst != netip.AddrPortFrom(epA.IP, 40000) {
		t.Fatalf("hairpin reply %v -> %v, want frontend -> client", src, dst)
	}
	tr := traces(n.events())
	if len(tr) != 4 || tr[1].ObsPoint != ObsToEndpoint || tr[3].ObsPoint != ObsToEndpoint {
		t.Fatalf("traces %v, want both delivered to the endpoint", tr)
	}
}

func TestNodePortLocalBackend(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testNodeIP, 30080)
	backend := netip.AddrPortFrom(epB.IP, 8080)
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Backends: []netip.AddrPort{backend}})
	in := craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30080, syn: true})
	ret, out := n.run(n.d.progs.fromNetdev, in)
	if ret != tcActRedirect {
		t.Fatalf("NodePort SYN verdict %d", ret)
	}
	src, dst := checkPacket(t, out[:60])
	if src != worldPeer || dst != backend {
		t.Fatalf("NodePort SYN %v -> %v, want client preserved, to %v", src, dst, backend)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToEndpoint || tr[1].SrcIdentity != 2 || tr[1].DstIdentity != epB.Identity {
		t.Fatalf("traces %v, want world -> backend to-endpoint", tr)
	}
	// The backend's reply leaves from the frontend, out of eth0.
	n.asLocal(epB)
	ret, out = n.run(n.d.progs.fromContainer, craft(t, pkt{srcMAC: macB, src: epB.IP, dst: testWorldIP, sport: 8080, dport: 5555, syn: true, ack: true}))
	if ret != tcActRedirect {
		t.Fatalf("reply verdict %d, want redirected to eth0", ret)
	}
	src, dst = checkPacket(t, out[:60])
	if src != frontend || dst != worldPeer {
		t.Fatalf("reply %v -> %v, want %v -> %v", src, dst, frontend, worldPeer)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].ObsPoint != ObsToNetwork {
		t.Fatalf("reply traces %v, want to-network", tr)
	}
	// Not a frontend: left to the stack untouched.
	if ret, out := n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 22, syn: true})); ret != tcActOK {
		t.Fatalf("SYN to port 22 of the node: verdict %d", ret)
	} else if _, dst := checkPacket(t, out[:60]); dst != netip.AddrPortFrom(testNodeIP, 22) {
		t.Fatalf("SYN to port 22 rewritten to %v", dst)
	}
}

func TestNodePortRemoteBackendSNAT(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testNodeIP, 30080)
	backend := netip.AddrPortFrom(remotePodIP, 8080)
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Backends: []netip.AddrPort{backend}})
	ret, out := n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30080, syn: true}))
	if ret != tcActRedirect {
		t.Fatalf("NodePort SYN verdict %d", ret)
	}
	src, dst := checkPacket(t, out[:60])
	if src.Addr() != testNodeIP || src.Port() < 61000 || dst != backend {
		t.Fatalf("NodePort SYN %v -> %v, want SNAT to the node and a NAT port, to %v", src, dst, backend)
	}
	natPort := src.Port()
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToOverlay || tr[1].SrcIdentity != 6 {
		t.Fatalf("traces %v, want to-overlay as remote-node", tr)
	}
	// Later packets of the connection keep their NAT port and backend.
	for i := 0; i < 3; i++ {
		_, out = n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30080, ack: true}))
		if s, d := checkPacket(t, out[:60]); s != src || d != backend {
			t.Fatalf("packet %d: %v -> %v, want %v -> %v", i, s, d, src, backend)
		}
	}
	// Another client port gets another NAT port.
	_, out = n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5556, dport: 30080, syn: true}))
	if s, _ := checkPacket(t, out[:60]); s.Port() == natPort {
		t.Fatalf("two connections share NAT port %d", natPort)
	}
	// The backend's reply comes back over the underlay: frontend -> client.
	ret, out = n.run(n.d.progs.fromNetdev, craft(t, pkt{src: remotePodIP, dst: testNodeIP, sport: 8080, dport: natPort, syn: true, ack: true}))
	if ret != tcActRedirect {
		t.Fatalf("reply verdict %d", ret)
	}
	src, dst = checkPacket(t, out[:60])
	if src != frontend || dst != worldPeer {
		t.Fatalf("reply %v -> %v, want %v -> %v", src, dst, frontend, worldPeer)
	}
}

func TestNodePortUDPAndNoBackend(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testNodeIP, 30053)
	backend := netip.AddrPortFrom(epB.IP, 53)
	upsert(t, n, Service{Frontend: frontend, Proto: 17, Type: ServiceNodePort, Backends: []netip.AddrPort{backend}})
	q := craft(t, pkt{src: testWorldIP, dst: testNodeIP, proto: layers.IPProtocolUDP, sport: 5555, dport: 30053, payload: []byte("query")})
	ret, out := n.run(n.d.progs.fromNetdev, q)
	if ret != tcActRedirect {
		t.Fatalf("UDP NodePort verdict %d", ret)
	}
	if src, dst := checkPacket(t, out[:len(q)]); src != worldPeer || dst != backend {
		t.Fatalf("UDP NodePort %v -> %v", src, dst)
	}
	n.events()
	// externalTrafficPolicy: Local on a node without local backends.
	local := netip.AddrPortFrom(testNodeIP, 30081)
	upsert(t, n, Service{Frontend: local, Proto: 6, Type: ServiceNodePort, Local: true})
	ret, out = n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30081, syn: true}))
	if ret != tcActRedirect {
		t.Fatalf("Local NodePort without backend: verdict %d, want the RST sent back", ret)
	}
	if src, dst := checkPacket(t, out[:54]); src != local || dst != worldPeer || !tcpOf(t, out[:54]).RST {
		t.Fatalf("answer %v -> %v, want a RST from the frontend", src, dst)
	}
	if ds := drops(n.events()); len(ds) != 1 || ds[0].Reason != DropNoService {
		t.Fatalf("drops %+v", ds)
	}
	svcs, err := n.d.Services()
	if err != nil || len(svcs) != 2 || svcs[0].Frontend != frontend || svcs[0].Type != ServiceNodePort || !svcs[1].Local || len(svcs[0].Backends) != 1 {
		t.Fatalf("Services() = %+v, %v", svcs, err)
	}
}

func TestHostToClusterIP(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(clusterIP, 80)
	local := netip.AddrPortFrom(epB.IP, 8080)
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Backends: []netip.AddrPort{local}})
	ret, out := n.run(n.d.progs.fromHost, craft(t, pkt{src: testRouterIP, dst: clusterIP, sport: 40000, dport: 80, syn: true}))
	if ret != tcActRedirect {
		t.Fatalf("host SYN verdict %d", ret)
	}
	if src, dst := checkPacket(t, out[:60]); src != netip.AddrPortFrom(testRouterIP, 40000) || dst != local {
		t.Fatalf("host SYN %v -> %v", src, dst)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].SrcIdentity != 1 || tr[1].ObsPoint != ObsToEndpoint {
		t.Fatalf("traces %v, want host -> endpoint", tr)
	}
	n.asLocal(epB)
	ret, out = n.run(n.d.progs.fromContainer, craft(t, pkt{srcMAC: macB, src: epB.IP, dst: testRouterIP, sport: 8080, dport: 40000, syn: true, ack: true}))
	if ret != tcActOK {
		t.Fatalf("reply verdict %d, want to the stack", ret)
	}
	if src, _ := checkPacket(t, out[:60]); src != frontend {
		t.Fatalf("reply from %v, want the frontend", src)
	}

	// A remote backend: through the tunnel; the reply comes back over the
	// underlay to the router address and is translated by from-netdev.
	remote := netip.AddrPortFrom(remotePodIP, 8080)
	front2 := netip.AddrPortFrom(clusterIP, 81)
	upsert(t, n, Service{Frontend: front2, Proto: 6, Backends: []netip.AddrPort{remote}})
	n.events()
	ret, out = n.run(n.d.progs.fromHost, craft(t, pkt{src: testRouterIP, dst: clusterIP, sport: 40001, dport: 81, syn: true}))
	if _, dst := checkPacket(t, out[:60]); ret != tcActRedirect || dst != remote {
		t.Fatalf("host SYN to a remote backend: verdict %d, to %v", ret, dst)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].ObsPoint != ObsToOverlay {
		t.Fatalf("traces %v, want to-overlay", tr)
	}
	ret, out = n.run(n.d.progs.fromNetdev, craft(t, pkt{src: remotePodIP, dst: testRouterIP, sport: 8080, dport: 40001, syn: true, ack: true}))
	if src, _ := checkPacket(t, out[:60]); ret != tcActOK || src != front2 {
		t.Fatalf("reply at eth0: verdict %d, from %v, want the frontend to the stack", ret, src)
	}
	// A ClusterIP without backends: the host socket gets a RST.
	upsert(t, n, Service{Frontend: netip.AddrPortFrom(clusterIP, 82), Proto: 6})
	ret, out = n.run(n.d.progs.fromHost, craft(t, pkt{src: testRouterIP, dst: clusterIP, sport: 40002, dport: 82, syn: true}))
	if ret != tcActRedirect || !tcpOf(t, out[:54]).RST {
		t.Fatalf("host SYN without backend: verdict %d", ret)
	}
}

func TestNodePortScaleDownForgetsNAT(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testNodeIP, 30080)
	gone := netip.AddrPortFrom(remotePodIP, 8080)
	stays := netip.AddrPortFrom(netip.MustParseAddr("10.244.1.31"), 8080)
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Backends: []netip.AddrPort{gone}})
	in := craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30080, syn: true})
	_, out := n.run(n.d.progs.fromNetdev, in)
	if _, dst := checkPacket(t, out[:60]); dst != gone {
		t.Fatalf("to %v", dst)
	}
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Backends: []netip.AddrPort{stays}})
	// The same client tuple (a reused port) is load-balanced afresh.
	_, out = n.run(n.d.progs.fromNetdev, in)
	if _, dst := checkPacket(t, out[:60]); dst != stays {
		t.Fatalf("after scale-down the tuple still goes to %v", dst)
	}
	var k ctKeyValue
	var v nodePortNAT
	count := 0
	for it := n.d.maps[mapNodePortRev].Iterate(); it.Next(&k, &v); {
		count++
	}
	if count != 1 {
		t.Fatalf("%d reverse NAT entries, want the live one only", count)
	}
}

// TestLocalServiceScopes: an externalTrafficPolicy Local NodePort on a
// node without a local backend refuses the world (external scope) and
// serves a pod from all the Service's backends (internal scope).
func TestLocalServiceScopes(t *testing.T) {
	n := newServiceNode(t)
	frontend := netip.AddrPortFrom(testNodeIP, 30081)
	backend := netip.AddrPortFrom(epB.IP, 8080)
	svc := Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Local: true, ClusterBackends: []netip.AddrPort{backend}}
	upsert(t, n, svc)
	ret, out := n.run(n.d.progs.fromNetdev, craft(t, pkt{src: testWorldIP, dst: testNodeIP, sport: 5555, dport: 30081, syn: true}))
	if ret != tcActRedirect || !tcpOf(t, out[:54]).RST {
		t.Fatalf("world SYN: verdict %d, want a RST (no backend on this node)", ret)
	}
	if ds := drops(n.events()); len(ds) != 1 || ds[0].Reason != DropNoService {
		t.Fatalf("world drops %+v, want one %q", ds, DropNoService.Text())
	}
	ret, out = n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: testNodeIP, sport: 1234, dport: 30081, syn: true}))
	if _, dst := checkPacket(t, out[:60]); ret != tcActRedirect || dst != backend {
		t.Fatalf("pod SYN: verdict %d, to %v, want %v (internal scope)", ret, dst, backend)
	}
	if ds := drops(n.events()); len(ds) != 0 {
		t.Fatalf("pod drops %+v", ds)
	}
	svcs, err := n.d.Services()
	if err != nil || len(svcs) != 1 || len(svcs[0].Backends) != 0 || !svcs[0].Local || len(svcs[0].ClusterBackends) != 1 || svcs[0].ClusterBackends[0] != backend {
		t.Fatalf("Services() = %+v, %v, want one Local frontend with its cluster backend", svcs, err)
	}
	// Without cluster backends the internal scope goes: pods are refused
	// too.
	svc.ClusterBackends = nil
	upsert(t, n, svc)
	ret, out = n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: testNodeIP, sport: 1235, dport: 30081, syn: true}))
	if ret != tcActRedirect || !tcpOf(t, out[:54]).RST {
		t.Fatalf("pod SYN with one scope: verdict %d, want a RST", ret)
	}
	n.events()
	upsert(t, n, Service{Frontend: frontend, Proto: 6, Type: ServiceNodePort, Local: true, ClusterBackends: []netip.AddrPort{backend}})
	if err := n.d.DeleteService(frontend, 6); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{mapServices, mapBackends} {
		var k, v []byte
		if it := n.d.maps[m].Iterate(); it.Next(&k, &v) {
			t.Fatalf("%s not empty after delete: %x", m, k)
		}
	}
}

// TestPodToRemoteNodePort: a pod's connection to another node's NodePort
// is load-balanced at its source through the 0.0.0.0 frontend (internal
// scope under Local); other ports of that node and hostPorts are not.
func TestPodToRemoteNodePort(t *testing.T) {
	n := newServiceNode(t)
	backend := netip.AddrPortFrom(epB.IP, 8080)
	wild := netip.AddrPortFrom(netip.IPv4Unspecified(), 30081)
	upsert(t, n, Service{Frontend: wild, Proto: 6, Type: ServiceNodePort, Local: true, ClusterBackends: []netip.AddrPort{backend}})
	upsert(t, n, Service{Frontend: netip.AddrPortFrom(netip.IPv4Unspecified(), 8081), Proto: 6, Type: ServiceHostPort, Backends: []netip.AddrPort{backend}})
	ret, out := n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: testRemoteIP, sport: 1234, dport: 30081, syn: true}))
	if _, dst := checkPacket(t, out[:60]); ret != tcActRedirect || dst != backend {
		t.Fatalf("pod SYN to another node's NodePort: verdict %d, to %v, want %v", ret, dst, backend)
	}
	// The reply carries the remote node's frontend back.
	n.asLocal(epB)
	_, out = n.run(n.d.progs.fromContainer, craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, sport: 8080, dport: 1234, syn: true, ack: true}))
	if src, _ := checkPacket(t, out[:60]); src != netip.AddrPortFrom(testRemoteIP, 30081) {
		t.Fatalf("reply from %v, want %v", src, netip.AddrPortFrom(testRemoteIP, 30081))
	}
	n.asLocal(epA)
	for _, port := range []uint16{30082, 8081} {
		_, out = n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: testRemoteIP, sport: 1235, dport: port, syn: true}))
		if _, dst := checkPacket(t, out[:60]); dst != netip.AddrPortFrom(testRemoteIP, port) {
			t.Fatalf("pod SYN to %v:%d rewritten to %v", testRemoteIP, port, dst)
		}
	}
	// Not a node's address: no wildcard.
	_, out = n.run(n.d.progs.fromContainer, craft(t, pkt{src: epA.IP, dst: testWorldIP, sport: 1236, dport: 30081, syn: true}))
	if _, dst := checkPacket(t, out[:60]); dst != netip.AddrPortFrom(testWorldIP, 30081) {
		t.Fatalf("pod SYN to the world rewritten to %v", dst)
	}
}
