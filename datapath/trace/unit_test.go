package trace

import (
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath"
)

func TestCraftBuildsValidPackets(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	for _, p := range []*packet{
		{proto: unix.IPPROTO_ICMP, icmpType: 8, sport: 0x7064, size: 84},
		{proto: unix.IPPROTO_TCP, sport: 40000, dport: 80, size: 60},
		{proto: unix.IPPROTO_TCP, sport: 80, dport: 40000, size: 60, reply: true},
		{proto: unix.IPPROTO_UDP, sport: 40000, dport: 53, size: 1400},
	} {
		p.src, p.dst, p.ttl = mustAddr("10.0.0.1"), mustAddr("10.0.0.2"), 64
		p.srcMAC, p.dstMAC = mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02")
		b, err := craft(p)
		if err != nil {
			t.Fatalf("%s: %v", p.describe(), err)
		}
		if len(b) != 14+p.size {
			t.Errorf("%s: frame of %d bytes, want %d", p.describe(), len(b), 14+p.size)
		}
		pk := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
		if el := pk.ErrorLayer(); el != nil {
			t.Fatalf("%s: %v", p.describe(), el.Error())
		}
		ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.Flags&layers.IPv4DontFragment == 0 || int(ip.Length) != p.size {
			t.Errorf("%s: IP flags %v length %d", p.describe(), ip.Flags, ip.Length)
		}
		switch p.proto {
		case unix.IPPROTO_TCP:
			tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !tcp.SYN || tcp.ACK != p.reply {
				t.Errorf("%s: SYN %v ACK %v", p.describe(), tcp.SYN, tcp.ACK)
			}
			if got := matchProbe(b, p.src, p.dst, p.proto); !p.reply && got != 1 {
				t.Errorf("%s: matchProbe %d, want the request", p.describe(), got)
			}
		case unix.IPPROTO_ICMP:
			if got := matchProbe(b, p.src, p.dst, p.proto); got != 1 {
				t.Errorf("ICMP echo request: matchProbe %d", got)
			}
			if got := matchProbe(b, p.dst, p.src, p.proto); got != 0 {
				t.Errorf("ICMP echo request seen as the reply of the other direction: %d", got)
			}
		}
	}
	if _, err := craft(&packet{src: mustAddr("::1"), dst: mustAddr("::2"), proto: unix.IPPROTO_ICMP}); err == nil {
		t.Error("IPv6 crafted")
	}
}

func TestMatchProbeInsideVXLAN(t *testing.T) {
	inner, err := craft(&packet{proto: unix.IPPROTO_ICMP, icmpType: 0, src: mustAddr("10.0.0.2"), dst: mustAddr("10.0.0.1"), size: 84})
	if err != nil {
		t.Fatal(err)
	}
	outer := gopacket.NewSerializeBuffer()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{192, 168, 0, 2}, DstIP: net.IP{192, 168, 0, 1}}
	udp := &layers.UDP{SrcPort: 5555, DstPort: 4789}
	_ = udp.SetNetworkLayerForChecksum(ip)
	err = gopacket.SerializeLayers(outer, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: 42}, gopacket.Payload(inner))
	if err != nil {
		t.Fatal(err)
	}
	if got := matchProbe(outer.Bytes(), mustAddr("10.0.0.1"), mustAddr("10.0.0.2"), unix.IPPROTO_ICMP); got != 2 {
		t.Fatalf("echo reply inside VXLAN: matchProbe %d, want 2", got)
	}
}

func TestPolicyDecisionText(t *testing.T) {
	for _, c := range []struct {
		d    datapath.PolicyDecision
		want string
	}{
		{datapath.PolicyDecision{}, "not enforced"},
		{datapath.PolicyDecision{Enforced: true}, "no matching entry (default deny)"},
		{datapath.PolicyDecision{Enforced: true, Found: true, Identity: 256, Proto: 6, Port: 80, Match: datapath.MatchL3L4}, "identity 256 TCP/80 allow (match L3-L4)"},
		{datapath.PolicyDecision{Enforced: true, Found: true, Proto: 17, Port: 0x1f, Level: 1, Deny: true}, "any identity UDP/7936-8191 deny"},
		{datapath.PolicyDecision{Enforced: true, Found: true, Level: 3}, "any identity any protocol allow"},
	} {
		if got := c.d.String(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: %q, want prefix %q", c.d, got, c.want)
		}
	}
}

func TestResultFormat(t *testing.T) {
	r := &Result{From: "a", To: "b", Src: mustAddr("10.0.0.1"), Dst: mustAddr("10.0.0.2"), Proto: "icmp",
		Hops:    []Hop{{NS: "a", Kind: "route", Text: "10.0.0.2 directly connected dev a0"}, {NS: "router", Kind: "neigh", Text: "x"}},
		Anomaly: "b is down"}
	want := "trace icmp a (10.0.0.1) -> b (10.0.0.2)\n" +
		"  1  a       route   10.0.0.2 directly connected dev a0\n" +
		"  2  router  neigh   x\n" +
		"anomaly: b is down\n"
	if got := r.Format(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	r.Anomaly, r.Reached = "", "10.0.0.2 in b (b0)"
	if got := r.Summary(); got != "no anomaly: the packet reaches 10.0.0.2 in b (b0)" {
		t.Fatal(got)
	}
}

func TestNeighStateNames(t *testing.T) {
	if got := neighState(0x80 | 0x02); got != "REACHABLE,PERMANENT" {
		t.Fatal(got)
	}
	if got := neighState(0); got != "NONE" {
		t.Fatal(got)
	}
}

func TestMatchSocket(t *testing.T) {
	tcp := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0202F40A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0202F40A:0051 0102F40A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`)
	for _, c := range []struct {
		dst  string
		port uint16
		want bool
	}{
		{"10.244.2.2", 8080, true}, // wildcard listener
		{"10.244.2.2", 80, true},   // bound to 10.244.2.2
		{"10.244.2.3", 80, false},  // bound to another address
		{"10.244.2.2", 81, false},  // established, not listening
		{"10.244.2.2", 443, false},
	} {
		if got := matchSocket(tcp, mustAddr(c.dst), c.port, "0A"); got != c.want {
			t.Errorf("%s:%d: %v, want %v", c.dst, c.port, got, c.want)
		}
	}
	tcp6 := []byte("header\n   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 0A 0 0 0 0 0 0\n")
	if !matchSocket(tcp6, mustAddr("10.0.0.1"), 53, "0A") {
		t.Error("IPv6 wildcard listener not matched")
	}
}
