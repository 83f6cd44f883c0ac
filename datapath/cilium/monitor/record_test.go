package monitor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/podlab/podlab/datapath/flow"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Crafted records: encoders that write the C layouts byte by byte (not
// through the parser's own tables), as Cilium's programs would.

type hdr struct {
	typ, sub   uint8
	source     uint16
	hash       uint32
	origLen    uint32
	version    uint8
	extVersion uint8
}

func putHeader(b []byte, h hdr, capLen int) {
	b[0], b[1] = h.typ, h.sub
	binary.NativeEndian.PutUint16(b[2:], h.source)
	binary.NativeEndian.PutUint32(b[4:], h.hash)
	binary.NativeEndian.PutUint32(b[8:], h.origLen)
	binary.NativeEndian.PutUint16(b[12:], uint16(capLen))
	b[14], b[15] = h.version, h.extVersion
}

// sample appends the packet and pads the record the way the kernel pads a
// perf raw sample (size + 4 rounded up to 8), with garbage.
func sample(rec, pkt []byte) []byte {
	out := append(rec, pkt...)
	for (len(out)+4)%8 != 0 {
		out = append(out, 0xee)
	}
	return out
}

type traceRec struct {
	hdr
	src, dst uint32
	dstID    uint16
	reason   uint8
	flags    uint8
	ifindex  uint32
	origIP   [16]byte
	traceID  uint64
}

func (r traceRec) bytes(pkt []byte) []byte {
	n := [...]int{32, 48, 56, 56}[min(int(r.version), 3)]
	b := make([]byte, n)
	r.typ = 4
	putHeader(b, r.hdr, len(pkt))
	binary.NativeEndian.PutUint32(b[16:], r.src)
	binary.NativeEndian.PutUint32(b[20:], r.dst)
	binary.NativeEndian.PutUint16(b[24:], r.dstID)
	b[26], b[27] = r.reason, r.flags
	binary.NativeEndian.PutUint32(b[28:], r.ifindex)
	if n >= 48 {
		copy(b[32:48], r.origIP[:])
	}
	if n >= 56 {
		binary.NativeEndian.PutUint64(b[48:], r.traceID)
	}
	return sample(b, pkt)
}

type dropRec struct {
	hdr
	src, dst uint32
	dstID    uint32
	line     uint16
	file     uint8
	extErr   int8
	ifindex  uint32
	flags    uint8
	traceID  uint64
}

func (r dropRec) bytes(pkt []byte) []byte {
	n := [...]int{36, 36, 40, 48}[r.version]
	b := make([]byte, n)
	r.typ = 1
	putHeader(b, r.hdr, len(pkt))
	binary.NativeEndian.PutUint32(b[16:], r.src)
	binary.NativeEndian.PutUint32(b[20:], r.dst)
	binary.NativeEndian.PutUint32(b[24:], r.dstID)
	binary.NativeEndian.PutUint16(b[28:], r.line)
	b[30], b[31] = r.file, uint8(r.extErr)
	binary.NativeEndian.PutUint32(b[32:], r.ifindex)
	if n >= 40 {
		b[36] = r.flags
	}
	if n >= 48 {
		binary.NativeEndian.PutUint64(b[40:], r.traceID)
	}
	return sample(b, pkt)
}

type verdictRec struct {
	hdr
	remote    uint32
	verdict   int32
	dport     uint16
	proto     uint8
	dir       uint8
	ipv6      bool
	matchType uint8
	audited   bool
	l3        bool
	cookie    uint32
	v118      bool
}

func (r verdictRec) bytes(pkt []byte) []byte {
	n := 40
	if r.v118 {
		n = 32
	}
	b := make([]byte, n)
	r.typ, r.version = 5, 1
	putHeader(b, r.hdr, len(pkt))
	binary.NativeEndian.PutUint32(b[16:], r.remote)
	binary.NativeEndian.PutUint32(b[20:], uint32(r.verdict))
	binary.NativeEndian.PutUint16(b[24:], r.dport)
	b[26] = r.proto
	f := r.dir&3 | r.matchType&7<<3
	if r.ipv6 {
		f |= 1 << 2
	}
	if r.audited {
		f |= 1 << 6
	}
	if r.l3 {
		f |= 1 << 7
	}
	b[27] = f
	if !r.v118 {
		binary.NativeEndian.PutUint32(b[32:], r.cookie)
	}
	return sample(b, pkt)
}

type pktSpec struct {
	src, dst     string
	proto        layers.IPProtocol
	sport, dport uint16
	syn, ack     bool
	icmpType     uint8
}

func packetBytes(t testing.TB, s pktSpec) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x11}, DstMAC: net.HardwareAddr{0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: s.proto, SrcIP: net.ParseIP(s.src).To4(), DstIP: net.ParseIP(s.dst).To4()}
	ls := []gopacket.SerializableLayer{eth, ip}
	switch s.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), SYN: s.syn, ACK: s.ack, Window: 64240, Seq: 1000}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	case layers.IPProtocolICMPv4:
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(s.icmpType, 0), Id: 7, Seq: 1})
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

// vxlan wraps an inner frame in Ethernet/IPv4/UDP 8472/VXLAN between two
// nodes, as a packet on a node's eth0.
func vxlan(t testing.TB, inner []byte, vni uint32) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0xac, 0x12, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0xac, 0x12, 0, 3}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{172, 18, 0, 2}, DstIP: net.IP{172, 18, 0, 3}}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 8472}
	_ = udp.SetNetworkLayerForChecksum(ip)
	vx := &layers.VXLAN{ValidIDFlag: true, VNI: vni}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, vx, gopacket.Payload(inner)); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

type resolver map[netip.Addr]flow.EndpointInfo

func (r resolver) EndpointByIP(ip netip.Addr) (flow.EndpointInfo, bool) {
	i, ok := r[ip]
	return i, ok
}

func (r resolver) IdentityLabels(id uint32) []string {
	switch id {
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

// The connectivity-check pods: pod-to-a-l3-denied-cnp on kind-worker
// (endpoint 1234), echo-a on kind-worker2 (endpoint 345).
var testResolver = resolver{
	netip.MustParseAddr("10.244.1.17"): {ID: 1234, Identity: 30582, Namespace: "default", PodName: "pod-to-a-l3-denied-cnp",
		Labels: []string{"k8s:io.kubernetes.pod.namespace=default", "k8s:name=pod-to-a-l3-denied-cnp"}, Node: "kind-worker"},
	netip.MustParseAddr("10.244.2.31"): {ID: 345, Identity: 4711, Namespace: "default", PodName: "echo-a",
		Labels: []string{"k8s:io.kubernetes.pod.namespace=default", "k8s:name=echo-a"}, Node: "kind-worker2"},
}

var testTime = time.Date(2026, 9, 3, 0, 0, 25, 428123000, time.UTC)

var testIfNames = map[uint32]string{12: "lxc3f2a", 14: "lxc91b0", 4: "cilium_vxlan", 2: "eth0"}

func testDecoder(node string) *Decoder {
	return NewDecoder(Config{
		Node: node, Resolver: testResolver, Now: func() time.Time { return testTime },
		InterfaceName: func(i uint32) string { return testIfNames[i] },
	})
}

// goldenCase is one record and the flow it must give.
type goldenCase struct {
	name string
	node string
	rec  func(t testing.TB) []byte
}

func syn(t testing.TB) []byte {
	return packetBytes(t, pktSpec{src: "10.244.1.17", dst: "10.244.2.31", proto: layers.IPProtocolTCP, sport: 55678, dport: 8080, syn: true})
}

func synAck(t testing.TB) []byte {
	return packetBytes(t, pktSpec{src: "10.244.2.31", dst: "10.244.1.17", proto: layers.IPProtocolTCP, sport: 8080, dport: 55678, syn: true, ack: true})
}

var goldenCases = []goldenCase{
	{"trace-from-endpoint-new", "kind-worker", func(t testing.TB) []byte {
		p := syn(t)
		return traceRec{hdr: hdr{sub: TraceFromLxc, source: 1234, origLen: uint32(len(p)), version: 2}, src: 30582, reason: ReasonPolicy, ifindex: 12}.bytes(p)
	}},
	{"trace-to-overlay-new", "kind-worker", func(t testing.TB) []byte {
		p := syn(t)
		return traceRec{hdr: hdr{sub: TraceToOverlay, source: 1234, origLen: uint32(len(p)), version: 2}, src: 30582, dst: 4711, reason: ReasonPolicy, ifindex: 4}.bytes(p)
	}},
	{"trace-to-endpoint-new", "kind-worker2", func(t testing.TB) []byte {
		p := syn(t)
		return traceRec{hdr: hdr{sub: TraceToLxc, origLen: uint32(len(p)), version: 2}, src: 30582, dst: 4711, dstID: 345, reason: ReasonPolicy, ifindex: 14}.bytes(p)
	}},
	{"trace-from-endpoint-reply", "kind-worker2", func(t testing.TB) []byte {
		p := synAck(t)
		return traceRec{hdr: hdr{sub: TraceFromLxc, source: 345, origLen: uint32(len(p)), version: 2}, src: 4711, reason: ReasonCtReply, ifindex: 14}.bytes(p)
	}},
	{"trace-to-endpoint-reply-v1", "kind-worker", func(t testing.TB) []byte {
		p := synAck(t)
		return traceRec{hdr: hdr{sub: TraceToLxc, source: 1234, origLen: uint32(len(p)), version: 1}, src: 4711, dst: 30582, dstID: 1234, reason: ReasonCtReply, ifindex: 12}.bytes(p)
	}},
	{"trace-from-network-vxlan-unknown-reason", "kind-worker2", func(t testing.TB) []byte {
		p := vxlan(t, syn(t), 30582)
		return traceRec{hdr: hdr{sub: TraceFromNetwork, origLen: uint32(len(p)), version: 2}, reason: ReasonUnknown, flags: FlagVXLAN, ifindex: 2}.bytes(p)
	}},
	{"drop-policy-denied-ingress", "kind-worker2", func(t testing.TB) []byte {
		p := syn(t)
		return dropRec{hdr: hdr{sub: 133, source: 345, origLen: uint32(len(p)), version: 3}, src: 30582, dst: 4711, dstID: 345, line: 2043, file: 1, ifindex: 14}.bytes(p)
	}},
	{"drop-policy-denied-egress-v2", "kind-worker", func(t testing.TB) []byte {
		p := syn(t)
		return dropRec{hdr: hdr{sub: 133, source: 1234, origLen: uint32(len(p)), version: 2}, src: 30582, dst: 4711, line: 1380, file: 1, ifindex: 12}.bytes(p)
	}},
	{"drop-truncated-capture", "kind-worker", func(t testing.TB) []byte {
		p := syn(t)
		return dropRec{hdr: hdr{sub: 134, source: 1234, origLen: uint32(len(p)), version: 3}, src: 30582, ifindex: 12}.bytes(p[:34])
	}},
	{"policy-verdict-denied-ingress", "kind-worker2", func(t testing.TB) []byte {
		p := syn(t)
		return verdictRec{hdr: hdr{source: 345, origLen: uint32(len(p))}, remote: 30582, verdict: -133, dport: 8080, proto: 6, dir: PolicyIngress}.bytes(p)
	}},
	{"policy-verdict-allowed-egress-l3l4-v118", "kind-worker", func(t testing.TB) []byte {
		p := syn(t)
		return verdictRec{hdr: hdr{source: 1234, origLen: uint32(len(p))}, remote: 4711, dport: 8080, proto: 6, dir: PolicyEgress, matchType: 2, v118: true}.bytes(p)
	}},
	{"policy-verdict-audit", "kind-worker2", func(t testing.TB) []byte {
		p := syn(t)
		return verdictRec{hdr: hdr{source: 345, origLen: uint32(len(p))}, remote: 30582, dport: 8080, proto: 6, dir: PolicyIngress, audited: true, cookie: 7}.bytes(p)
	}},
}

// TestGoldenFlows decodes crafted records of each kind through the monitor
// decoder and the flow decoder, and compares the Hubble JSON with
// testdata/flows.golden (go test -update rewrites it).
func TestGoldenFlows(t *testing.T) {
	var got bytes.Buffer
	for _, c := range goldenCases {
		d := testDecoder(c.node)
		var ev flow.Event
		if err := d.Decode(c.rec(t), &ev); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f, err := flow.NewDecoder(testResolver).Decode(&ev)
		if err != nil {
			t.Fatalf("%s: flow: %v", c.name, err)
		}
		if f.UUID == "" {
			t.Errorf("%s: flow without a uuid", c.name)
		}
		f.UUID = "" // random per flow, as Hubble's
		b, err := json.Marshal(flow.NewResponse(f))
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString("# " + c.name + "\n")
		got.Write(b)
		got.WriteByte('\n')
	}
	golden := filepath.Join("testdata", "flows.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("flows differ from %s:\n%s", golden, lineDiff(string(want), got.String()))
	}
}

func lineDiff(want, got string) string {
	wl, gl := bytes.Split([]byte(want), []byte("\n")), bytes.Split([]byte(got), []byte("\n"))
	var out bytes.Buffer
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			out.WriteString("- " + string(w) + "\n+ " + string(g) + "\n")
		}
	}
	return out.String()
}

// TestEventFields checks the mapping onto flow.Event field by field, so a
// golden-file rewrite cannot hide a wrong mapping.
func TestEventFields(t *testing.T) {
	d := testDecoder("kind-worker2")
	var ev flow.Event
	dec := func(i int) *flow.Event {
		t.Helper()
		if err := d.Decode(goldenCases[i].rec(t), &ev); err != nil {
			t.Fatalf("%s: %v", goldenCases[i].name, err)
		}
		return &ev
	}
	// trace-to-endpoint-new: endpoint 345 is the destination; no source
	// endpoint, so the flow decoder's observation point decides.
	e := dec(2)
	if e.Type != flow.EventTrace || e.ObsPoint != flow.ObsToEndpoint || e.EndpointID != 345 || e.IsReply || e.ReplyUnknown ||
		e.SrcIdentity != 30582 || e.DstIdentity != 4711 || e.Interface != "lxc91b0" || e.L3 || e.Direction != flow.DirectionUnknown {
		t.Errorf("to-endpoint trace: %+v", *e)
	}
	// trace-from-endpoint-reply: a reply leaving echo-a is ingress of the
	// connection echo-a accepted.
	e = dec(3)
	if !e.IsReply || e.ReplyUnknown || e.Direction != flow.Ingress || e.ObsPoint != flow.ObsFromEndpoint {
		t.Errorf("reply trace: %+v", *e)
	}
	// VXLAN: the inner frame is what the flow shows.
	e = dec(5)
	if !e.ReplyUnknown || len(e.Data) != len(syn(t)) || !bytes.Equal(e.Data, syn(t)) {
		t.Errorf("vxlan trace: reply unknown %v, data %x", e.ReplyUnknown, e.Data)
	}
	// drop-policy-denied-ingress.
	e = dec(6)
	if e.Type != flow.EventDrop || e.DropReason != 133 || e.Direction != flow.Ingress || !e.ReplyUnknown || e.EndpointID != 345 {
		t.Errorf("ingress drop: %+v", *e)
	}
	// drop-policy-denied-egress-v2.
	e = dec(7)
	if e.Direction != flow.Egress || e.DropReason != 133 || e.EndpointID != 1234 {
		t.Errorf("egress drop: %+v", *e)
	}
	// drop-truncated-capture keeps the 34 bytes that were captured.
	e = dec(8)
	if len(e.Data) != 34 || e.OrigLen != uint32(len(syn(t))) {
		t.Errorf("truncated drop: %d bytes of %d", len(e.Data), e.OrigLen)
	}
	// policy-verdict-denied-ingress: minus the reason, remote is source.
	e = dec(9)
	if e.Type != flow.EventPolicyVerdict || e.DropReason != 133 || e.Direction != flow.Ingress || e.SrcIdentity != 30582 || e.DstIdentity != 0 || e.PolicyMatch != flow.PolicyMatchNone {
		t.Errorf("denied verdict: %+v", *e)
	}
	if !bytes.Equal(e.Data, syn(t)) {
		t.Errorf("denied verdict data %x", e.Data)
	}
	// v1.18 layout: 32-byte header, egress, L3-L4.
	e = dec(10)
	if e.DropReason != 0 || e.Direction != flow.Egress || e.DstIdentity != 4711 || e.PolicyMatch != flow.PolicyMatchL3L4 || e.IsReply || e.ReplyUnknown || !bytes.Equal(e.Data, syn(t)) {
		t.Errorf("v1.18 verdict: %+v", *e)
	}
	e = dec(11)
	if !e.Audit {
		t.Errorf("audit verdict: %+v", *e)
	}
	if d.pn.Cookie != 7 {
		t.Errorf("cookie %d, want 7", d.pn.Cookie)
	}
}

// TestDirectionWithoutResolver: bpf_lxc's dst_id convention decides drops,
// the flow decoder's observation point decides traces.
func TestDirectionWithoutResolver(t *testing.T) {
	d := NewDecoder(Config{Node: "kind-worker"})
	var ev flow.Event
	for _, c := range []struct {
		i    int
		want flow.TrafficDirection
	}{{6, flow.Ingress}, {7, flow.Egress}, {0, flow.DirectionUnknown}} {
		if err := d.Decode(goldenCases[c.i].rec(t), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Direction != c.want {
			t.Errorf("%s: direction %v, want %v", goldenCases[c.i].name, ev.Direction, c.want)
		}
	}
	f, err := flow.NewDecoder(nil).Decode(&ev) // case 0, from-endpoint: egress
	if err != nil || f.TrafficDirection != flow.Egress {
		t.Errorf("from-endpoint trace without resolver: %v %v", f.TrafficDirection, err)
	}
}

func TestRefusedAndSkippedRecords(t *testing.T) {
	p := syn(t)
	cases := []struct {
		name    string
		rec     []byte
		check   func(error) bool
		counter func(StatsSnapshot) uint64
	}{
		{"trace v3", traceRec{hdr: hdr{version: 3}}.bytes(p), isVersionErr, func(s StatsSnapshot) uint64 { return s.UnknownVersion }},
		{"trace ext version", traceRec{hdr: hdr{version: 2, extVersion: 1}}.bytes(p), isVersionErr, func(s StatsSnapshot) uint64 { return s.UnknownVersion }},
		{"drop v4", append(dropRec{hdr: hdr{version: 3}}.bytes(p)[:14:14], 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), isVersionErr, func(s StatsSnapshot) uint64 { return s.UnknownVersion }},
		{"verdict v2", func() []byte { b := verdictRec{}.bytes(p); b[14] = 2; return b }(), isVersionErr, func(s StatsSnapshot) uint64 { return s.UnknownVersion }},
		{"short drop", dropRec{hdr: hdr{version: 3}}.bytes(nil)[:40], isShortErr, func(s StatsSnapshot) uint64 { return s.Malformed }},
		{"short trace", []byte{4, 0, 0, 0}, isShortErr, func(s StatsSnapshot) uint64 { return s.Malformed }},
		{"unknown type", []byte{9, 0, 0, 0, 0, 0, 0, 0}, func(err error) bool { return err != nil && !errors.Is(err, ErrNotFlow) }, func(s StatsSnapshot) uint64 { return s.UnknownType }},
		{"debug", []byte{2, 17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}, isNotFlow, func(s StatsSnapshot) uint64 { return s.Debug }},
		{"debug capture", func() []byte { b := make([]byte, 24); putHeader(b, hdr{typ: 3, version: 1}, 0); return b }(), isNotFlow, func(s StatsSnapshot) uint64 { return s.Debug }},
		{"capture", []byte{6, 0, 0, 0}, isNotFlow, func(s StatsSnapshot) uint64 { return s.Capture }},
		{"trace sock", []byte{7, 0, 0, 0}, isNotFlow, func(s StatsSnapshot) uint64 { return s.Capture }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := NewDecoder(Config{})
			var ev flow.Event
			err := d.Decode(c.rec, &ev)
			if !c.check(err) {
				t.Fatalf("error %v", err)
			}
			if n := c.counter(d.Stats().Snapshot()); n != 1 {
				t.Errorf("counter %d, want 1 (stats %+v)", n, d.Stats().Snapshot())
			}
		})
	}
}

func isVersionErr(err error) bool {
	var ve *VersionError
	return errors.As(err, &ve)
}

func isShortErr(err error) bool {
	var se *ShortError
	return errors.As(err, &se)
}

func isNotFlow(err error) bool { return errors.Is(err, ErrNotFlow) }

// FuzzDecode: garbage never panics, and whatever decodes also goes through
// the flow decoder.
func FuzzDecode(f *testing.F) {
	for _, c := range goldenCases {
		f.Add(c.rec(f))
	}
	f.Add([]byte{2, 1, 2, 3})
	f.Add([]byte{5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 0})
	d := testDecoder("kind-worker")
	fd := flow.NewDecoder(testResolver)
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev flow.Event
		if err := d.Decode(b, &ev); err != nil {
			return
		}
		if len(ev.Data) > len(b) {
			t.Fatalf("data of %d bytes from a record of %d", len(ev.Data), len(b))
		}
		_, _ = fd.Decode(&ev)
	})
}

// BenchmarkDecode measures records/s through the monitor decoder alone and
// through the flow decoder as well.
func BenchmarkDecode(b *testing.B) {
	recs := make([][]byte, len(goldenCases))
	for i, c := range goldenCases {
		recs[i] = c.rec(b)
	}
	b.Run("monitor", func(b *testing.B) {
		d := testDecoder("kind-worker")
		var ev flow.Event
		for i := 0; b.Loop(); i++ {
			if err := d.Decode(recs[i%len(recs)], &ev); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("monitor+flow", func(b *testing.B) {
		d := testDecoder("kind-worker")
		fd := flow.NewDecoder(testResolver)
		var ev flow.Event
		for i := 0; b.Loop(); i++ {
			if err := d.Decode(recs[i%len(recs)], &ev); err != nil {
				b.Fatal(err)
			}
			if _, err := fd.Decode(&ev); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}
