package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/topo"
)

// DNSConfig is a pod's resolver configuration (its resolv.conf).
type DNSConfig struct {
	// Server is the nameserver, e.g. 10.96.0.10:53. A zero value leaves
	// names unresolvable (only IP literals and localhost work).
	Server netip.AddrPort
	// Search is the search path, tried for names with fewer than Ndots dots
	// before the name itself.
	Search []string
	// Ndots is resolv.conf's ndots; 0 means 5 (the pod default), a
	// negative value means 0 (always try the name as given first).
	Ndots int
	// Timeout per attempt; 0 means 5 s (resolv.conf's default).
	Timeout time.Duration
	// Attempts per name; 0 means 2.
	Attempts int
	// TCP sends queries over TCP instead of UDP (UDP falls back to TCP by
	// itself when an answer is truncated).
	TCP bool
}

// PodDNSConfig returns the resolver configuration of a pod in Kubernetes
// namespace podNamespace: nameserver server:53 and the search path
// <ns>.svc.cluster.local svc.cluster.local cluster.local with ndots:5.
func PodDNSConfig(podNamespace string, server netip.Addr) DNSConfig {
	return DNSConfig{
		Server: netip.AddrPortFrom(server, 53),
		Search: []string{podNamespace + ".svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Ndots:  5,
	}
}

func (c DNSConfig) timeout() time.Duration {
	if c.Timeout <= 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

func (c DNSConfig) attempts() int {
	if c.Attempts <= 0 {
		return 2
	}
	return c.Attempts
}

// Candidates returns the fully qualified names the resolver tries for name,
// in order, as glibc and musl do: a name ending in a dot is tried alone; a
// name with at least ndots dots first as given, then with each search
// suffix; any other name with each search suffix first, then as given.
func (c DNSConfig) Candidates(name string) []string {
	name = strings.TrimSpace(name)
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	ndots := c.Ndots
	switch {
	case ndots == 0:
		ndots = 5
	case ndots < 0:
		ndots = 0
	}
	var searched []string
	for _, s := range c.Search {
		s = strings.Trim(strings.TrimSpace(s), ".")
		if s != "" {
			searched = append(searched, name+"."+s+".")
		}
	}
	if strings.Count(name, ".") >= ndots {
		return append([]string{name + "."}, searched...)
	}
	return append(searched, name+".")
}

// dnsError is a failed resolution, already classified.
type dnsError struct {
	outcome Outcome
	reason  string
	err     error
}

func (e *dnsError) Error() string { return e.reason }
func (e *dnsError) Unwrap() error { return e.err }

// dnsReply is the part of a DNS response the client uses.
type dnsReply struct {
	rcode     dnsmessage.RCode
	addrs     []netip.Addr
	truncated bool
}

// resolveHost turns a host into an address: IP literals and localhost
// directly, anything else through DNS (A records). res is nil when no DNS
// query was needed.
func resolveHost(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, host string, dl time.Time) (netip.Addr, *Resolution, error) {
	h := strings.Trim(host, "[]")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap(), nil, nil
	}
	if l := strings.ToLower(strings.TrimSuffix(h, ".")); l == "localhost" || strings.HasSuffix(l, ".localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil, nil
	}
	res, err := lookup(ctx, ns, cfg, h, dnsmessage.TypeA, dl)
	if err != nil {
		return netip.Addr{}, res, err
	}
	return res.Addrs[0], res, nil
}

// lookup resolves name through the search path and requires at least one
// address. It returns the resolution record even on failure; the error is a
// *dnsError.
func lookup(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, name string, qtype dnsmessage.Type, dl time.Time) (*Resolution, error) {
	res, err := lookupAny(ctx, ns, cfg, name, qtype, dl)
	if err == nil && len(res.Addrs) == 0 {
		return res, &dnsError{outcome: NXDomain, reason: fmt.Sprintf("%s has no %s record", name, typeName(qtype))}
	}
	return res, err
}

// lookupAny is lookup that also succeeds with NOERROR and no records.
func lookupAny(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, name string, qtype dnsmessage.Type, dl time.Time) (*Resolution, error) {
	start := time.Now()
	res := &Resolution{Query: name, Server: cfg.Server, Transport: "udp"}
	if cfg.TCP {
		res.Transport = "tcp"
	}
	defer func() { res.Duration = time.Since(start) }()
	if !cfg.Server.IsValid() {
		return res, &dnsError{outcome: Error, reason: fmt.Sprintf("cannot resolve %s: no DNS server configured", name)}
	}
	var nodata bool
	for _, fqdn := range cfg.Candidates(name) {
		res.Name = strings.TrimSuffix(fqdn, ".")
		res.Tried = append(res.Tried, res.Name)
		reply, err := query(ctx, ns, cfg, fqdn, qtype, dl, res)
		if err != nil {
			return res, err
		}
		res.RCode = rcodeName(reply.rcode)
		switch reply.rcode {
		case dnsmessage.RCodeSuccess:
			if len(reply.addrs) > 0 {
				res.Addrs = reply.addrs
				return res, nil
			}
			nodata = true // the name exists without such records: keep searching
		case dnsmessage.RCodeNameError:
		default:
			return res, &dnsError{outcome: Error, reason: fmt.Sprintf("DNS server %s answered %s for %s", cfg.Server, res.RCode, res.Name)}
		}
	}
	if nodata {
		res.RCode = "NOERROR"
		return res, nil
	}
	return res, &dnsError{outcome: NXDomain, reason: fmt.Sprintf("NXDOMAIN for %s (tried %s)", name, strings.Join(res.Tried, ", "))}
}

// query sends one question (with retries) and returns the reply.
func query(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, fqdn string, qtype dnsmessage.Type, dl time.Time, res *Resolution) (dnsReply, error) {
	qname, err := dnsmessage.NewName(fqdn)
	if err != nil {
		return dnsReply{}, &dnsError{outcome: Error, reason: fmt.Sprintf("invalid DNS name %q", fqdn), err: err}
	}
	q := dnsmessage.Question{Name: qname, Type: qtype, Class: dnsmessage.ClassINET}
	if cfg.TCP {
		return queryTCP(ctx, ns, cfg, q, dl, res)
	}
	reply, err := queryUDP(ctx, ns, cfg, q, dl, res)
	if err == nil && reply.truncated {
		res.Transport = "tcp"
		return queryTCP(ctx, ns, cfg, q, dl, res)
	}
	return reply, err
}

func newQuery(q dnsmessage.Question, tcp bool) (uint16, []byte, error) {
	id := uint16(rand.Uint32())
	var buf []byte
	if tcp {
		buf = make([]byte, 2, 512)
	}
	b := dnsmessage.NewBuilder(buf, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return 0, nil, err
	}
	if err := b.Question(q); err != nil {
		return 0, nil, err
	}
	msg, err := b.Finish()
	if err != nil {
		return 0, nil, err
	}
	if tcp {
		binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
	}
	return id, msg, nil
}

// dnsTimeout is the error of a query nobody answered.
func dnsTimeout(cfg DNSConfig, fqdn string, err error) error {
	return &dnsError{outcome: DNSTimeout, reason: fmt.Sprintf("no answer from DNS server %s for %s", cfg.Server, strings.TrimSuffix(fqdn, ".")), err: err}
}

// dnsTransportError classifies a socket error talking to the DNS server.
func dnsTransportError(cfg DNSConfig, fqdn string, err error) error {
	o, why := classify(err, false)
	switch o {
	case Timeout:
		return dnsTimeout(cfg, fqdn, err)
	case Refused:
		// UDP: ICMP port unreachable; TCP: RST.
		if !cfg.TCP {
			why = "ICMP port unreachable"
		}
		return &dnsError{outcome: Refused, reason: fmt.Sprintf("DNS server %s refused the query for %s (%s)", cfg.Server, strings.TrimSuffix(fqdn, "."), why), err: err}
	}
	return &dnsError{outcome: o, reason: fmt.Sprintf("DNS server %s for %s: %s", cfg.Server, strings.TrimSuffix(fqdn, "."), why), err: err}
}

func queryUDP(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, q dnsmessage.Question, dl time.Time, res *Resolution) (dnsReply, error) {
	fqdn := q.Name.String()
	c, local, err := dial(ctx, ns, "udp", cfg.Server, netip.Addr{}, dl, nil)
	res.Local = local
	if err != nil {
		return dnsReply{}, dnsTransportError(cfg, fqdn, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	id, msg, err := newQuery(q, false)
	if err != nil {
		return dnsReply{}, &dnsError{outcome: Error, reason: fmt.Sprintf("build DNS query for %s: %v", fqdn, err), err: err}
	}
	buf := make([]byte, 64<<10)
	var lastErr error = context.DeadlineExceeded
	for attempt := 0; attempt < cfg.attempts(); attempt++ {
		adl := time.Now().Add(cfg.timeout())
		if adl.After(dl) {
			adl = dl
		}
		if !time.Now().Before(adl) {
			break
		}
		_ = c.SetDeadline(adl)
		if _, err := c.Write(msg); err != nil {
			return dnsReply{}, dnsTransportError(cfg, fqdn, err)
		}
		for {
			n, err := c.Read(buf)
			if err != nil {
				if o, _ := classify(err, false); o == Timeout {
					lastErr = err
					break
				}
				return dnsReply{}, dnsTransportError(cfg, fqdn, err)
			}
			reply, ok := parseReply(buf[:n], id, q)
			if ok {
				return reply, nil
			}
		}
		if ctx.Err() != nil || !time.Now().Before(dl) {
			break
		}
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return dnsReply{}, &dnsError{outcome: Error, reason: "cancelled", err: ctx.Err()}
	}
	return dnsReply{}, dnsTimeout(cfg, fqdn, lastErr)
}

func queryTCP(ctx context.Context, ns *topo.Namespace, cfg DNSConfig, q dnsmessage.Question, dl time.Time, res *Resolution) (dnsReply, error) {
	fqdn := q.Name.String()
	adl := time.Now().Add(cfg.timeout() * time.Duration(cfg.attempts()))
	if adl.After(dl) {
		adl = dl
	}
	c, local, err := dial(ctx, ns, "tcp", cfg.Server, netip.Addr{}, adl, nil)
	res.Local = local
	if err != nil {
		return dnsReply{}, dnsTransportError(cfg, fqdn, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(adl)
	id, msg, err := newQuery(q, true)
	if err != nil {
		return dnsReply{}, &dnsError{outcome: Error, reason: fmt.Sprintf("build DNS query for %s: %v", fqdn, err), err: err}
	}
	if _, err := c.Write(msg); err != nil {
		return dnsReply{}, dnsTransportError(cfg, fqdn, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return dnsReply{}, dnsTransportError(cfg, fqdn, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return dnsReply{}, dnsTransportError(cfg, fqdn, err)
	}
	reply, ok := parseReply(buf, id, q)
	if !ok {
		return dnsReply{}, &dnsError{outcome: Error, reason: fmt.Sprintf("malformed DNS answer from %s for %s", cfg.Server, fqdn)}
	}
	return reply, nil
}

// parseReply decodes a response to question q with the given ID; ok is
// false for anything else (stray or malformed packets are ignored).
func parseReply(b []byte, id uint16, q dnsmessage.Question) (dnsReply, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil || !h.Response || h.ID != id {
		return dnsReply{}, false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || qs[0].Type != q.Type || !strings.EqualFold(qs[0].Name.String(), q.Name.String()) {
		return dnsReply{}, false
	}
	r := dnsReply{rcode: h.RCode, truncated: h.Truncated}
	for {
		ah, err := p.AnswerHeader()
		if err != nil {
			break
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return dnsReply{}, false
			}
			r.addrs = append(r.addrs, netip.AddrFrom4(a.A))
		case dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return dnsReply{}, false
			}
			r.addrs = append(r.addrs, netip.AddrFrom16(a.AAAA))
		default:
			if err := p.SkipAnswer(); err != nil {
				return dnsReply{}, false
			}
		}
	}
	return r, true
}

// DNS queries a name, like `dig` or `nslookup` from a pod.
type DNS struct {
	// Name to query; with Search, the resolv.conf search path applies.
	Name string
	// Type of the question; 0 means A.
	Type dnsmessage.Type
	// Config is the resolver (server, search path, TCP).
	Config DNSConfig
	// NoSearch queries Name as an absolute name.
	NoSearch bool
	// ExpectAddrs, when set, must equal the returned addresses (as a set).
	ExpectAddrs []netip.Addr
	// Timeout bounds the whole probe (0: DefaultTimeout).
	Timeout time.Duration
}

// Run performs the query from ns. NOERROR is Success (also with no record
// of the type), NXDOMAIN is NXDomain, no answer is DNSTimeout, a refusing
// or unreachable server is Refused/Unreachable.
func (p DNS) Run(ctx context.Context, ns *topo.Namespace) Result {
	r := Result{Kind: KindDNS, Target: p.Name, Start: time.Now(), BodySize: -1}
	if err := checkNS(ns); err != nil {
		return r.failed(Error, err.Error(), err)
	}
	qtype := p.Type
	if qtype == 0 {
		qtype = dnsmessage.TypeA
	}
	cfg := p.Config
	if p.NoSearch {
		cfg.Search = nil
	}
	name := p.Name
	if p.NoSearch && !strings.HasSuffix(name, ".") {
		name += "."
	}
	dl := deadline(ctx, r.Start, p.Timeout)
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	res, err := lookupAny(ctx, ns, cfg, name, qtype, dl)
	r.Resolution = res
	r.ResolveDuration = res.Duration
	r.Local, r.Remote = res.Local, res.Server
	if err != nil {
		var de *dnsError
		if errors.As(err, &de) {
			return r.failed(de.outcome, de.reason, err)
		}
		return r.failed(Error, err.Error(), err)
	}
	if len(p.ExpectAddrs) > 0 && !sameAddrs(p.ExpectAddrs, res.Addrs) {
		return r.failed(Error, fmt.Sprintf("%s %s answered %s, expected %s", typeName(qtype), res.Name, addrList(res.Addrs), addrList(p.ExpectAddrs)), nil)
	}
	r.Outcome = Success
	if len(res.Addrs) == 0 {
		r.Reason = fmt.Sprintf("%s %s: NOERROR, no %s record", typeName(qtype), res.Name, typeName(qtype))
	} else {
		r.Reason = fmt.Sprintf("%s %s -> %s", typeName(qtype), res.Name, addrList(res.Addrs))
	}
	r.Duration = time.Since(r.Start)
	return r
}

func sameAddrs(a, b []netip.Addr) bool {
	x := slices.Clone(a)
	y := slices.Clone(b)
	slices.SortFunc(x, func(p, q netip.Addr) int { return p.Compare(q) })
	slices.SortFunc(y, func(p, q netip.Addr) int { return p.Compare(q) })
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// addrList renders addresses for a one-line reason, eight at most.
func addrList(as []netip.Addr) string {
	if len(as) == 0 {
		return "(none)"
	}
	const show = 8
	s := make([]string, 0, show)
	for i, a := range as {
		if i == show {
			break
		}
		s = append(s, a.String())
	}
	out := strings.Join(s, ",")
	if len(as) > show {
		out += fmt.Sprintf(" (+%d more)", len(as)-show)
	}
	return out
}

func rcodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	}
	return fmt.Sprintf("RCODE%d", int(c))
}

func typeName(t dnsmessage.Type) string {
	switch t {
	case dnsmessage.TypeA:
		return "A"
	case dnsmessage.TypeAAAA:
		return "AAAA"
	}
	return strings.TrimPrefix(t.String(), "Type")
}
