package flow

import (
	"bytes"
	"encoding/json"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var update = flag.Bool("update", false, "rewrite golden files")

// labResolver is a fixed resolver for the connectivity-check pods.
type labResolver map[netip.Addr]EndpointInfo

func (r labResolver) EndpointByIP(ip netip.Addr) (EndpointInfo, bool) {
	i, ok := r[ip]
	return i, ok
}

func (r labResolver) IdentityLabels(id uint32) []string {
	switch id {
	case 1:
		return []string{"reserved:host"}
	case 2:
		return []string{"reserved:world"}
	case 6:
		return []string{"reserved:remote-node"}
	}
	for _, i := range r {
		if i.Identity == id {
			return i.Labels
		}
	}
	return nil
}

var testResolver = labResolver{
	netip.MustParseAddr("10.244.1.17"): {ID: 1234, Identity: 30582, Namespace: "default", PodName: "pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm",
		Labels: []string{"k8s:io.cilium.k8s.policy.cluster=default", "k8s:io.kubernetes.pod.namespace=default", "k8s:name=pod-to-a-l3-denied-cnp"}, Node: "kind-worker",
		Workload: &Workload{Kind: "Deployment", Name: "pod-to-a-l3-denied-cnp"}},
	netip.MustParseAddr("10.244.2.31"): {ID: 345, Identity: 4711, Namespace: "default", PodName: "echo-a-8b6595b89-w9kt2",
		Labels: []string{"k8s:io.cilium.k8s.policy.cluster=default", "k8s:io.kubernetes.pod.namespace=default", "k8s:name=echo-a"}, Node: "kind-worker2",
		Workload: &Workload{Kind: "Deployment", Name: "echo-a"}},
}

type pktSpec struct {
	src, dst      string
	proto         layers.IPProtocol
	sport, dport  uint16
	syn, ack, fin bool
	psh, rst      bool
	icmpType      uint8
	payload       []byte
	ipv6          bool
}

// packet serialises an Ethernet frame for spec.
func packet(t testing.TB, s pktSpec) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x11}, DstMAC: net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01}, EthernetType: layers.EthernetTypeIPv4}
	var l3 gopacket.NetworkLayer
	ls := []gopacket.SerializableLayer{eth}
	if s.ipv6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: s.proto, SrcIP: net.ParseIP(s.src), DstIP: net.ParseIP(s.dst)}
		l3 = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: s.proto, SrcIP: net.ParseIP(s.src).To4(), DstIP: net.ParseIP(s.dst).To4()}
		l3 = ip
		ls = append(ls, ip)
	}
	switch s.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), SYN: s.syn, ACK: s.ack, FIN: s.fin, PSH: s.psh, RST: s.rst, Window: 64240, Seq: 1000}
		_ = tcp.SetNetworkLayerForChecksum(l3)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		_ = udp.SetNetworkLayerForChecksum(l3)
		ls = append(ls, udp)
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(s.icmpType, 0), Id: 7, Seq: 1})
	case layers.IPProtocolICMPv6:
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(s.icmpType, 0)}
		_ = icmp.SetNetworkLayerForChecksum(l3)
		ls = append(ls, icmp)
	}
	if s.payload != nil {
		ls = append(ls, gopacket.Payload(s.payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

var testTime = time.Date(2026, 9, 3, 0, 0, 25, 428123000, time.UTC)

func deniedSYN(t testing.TB) *Event {
	return &Event{
		Type: EventDrop, Time: testTime, Node: "kind-worker", Ifindex: 12, Interface: "lxc3f2a",
		DropReason: 133, Direction: Egress, SrcIdentity: 30582, DstIdentity: 4711, EndpointID: 1234,
		OrigLen: 74,
		Data:    packet(t, pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolTCP, sport: 55678, dport: 80, syn: true}),
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDecodeDropGoldenJSON(t *testing.T) {
	d := NewDecoder(testResolver)
	f, err := d.Decode(deniedSYN(t))
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(f.UUID) {
		t.Errorf("uuid %q is not a version-4 UUID", f.UUID)
	}
	if f2, _ := d.Decode(deniedSYN(t)); f2.UUID == f.UUID {
		t.Errorf("two flows share uuid %s", f.UUID)
	}
	f.UUID = "" // random: not part of the golden file
	got, err := json.MarshalIndent(NewResponse(f), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "drop_policy_denied.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("JSON differs from %s:\n got: %s\nwant: %s", golden, got, want)
	}

	// Field names Hubble tools rely on, checked independently of the golden.
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	fl := m["flow"].(map[string]any)
	for _, k := range []string{"time", "verdict", "drop_reason", "drop_reason_desc", "ethernet", "IP", "l4", "source", "destination", "Type", "node_name", "event_type", "traffic_direction", "is_reply", "interface", "Summary"} {
		if _, ok := fl[k]; !ok {
			t.Errorf("flow JSON lacks %q", k)
		}
	}
	if fl["verdict"] != "DROPPED" || fl["drop_reason_desc"] != "POLICY_DENIED" || fl["Type"] != "L3_L4" || fl["traffic_direction"] != "EGRESS" {
		t.Errorf("enum values: %v %v %v %v", fl["verdict"], fl["drop_reason_desc"], fl["Type"], fl["traffic_direction"])
	}
	if et := fl["event_type"].(map[string]any); et["type"] != 1.0 || et["sub_type"] != 133.0 {
		t.Errorf("event_type = %v", et)
	}
	if ip := fl["IP"].(map[string]any); ip["ipVersion"] != "IPv4" {
		t.Errorf("IP = %v", ip)
	}
	tcp := fl["l4"].(map[string]any)["TCP"].(map[string]any)
	if tcp["destination_port"] != 80.0 || tcp["flags"].(map[string]any)["SYN"] != true {
		t.Errorf("TCP = %v", tcp)
	}
	if src := fl["source"].(map[string]any); src["pod_name"] != "pod-to-a-l3-denied-cnp-7f64d7b7c4-fsxrm" || src["namespace"] != "default" || src["identity"] != 30582.0 {
		t.Errorf("source = %v", src)
	}
	if m["time"] != "2026-09-03T00:00:25.428123Z" || m["node_name"] != "kind-worker" {
		t.Errorf("response time/node = %v %v", m["time"], m["node_name"])
	}

	// Round trip.
	var back Response
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(f.Time) || back.Flow.DropReasonDesc != DropPolicyDenied || back.Flow.Verdict != VerdictDropped ||
		back.Flow.L4.TCP.SourcePort != 55678 || back.Flow.TraceObservationPoint != TraceUnknownPoint {
		t.Errorf("round trip: %+v", back.Flow)
	}
}

func TestDecodeSummaries(t *testing.T) {
	d := NewDecoder(testResolver)
	cases := []struct {
		name    string
		spec    pktSpec
		summary string
		proto   string
	}{
		{"syn-ack", pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 80, dport: 55678, syn: true, ack: true}, "TCP Flags: SYN, ACK", "TCP"},
		{"ack-fin", pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 80, dport: 55678, ack: true, fin: true}, "TCP Flags: ACK, FIN", "TCP"},
		{"ack-psh", pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 80, dport: 55678, ack: true, psh: true, payload: []byte("GET / HTTP/1.1\r\n")}, "TCP Flags: ACK, PSH", "TCP"},
		{"udp", pktSpec{src: "10.244.1.17", dst: "10.96.0.10", proto: layers.IPProtocolUDP, sport: 40000, dport: 5353}, "UDP", "UDP"},
		{"icmp", pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolICMPv4, icmpType: 8}, "ICMPv4 EchoRequest", "ICMPv4"},
		{"icmp6", pktSpec{src: "fd00::1", dst: "fd00::2", proto: layers.IPProtocolICMPv6, icmpType: 128, ipv6: true}, "ICMPv6 EchoRequest", "ICMPv6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := d.Decode(&Event{Type: EventTrace, Time: testTime, Node: "kind-worker", ObsPoint: ObsToEndpoint, Data: packet(t, c.spec)})
			if err != nil {
				t.Fatal(err)
			}
			if f.Summary != c.summary || f.Protocol() != c.proto {
				t.Errorf("summary %q protocol %q, want %q %q", f.Summary, f.Protocol(), c.summary, c.proto)
			}
			if f.TraceObservationPoint != TraceToEndpoint || f.EventType.Type != 4 || f.EventType.SubType != 0 || f.Verdict != VerdictForwarded {
				t.Errorf("trace fields: %v %+v %v", f.TraceObservationPoint, f.EventType, f.Verdict)
			}
		})
	}
}

func TestDecodeTruncatedAndWorld(t *testing.T) {
	d := NewDecoder(testResolver)
	full := packet(t, pktSpec{src: "1.1.1.1", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 443, dport: 40000, ack: true, payload: make([]byte, 400)})
	f, err := d.Decode(&Event{Type: EventTrace, Time: testTime, ObsPoint: ObsFromNetwork, Data: full[:128], OrigLen: uint32(len(full)), IsReply: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.L4 == nil || f.L4.TCP == nil || f.L4.TCP.SourcePort != 443 {
		t.Fatalf("truncated packet lost its TCP header: %+v", f.L4)
	}
	if f.Source.Identity != 2 || len(f.Source.Labels) != 1 || f.Source.Labels[0] != "reserved:world" || f.Source.PodName != "" {
		t.Errorf("world source = %+v", f.Source)
	}
	if f.Destination.PodName == "" {
		t.Errorf("destination not resolved: %+v", f.Destination)
	}
	if f.TrafficDirection != Egress { // from-network, reply: the endpoint's egress connection
		t.Errorf("direction = %v", f.TrafficDirection)
	}
	if _, err := d.Decode(&Event{Type: 99}); err == nil {
		t.Error("unknown event type accepted")
	}
	// An event without packet data still yields a flow.
	f, err = d.Decode(&Event{Type: EventDrop, DropReason: 151, SrcIdentity: 30582})
	if err != nil || f.IP != nil || f.Source == nil || f.DropReasonDesc.Text() != "Stale or unroutable IP" {
		t.Errorf("empty drop: %+v %v", f, err)
	}
}

func TestDecodePolicyVerdictAndDNS(t *testing.T) {
	d := NewDecoder(testResolver)
	ev := deniedSYN(t)
	ev.Type, ev.PolicyMatch = EventPolicyVerdict, PolicyMatchL3L4
	f, err := d.Decode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if f.Verdict != VerdictDropped || f.EventType.Type != 5 || f.PolicyMatchType != 2 || f.Type != FlowTypeL3L4 {
		t.Errorf("policy verdict: %v %+v %d", f.Verdict, f.EventType, f.PolicyMatchType)
	}

	dns := &layers.DNS{ID: 9, QR: true, ResponseCode: layers.DNSResponseCodeNoErr,
		Questions: []layers.DNSQuestion{{Name: []byte("echo-a.default.svc.cluster.local"), Type: layers.DNSTypeA, Class: layers.DNSClassIN}},
		Answers:   []layers.DNSResourceRecord{{Name: []byte("echo-a.default.svc.cluster.local"), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 30, IP: net.ParseIP("10.96.12.7").To4()}},
	}
	buf := gopacket.NewSerializeBuffer()
	if err := dns.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	data := packet(t, pktSpec{src: "10.96.0.10", dst: "10.244.1.17", proto: layers.IPProtocolUDP, sport: 53, dport: 40000, payload: buf.Bytes()})
	f, err = d.Decode(&Event{Type: EventTrace, ObsPoint: ObsToEndpoint, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if f.DNS == nil || !f.DNS.Response || len(f.DNS.IPs) != 1 || f.DNS.IPs[0] != "10.96.12.7" || f.DNS.QTypes[0] != "A" || f.DNS.Names[0] != "echo-a.default.svc.cluster.local" {
		t.Errorf("dns = %+v", f.DNS)
	}
}

func TestParseDropReason(t *testing.T) {
	for _, s := range []string{"POLICY_DENIED", "Policy denied", "133"} {
		if r, ok := ParseDropReason(s); !ok || r != DropPolicyDenied {
			t.Errorf("ParseDropReason(%q) = %v %v", s, r, ok)
		}
	}
	if DropReason(250).String() != "250" {
		t.Error("unknown reason name")
	}
}

func BenchmarkDecode(b *testing.B) {
	d := NewDecoder(testResolver)
	evs := []*Event{deniedSYN(b),
		{Type: EventTrace, Time: testTime, Node: "kind-worker", ObsPoint: ObsToOverlay, Ifindex: 3, Interface: "cilium_vxlan",
			Data: packet(b, pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 80, dport: 55678, ack: true, psh: true, payload: make([]byte, 200)})[:128]},
		{Type: EventTrace, Time: testTime, Node: "kind-worker", ObsPoint: ObsToEndpoint,
			Data: packet(b, pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolICMPv4, icmpType: 8})},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Decode(evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
}
