package pcap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// VXLAN UDP ports: Linux's historical default (and Cilium's) and the IANA
// port. Frames on either are decoded as VXLAN.
const (
	VXLANPortLinux = 8472
	VXLANPortIANA  = 4789
)

// maxInnerDepth bounds VXLAN-in-VXLAN decoding.
const maxInnerDepth = 4

// Frame is a packet decoded into the layers podlab matches on. Layers not
// present are nil. A VXLAN packet's encapsulated frame is decoded into
// Inner, so matching and summaries see both.
type Frame struct {
	Ethernet *layers.Ethernet
	Dot1Q    *layers.Dot1Q
	ARP      *layers.ARP
	IPv4     *layers.IPv4
	IPv6     *layers.IPv6
	TCP      *layers.TCP
	UDP      *layers.UDP
	ICMPv4   *layers.ICMPv4
	ICMPv6   *layers.ICMPv6
	DNS      *layers.DNS
	VXLAN    *layers.VXLAN
	// Inner is the frame carried by VXLAN.
	Inner *Frame
	// Payload is the transport payload (TCP or UDP data, ICMP body), nil
	// when the transport carries VXLAN.
	Payload []byte
	// Fragment is set for IPv4 fragments after the first (no transport
	// header).
	Fragment bool
	// Err is the first decoding error (e.g. a truncated header); the layers
	// decoded before it are kept.
	Err error
}

// Decode decodes data, which starts as linkType says (zero: Ethernet).
// It never fails: what could not be decoded is reported in Frame.Err.
func Decode(data []byte, linkType LinkType) *Frame {
	f := &Frame{}
	switch linkType.orEthernet() {
	case LinkTypeRaw:
		f.decodeIP(data, 0)
	default:
		f.decodeEthernet(data, 0)
	}
	return f
}

// DecodePacket decodes p.Data according to p.LinkType.
func DecodePacket(p *Packet) *Frame { return Decode(p.Data, p.LinkType) }

func (f *Frame) fail(what string, err error) {
	if f.Err == nil {
		f.Err = fmt.Errorf("decode %s: %w", what, err)
	}
}

func (f *Frame) decodeEthernet(data []byte, depth int) {
	eth := &layers.Ethernet{}
	if err := eth.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
		f.fail("ethernet", err)
		return
	}
	f.Ethernet = eth
	typ, payload := eth.EthernetType, eth.Payload
	if typ == layers.EthernetTypeDot1Q {
		q := &layers.Dot1Q{}
		if err := q.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("802.1Q", err)
			return
		}
		f.Dot1Q = q
		typ, payload = q.Type, q.Payload
	}
	switch typ {
	case layers.EthernetTypeARP:
		arp := &layers.ARP{}
		if err := arp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("arp", err)
			return
		}
		f.ARP = arp
	case layers.EthernetTypeIPv4, layers.EthernetTypeIPv6:
		f.decodeIP(payload, depth)
	}
}

func (f *Frame) decodeIP(data []byte, depth int) {
	if len(data) == 0 {
		f.fail("ip", fmt.Errorf("empty packet"))
		return
	}
	var (
		proto   layers.IPProtocol
		payload []byte
	)
	switch data[0] >> 4 {
	case 4:
		ip := &layers.IPv4{}
		if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			f.fail("ipv4", err)
			return
		}
		f.IPv4 = ip
		if ip.FragOffset != 0 {
			f.Fragment = true
			f.Payload = ip.Payload
			return
		}
		proto, payload = ip.Protocol, ip.Payload
	case 6:
		ip := &layers.IPv6{}
		if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			f.fail("ipv6", err)
			return
		}
		f.IPv6 = ip
		proto, payload = ip.NextHeader, ip.Payload
		if ip.HopByHop != nil {
			proto = ip.HopByHop.NextHeader
		}
	default:
		f.fail("ip", fmt.Errorf("version %d", data[0]>>4))
		return
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{}
		if err := tcp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("tcp", err)
			return
		}
		f.TCP = tcp
		f.Payload = tcp.Payload
		if (tcp.SrcPort == 53 || tcp.DstPort == 53) && len(tcp.Payload) > 2 {
			// DNS over TCP: a two-byte length, then the message.
			f.decodeDNS(tcp.Payload[2:])
		}
	case layers.IPProtocolUDP:
		udp := &layers.UDP{}
		if err := udp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("udp", err)
			return
		}
		f.UDP = udp
		switch {
		case isVXLANPort(udp.DstPort):
			vx := &layers.VXLAN{}
			if err := vx.DecodeFromBytes(udp.Payload, gopacket.NilDecodeFeedback); err != nil {
				f.Payload = udp.Payload
				f.fail("vxlan", err)
				return
			}
			f.VXLAN = vx
			inner := &Frame{}
			if depth+1 < maxInnerDepth {
				inner.decodeEthernet(vx.Payload, depth+1)
			} else {
				inner.fail("vxlan", fmt.Errorf("nested deeper than %d", maxInnerDepth))
			}
			f.Inner = inner
		case udp.SrcPort == 53 || udp.DstPort == 53 || udp.SrcPort == 5353 || udp.DstPort == 5353:
			f.Payload = udp.Payload
			f.decodeDNS(udp.Payload)
		default:
			f.Payload = udp.Payload
		}
	case layers.IPProtocolICMPv4:
		icmp := &layers.ICMPv4{}
		if err := icmp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("icmp", err)
			return
		}
		f.ICMPv4 = icmp
		f.Payload = icmp.Payload
	case layers.IPProtocolICMPv6:
		icmp := &layers.ICMPv6{}
		if err := icmp.DecodeFromBytes(payload, gopacket.NilDecodeFeedback); err != nil {
			f.fail("icmpv6", err)
			return
		}
		f.ICMPv6 = icmp
		f.Payload = icmp.Payload
	default:
		f.Payload = payload
	}
}

func (f *Frame) decodeDNS(b []byte) {
	dns := &layers.DNS{}
	if err := dns.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		// Not DNS after all (or truncated): keep the UDP/TCP view only.
		return
	}
	f.DNS = dns
}

func isVXLANPort(p layers.UDPPort) bool { return p == VXLANPortLinux || p == VXLANPortIANA }

// Src returns the IP source address (or the ARP sender's), if any.
func (f *Frame) Src() netip.Addr {
	switch {
	case f.IPv4 != nil:
		return ipAddr(f.IPv4.SrcIP)
	case f.IPv6 != nil:
		return ipAddr(f.IPv6.SrcIP)
	case f.ARP != nil:
		return ipAddr(f.ARP.SourceProtAddress)
	}
	return netip.Addr{}
}

// Dst returns the IP destination address (or the ARP target's), if any.
func (f *Frame) Dst() netip.Addr {
	switch {
	case f.IPv4 != nil:
		return ipAddr(f.IPv4.DstIP)
	case f.IPv6 != nil:
		return ipAddr(f.IPv6.DstIP)
	case f.ARP != nil:
		return ipAddr(f.ARP.DstProtAddress)
	}
	return netip.Addr{}
}

// Ports returns the transport source and destination ports; ok is false
// when the frame has no TCP or UDP header.
func (f *Frame) Ports() (src, dst uint16, ok bool) {
	switch {
	case f.TCP != nil:
		return uint16(f.TCP.SrcPort), uint16(f.TCP.DstPort), true
	case f.UDP != nil:
		return uint16(f.UDP.SrcPort), uint16(f.UDP.DstPort), true
	}
	return 0, 0, false
}

// Innermost returns the deepest frame (f itself when not encapsulated).
func (f *Frame) Innermost() *Frame {
	for f.Inner != nil {
		f = f.Inner
	}
	return f
}

func ipAddr(b net.IP) netip.Addr {
	if a, ok := netip.AddrFromSlice(b); ok {
		return a.Unmap()
	}
	return netip.Addr{}
}

// TCPFlags returns the TCP flags in the usual short form: "SYN",
// "SYN-ACK", "PSH-ACK", "FIN-ACK", "RST-ACK", ... ("" without TCP).
func (f *Frame) TCPFlags() string {
	if f.TCP == nil {
		return ""
	}
	t := f.TCP
	var parts []string
	for _, fl := range []struct {
		on   bool
		name string
	}{{t.SYN, "SYN"}, {t.FIN, "FIN"}, {t.RST, "RST"}, {t.PSH, "PSH"}, {t.URG, "URG"}, {t.ECE, "ECE"}, {t.CWR, "CWR"}, {t.ACK, "ACK"}} {
		if fl.on {
			parts = append(parts, fl.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "-")
}

// Summary returns a one-line description of the packet, as
// "10.244.1.5:43122 -> 10.244.2.7:8080 TCP SYN [VXLAN vni 260 172.18.0.3 -> 172.18.0.4]".
func Summary(p *Packet) string { return DecodePacket(p).Summary() }

// Summary returns a one-line description of the frame: the innermost
// packet first, then each encapsulation in brackets.
func (f *Frame) Summary() string {
	if f.VXLAN != nil && f.Inner != nil {
		outer := fmt.Sprintf("VXLAN vni %d %s -> %s", f.VXLAN.VNI, f.Src(), f.Dst())
		return f.Inner.Summary() + " [" + outer + "]"
	}
	var b strings.Builder
	src, dst := f.Src(), f.Dst()
	sp, dp, hasPorts := f.Ports()
	endpoint := func(a netip.Addr, port uint16) string {
		if hasPorts {
			return netip.AddrPortFrom(a, port).String()
		}
		return a.String()
	}
	switch {
	case f.ARP != nil:
		a := f.ARP
		switch a.Operation {
		case layers.ARPRequest:
			fmt.Fprintf(&b, "ARP who-has %s tell %s", dst, src)
		case layers.ARPReply:
			fmt.Fprintf(&b, "ARP %s is-at %s", src, net.HardwareAddr(a.SourceHwAddress))
		default:
			fmt.Fprintf(&b, "ARP op %d %s -> %s", a.Operation, src, dst)
		}
	case src.IsValid():
		fmt.Fprintf(&b, "%s -> %s ", endpoint(src, sp), endpoint(dst, dp))
		switch {
		case f.DNS != nil:
			b.WriteString(dnsSummary(f.DNS))
			if f.TCP != nil {
				b.WriteString(" (TCP " + f.TCPFlags() + ")")
			}
		case f.TCP != nil:
			b.WriteString("TCP " + f.TCPFlags())
			if n := len(f.TCP.Payload); n > 0 {
				fmt.Fprintf(&b, " len=%d", n)
				if line := httpLine(f.TCP.Payload); line != "" {
					fmt.Fprintf(&b, " %q", line)
				}
			}
		case f.UDP != nil:
			fmt.Fprintf(&b, "UDP len=%d", len(f.UDP.Payload))
		case f.ICMPv4 != nil:
			b.WriteString("ICMP " + icmpName(f.ICMPv4.TypeCode.Type(), f.ICMPv4.TypeCode.Code(), false))
			if t := f.ICMPv4.TypeCode.Type(); t == layers.ICMPv4TypeEchoRequest || t == layers.ICMPv4TypeEchoReply {
				fmt.Fprintf(&b, " id=%d seq=%d", f.ICMPv4.Id, f.ICMPv4.Seq)
			}
		case f.ICMPv6 != nil:
			b.WriteString("ICMPv6 " + icmpName(f.ICMPv6.TypeCode.Type(), f.ICMPv6.TypeCode.Code(), true))
			if t := f.ICMPv6.TypeCode.Type(); (t == layers.ICMPv6TypeEchoRequest || t == layers.ICMPv6TypeEchoReply) && len(f.ICMPv6.Payload) >= 4 {
				fmt.Fprintf(&b, " id=%d seq=%d", binary.BigEndian.Uint16(f.ICMPv6.Payload), binary.BigEndian.Uint16(f.ICMPv6.Payload[2:]))
			}
		case f.Fragment:
			fmt.Fprintf(&b, "IP fragment offset=%d len=%d", int(f.IPv4.FragOffset)*8, len(f.Payload))
		case f.IPv4 != nil:
			fmt.Fprintf(&b, "IP proto %s len=%d", f.IPv4.Protocol, len(f.Payload))
		case f.IPv6 != nil:
			fmt.Fprintf(&b, "IPv6 next %s len=%d", f.IPv6.NextHeader, len(f.Payload))
		}
	case f.Ethernet != nil:
		fmt.Fprintf(&b, "%s -> %s ethertype %s", f.Ethernet.SrcMAC, f.Ethernet.DstMAC, f.Ethernet.EthernetType)
	default:
		b.WriteString("undecoded")
	}
	if f.Err != nil {
		b.WriteString(" (" + f.Err.Error() + ")")
	}
	return strings.TrimSpace(b.String())
}

func dnsSummary(d *layers.DNS) string {
	var b strings.Builder
	q := ""
	if len(d.Questions) > 0 {
		q = fmt.Sprintf(" %s %s", d.Questions[0].Type, d.Questions[0].Name)
	}
	if !d.QR {
		fmt.Fprintf(&b, "DNS query id=%d%s", d.ID, q)
		return b.String()
	}
	fmt.Fprintf(&b, "DNS response id=%d%s", d.ID, q)
	if d.ResponseCode != layers.DNSResponseCodeNoErr {
		b.WriteString(" " + dnsRcodeName(d.ResponseCode))
		return b.String()
	}
	var answers []string
	for _, a := range d.Answers {
		switch {
		case a.IP != nil:
			answers = append(answers, a.IP.String())
		case a.CNAME != nil:
			answers = append(answers, "CNAME "+string(a.CNAME))
		}
	}
	if len(answers) > 0 {
		b.WriteString(" -> " + strings.Join(answers, ","))
	} else {
		b.WriteString(" (no answer)")
	}
	return b.String()
}

// httpLine returns the first line of an HTTP request or response, or "".
func httpLine(p []byte) string {
	line, _, _ := bytes.Cut(p, []byte("\r\n"))
	if len(line) > 80 {
		line = line[:80]
	}
	s := string(line)
	for _, m := range []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "PATCH ", "OPTIONS ", "HTTP/1."} {
		if strings.HasPrefix(s, m) {
			return s
		}
	}
	return ""
}

var (
	icmp4Names = map[uint8]string{0: "echo-reply", 3: "dest-unreachable", 4: "source-quench", 5: "redirect", 8: "echo-request", 11: "time-exceeded", 12: "parameter-problem", 13: "timestamp", 14: "timestamp-reply"}
	icmp6Names = map[uint8]string{1: "dest-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem", 128: "echo-request", 129: "echo-reply", 130: "mld-query", 131: "mld-report", 133: "router-solicitation", 134: "router-advertisement", 135: "neighbor-solicitation", 136: "neighbor-advertisement", 143: "mldv2-report"}
)

func icmpName(typ, code uint8, v6 bool) string {
	names := icmp4Names
	if v6 {
		names = icmp6Names
	}
	s, ok := names[typ]
	if !ok {
		s = "type " + strconv.Itoa(int(typ))
	}
	if code != 0 {
		s += " code " + strconv.Itoa(int(code))
	}
	return s
}

// icmpType parses an ICMP type name or number.
func icmpType(s string, v6 bool) (uint8, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil {
		return uint8(n), nil
	}
	names := icmp4Names
	if v6 {
		names = icmp6Names
	}
	s = strings.ToLower(strings.ReplaceAll(s, "_", "-"))
	aliases := map[string]string{"echo": "echo-request", "ping": "echo-request", "pong": "echo-reply", "unreachable": "dest-unreachable", "destination-unreachable": "dest-unreachable"}
	if a, ok := aliases[s]; ok {
		s = a
	}
	for n, name := range names {
		if name == s {
			return n, nil
		}
	}
	return 0, fmt.Errorf("unknown ICMP type %q", s)
}

var dnsRcodes = map[layers.DNSResponseCode]string{0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

func dnsRcodeName(c layers.DNSResponseCode) string {
	if s, ok := dnsRcodes[c]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(int(c))
}
