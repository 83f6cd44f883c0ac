package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket/layers"
)

// Resolver turns lab names into what packets carry. The scenario runner
// implements it over the lab (pods, services, nodes, world hosts).
type Resolver interface {
	// Addresses returns the IP addresses a lab name stands for: a pod, a
	// service (its ClusterIP), a node (its underlay IP), a world host.
	Addresses(name string) ([]netip.Addr, error)
	// IdentityOf returns the security identity of the named pod, the number
	// the overlay carries as VXLAN VNI.
	IdentityOf(name string) (uint32, error)
}

// StaticResolver is a Resolver over fixed tables, for tests and for
// callers that know their names up front.
type StaticResolver struct {
	// Names maps a lab name to its addresses.
	Names map[string][]netip.Addr
	// Identities maps a pod name to its identity.
	Identities map[string]uint32
}

// Addresses returns the addresses of name.
func (s StaticResolver) Addresses(name string) ([]netip.Addr, error) {
	if a, ok := s.Names[name]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("unknown name %q", name)
}

// IdentityOf returns the identity of name.
func (s StaticResolver) IdentityOf(name string) (uint32, error) {
	if id, ok := s.Identities[name]; ok {
		return id, nil
	}
	return 0, fmt.Errorf("no identity for %q", name)
}

// Match describes the packets an assertion is about. Every field set must
// hold; an empty Match matches every packet. It is what a scenario writes:
//
//	match:
//	  vxlan: {vni: "identity-of:pod-to-a"}
//	  inner: {proto: tcp, src: pod-to-a, dst: echo-a, dport: 8080, flags: [SYN]}
//
// The top-level fields describe the packet as seen on the device; Inner
// describes the frame a VXLAN packet carries (and requires VXLAN).
type Match struct {
	// Proto is the protocol: tcp, udp, icmp, icmpv6, arp, ipv4, ipv6, dns
	// or vxlan.
	Proto string `yaml:"proto,omitempty" json:"proto,omitempty"`
	// Src is the source: a lab name (pod, service, node, world host), an IP
	// address or a CIDR. For ARP it is the sender's protocol address.
	Src string `yaml:"src,omitempty" json:"src,omitempty"`
	// Dst is the destination, in the same forms as Src.
	Dst string `yaml:"dst,omitempty" json:"dst,omitempty"`
	// Host matches either the source or the destination.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// SPort is the TCP or UDP source port.
	SPort int `yaml:"sport,omitempty" json:"sport,omitempty"`
	// DPort is the TCP or UDP destination port.
	DPort int `yaml:"dport,omitempty" json:"dport,omitempty"`
	// Port matches either the source or the destination port.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Flags are TCP flag terms that must all hold: a flag name (SYN, ACK,
	// FIN, RST, PSH, URG, ECE, CWR) means set, "!NAME" means clear, and
	// "A-B" (e.g. SYN-ACK) means both set. A SYN term without any ACK term
	// means the opening SYN (ACK clear), so [SYN] and [SYN-ACK] tell the
	// two handshake packets apart.
	Flags []string `yaml:"flags,omitempty" json:"flags,omitempty"`
	// ICMP constrains the ICMP (or ICMPv6) type and code.
	ICMP *ICMPMatch `yaml:"icmp,omitempty" json:"icmp,omitempty"`
	// DNS constrains a DNS message (UDP or TCP, port 53).
	DNS *DNSMatch `yaml:"dns,omitempty" json:"dns,omitempty"`
	// VXLAN requires a VXLAN packet (UDP 8472 or 4789) and constrains its
	// header.
	VXLAN *VXLANMatch `yaml:"vxlan,omitempty" json:"vxlan,omitempty"`
	// Inner constrains the frame carried by a VXLAN packet.
	Inner *Match `yaml:"inner,omitempty" json:"inner,omitempty"`
	// Payload must occur in the transport payload (TCP/UDP data, ICMP body).
	Payload string `yaml:"payload,omitempty" json:"payload,omitempty"`
	// Direction is "in" (received by the device) or "out" (sent by it).
	// Only meaningful at the top level.
	Direction string `yaml:"direction,omitempty" json:"direction,omitempty"`
	// Comment must occur in the packet comment (e.g. "DROPPED").
	Comment string `yaml:"comment,omitempty" json:"comment,omitempty"`
}

// ICMPMatch constrains an ICMP message.
type ICMPMatch struct {
	// Type is a name (echo-request, echo-reply, dest-unreachable,
	// time-exceeded, ...) or a number.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Code is the ICMP code.
	Code *int `yaml:"code,omitempty" json:"code,omitempty"`
}

// DNSMatch constrains a DNS message.
type DNSMatch struct {
	// QName is the question name, case-insensitive, trailing dot optional;
	// "*.example.com" matches any name under example.com.
	QName string `yaml:"qname,omitempty" json:"qname,omitempty"`
	// QType is the question type (A, AAAA, SRV, ...).
	QType string `yaml:"qtype,omitempty" json:"qtype,omitempty"`
	// Response selects responses (true) or queries (false).
	Response *bool `yaml:"response,omitempty" json:"response,omitempty"`
	// RCode is the response code (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, or
	// a number); it implies a response.
	RCode string `yaml:"rcode,omitempty" json:"rcode,omitempty"`
}

// VXLANMatch constrains a VXLAN header.
type VXLANMatch struct {
	// VNI is a number, or "identity-of:NAME": the security identity of the
	// named pod, which the overlay carries as VNI.
	VNI string `yaml:"vni,omitempty" json:"vni,omitempty"`
}

// IdentityOfPrefix starts a VNI that names a pod instead of a number.
const IdentityOfPrefix = "identity-of:"

var protos = []string{"tcp", "udp", "icmp", "icmpv6", "arp", "ipv4", "ipv6", "dns", "vxlan"}

// Validate checks the match without resolving names: protocols, flags,
// ports, ICMP types, DNS fields, VNIs and directions are well formed and
// consistent. Scenarios call it before creating anything.
func (m Match) Validate() error {
	_, err := compile(m, nil, false, "")
	return err
}

// Names returns the lab names the match refers to (addresses and
// identity-of VNIs), so a caller can check them before running.
func (m Match) Names() []string {
	var out []string
	for _, s := range []string{m.Src, m.Dst, m.Host} {
		if s != "" && !isLiteralAddr(s) {
			out = append(out, s)
		}
	}
	if m.VXLAN != nil && strings.HasPrefix(m.VXLAN.VNI, IdentityOfPrefix) {
		out = append(out, strings.TrimSpace(strings.TrimPrefix(m.VXLAN.VNI, IdentityOfPrefix)))
	}
	if m.Inner != nil {
		out = append(out, m.Inner.Names()...)
	}
	return out
}

func isLiteralAddr(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

// Filter is a Match whose names have been resolved: it decides whether a
// packet matches and how close a packet comes.
type Filter struct {
	spec   Match
	checks []check
	text   string
}

// check is one condition of a filter, on the frame at depth level.
type check struct {
	level int
	name  string
	want  string
	test  func(f *Frame, p *Packet) (ok bool, got string)
}

// Compile resolves the names in m with r (nil: only literal addresses and
// numeric VNIs are accepted) and returns a Filter.
func Compile(m Match, r Resolver) (*Filter, error) {
	return compile(m, r, true, "")
}

// MustCompile is Compile for matches known to be valid (tests, literals);
// it panics on error.
func MustCompile(m Match, r Resolver) *Filter {
	f, err := Compile(m, r)
	if err != nil {
		panic(err)
	}
	return f
}

func compile(m Match, r Resolver, resolve bool, path string) (*Filter, error) {
	c := &compiler{r: r, resolve: resolve}
	c.match(m, 0, path)
	if err := errors.Join(c.errs...); err != nil {
		return nil, fmt.Errorf("invalid packet match %s: %w", renderMatch(m), err)
	}
	return &Filter{spec: m, checks: c.checks, text: c.render(m)}, nil
}

type compiler struct {
	r       Resolver
	resolve bool
	checks  []check
	errs    []error
	// resolved remembers what each name stood for, for messages.
	resolved map[string]string
}

func (c *compiler) errorf(path, field, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s%s: %s", path, field, fmt.Sprintf(format, args...)))
}

func (c *compiler) add(level int, name, want string, test func(f *Frame, p *Packet) (bool, string)) {
	c.checks = append(c.checks, check{level: level, name: name, want: want, test: test})
}

func (c *compiler) match(m Match, level int, path string) {
	proto := strings.ToLower(strings.TrimSpace(m.Proto))
	if proto != "" {
		if proto == "icmp4" || proto == "icmpv4" {
			proto = "icmp"
		}
		if proto == "icmp6" {
			proto = "icmpv6"
		}
		if proto == "ip" || proto == "ip4" {
			proto = "ipv4"
		}
		if !slices.Contains(protos, proto) {
			c.errorf(path, "proto", "unknown protocol %q (want one of %s)", m.Proto, strings.Join(protos, ", "))
		} else {
			c.add(level, "proto", proto, func(f *Frame, _ *Packet) (bool, string) {
				return hasProto(f, proto), frameProto(f)
			})
		}
	}
	c.addr(level, path, "src", m.Src, func(f *Frame) []netip.Addr { return []netip.Addr{f.Src()} })
	c.addr(level, path, "dst", m.Dst, func(f *Frame) []netip.Addr { return []netip.Addr{f.Dst()} })
	c.addr(level, path, "host", m.Host, func(f *Frame) []netip.Addr { return []netip.Addr{f.Src(), f.Dst()} })

	transport := proto == "tcp" || proto == "udp" || proto == "dns" || proto == ""
	portCheck := func(field string, v int, get func(sp, dp uint16) []uint16) {
		if v == 0 {
			return
		}
		if v < 0 || v > 65535 {
			c.errorf(path, field, "port %d out of range", v)
			return
		}
		if !transport {
			c.errorf(path, field, "ports need proto tcp, udp or dns, not %s", proto)
			return
		}
		c.add(level, field, strconv.Itoa(v), func(f *Frame, _ *Packet) (bool, string) {
			sp, dp, ok := f.Ports()
			if !ok {
				return false, "no TCP/UDP header"
			}
			got := get(sp, dp)
			return slices.Contains(got, uint16(v)), joinPorts(got)
		})
	}
	portCheck("sport", m.SPort, func(sp, _ uint16) []uint16 { return []uint16{sp} })
	portCheck("dport", m.DPort, func(_, dp uint16) []uint16 { return []uint16{dp} })
	portCheck("port", m.Port, func(sp, dp uint16) []uint16 { return []uint16{sp, dp} })

	if len(m.Flags) > 0 {
		if proto != "" && proto != "tcp" && proto != "dns" {
			c.errorf(path, "flags", "TCP flags need proto tcp, not %s", proto)
		}
		set, clear, err := parseFlags(m.Flags)
		if err != nil {
			c.errorf(path, "flags", "%v", err)
		} else {
			c.add(level, "flags", "["+strings.Join(m.Flags, ", ")+"]", func(f *Frame, _ *Packet) (bool, string) {
				if f.TCP == nil {
					return false, "not TCP"
				}
				fl := tcpFlagBits(f.TCP)
				return fl&set == set && fl&clear == 0, f.TCPFlags()
			})
		}
	}
	if m.ICMP != nil {
		c.icmp(*m.ICMP, proto, level, path)
	}
	if m.DNS != nil {
		c.dns(*m.DNS, level, path)
	}
	if m.Payload != "" {
		want := []byte(m.Payload)
		c.add(level, "payload", strconv.Quote(m.Payload), func(f *Frame, _ *Packet) (bool, string) {
			return bytes.Contains(f.Payload, want), quotePrefix(f.Payload)
		})
	}
	if m.Direction != "" {
		d, err := ParseDirection(strings.ToLower(m.Direction))
		switch {
		case err != nil:
			c.errorf(path, "direction", "%v", err)
		case level > 0:
			c.errorf(path, "direction", "only applies to the packet on the device, not an inner frame")
		default:
			c.add(level, "direction", d.String(), func(_ *Frame, p *Packet) (bool, string) {
				return p.Direction == d, p.Direction.String()
			})
		}
	}
	if m.Comment != "" {
		if level > 0 {
			c.errorf(path, "comment", "only applies to the packet on the device, not an inner frame")
		} else {
			c.add(level, "comment", strconv.Quote(m.Comment), func(_ *Frame, p *Packet) (bool, string) {
				return strings.Contains(p.Comment, m.Comment), strconv.Quote(p.Comment)
			})
		}
	}
	if m.VXLAN != nil || m.Inner != nil {
		if proto != "" && proto != "vxlan" && proto != "udp" {
			c.errorf(path, "vxlan", "VXLAN runs over UDP, not %s", proto)
		}
		c.add(level, "vxlan", "VXLAN", func(f *Frame, _ *Packet) (bool, string) {
			if f.VXLAN != nil {
				return true, "VXLAN"
			}
			return false, frameProto(f)
		})
	}
	if m.VXLAN != nil && m.VXLAN.VNI != "" {
		c.vni(m.VXLAN.VNI, level, path)
	}
	if m.Inner != nil {
		if level+1 >= maxInnerDepth {
			c.errorf(path, "inner", "nested deeper than %d", maxInnerDepth)
			return
		}
		c.match(*m.Inner, level+1, path+"inner.")
	}
}

func (c *compiler) addr(level int, path, field, v string, get func(f *Frame) []netip.Addr) {
	v = strings.TrimSpace(v)
	if v == "" {
		return
	}
	var (
		prefixes []netip.Prefix
		want     = v
	)
	if a, err := netip.ParseAddr(v); err == nil {
		prefixes = []netip.Prefix{netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}
	} else if p, err := netip.ParsePrefix(v); err == nil {
		prefixes = []netip.Prefix{p.Masked()}
	} else if !c.resolve {
		// A lab name: checked when compiled against the lab.
		c.add(level, field, v, func(*Frame, *Packet) (bool, string) { return false, "unresolved" })
		return
	} else if c.r == nil {
		c.errorf(path, field, "%q is not an IP address or CIDR, and no resolver is set to look up lab names", v)
		return
	} else {
		addrs, err := c.r.Addresses(v)
		if err != nil {
			c.errorf(path, field, "resolve %q: %v", v, err)
			return
		}
		if len(addrs) == 0 {
			c.errorf(path, field, "%q has no address", v)
			return
		}
		var shown []string
		for _, a := range addrs {
			a = a.Unmap()
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
			shown = append(shown, a.String())
		}
		want = v + " (" + strings.Join(shown, ", ") + ")"
		if c.resolved == nil {
			c.resolved = map[string]string{}
		}
		c.resolved[v] = want
	}
	c.add(level, field, want, func(f *Frame, _ *Packet) (bool, string) {
		got := get(f)
		var shown []string
		for _, a := range got {
			if !a.IsValid() {
				continue
			}
			shown = append(shown, a.String())
			for _, p := range prefixes {
				if p.Contains(a) {
					return true, a.String()
				}
			}
		}
		if len(shown) == 0 {
			return false, "no IP header"
		}
		return false, strings.Join(shown, ", ")
	})
}

func (c *compiler) icmp(m ICMPMatch, proto string, level int, path string) {
	if proto != "" && proto != "icmp" && proto != "icmpv6" {
		c.errorf(path, "icmp", "ICMP fields need proto icmp or icmpv6, not %s", proto)
		return
	}
	typ4, typ6 := -1, -1
	hasType := m.Type != ""
	if hasType {
		// A name may mean different numbers in ICMP and ICMPv6
		// (echo-request is 8 and 128); a number means itself in either.
		if t, err := icmpType(m.Type, false); err == nil && proto != "icmpv6" {
			typ4 = int(t)
		}
		if t, err := icmpType(m.Type, true); err == nil && proto != "icmp" {
			typ6 = int(t)
		}
		if typ4 < 0 && typ6 < 0 {
			c.errorf(path, "icmp.type", "unknown ICMP type %q", m.Type)
			return
		}
	}
	if m.Code != nil && (*m.Code < 0 || *m.Code > 255) {
		c.errorf(path, "icmp.code", "code %d out of range", *m.Code)
		return
	}
	want := ""
	if hasType {
		want = "type " + m.Type
	}
	if m.Code != nil {
		want = strings.TrimSpace(want + " code " + strconv.Itoa(*m.Code))
	}
	c.add(level, "icmp", want, func(f *Frame, _ *Packet) (bool, string) {
		var (
			t, code uint8
			typ     int
			got     string
		)
		switch {
		case f.ICMPv4 != nil:
			t, code, typ = f.ICMPv4.TypeCode.Type(), f.ICMPv4.TypeCode.Code(), typ4
			got = icmpName(t, code, false)
		case f.ICMPv6 != nil:
			t, code, typ = f.ICMPv6.TypeCode.Type(), f.ICMPv6.TypeCode.Code(), typ6
			got = icmpName(t, code, true)
		default:
			return false, "not ICMP"
		}
		if hasType && int(t) != typ {
			return false, got
		}
		if m.Code != nil && int(code) != *m.Code {
			return false, got
		}
		return true, got
	})
}

func (c *compiler) dns(m DNSMatch, level int, path string) {
	qname := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(m.QName)), ".")
	qtype := strings.ToUpper(strings.TrimSpace(m.QType))
	if qtype != "" && !knownDNSType(qtype) {
		c.errorf(path, "dns.qtype", "unknown DNS type %q", m.QType)
	}
	rcode := -1
	if m.RCode != "" {
		r, err := parseRcode(m.RCode)
		if err != nil {
			c.errorf(path, "dns.rcode", "%v", err)
		}
		rcode = r
		if m.Response != nil && !*m.Response {
			c.errorf(path, "dns.rcode", "a response code needs a response, but response is false")
		}
	}
	var wants []string
	if qname != "" {
		wants = append(wants, "qname "+qname)
	}
	if qtype != "" {
		wants = append(wants, "qtype "+qtype)
	}
	if m.Response != nil {
		wants = append(wants, map[bool]string{true: "response", false: "query"}[*m.Response])
	}
	if rcode >= 0 {
		wants = append(wants, "rcode "+dnsRcodeName(layers.DNSResponseCode(rcode)))
	}
	want := strings.Join(wants, " ")
	if want == "" {
		want = "DNS"
	}
	c.add(level, "dns", want, func(f *Frame, _ *Packet) (bool, string) {
		d := f.DNS
		if d == nil {
			return false, "not DNS"
		}
		got := dnsSummary(d)
		if m.Response != nil && d.QR != *m.Response {
			return false, got
		}
		if rcode >= 0 && (!d.QR || int(d.ResponseCode) != rcode) {
			return false, got
		}
		if qname != "" || qtype != "" {
			found := false
			for _, q := range d.Questions {
				if qname != "" && !dnsNameMatches(qname, string(q.Name)) {
					continue
				}
				if qtype != "" && strings.ToUpper(q.Type.String()) != qtype {
					continue
				}
				found = true
				break
			}
			if !found {
				return false, got
			}
		}
		return true, got
	})
}

func dnsNameMatches(pattern, name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+rest)
	}
	return name == pattern
}

func knownDNSType(s string) bool {
	for t := layers.DNSType(1); t < 300; t++ {
		if strings.ToUpper(t.String()) == s {
			return true
		}
	}
	return false
}

func parseRcode(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < 4096 {
		return n, nil
	}
	for code, name := range dnsRcodes {
		if strings.EqualFold(name, s) {
			return int(code), nil
		}
	}
	return -1, fmt.Errorf("unknown DNS response code %q", s)
}

func (c *compiler) vni(v string, level int, path string) {
	v = strings.TrimSpace(v)
	var (
		vni  uint32
		want string
	)
	if name, ok := strings.CutPrefix(v, IdentityOfPrefix); ok {
		name = strings.TrimSpace(name)
		if name == "" {
			c.errorf(path, "vxlan.vni", "%q names no pod", v)
			return
		}
		if !c.resolve {
			c.add(level, "vxlan.vni", v, func(*Frame, *Packet) (bool, string) { return false, "unresolved" })
			return
		}
		if c.r == nil {
			c.errorf(path, "vxlan.vni", "%q needs a resolver to look up identities", v)
			return
		}
		id, err := c.r.IdentityOf(name)
		if err != nil {
			c.errorf(path, "vxlan.vni", "identity of %q: %v", name, err)
			return
		}
		vni, want = id, fmt.Sprintf("%d (identity of %s)", id, name)
		if c.resolved == nil {
			c.resolved = map[string]string{}
		}
		c.resolved[v] = want
	} else {
		n, err := strconv.ParseUint(v, 0, 32)
		if err != nil {
			c.errorf(path, "vxlan.vni", "%q is neither a number nor %sNAME", v, IdentityOfPrefix)
			return
		}
		vni, want = uint32(n), v
	}
	if vni >= 1<<24 {
		c.errorf(path, "vxlan.vni", "%d does not fit in 24 bits", vni)
		return
	}
	c.add(level, "vxlan.vni", want, func(f *Frame, _ *Packet) (bool, string) {
		if f.VXLAN == nil {
			return false, "not VXLAN"
		}
		return f.VXLAN.VNI == vni, strconv.FormatUint(uint64(f.VXLAN.VNI), 10)
	})
}

// TCP flag bits as in the TCP header.
const (
	flagFIN = 1 << iota
	flagSYN
	flagRST
	flagPSH
	flagACK
	flagURG
	flagECE
	flagCWR
)

var flagNames = map[string]uint8{"FIN": flagFIN, "SYN": flagSYN, "RST": flagRST, "PSH": flagPSH, "ACK": flagACK, "URG": flagURG, "ECE": flagECE, "CWR": flagCWR}

func parseFlags(terms []string) (set, clear uint8, err error) {
	mentionedACK := false
	for _, term := range terms {
		t := strings.ToUpper(strings.TrimSpace(term))
		neg := false
		if rest, ok := strings.CutPrefix(t, "!"); ok {
			neg, t = true, rest
		}
		if t == "SYNACK" {
			t = "SYN-ACK"
		}
		parts := strings.FieldsFunc(t, func(r rune) bool { return r == '-' || r == '+' || r == '|' || r == ',' })
		if len(parts) == 0 {
			return 0, 0, fmt.Errorf("empty flag term %q", term)
		}
		if neg && len(parts) > 1 {
			return 0, 0, fmt.Errorf("%q: negate one flag at a time", term)
		}
		for _, p := range parts {
			bit, ok := flagNames[p]
			if !ok {
				return 0, 0, fmt.Errorf("unknown TCP flag %q in %q (want SYN, ACK, FIN, RST, PSH, URG, ECE, CWR)", p, term)
			}
			if bit == flagACK {
				mentionedACK = true
			}
			if neg {
				clear |= bit
			} else {
				set |= bit
			}
		}
	}
	if set&clear != 0 {
		return 0, 0, fmt.Errorf("flags %v both required set and clear", terms)
	}
	if set&flagSYN != 0 && !mentionedACK {
		clear |= flagACK
	}
	return set, clear, nil
}

func tcpFlagBits(t *layers.TCP) uint8 {
	var b uint8
	for _, f := range []struct {
		on  bool
		bit uint8
	}{{t.FIN, flagFIN}, {t.SYN, flagSYN}, {t.RST, flagRST}, {t.PSH, flagPSH}, {t.ACK, flagACK}, {t.URG, flagURG}, {t.ECE, flagECE}, {t.CWR, flagCWR}} {
		if f.on {
			b |= f.bit
		}
	}
	return b
}

func hasProto(f *Frame, proto string) bool {
	switch proto {
	case "tcp":
		return f.TCP != nil
	case "udp":
		return f.UDP != nil
	case "icmp":
		return f.ICMPv4 != nil
	case "icmpv6":
		return f.ICMPv6 != nil
	case "arp":
		return f.ARP != nil
	case "ipv4":
		return f.IPv4 != nil
	case "ipv6":
		return f.IPv6 != nil
	case "dns":
		return f.DNS != nil
	case "vxlan":
		return f.VXLAN != nil
	}
	return false
}

// frameProto names the frame's most specific protocol.
func frameProto(f *Frame) string {
	switch {
	case f.VXLAN != nil:
		return "vxlan"
	case f.DNS != nil:
		return "dns"
	case f.TCP != nil:
		return "tcp"
	case f.UDP != nil:
		return "udp"
	case f.ICMPv4 != nil:
		return "icmp"
	case f.ICMPv6 != nil:
		return "icmpv6"
	case f.ARP != nil:
		return "arp"
	case f.IPv4 != nil:
		return "ipv4"
	case f.IPv6 != nil:
		return "ipv6"
	case f.Ethernet != nil:
		return "ethertype " + f.Ethernet.EthernetType.String()
	}
	return "undecoded"
}

func joinPorts(ps []uint16) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

func quotePrefix(b []byte) string {
	if len(b) > 40 {
		return strconv.Quote(string(b[:40])) + "..."
	}
	return strconv.Quote(string(b))
}

// Spec returns the Match the filter was compiled from.
func (f *Filter) Spec() Match { return f.spec }

// String renders the match with resolved names, e.g.
// "{proto: tcp, src: pod-to-a (10.244.1.5), dport: 8080, flags: [SYN]}".
func (f *Filter) String() string { return f.text }

// Match reports whether p matches.
func (f *Filter) Match(p *Packet) bool { return f.MatchFrame(DecodePacket(p), p) }

// MatchFrame reports whether p, already decoded as fr, matches.
func (f *Filter) MatchFrame(fr *Frame, p *Packet) bool {
	for i := range f.checks {
		if ok, _ := f.run(&f.checks[i], fr, p); !ok {
			return false
		}
	}
	return true
}

// Explain scores how close p (decoded as fr) comes to the filter: the
// fraction of conditions it meets (1 for a match; an empty filter scores 1),
// and one line per condition it misses ("dport: want 8080, got 80").
func (f *Filter) Explain(fr *Frame, p *Packet) (score float64, misses []string) {
	if len(f.checks) == 0 {
		return 1, nil
	}
	met := 0
	noInner := -1 // shallowest level already reported as missing
	for i := range f.checks {
		ch := &f.checks[i]
		ok, got := f.run(ch, fr, p)
		if ok {
			met++
			continue
		}
		if ch.level > 0 && got == noInnerFrame {
			// One line for all the conditions on a frame that is not there.
			if noInner < 0 || ch.level < noInner {
				noInner = ch.level
				misses = append(misses, strings.Repeat("inner.", ch.level-1)+"inner: no inner frame (not VXLAN)")
			}
			continue
		}
		name := strings.Repeat("inner.", ch.level) + ch.name
		misses = append(misses, fmt.Sprintf("%s: want %s, got %s", name, ch.want, got))
	}
	return float64(met) / float64(len(f.checks)), misses
}

const noInnerFrame = "no inner frame (not VXLAN)"

func (f *Filter) run(ch *check, fr *Frame, p *Packet) (bool, string) {
	for range ch.level {
		if fr.Inner == nil {
			return false, noInnerFrame
		}
		fr = fr.Inner
	}
	return ch.test(fr, p)
}

// render shows the match as flow-style YAML with resolved names.
func (c *compiler) render(m Match) string {
	return renderMatchWith(m, c.resolved)
}

func renderMatch(m Match) string { return renderMatchWith(m, nil) }

func renderMatchWith(m Match, resolved map[string]string) string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+": "+v) }
	name := func(v string) string {
		if r, ok := resolved[v]; ok {
			return r
		}
		return v
	}
	if m.Proto != "" {
		add("proto", m.Proto)
	}
	if m.Src != "" {
		add("src", name(m.Src))
	}
	if m.Dst != "" {
		add("dst", name(m.Dst))
	}
	if m.Host != "" {
		add("host", name(m.Host))
	}
	if m.SPort != 0 {
		add("sport", strconv.Itoa(m.SPort))
	}
	if m.DPort != 0 {
		add("dport", strconv.Itoa(m.DPort))
	}
	if m.Port != 0 {
		add("port", strconv.Itoa(m.Port))
	}
	if len(m.Flags) > 0 {
		add("flags", "["+strings.Join(m.Flags, ", ")+"]")
	}
	if m.ICMP != nil {
		var s []string
		if m.ICMP.Type != "" {
			s = append(s, "type: "+m.ICMP.Type)
		}
		if m.ICMP.Code != nil {
			s = append(s, "code: "+strconv.Itoa(*m.ICMP.Code))
		}
		add("icmp", "{"+strings.Join(s, ", ")+"}")
	}
	if m.DNS != nil {
		var s []string
		if m.DNS.QName != "" {
			s = append(s, "qname: "+m.DNS.QName)
		}
		if m.DNS.QType != "" {
			s = append(s, "qtype: "+m.DNS.QType)
		}
		if m.DNS.Response != nil {
			s = append(s, "response: "+strconv.FormatBool(*m.DNS.Response))
		}
		if m.DNS.RCode != "" {
			s = append(s, "rcode: "+m.DNS.RCode)
		}
		add("dns", "{"+strings.Join(s, ", ")+"}")
	}
	if m.Payload != "" {
		add("payload", strconv.Quote(m.Payload))
	}
	if m.Direction != "" {
		add("direction", m.Direction)
	}
	if m.Comment != "" {
		add("comment", strconv.Quote(m.Comment))
	}
	if m.VXLAN != nil {
		if m.VXLAN.VNI != "" {
			add("vxlan", "{vni: "+name(strings.TrimSpace(m.VXLAN.VNI))+"}")
		} else {
			add("vxlan", "{}")
		}
	}
	if m.Inner != nil {
		add("inner", renderMatchWith(*m.Inner, resolved))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
