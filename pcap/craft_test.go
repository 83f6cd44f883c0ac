package pcap

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Crafted packets for tests.

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ipv4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: typ}
}

// tcpFrame builds an Ethernet/IPv4/TCP frame; flags is a string of
// S, A, F, R, P letters.
func tcpFrame(t testing.TB, src string, sport uint16, dst string, dport uint16, flags string, payload string) []byte {
	ip := ipv4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Window: 64240}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		case 'P':
			tcp.PSH = true
		}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload))
}

func udpFrame(t testing.TB, src string, sport uint16, dst string, dport uint16, payload []byte) []byte {
	ip := ipv4(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload))
}

func vxlanFrame(t testing.TB, outerSrc, outerDst string, port uint16, vni uint32, inner []byte) []byte {
	vx := serialize(t, &layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
	return udpFrame(t, outerSrc, 40000, outerDst, port, vx)
}

func dnsFrame(t testing.TB, src, dst string, name string, response bool, rcode layers.DNSResponseCode, answer string) []byte {
	d := &layers.DNS{ID: 7, QR: response, RD: true, ResponseCode: rcode,
		Questions: []layers.DNSQuestion{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	if answer != "" {
		d.Answers = []layers.DNSResourceRecord{{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 30, IP: net.ParseIP(answer).To4()}}
	}
	payload := serialize(t, d)
	sport, dport := uint16(33333), uint16(53)
	if response {
		sport, dport = 53, 33333
	}
	return udpFrame(t, src, sport, dst, dport, payload)
}

func icmpFrame(t testing.TB, src, dst string, typ uint8, seq uint16) []byte {
	ip := ipv4(src, dst, layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: 9, Seq: seq}
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload("ping"))
}

func arpFrame(t testing.TB, sender, target string) []byte {
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macA, SourceProtAddress: net.ParseIP(sender).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(target).To4()}
	e := &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	return serialize(t, e, a)
}

// labResolver is the lab of the unit tests.
var labResolver = StaticResolver{
	Names: map[string][]netip.Addr{
		"pod-to-a":     {netip.MustParseAddr("10.244.1.5")},
		"echo-a":       {netip.MustParseAddr("10.244.2.7")},
		"echo-a-svc":   {netip.MustParseAddr("10.96.0.50")},
		"kind-worker":  {netip.MustParseAddr("172.18.0.3")},
		"kind-worker2": {netip.MustParseAddr("172.18.0.4")},
	},
	Identities: map[string]uint32{"pod-to-a": 260, "echo-a": 261},
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC)

func pkt(i int, dir Direction, data []byte) Packet {
	return Packet{Time: t0.Add(time.Duration(i) * time.Millisecond), Data: data, Direction: dir, InterfaceName: "kind-worker/eth0"}
}

// handshake is a pod-to-a -> echo-a connection as seen on kind-worker's
// underlay: VXLAN-encapsulated, plus noise.
func handshake(t testing.TB) []Packet {
	syn := tcpFrame(t, "10.244.1.5", 43122, "10.244.2.7", 8080, "S", "")
	synAck := tcpFrame(t, "10.244.2.7", 8080, "10.244.1.5", 43122, "SA", "")
	ack := tcpFrame(t, "10.244.1.5", 43122, "10.244.2.7", 8080, "A", "")
	req := tcpFrame(t, "10.244.1.5", 43122, "10.244.2.7", 8080, "PA", "GET /index HTTP/1.1\r\nHost: echo-a\r\n\r\n")
	return []Packet{
		pkt(0, DirectionOutbound, arpFrame(t, "172.18.0.3", "172.18.0.4")),
		pkt(1, DirectionOutbound, vxlanFrame(t, "172.18.0.3", "172.18.0.4", 8472, 260, syn)),
		pkt(2, DirectionInbound, vxlanFrame(t, "172.18.0.4", "172.18.0.3", 8472, 261, synAck)),
		pkt(3, DirectionOutbound, vxlanFrame(t, "172.18.0.3", "172.18.0.4", 8472, 260, ack)),
		pkt(4, DirectionOutbound, vxlanFrame(t, "172.18.0.3", "172.18.0.4", 8472, 260, req)),
		pkt(5, DirectionOutbound, dnsFrame(t, "10.244.1.5", "10.96.0.10", "echo-a.default.svc.cluster.local", false, 0, "")),
		pkt(6, DirectionInbound, dnsFrame(t, "10.96.0.10", "10.244.1.5", "echo-a.default.svc.cluster.local", true, 0, "10.96.0.50")),
		pkt(7, DirectionOutbound, icmpFrame(t, "10.244.1.5", "10.244.2.7", 8, 1)),
	}
}
