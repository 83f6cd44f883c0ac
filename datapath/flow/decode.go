package flow

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Event is one raw datapath notification, decoupled from the ring-buffer
// layout: the event reader of package datapath converts its records into
// Events and hands them to a Decoder.
type Event struct {
	// Type is EventDrop, EventTrace or EventPolicyVerdict.
	Type EventType
	// Time is when the datapath saw the packet (wall clock).
	Time time.Time
	// Node is the name of the node whose datapath emitted the event.
	Node string
	// Ifindex and Interface name the device the program ran on.
	Ifindex   uint32
	Interface string
	// ObsPoint is the observation point of a trace event.
	ObsPoint ObsPoint
	// DropReason is the drop reason code of a drop event, and of a denied
	// policy verdict (0 for an allowed one).
	DropReason uint8
	// Direction is the traffic direction seen from the endpoint (Ingress,
	// Egress, or DirectionUnknown).
	Direction TrafficDirection
	// IsReply is set for packets of the reply direction of a connection;
	// ReplyUnknown says the datapath could not tell.
	IsReply      bool
	ReplyUnknown bool
	// EndpointID is the datapath's endpoint ID of the local endpoint (0 if
	// none).
	EndpointID uint16
	// SrcIdentity and DstIdentity are the security identities the datapath
	// resolved (0 when it did not).
	SrcIdentity uint32
	DstIdentity uint32
	// PolicyMatch is how a policy verdict matched.
	PolicyMatch PolicyMatch
	// Audit marks a policy verdict that would have denied in enforcing mode.
	Audit bool
	// OrigLen is the length of the packet on the wire; Data may be shorter.
	OrigLen uint32
	// Data holds the first bytes of the packet.
	Data []byte
	// L3 says Data starts at the IP header instead of Ethernet (packets seen
	// on L3 devices).
	L3 bool
	// Xlate is what the datapath translated before it emitted the event
	// (Data is the packet after it); XlateAddr is the address and port the
	// translation replaced: the service frontend of a request (XlateDNAT)
	// or the backend of a reply (XlateRevNAT).
	Xlate     Xlate
	XlateAddr netip.AddrPort
	// BeforeXlate marks an observation point the packet passed before the
	// translation (the entry point of a trace record): the flow shows the
	// packet as it was there.
	BeforeXlate bool
	// TraceReason is the connection-tracking state of a traced packet
	// (NEW, ESTABLISHED, REPLY...; unknown when the datapath did not say).
	TraceReason TraceReason
	// DropFile and DropLine locate a drop in the datapath's sources, where
	// the datapath reports it (Cilium's programs do; podlab's do not).
	DropFile string
	DropLine uint32
}

// Xlate is a service translation done by the datapath.
type Xlate uint8

// Service translations.
const (
	XlateNone   Xlate = 0
	XlateDNAT   Xlate = 1
	XlateRevNAT Xlate = 2
)

// ServiceResolver is implemented by EndpointResolvers that know services:
// the decoder fills source_service and destination_service from it, as
// Hubble does, by the flow's address and port.
type ServiceResolver interface {
	// ServiceByAddr returns the service whose ClusterIP frontend is ip:port.
	ServiceByAddr(ip netip.Addr, port uint16) (namespace, name string, ok bool)
}

// EndpointInfo is what the control plane knows about an IP.
type EndpointInfo struct {
	// ID is the endpoint ID (0 for non-endpoints).
	ID uint32
	// Identity is the security identity of the IP.
	Identity uint32
	// Namespace and PodName name the pod; both empty for non-pods.
	Namespace string
	PodName   string
	// Labels of the identity, "source:key=value".
	Labels []string
	// Node hosting the endpoint.
	Node string
	// Workload is the controller owning the pod (nil for a bare pod or a
	// non-pod).
	Workload *Workload
}

// clusterLabel is the identity label that names an endpoint's cluster.
const clusterLabel = "k8s:io.cilium.k8s.policy.cluster="

// ClusterNameOf returns the cluster an identity's labels name
// (k8s:io.cilium.k8s.policy.cluster=NAME), as Hubble fills cluster_name;
// empty for identities without one (reserved identities).
func ClusterNameOf(labels []string) string {
	for _, l := range labels {
		if strings.HasPrefix(l, clusterLabel) {
			return l[len(clusterLabel):]
		}
	}
	return ""
}

// Endpoint returns the flow endpoint of a known IP as Hubble's parser fills
// it on node: an endpoint local to node carries its endpoint ID and
// workload; a remote one only its identity, cluster, namespace, pod name
// and labels.
func (i EndpointInfo) Endpoint(node string) Endpoint {
	ep := Endpoint{Identity: i.Identity, ClusterName: ClusterNameOf(i.Labels), Namespace: i.Namespace, PodName: i.PodName, Labels: i.Labels}
	if i.Node == node {
		ep.ID = i.ID
		if i.Workload != nil {
			ep.Workloads = []*Workload{i.Workload}
		}
	}
	return ep
}

// EndpointResolver answers the decoder's questions about addresses and
// identities. Implementations must be safe for concurrent use if several
// Decoders share one.
type EndpointResolver interface {
	// EndpointByIP returns what is known about ip; ok is false for
	// addresses outside the cluster.
	EndpointByIP(ip netip.Addr) (info EndpointInfo, ok bool)
	// IdentityLabels returns the labels of an identity (nil if unknown).
	IdentityLabels(id uint32) []string
}

// Decoder turns Events into Flows. A Decoder reuses its packet parser and
// is not safe for concurrent use; use one per reader goroutine.
type Decoder struct {
	resolver EndpointResolver

	parser   *gopacket.DecodingLayerParser
	parserL3 *gopacket.DecodingLayerParser
	// parserL3v6 starts at IPv6 for L3 packets.
	parserL3v6 *gopacket.DecodingLayerParser
	decoded    []gopacket.LayerType
	eth        layers.Ethernet
	ip4        layers.IPv4
	ip6        layers.IPv6
	tcp        layers.TCP
	udp        layers.UDP
	icmp4      layers.ICMPv4
	icmp6      layers.ICMPv6
	arp        layers.ARP
	dns        layers.DNS
	payload    gopacket.Payload

	// tcpSummaries caches "TCP Flags: ..." per flag combination.
	tcpSummaries map[uint16]string
	// icmpSummaries caches "ICMPv4 EchoRequest" per version, type and code.
	icmpSummaries map[uint32]string
	// addrs and macs are direct-mapped caches of address strings.
	addrs [addrCacheSize]addrCacheEntry
	macs  [addrCacheSize]macCacheEntry

	// uuidPrefix and seq make flow UUIDs.
	uuidPrefix [8]byte
	seq        uint64
}

const addrCacheSize = 1024 // power of two

type addrCacheEntry struct {
	a netip.Addr
	s string
}

type macCacheEntry struct {
	m [6]byte
	s string
}

// NewDecoder returns a decoder that resolves endpoints with r (nil: no
// endpoint information beyond the event's identities).
func NewDecoder(r EndpointResolver) *Decoder {
	d := &Decoder{
		resolver:      r,
		tcpSummaries:  make(map[uint16]string),
		icmpSummaries: make(map[uint32]string),
	}
	dls := []gopacket.DecodingLayer{&d.eth, &d.ip4, &d.ip6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.arp, &d.dns, &d.payload}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, dls...)
	d.parser.IgnoreUnsupported = true
	d.parserL3 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, dls...)
	d.parserL3.IgnoreUnsupported = true
	d.parserL3v6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, dls...)
	d.parserL3v6.IgnoreUnsupported = true
	d.decoded = make([]gopacket.LayerType, 0, 8)
	_, _ = rand.Read(d.uuidPrefix[:])
	return d
}

// flowBlock keeps a flow and all of its parts in one allocation.
type flowBlock struct {
	f        Flow
	eth      Ethernet
	ip       IP
	l4       Layer4
	tcp      TCP
	flags    TCPFlags
	udp      UDP
	icmp     ICMP
	src, dst Endpoint
	et       CiliumEventType
	iface    NetworkInterface
	reply    bool
	srcSvc   Service
	dstSvc   Service
}

// Decode converts one event into a flow. Packets that cannot be fully
// parsed (the event holds only the first bytes) still give a flow with
// whatever layers were complete; an error is returned only for events
// that are not flows at all.
func (d *Decoder) Decode(ev *Event) (*Flow, error) {
	b := &flowBlock{}
	f := &b.f
	f.Time = ev.Time
	f.NodeName = ev.Node
	f.Type = FlowTypeL3L4
	f.Bytes = ev.OrigLen
	b.et.Type = int32(ev.Type)
	f.EventType = &b.et
	if ev.Ifindex != 0 || ev.Interface != "" {
		b.iface = NetworkInterface{Index: ev.Ifindex, Name: ev.Interface}
		f.Interface = &b.iface
	}
	if !ev.ReplyUnknown {
		b.reply = ev.IsReply
		f.IsReply = &b.reply
		f.Reply = ev.IsReply
	}
	f.TrafficDirection = ev.Direction

	switch ev.Type {
	case EventDrop:
		f.Verdict = VerdictDropped
		f.DropReason = uint32(ev.DropReason)
		f.DropReasonDesc = DropReason(ev.DropReason)
		b.et.SubType = int32(ev.DropReason)
		if ev.DropFile != "" {
			f.File = &FileInfo{Name: ev.DropFile, Line: ev.DropLine}
		}
	case EventTrace:
		f.Verdict = VerdictForwarded
		f.TraceReason = ev.TraceReason
		f.TraceObservationPoint = ev.ObsPoint.TraceObservationPoint()
		b.et.SubType = int32(ev.ObsPoint)
		if f.TrafficDirection == DirectionUnknown {
			f.TrafficDirection = traceDirection(ev.ObsPoint, ev.IsReply)
		}
	case EventPolicyVerdict:
		f.PolicyMatchType = uint32(ev.PolicyMatch)
		switch {
		case ev.Audit:
			f.Verdict = VerdictAudit
		case ev.DropReason != 0:
			f.Verdict = VerdictDropped
			f.DropReason = uint32(ev.DropReason)
			f.DropReasonDesc = DropReason(ev.DropReason)
		default:
			f.Verdict = VerdictForwarded
		}
	default:
		return nil, fmt.Errorf("decode event: unsupported event type %d", ev.Type)
	}

	srcIP, dstIP := d.decodePacket(ev, b)
	if ev.Xlate != XlateNone && ev.XlateAddr.IsValid() && f.IP != nil {
		srcIP, dstIP = d.untranslate(ev, b, srcIP, dstIP)
	}
	f.Source = d.endpoint(&b.src, srcIP, ev.SrcIdentity, ev.Node)
	f.Destination = d.endpoint(&b.dst, dstIP, ev.DstIdentity, ev.Node)
	if sr, ok := d.resolver.(ServiceResolver); ok && f.IP != nil {
		sp, dp := f.Ports()
		if ns, name, ok := sr.ServiceByAddr(srcIP, uint16(sp)); ok {
			b.srcSvc = Service{Namespace: ns, Name: name}
			f.SourceService = &b.srcSvc
		}
		if ns, name, ok := sr.ServiceByAddr(dstIP, uint16(dp)); ok {
			b.dstSvc = Service{Namespace: ns, Name: name}
			f.DestinationService = &b.dstSvc
		}
	}
	f.UUID = d.uuid()
	return f, nil
}

// untranslate shows a translated packet the way Hubble shows it: a service
// request seen before load-balancing (from-endpoint) goes to the frontend;
// a reply's source is the backend it came from, with the frontend it was
// rewritten to in source_xlated once the reverse translation is done
// (to-endpoint), and without it before (from-overlay: the packet on the
// wire still carries the backend).
func (d *Decoder) untranslate(ev *Event, b *flowBlock, src, dst netip.Addr) (netip.Addr, netip.Addr) {
	orig := ev.XlateAddr
	switch ev.Xlate {
	case XlateDNAT:
		if ev.BeforeXlate {
			dst = orig.Addr()
			b.ip.Destination = d.addr(dst)
			setPort(b, false, orig.Port())
		}
	case XlateRevNAT:
		if !ev.BeforeXlate {
			b.ip.SourceXlated = b.ip.Source
		} else {
			setPort(b, true, orig.Port())
		}
		src = orig.Addr()
		b.ip.Source = d.addr(src)
	}
	return src, dst
}

// setPort replaces the source or destination port of the flow's TCP or UDP
// part.
func setPort(b *flowBlock, source bool, port uint16) {
	var sp, dp *uint32
	switch {
	case b.l4.TCP != nil:
		sp, dp = &b.tcp.SourcePort, &b.tcp.DestinationPort
	case b.l4.UDP != nil:
		sp, dp = &b.udp.SourcePort, &b.udp.DestinationPort
	default:
		return
	}
	if source {
		*sp = uint32(port)
	} else {
		*dp = uint32(port)
	}
}

// uuid returns a version-4 style UUID unique per decoder: a random prefix
// drawn once and a counter (Hubble gives every flow a random UUID).
func (d *Decoder) uuid() string {
	d.seq++
	var u [16]byte
	copy(u[:8], d.uuidPrefix[:])
	binary.BigEndian.PutUint64(u[8:], d.seq)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:])
}

// traceDirection derives the direction of a trace event from where it was
// observed, for datapaths that do not report one.
func traceDirection(p ObsPoint, reply bool) TrafficDirection {
	var dir TrafficDirection
	switch p {
	case ObsFromEndpoint, ObsToOverlay, ObsToNetwork, ObsToStack, ObsToHost:
		dir = Egress
	case ObsToEndpoint, ObsFromOverlay, ObsFromNetwork:
		dir = Ingress
	default:
		return DirectionUnknown
	}
	if reply {
		if dir == Egress {
			return Ingress
		}
		return Egress
	}
	return dir
}

// decodePacket fills the L2/L3/L4 parts of the flow and its summary, and
// returns the IP addresses (invalid when the packet had no IP header).
func (d *Decoder) decodePacket(ev *Event, b *flowBlock) (src, dst netip.Addr) {
	f := &b.f
	if len(ev.Data) == 0 {
		return
	}
	parser := d.parser
	if ev.L3 {
		parser = d.parserL3
		if ev.Data[0]>>4 == 6 {
			parser = d.parserL3v6
		}
	}
	// Errors are expected for truncated packets: keep every layer that was
	// decoded before the error.
	_ = parser.DecodeLayers(ev.Data, &d.decoded)

	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeEthernet:
			b.eth = Ethernet{Source: d.mac(d.eth.SrcMAC), Destination: d.mac(d.eth.DstMAC)}
			f.Ethernet = &b.eth
		case layers.LayerTypeIPv4:
			src, _ = netip.AddrFromSlice(d.ip4.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(d.ip4.DstIP.To4())
			b.ip = IP{Source: d.addr(src), Destination: d.addr(dst), IPVersion: IPv4}
			f.IP = &b.ip
		case layers.LayerTypeIPv6:
			src, _ = netip.AddrFromSlice(d.ip6.SrcIP)
			dst, _ = netip.AddrFromSlice(d.ip6.DstIP)
			b.ip = IP{Source: d.addr(src), Destination: d.addr(dst), IPVersion: IPv6}
			f.IP = &b.ip
		case layers.LayerTypeTCP:
			t := &d.tcp
			b.flags = TCPFlags{FIN: t.FIN, SYN: t.SYN, RST: t.RST, PSH: t.PSH, ACK: t.ACK, URG: t.URG, ECE: t.ECE, CWR: t.CWR, NS: t.NS}
			b.tcp = TCP{SourcePort: uint32(t.SrcPort), DestinationPort: uint32(t.DstPort), Flags: &b.flags}
			b.l4.TCP = &b.tcp
			f.L4 = &b.l4
			f.Summary = d.tcpSummary(&b.flags)
		case layers.LayerTypeUDP:
			b.udp = UDP{SourcePort: uint32(d.udp.SrcPort), DestinationPort: uint32(d.udp.DstPort)}
			b.l4.UDP = &b.udp
			f.L4 = &b.l4
			f.Summary = "UDP"
		case layers.LayerTypeICMPv4:
			tc := d.icmp4.TypeCode
			b.icmp = ICMP{Type: uint32(tc.Type()), Code: uint32(tc.Code())}
			b.l4.ICMPv4 = &b.icmp
			f.L4 = &b.l4
			f.Summary = d.icmpSummary(4, uint16(tc), tc.String)
		case layers.LayerTypeICMPv6:
			tc := d.icmp6.TypeCode
			b.icmp = ICMP{Type: uint32(tc.Type()), Code: uint32(tc.Code())}
			b.l4.ICMPv6 = &b.icmp
			f.L4 = &b.l4
			f.Summary = d.icmpSummary(6, uint16(tc), tc.String)
		case layers.LayerTypeARP:
			f.Summary = arpSummary(&d.arp)
		case layers.LayerTypeDNS:
			f.DNS = dnsInfo(&d.dns)
		}
	}
	if f.Summary == "" && f.IP != nil {
		switch f.IP.IPVersion {
		case IPv4:
			f.Summary = "IPv4 " + d.ip4.Protocol.String()
		case IPv6:
			f.Summary = "IPv6 " + d.ip6.NextHeader.String()
		}
	}
	return src, dst
}

// tcpSummary returns "TCP Flags: SYN, ACK", flags in Hubble's order.
func (d *Decoder) tcpSummary(t *TCPFlags) string {
	var key uint16
	for i, set := range [...]bool{t.SYN, t.ACK, t.RST, t.FIN, t.PSH, t.URG, t.ECE, t.CWR, t.NS} {
		if set {
			key |= 1 << i
		}
	}
	if s, ok := d.tcpSummaries[key]; ok {
		return s
	}
	s := "TCP Flags: " + strings.Join(t.Names(), ", ")
	d.tcpSummaries[key] = s
	return s
}

// icmpSummary returns "ICMPv4 EchoRequest" for an ICMP type/code.
func (d *Decoder) icmpSummary(version uint8, typeCode uint16, name func() string) string {
	key := uint32(version)<<16 | uint32(typeCode)
	if s, ok := d.icmpSummaries[key]; ok {
		return s
	}
	s := "ICMPv" + strconv.Itoa(int(version)) + " " + name()
	d.icmpSummaries[key] = s
	return s
}

// Names returns the set flags in the order Hubble prints them (SYN, ACK,
// RST, FIN, PSH, URG, ECE, CWR, NS).
func (t *TCPFlags) Names() []string {
	names := make([]string, 0, 4)
	for _, fl := range [...]struct {
		set  bool
		name string
	}{{t.SYN, "SYN"}, {t.ACK, "ACK"}, {t.RST, "RST"}, {t.FIN, "FIN"}, {t.PSH, "PSH"}, {t.URG, "URG"}, {t.ECE, "ECE"}, {t.CWR, "CWR"}, {t.NS, "NS"}} {
		if fl.set {
			names = append(names, fl.name)
		}
	}
	return names
}

func (d *Decoder) addr(a netip.Addr) string {
	b := a.As16()
	h := (uint(b[12])*31+uint(b[13]))*31*31 + uint(b[14])*31 + uint(b[15]) + uint(b[7])
	e := &d.addrs[h&(addrCacheSize-1)]
	if e.s != "" && e.a == a {
		return e.s
	}
	e.a, e.s = a, a.String()
	return e.s
}

func (d *Decoder) mac(hw net.HardwareAddr) string {
	if len(hw) != 6 {
		return hw.String()
	}
	k := [6]byte(hw)
	e := &d.macs[(uint(k[4])<<8|uint(k[5])+uint(k[3]))&(addrCacheSize-1)]
	if e.s != "" && e.m == k {
		return e.s
	}
	e.m, e.s = k, hw.String()
	return e.s
}

// endpoint fills ep for ip as seen on node: from the resolver when it
// knows the address, otherwise from the identity the datapath reported.
func (d *Decoder) endpoint(ep *Endpoint, ip netip.Addr, identity uint32, node string) *Endpoint {
	if ip.IsValid() && d.resolver != nil {
		if info, ok := d.resolver.EndpointByIP(ip); ok {
			*ep = info.Endpoint(node)
			if identity != 0 && identity != info.Identity {
				// The datapath's view wins: it is what policy judged.
				ep.Identity = identity
				ep.Labels = d.resolver.IdentityLabels(identity)
				ep.ClusterName = ClusterNameOf(ep.Labels)
			}
			return ep
		}
	}
	if identity == 0 && !ip.IsValid() {
		return nil
	}
	ep.Identity = identity
	if identity == 0 && ip.IsValid() {
		ep.Identity = 2 // reserved:world, as Hubble reports unknown peers
	}
	if d.resolver != nil {
		ep.Labels = d.resolver.IdentityLabels(ep.Identity)
		ep.ClusterName = ClusterNameOf(ep.Labels)
	}
	return ep
}

func arpSummary(a *layers.ARP) string {
	spa := net.IP(a.SourceProtAddress).String()
	tpa := net.IP(a.DstProtAddress).String()
	switch a.Operation {
	case layers.ARPRequest:
		return "ARP Request who-has " + tpa + " tell " + spa
	case layers.ARPReply:
		return "ARP Reply " + spa + " is-at " + net.HardwareAddr(a.SourceHwAddress).String()
	}
	return "ARP op " + strconv.Itoa(int(a.Operation))
}

func dnsInfo(m *layers.DNS) *DNS {
	info := &DNS{Response: m.QR, ID: m.ID, Rcode: uint8(m.ResponseCode)}
	for _, q := range m.Questions {
		info.Names = append(info.Names, strings.TrimSuffix(string(q.Name), "."))
		info.QTypes = append(info.QTypes, q.Type.String())
	}
	for _, a := range m.Answers {
		info.RRTypes = append(info.RRTypes, a.Type.String())
		if a.Type == layers.DNSTypeA || a.Type == layers.DNSTypeAAAA {
			info.IPs = append(info.IPs, a.IP.String())
		}
	}
	return info
}

// RcodeText returns Hubble's text for a DNS response code ("No Error",
// "Non-Existent Domain"; the names of RFC 6895's registry that Hubble's
// DNS metrics use), or the number for a code Hubble does not name.
func RcodeText(rcode uint32) string {
	if t, ok := rcodeTexts[rcode]; ok {
		return t
	}
	return strconv.FormatUint(uint64(rcode), 10)
}

// RcodeName returns the rcode label of Hubble's DNS metrics: the text of
// RcodeText, empty for a code Hubble does not name.
func RcodeName(rcode uint32) string { return rcodeTexts[rcode] }

var rcodeTexts = map[uint32]string{
	0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain", 4: "Not Implemented",
	5: "Query Refused", 6: "Name Exists when it should not", 7: "RR Set Exists when it should not",
	8: "RR Set that should exist does not", 9: "Not Authorized", 10: "Name not contained in zone",
	11: "DSO-TYPE Not Implemented", 16: "Bad OPT Version", 17: "Key not recognized",
	18: "Signature out of time window", 19: "Bad TKEY Mode", 20: "Duplicate key name",
	21: "Algorithm not supported", 22: "Bad Truncation", 23: "Bad/missing Server Cookie",
}
