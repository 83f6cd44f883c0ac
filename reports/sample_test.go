package reports

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/flow"
)

// sampleResolver knows the connectivity-check pods.
type sampleResolver map[netip.Addr]flow.EndpointInfo

func (r sampleResolver) EndpointByIP(ip netip.Addr) (flow.EndpointInfo, bool) {
	i, ok := r[ip]
	return i, ok
}

func (r sampleResolver) IdentityLabels(id uint32) []string {
	switch id {
	case 1:
		return []string{"reserved:host"}
	case 2:
		return []string{"reserved:world"}
	}
	for _, i := range r {
		if i.Identity == id {
			return i.Labels
		}
	}
	return nil
}

const (
	ipDenied  = "10.244.1.17"
	ipAllowed = "10.244.1.23"
	ipEcho    = "10.244.2.31"
	ipDNS     = "10.244.0.5"
)

var resolver = sampleResolver{
	netip.MustParseAddr(ipDenied):  {ID: 1234, Identity: 30582, Namespace: "default", PodName: "pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm", Labels: []string{"k8s:name=pod-to-a-l3-denied-cnp"}, Node: "kind-worker"},
	netip.MustParseAddr(ipAllowed): {ID: 1240, Identity: 30600, Namespace: "default", PodName: "pod-to-a-allowed-cnp-7b85c8db8-jrjhx", Labels: []string{"k8s:name=pod-to-a-allowed-cnp"}, Node: "kind-worker"},
	netip.MustParseAddr(ipEcho):    {ID: 345, Identity: 4711, Namespace: "default", PodName: "echo-a-8b6595b89-w9kt2", Labels: []string{"k8s:name=echo-a"}, Node: "kind-worker2"},
	netip.MustParseAddr(ipDNS):     {ID: 77, Identity: 102, Namespace: "kube-system", PodName: "coredns-f9fd979d6-h7rfw", Labels: []string{"k8s:k8s-app=kube-dns"}, Node: "kind-control-plane"},
}

type tcpSpec struct {
	src, dst           string
	sport, dport       uint16
	syn, ack, fin, psh bool
}

func tcpPacket(t testing.TB, s tcpSpec) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(s.src).To4(), DstIP: net.ParseIP(s.dst).To4()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), SYN: s.syn, ACK: s.ack, FIN: s.fin, PSH: s.psh, Window: 64240}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, tcp)
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append([]gopacket.SerializableLayer{eth}, ls...)...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func icmpPacket(t testing.TB, src, dst string) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	return serialize(t, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})
}

func dnsPacket(t testing.TB, src, dst string, sport, dport uint16, m *layers.DNS) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	return serialize(t, ip, udp, m)
}

var t0 = time.Date(2026, 9, 3, 0, 0, 25, 428000000, time.UTC)

// sampleFlows decodes a connectivity-check-like sequence: an allowed TCP
// handshake to echo-a, a DNS exchange, a ping from outside, and the denied
// pod's SYNs dropped by policy.
func sampleFlows(t testing.TB) []*flow.Flow {
	t.Helper()
	d := flow.NewDecoder(resolver)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	q := &layers.DNS{ID: 7, RD: true, Questions: []layers.DNSQuestion{{Name: []byte("echo-a.default.svc.cluster.local"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	r := &layers.DNS{ID: 7, QR: true, RD: true, RA: true, Questions: q.Questions,
		Answers: []layers.DNSResourceRecord{{Name: []byte("echo-a.default.svc.cluster.local"), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 30, IP: net.ParseIP("10.96.12.7").To4()}}}
	evs := []flow.Event{
		{Type: flow.EventTrace, Time: ms(0), Node: "kind-worker", ObsPoint: flow.ObsFromEndpoint, Ifindex: 14, Interface: "lxc9a01",
			Data: dnsPacket(t, ipAllowed, ipDNS, 43696, 53, q)},
		{Type: flow.EventTrace, Time: ms(1), Node: "kind-worker", ObsPoint: flow.ObsToEndpoint, Ifindex: 14, Interface: "lxc9a01", IsReply: true,
			Data: dnsPacket(t, ipDNS, ipAllowed, 53, 43696, r)},
		{Type: flow.EventPolicyVerdict, Time: ms(2), Node: "kind-worker2", Direction: flow.Ingress, PolicyMatch: flow.PolicyMatchL3L4, Ifindex: 9, Interface: "lxc77b0",
			Data: tcpPacket(t, tcpSpec{src: ipAllowed, dst: ipEcho, sport: 55678, dport: 80, syn: true})},
		{Type: flow.EventTrace, Time: ms(2), Node: "kind-worker", ObsPoint: flow.ObsToOverlay, Ifindex: 3, Interface: "cilium_vxlan",
			Data: tcpPacket(t, tcpSpec{src: ipAllowed, dst: ipEcho, sport: 55678, dport: 80, syn: true})},
		{Type: flow.EventTrace, Time: ms(2), Node: "kind-worker2", ObsPoint: flow.ObsToEndpoint, Ifindex: 9, Interface: "lxc77b0",
			Data: tcpPacket(t, tcpSpec{src: ipAllowed, dst: ipEcho, sport: 55678, dport: 80, syn: true})},
		{Type: flow.EventTrace, Time: ms(3), Node: "kind-worker", ObsPoint: flow.ObsToEndpoint, Ifindex: 14, Interface: "lxc9a01", IsReply: true,
			Data: tcpPacket(t, tcpSpec{src: ipEcho, dst: ipAllowed, sport: 80, dport: 55678, syn: true, ack: true})},
		{Type: flow.EventTrace, Time: ms(4), Node: "kind-worker2", ObsPoint: flow.ObsToEndpoint, Ifindex: 9, Interface: "lxc77b0",
			Data: tcpPacket(t, tcpSpec{src: ipAllowed, dst: ipEcho, sport: 55678, dport: 80, ack: true, psh: true})},
		{Type: flow.EventTrace, Time: ms(5), Node: "kind-worker", ObsPoint: flow.ObsFromNetwork, Ifindex: 2, Interface: "eth0", ReplyUnknown: true,
			Data: icmpPacket(t, "1.1.1.1", ipDenied)},
		{Type: flow.EventDrop, Time: ms(1000), Node: "kind-worker", DropReason: 133, Direction: flow.Egress, Ifindex: 12, Interface: "lxc3f2a",
			SrcIdentity: 30582, DstIdentity: 4711, Data: tcpPacket(t, tcpSpec{src: ipDenied, dst: ipEcho, sport: 44785, dport: 80, syn: true})},
		{Type: flow.EventDrop, Time: ms(2000), Node: "kind-worker", DropReason: 133, Direction: flow.Egress, Ifindex: 12, Interface: "lxc3f2a",
			SrcIdentity: 30582, DstIdentity: 4711, Data: tcpPacket(t, tcpSpec{src: ipDenied, dst: ipEcho, sport: 44785, dport: 80, syn: true})},
		{Type: flow.EventDrop, Time: ms(2500), Node: "kind-worker", DropReason: 151, Direction: flow.Egress, Ifindex: 12, Interface: "lxc3f2a",
			SrcIdentity: 30582, Data: icmpPacket(t, ipDenied, "10.255.0.1")},
	}
	var flows []*flow.Flow
	for i := range evs {
		f, err := d.Decode(&evs[i])
		if err != nil {
			t.Fatalf("decode event %d: %v", i, err)
		}
		flows = append(flows, f)
	}
	return flows
}

// sampleRun is a run of the connectivity check with one failed expectation.
func sampleRun(t testing.TB) *Run {
	flows := sampleFlows(t)
	return &Run{
		Scenario: "connectivity-check", Lab: "demo", Started: t0.Add(-5 * time.Second), Duration: 9 * time.Second,
		Description: "echo-a with pods allowed and denied by CiliumNetworkPolicy <b>not bold</b>",
		Steps: []Step{
			{Name: "apply connectivity-check.yaml", Kind: "apply", Verdict: Passed, Started: t0.Add(-5 * time.Second), Duration: 1200 * time.Millisecond},
			{Name: "pod-to-a-allowed-cnp reaches echo-a", Kind: "probe", Started: t0, Duration: 35 * time.Millisecond,
				Expectations: []Expectation{{Description: "HTTP GET http://echo-a/ returns 200", Verdict: Passed, Duration: 30 * time.Millisecond}}},
			{Name: "pod-to-a-l3-denied-cnp cannot reach echo-a", Kind: "probe", Started: t0.Add(time.Second), Duration: 2 * time.Second,
				Expectations: []Expectation{
					{Description: "TCP connect to echo-a:80 fails", Verdict: Passed, Duration: 2 * time.Second},
					{Description: "drop reason is Policy denied <script>alert(1)</script>", Verdict: Failed, Duration: 5 * time.Millisecond,
						Message:  `expected drop reason "Policy denied" on kind-worker2 lxc77b0 ingress, got drop on kind-worker lxc3f2a egress`,
						Evidence: "Sep  3 00:00:26.428  default/pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm:44785 -> default/echo-a-8b6595b89-w9kt2:80  Policy denied  DROPPED  TCP Flags: SYN\n<script>alert('evidence')</script>",
						Captures: []string{"captures/kind-worker-lxc3f2a.pcapng", "capture.pcapng"}},
				}},
			{Name: "teardown", Kind: "delete", Verdict: Errored, Message: "namespace busy", Duration: time.Millisecond},
		},
		Topology: Topology{
			Nodes: []Node{{Name: "kind-control-plane", IP: "172.18.0.2", PodCIDR: "10.244.0.0/24"}, {Name: "kind-worker", IP: "172.18.0.3", PodCIDR: "10.244.1.0/24"}, {Name: "kind-worker2", IP: "172.18.0.4", PodCIDR: "10.244.2.0/24"}},
			Pods: []Pod{
				{Namespace: "kube-system", Name: "coredns-f9fd979d6-h7rfw", IP: ipDNS, Node: "kind-control-plane", Identity: 102},
				{Namespace: "default", Name: "pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm", IP: ipDenied, Node: "kind-worker", Identity: 30582},
				{Namespace: "default", Name: "pod-to-a-allowed-cnp-7b85c8db8-jrjhx", IP: ipAllowed, Node: "kind-worker", Identity: 30600},
				{Namespace: "default", Name: "echo-a-8b6595b89-w9kt2", IP: ipEcho, Node: "kind-worker2", Identity: 4711},
			},
			Devices: []Device{
				{Owner: "kind-control-plane", Name: "eth0", Kind: "veth", Address: "172.18.0.2/16"}, {Owner: "kind-control-plane", Name: "cilium_vxlan", Kind: "vxlan"},
				{Owner: "kind-worker", Name: "eth0", Kind: "veth", Address: "172.18.0.3/16"}, {Owner: "kind-worker", Name: "cilium_vxlan", Kind: "vxlan"},
				{Owner: "kind-worker", Name: "lxc3f2a", Kind: "veth"}, {Owner: "kind-worker", Name: "lxc9a01", Kind: "veth"},
				{Owner: "kind-worker2", Name: "eth0", Kind: "veth", Address: "172.18.0.4/16"}, {Owner: "kind-worker2", Name: "cilium_vxlan", Kind: "vxlan"},
				{Owner: "kind-worker2", Name: "lxc77b0", Kind: "veth"},
				{Owner: "fabric", Name: "br0", Kind: "bridge"}, {Owner: "world", Name: "eth0", Kind: "veth", Address: "1.1.1.1"},
			},
			Links: []Link{
				{A: "kind-control-plane:eth0", B: "fabric:br0", Kind: "veth"}, {A: "kind-worker:eth0", B: "fabric:br0", Kind: "veth"},
				{A: "kind-worker2:eth0", B: "fabric:br0", Kind: "veth"}, {A: "world:eth0", B: "fabric:br0", Kind: "veth"},
				{A: "kind-worker:cilium_vxlan", B: "kind-worker2:cilium_vxlan", Kind: "vxlan"},
				{A: "kind-worker:lxc3f2a", B: "default/pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm:eth0", Kind: "veth"},
				{A: "kind-worker2:lxc77b0", B: "default/echo-a-8b6595b89-w9kt2:eth0", Kind: "veth"},
			},
		},
		Captures: []Capture{
			{Name: "merged", Path: "capture.pcapng", Packets: 11},
			{Name: "kind-worker lxc3f2a", Path: "captures/kind-worker-lxc3f2a.pcapng", Node: "kind-worker", Device: "lxc3f2a", Packets: 2},
		},
		LostEvents: map[string]uint64{flow.LostRingBuffer: 0},
		Flows:      flows,
	}
}
