package datapath

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/identity"

	"github.com/podlab/podlab/internal/e2e"
)

// TC verdicts returned by the programs.
const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

// The test node: PROG_TEST_RUN runs skbs on lo (ifindex 1), so the endpoint
// whose from-container (or to-container) is exercised has ifindex 1.
var (
	testNodeIP   = netip.MustParseAddr("172.18.0.2")
	testRouterIP = netip.MustParseAddr("10.244.0.1")
	testRemoteIP = netip.MustParseAddr("172.18.0.3")
	testWorldIP  = netip.MustParseAddr("1.1.1.1")
	macA         = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macHostA     = net.HardwareAddr{0x02, 0, 0, 0, 0xff, 0x0a}
	macB         = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	macHostB     = net.HardwareAddr{0x02, 0, 0, 0, 0xff, 0x0b}
	epA          = Endpoint{ID: 1, IP: netip.MustParseAddr("10.244.0.10"), Ifindex: 1, MAC: macA, HostMAC: macHostA, Identity: 1000}
	epB          = Endpoint{ID: 2, IP: netip.MustParseAddr("10.244.0.20"), Ifindex: 42, MAC: macB, HostMAC: macHostB, Identity: 2000}
	remotePodIP  = netip.MustParseAddr("10.244.1.30")
	remoteID     = identity.ID(3000)
)

type testNode struct {
	t  testing.TB
	d  *Datapath
	rd *EventReader
}

func requireRoot(t testing.TB) {
	t.Helper()
	e2e.Require(t, e2e.Root, e2e.BPFFS)
}

// newTestNode loads a datapath with no attachment at all: only maps and
// programs, pinned under /sys/fs/bpf/podlab/tbpf/unit-<test>.
func newTestNode(t testing.TB, mod ...func(*NodeConfig)) *testNode {
	t.Helper()
	requireRoot(t)
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	cfg := NodeConfig{Lab: "tbpf", Node: "unit-" + name, NodeIP: testNodeIP, RouterIP: testRouterIP, ConntrackSize: 4096,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mod {
		m(&cfg)
	}
	d, err := Load(cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	rd, err := d.Events()
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	t.Cleanup(func() { rd.Close() })
	n := &testNode{t: t, d: d, rd: rd}
	n.endpoint(epA)
	n.endpoint(epB)
	if err := d.UpsertIPCache(netip.MustParsePrefix("10.244.1.0/24"), remoteID, testRemoteIP); err != nil {
		t.Fatal(err)
	}
	if err := d.UpsertIPCache(netip.PrefixFrom(testRemoteIP, 32), identity.RemoteNode, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// endpoint writes an endpoint into the maps without attaching anything.
func (n *testNode) endpoint(ep Endpoint) {
	n.t.Helper()
	n.d.mu.Lock()
	defer n.d.mu.Unlock()
	if err := n.d.writeEndpoint(ep); err != nil {
		n.t.Fatalf("endpoint %d: %v", ep.ID, err)
	}
}

func (n *testNode) run(prog *ebpf.Program, pkt []byte) (uint32, []byte) {
	n.t.Helper()
	out := make([]byte, len(pkt)+512)
	opts := &ebpf.RunOptions{Data: pkt, DataOut: out}
	ret, err := prog.Run(opts)
	if err != nil {
		n.t.Fatalf("test run: %v", err)
	}
	return ret, opts.DataOut
}

// events returns the events written so far.
func (n *testNode) events() []Event {
	n.t.Helper()
	var out []Event
	for {
		n.rd.SetDeadline(time.Now().Add(-time.Second))
		ev, err := n.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			n.t.Fatalf("read event: %v", err)
		}
		out = append(out, ev)
	}
}

func drops(evs []Event) []*DropEvent {
	var out []*DropEvent
	for _, e := range evs {
		if d, ok := e.(*DropEvent); ok {
			out = append(out, d)
		}
	}
	return out
}

func traces(evs []Event) []*TraceEvent {
	var out []*TraceEvent
	for _, e := range evs {
		if d, ok := e.(*TraceEvent); ok {
			out = append(out, d)
		}
	}
	return out
}

func verdicts(evs []Event) []*PolicyVerdictEvent {
	var out []*PolicyVerdictEvent
	for _, e := range evs {
		if d, ok := e.(*PolicyVerdictEvent); ok {
			out = append(out, d)
		}
	}
	return out
}

// pkt describes a packet to craft.
type pkt struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	proto          layers.IPProtocol
	sport, dport   uint16
	syn, ack, fin  bool
	rst            bool
	icmpType       uint8
	icmpID         uint16
	payload        []byte
	ipFlags        layers.IPv4Flag
	fragOffset     uint16
	options        []layers.IPv4Option
	icmpInner      []byte // quoted packet (IP header on) for ICMP errors
}

func craft(t testing.TB, p pkt) []byte {
	t.Helper()
	if p.srcMAC == nil {
		p.srcMAC = macA
	}
	if p.dstMAC == nil {
		p.dstMAC = macHostA
	}
	if p.proto == 0 {
		p.proto = layers.IPProtocolTCP
	}
	eth := &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: p.proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(),
		Flags: p.ipFlags, FragOffset: p.fragOffset, Options: p.options}
	ls := []gopacket.SerializableLayer{eth, ip}
	switch p.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), SYN: p.syn, ACK: p.ack, FIN: p.fin, RST: p.rst, Window: 1024}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.icmpType, 0), Id: p.icmpID, Seq: 1})
		if p.icmpInner != nil {
			ls = append(ls, gopacket.Payload(p.icmpInner))
		}
	}
	if p.payload != nil {
		ls = append(ls, gopacket.Payload(p.payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("craft packet: %v", err)
	}
	b := buf.Bytes()
	// Ethernet frames are padded to 60 bytes on the wire.
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

// syn is a TCP SYN from src to dst:dport.
func syn(t testing.TB, src, dst netip.Addr, sport, dport uint16) []byte {
	return craft(t, pkt{src: src, dst: dst, sport: sport, dport: dport, syn: true})
}
