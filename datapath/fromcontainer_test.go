package datapath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

func expectDrop(t *testing.T, n *testNode, prog *ebpf.Program, data []byte, want DropReason) *DropEvent {
	t.Helper()
	ret, _ := n.run(prog, data)
	if ret != tcActShot {
		t.Fatalf("verdict %d, want TC_ACT_SHOT", ret)
	}
	evs := n.events()
	if tr := traces(evs); len(tr) != 0 {
		t.Fatalf("dropped packet was traced as forwarded: %+v", tr[0])
	}
	ds := drops(evs)
	if len(ds) != 1 {
		t.Fatalf("%d drop events, want 1", len(ds))
	}
	if ds[0].Reason != want {
		t.Fatalf("drop reason %d (%s), want %d (%s)", ds[0].Reason, ds[0].Reason, want, want.Text())
	}
	if len(ds[0].Data) == 0 || len(ds[0].Data) > 128 || !bytes.Equal(ds[0].Data, data[:len(ds[0].Data)]) {
		t.Fatalf("drop event carries %d bytes that are not the packet's first bytes", len(ds[0].Data))
	}
	if int(ds[0].OrigLen) != len(data) {
		t.Fatalf("drop event orig len %d, want %d", ds[0].OrigLen, len(data))
	}
	// A policy drop comes with a denied verdict of the same reason (133
	// for default deny, 181 for a deny rule), as Cilium's notification.
	if want == DropPolicy || want == DropPolicyDenyRule {
		vs := verdicts(evs)
		if len(vs) != 1 || vs[0].Allowed || vs[0].Reason != want {
			t.Fatalf("policy verdicts %+v, want one denied with reason %d", vs, want)
		}
	}
	return ds[0]
}

func metricPackets(t *testing.T, d *Datapath, reason DropReason, dir TrafficDirection) uint64 {
	t.Helper()
	ms, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Reason == reason && m.Direction == dir {
			return m.Packets
		}
	}
	return 0
}

func TestFromContainerLocalDelivery(t *testing.T) {
	n := newTestNode(t)
	data := syn(t, epA.IP, epB.IP, 40000, 80)
	ret, out := n.run(n.d.progs.fromContainer, data)
	if ret != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT", ret)
	}
	if !bytes.Equal(out[0:6], macB) || !bytes.Equal(out[6:12], macHostB) {
		t.Fatalf("MACs not rewritten: dst %x src %x", out[0:6], out[6:12])
	}
	if !bytes.Equal(out[12:len(data)], data[12:]) {
		t.Fatal("payload changed")
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[0].ObsPoint != ObsFromEndpoint || tr[1].ObsPoint != ObsToEndpoint {
		t.Fatalf("traces %+v, want from-endpoint then to-endpoint", tr)
	}
	if tr[1].TargetIfindex != uint32(epB.Ifindex) || !tr[1].IsNew || tr[1].IsReply ||
		tr[1].SrcIdentity != epA.Identity || tr[1].DstIdentity != epB.Identity || tr[1].DPort != 80 {
		t.Fatalf("trace fields wrong: %+v", tr[1])
	}
	// The connection is tracked.
	var ct fromContainerCtEntry
	key, first := ctKey(epA.IP, epB.IP, 40000, 80, 6)
	if err := n.d.maps[mapConntrack].Lookup(&key, &ct); err != nil {
		t.Fatalf("conntrack entry: %v", err)
	}
	if ct.SrcIdentity != uint32(epA.Identity) || ct.TxFlags&0x02 == 0 || ct.OrigFirst != first {
		t.Fatalf("conntrack entry %+v", ct)
	}
	if got := metricPackets(t, n.d, 0, DirectionEgress); got != 1 {
		t.Fatalf("forwarded metric %d, want 1", got)
	}
}

func TestFromContainerRedirectWithoutPeer(t *testing.T) {
	n := newTestNode(t, func(c *NodeConfig) { c.NoRedirectPeer = true })
	ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 80))
	if ret != tcActRedirect {
		t.Fatalf("verdict %d, want TC_ACT_REDIRECT", ret)
	}
}

func TestFromContainerEgressPolicy(t *testing.T) {
	n := newTestNode(t)
	// A may only talk to identity 2000 on TCP/80, and to the world on 443.
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{EgressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Egress, Identity: uint32(epB.Identity), Proto: 6, PortLo: 80, PortHi: 80},
		{Direction: policy.Egress, Identity: uint32(identity.World), Proto: 6, PortLo: 443},
	}}); err != nil {
		t.Fatal(err)
	}
	ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 80))
	if ret != tcActRedirect {
		t.Fatalf("allowed SYN: verdict %d", ret)
	}
	vs := verdicts(n.events())
	if len(vs) != 1 || !vs[0].Allowed || vs[0].Match != MatchL3L4 || vs[0].Direction != DirectionEgress ||
		vs[0].DstIdentity != epB.Identity || vs[0].DPort != 80 {
		t.Fatalf("verdicts %+v", vs)
	}
	d := expectDrop(t, n, n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40001, 81), DropPolicy)
	if d.Direction != DirectionEgress || d.SrcIdentity != epA.Identity || d.DstIdentity != epB.Identity || d.DPort != 81 {
		t.Fatalf("drop event %+v", d)
	}
	ret, _ = n.run(n.d.progs.fromContainer, syn(t, epA.IP, testWorldIP, 40002, 443))
	if ret != tcActOK {
		t.Fatalf("world:443 verdict %d, want TC_ACT_OK (to the stack)", ret)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToStack || tr[1].DstIdentity != identity.World {
		t.Fatalf("traces %+v", tr)
	}
	expectDrop(t, n, n.d.progs.fromContainer, syn(t, epA.IP, testWorldIP, 40003, 80), DropPolicy)
	if got := metricPackets(t, n.d, DropPolicy, DirectionEgress); got != 2 {
		t.Fatalf("policy drop metric %d, want 2", got)
	}
}

func TestFromContainerIngressPolicyOfLocalDestination(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
		{Direction: policy.Ingress, Identity: 0, Proto: 17, PortLo: 5000, PortHi: 5999},
	}}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 80)); ret != tcActRedirect {
		t.Fatalf("TCP/80 verdict %d", ret)
	}
	n.events()
	d := expectDrop(t, n, n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 8080), DropPolicy)
	if d.Direction != DirectionIngress || d.EndpointID != epB.ID {
		t.Fatalf("drop %+v", d)
	}
	// L4-only port range.
	udp := craft(t, pkt{src: epA.IP, dst: epB.IP, proto: layers.IPProtocolUDP, sport: 1000, dport: 5500})
	if ret, _ := n.run(n.d.progs.fromContainer, udp); ret != tcActRedirect {
		t.Fatalf("UDP/5500 verdict %d", ret)
	}
	vs := verdicts(n.events())
	if len(vs) != 1 || vs[0].Match != MatchL4Only || !vs[0].Allowed {
		t.Fatalf("verdicts %+v", vs)
	}
	udp = craft(t, pkt{src: epA.IP, dst: epB.IP, proto: layers.IPProtocolUDP, sport: 1000, dport: 6000})
	expectDrop(t, n, n.d.progs.fromContainer, udp, DropPolicy)
}

func TestFromContainerDenyOverridesAllow(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity)},                    // allow all from A
		{Direction: policy.Ingress, Identity: 0, Proto: 6, PortLo: 22, Deny: true},     // deny TCP/22 from anyone
		{Direction: policy.Ingress, Identity: 0, Proto: 6, PortLo: 1000, PortHi: 1999}, // allow a range
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 1500, PortHi: 1500, Deny: true},
	}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		port uint16
		want DropReason // 0: allowed
	}{{80, 0}, {22, DropPolicyDenyRule}, {1000, 0}, {1499, 0}, {1500, DropPolicyDenyRule}, {1999, 0}}
	for _, c := range cases {
		data := syn(t, epA.IP, epB.IP, 30000+c.port, c.port)
		if c.want == 0 {
			if ret, _ := n.run(n.d.progs.fromContainer, data); ret != tcActRedirect {
				t.Fatalf("port %d: verdict %d, want redirect", c.port, ret)
			}
			n.events()
			continue
		}
		expectDrop(t, n, n.d.progs.fromContainer, data, c.want)
	}
}

func TestFromContainerRemoteSetsTunnelKey(t *testing.T) {
	n := newTestNode(t, func(c *NodeConfig) { c.VXLANIfindex = 0 })
	spec, err := loadTunnelProbe()
	if err != nil {
		t.Fatal(err)
	}
	coll, err := newCollection(spec, n.d.maps)
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	data := syn(t, epA.IP, remotePodIP, 40000, 80)
	ret, out := n.run(coll.Programs["test_tunnel_probe"], data)
	if ret != tcActRedirect {
		t.Fatalf("verdict %d, want redirect to cilium_vxlan", ret)
	}
	if !bytes.Equal(out[:len(data)], data) {
		t.Fatal("overlay path modified the inner packet")
	}
	var res tunnelProbeTunnelProbeResult
	if err := coll.Maps["tunnel_probe"].Lookup(uint32(0), &res); err != nil {
		t.Fatal(err)
	}
	if res.KeyRet != 0 {
		t.Fatalf("no tunnel key on the skb (get_tunnel_key %d)", res.KeyRet)
	}
	remote := netip.AddrFrom4([4]byte{byte(res.RemoteIpv4 >> 24), byte(res.RemoteIpv4 >> 16), byte(res.RemoteIpv4 >> 8), byte(res.RemoteIpv4)})
	if remote != testRemoteIP || res.TunnelId != uint32(epA.Identity) || res.Ttl != 64 {
		t.Fatalf("tunnel key remote %v VNI %d ttl %d, want %v VNI %d ttl 64", remote, res.TunnelId, res.Ttl, testRemoteIP, epA.Identity)
	}
	tr := traces(n.events())
	if len(tr) != 2 || tr[1].ObsPoint != ObsToOverlay || tr[1].DstIdentity != remoteID {
		t.Fatalf("traces %+v", tr)
	}
}

func TestFromContainerConntrackReplyBypass(t *testing.T) {
	n := newTestNode(t)
	// Both directions are default-deny except A -> B TCP/80.
	for _, ep := range []Endpoint{epA, epB} {
		if err := n.d.SetPolicy(ep.ID, policy.EndpointPolicy{IngressEnforced: true, EgressEnforced: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{IngressEnforced: true, EgressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Egress, Identity: uint32(epB.Identity), Proto: 6, PortLo: 80},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, EgressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
	}}); err != nil {
		t.Fatal(err)
	}
	if ret, _ := n.run(n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 40000, 80)); ret != tcActRedirect {
		t.Fatalf("SYN verdict %d", ret)
	}
	n.events()
	// B answers: B is now the sender on ifindex 1.
	b, a := epB, epA
	b.Ifindex, a.Ifindex = 1, 43
	n.endpoint(a)
	n.endpoint(b)
	synack := craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, sport: 80, dport: 40000, syn: true, ack: true})
	ret, out := n.run(n.d.progs.fromContainer, synack)
	if ret != tcActRedirect {
		t.Fatalf("SYN-ACK verdict %d: reply was judged by policy", ret)
	}
	if !bytes.Equal(out[0:6], macA) {
		t.Fatal("reply not delivered to A")
	}
	evs := n.events()
	if len(verdicts(evs)) != 0 {
		t.Fatalf("reply produced policy verdicts: %+v", verdicts(evs))
	}
	tr := traces(evs)
	if len(tr) != 2 || !tr[1].IsReply || tr[1].IsNew {
		t.Fatalf("reply traces %+v", tr)
	}
	// A related ICMP error from B about the connection passes too.
	quoted := syn(t, epA.IP, epB.IP, 40000, 80)[14:42]
	icmpErr := craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, proto: layers.IPProtocolICMPv4, icmpType: 3, icmpInner: quoted})
	if ret, _ := n.run(n.d.progs.fromContainer, icmpErr); ret != tcActRedirect {
		t.Fatalf("related ICMP verdict %d", ret)
	}
	if tr := traces(n.events()); len(tr) != 2 || !tr[1].IsReply {
		t.Fatalf("related ICMP traces %+v", tr)
	}
	// A new connection from B to A is still denied (B's egress).
	expectDrop(t, n, n.d.progs.fromContainer, syn(t, epB.IP, epA.IP, 50000, 80), DropPolicy)
	// An unrelated ICMP error is judged as new traffic and denied.
	other := syn(t, epA.IP, epB.IP, 40999, 80)[14:42]
	icmpErr = craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, proto: layers.IPProtocolICMPv4, icmpType: 3, icmpInner: other})
	expectDrop(t, n, n.d.progs.fromContainer, icmpErr, DropPolicy)
}

func TestFromContainerICMPEcho(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.SetPolicy(epB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Proto: 1, PortLo: 8},
	}}); err != nil {
		t.Fatal(err)
	}
	echo := craft(t, pkt{src: epA.IP, dst: epB.IP, proto: layers.IPProtocolICMPv4, icmpType: 8, icmpID: 7})
	if ret, _ := n.run(n.d.progs.fromContainer, echo); ret != tcActRedirect {
		t.Fatalf("echo request verdict %d", ret)
	}
	n.events()
	b := epB
	b.Ifindex = 1
	a := epA
	a.Ifindex = 43
	n.endpoint(a)
	n.endpoint(b)
	reply := craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, proto: layers.IPProtocolICMPv4, icmpType: 0, icmpID: 7})
	if ret, _ := n.run(n.d.progs.fromContainer, reply); ret != tcActRedirect {
		t.Fatalf("echo reply verdict %d", ret)
	}
	if tr := traces(n.events()); len(tr) != 2 || !tr[1].IsReply {
		t.Fatalf("echo reply traces %+v", tr)
	}
}

func TestFromContainerMalformed(t *testing.T) {
	n := newTestNode(t)
	good := syn(t, epA.IP, epB.IP, 40000, 80)
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := []struct {
		name string
		data []byte
		want DropReason
	}{
		{"802.3 length instead of ethertype", mutate(func(b []byte) []byte { b[12], b[13] = 0x00, 0x40; return b }), DropUnsupportedL2},
		{"IPv6", craftIPv6(t), DropUnknownL3},
		// PROG_TEST_RUN refuses IPv4 frames shorter than Ethernet + 20
		// bytes, so a truncated IPv4 datagram is one whose total length
		// does not even cover its header.
		{"truncated IPv4 datagram", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 12); return b }), DropInvalid},
		{"IP version 5", mutate(func(b []byte) []byte { b[14] = 0x55; return b }), DropInvalid},
		{"IHL below 5", mutate(func(b []byte) []byte { b[14] = 0x44; return b }), DropInvalid},
		{"IP options", craft(t, pkt{src: epA.IP, dst: epB.IP, sport: 1, dport: 80, syn: true,
			options: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 0}}}), DropInvalid},
		{"total length beyond packet", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 1400); return b }), DropInvalid},
		{"first fragment (MF)", craft(t, pkt{src: epA.IP, dst: epB.IP, sport: 1, dport: 80, syn: true, ipFlags: layers.IPv4MoreFragments}), DropFragNotSupported},
		{"later fragment", craft(t, pkt{src: epA.IP, dst: epB.IP, proto: layers.IPProtocolUDP, sport: 1, dport: 80, fragOffset: 100}), DropFragNotSupported},
		{"truncated TCP header", mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[16:], 20+10); return b[:14+30] }), DropCTInvalidHeader},
		{"TCP data offset below 5", mutate(func(b []byte) []byte { b[14+20+12] = 0x40; return b }), DropCTInvalidHeader},
		{"truncated UDP header", mutate(func(b []byte) []byte {
			b[14+9] = 17
			binary.BigEndian.PutUint16(b[16:], 20+4)
			return b[:14+24]
		}), DropCTInvalidHeader},
		{"GRE", mutate(func(b []byte) []byte { b[14+9] = 47; return b }), DropUnknownL4},
		{"spoofed source", syn(t, netip.MustParseAddr("10.244.0.99"), epB.IP, 1, 80), DropInvalidSourceIP},
		{"source of another endpoint's device", craft(t, pkt{srcMAC: macB, src: epB.IP, dst: epA.IP, sport: 1, dport: 80, syn: true}), DropInvalidSourceIP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.t = t
			expectDrop(t, n, n.d.progs.fromContainer, c.data, c.want)
		})
	}
}

func craftIPv6(t testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macHostA, EthernetType: layers.EthernetTypeIPv6}
	b := append(ethBytes(eth), make([]byte, 60)...)
	b[14] = 0x60
	return b
}

func ethBytes(e *layers.Ethernet) []byte {
	b := make([]byte, 14)
	copy(b, e.DstMAC)
	copy(b[6:], e.SrcMAC)
	binary.BigEndian.PutUint16(b[12:], uint16(e.EthernetType))
	return b
}

func TestFromContainerARPGoesToStack(t *testing.T) {
	n := newTestNode(t)
	arp := append(ethBytes(&layers.Ethernet{SrcMAC: macA, DstMAC: macHostA, EthernetType: layers.EthernetTypeARP}), make([]byte, 46)...)
	if ret, _ := n.run(n.d.progs.fromContainer, arp); ret != tcActOK {
		t.Fatalf("ARP verdict %d, want TC_ACT_OK", ret)
	}
	if tr := traces(n.events()); len(tr) != 2 || tr[1].ObsPoint != ObsToStack {
		t.Fatalf("traces %+v", tr)
	}
}

func TestFromContainerNoConfig(t *testing.T) {
	n := newTestNode(t)
	if err := n.d.maps[mapConfig].Put(uint32(0), &fromContainerNodeConfig{}); err != nil {
		t.Fatal(err)
	}
	expectDrop(t, n, n.d.progs.fromContainer, syn(t, epA.IP, epB.IP, 1, 80), DropNoConfig)
}
