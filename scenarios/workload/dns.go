package workload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/topo"
)

// DNSConfig configures the cluster DNS workload.
type DNSConfig struct {
	// Addrs to listen on; none means every IPv4 address of the namespace.
	Addrs []netip.Addr
	// Port to listen on (UDP and TCP); 0 means 53.
	Port uint16
	// Records is the table to answer from; nil starts with an empty table
	// for DefaultClusterDomain. Update it at any time.
	Records *Records
}

// DNSResponseKey labels a DNS response the way Hubble's DNS metrics do.
type DNSResponseKey struct {
	// RCode is the response code name: NOERROR, NXDOMAIN, FORMERR, ...
	RCode string
	// QType is the question type name: A, AAAA, SRV, ...
	QType string
	// IPs is how many addresses the response carried.
	IPs int
}

// DNSStats counts the cluster DNS's traffic, for hubble_dns_* metrics.
type DNSStats struct {
	// Queries counts queries by question type name.
	Queries map[string]uint64
	// Responses counts responses by code, question type and addresses.
	Responses map[DNSResponseKey]uint64
	// UDP and TCP count queries per transport.
	UDP, TCP uint64
	// Truncated counts UDP responses sent with the TC bit.
	Truncated uint64
}

// DNSServer is the running cluster DNS. It implements Workload; Requests
// counts queries.
type DNSServer struct {
	records *Records
	udp     []*udpSocket
	tcp     []net.Listener
	addrs   []netip.AddrPort
	stats   counter
	wg      sync.WaitGroup
	stop    func() bool
	once    sync.Once

	mu     sync.Mutex
	dns    DNSStats
	conns  map[net.Conn]struct{}
	closed bool
}

// StartDNS starts the cluster DNS inside ns, on UDP and TCP.
func StartDNS(ctx context.Context, ns *topo.Namespace, cfg DNSConfig) (*DNSServer, error) {
	if err := checkNS(ns, KindDNS); err != nil {
		return nil, err
	}
	port := cfg.Port
	if port == 0 {
		port = 53
	}
	eps := endpoints(cfg.Addrs, []uint16{port}, 53)
	us, err := listenUDP(ns, eps)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", KindDNS, err)
	}
	ls, err := listenTCP(ns, eps)
	if err != nil {
		for _, u := range us {
			u.Close()
		}
		return nil, fmt.Errorf("start %s: %w", KindDNS, err)
	}
	s := &DNSServer{
		records: cfg.Records,
		tcp:     ls,
		conns:   map[net.Conn]struct{}{},
		dns:     DNSStats{Queries: map[string]uint64{}, Responses: map[DNSResponseKey]uint64{}},
	}
	if s.records == nil {
		s.records = NewRecords("")
	}
	for _, c := range us {
		u := newUDPSocket(c)
		s.udp = append(s.udp, u)
		s.addrs = append(s.addrs, unmapped(addrPortOf(c.LocalAddr())))
		s.wg.Add(1)
		go s.serveUDP(u)
	}
	for _, l := range ls {
		s.wg.Add(1)
		go s.acceptTCP(l)
	}
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Records returns the table the server answers from.
func (s *DNSServer) Records() *Records { return s.records }

func (s *DNSServer) serveUDP(u *udpSocket) {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	out := make([]byte, 0, 1500)
	for {
		n, src, dst, err := u.read(buf)
		if err != nil {
			if isClosed(err) {
				return
			}
			continue
		}
		resp, ex, ok := respond(s.records, buf[:n], true, out[:0])
		if !ok {
			continue
		}
		s.record(src.Addr(), ex, false)
		_ = u.reply(resp, src, dst)
	}
}

func (s *DNSServer) acceptTCP(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if isClosed(err) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.stats.connection()
		go s.serveTCP(c)
	}
}

// tcpIdle is how long a DNS-over-TCP connection may stay silent.
const tcpIdle = 10 * time.Second

func (s *DNSServer) serveTCP(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	client := addrPortOf(c.RemoteAddr()).Addr()
	var lenBuf [2]byte
	buf := make([]byte, 64<<10)
	out := make([]byte, 2, 1500)
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		resp, ex, ok := respond(s.records, buf[:n], false, out[:2])
		if !ok {
			return
		}
		s.record(client, ex, true)
		binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
		_ = c.SetWriteDeadline(time.Now().Add(tcpIdle))
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (s *DNSServer) record(client netip.Addr, ex exchange, tcp bool) {
	s.stats.request(client, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dns.Queries[ex.qtype]++
	s.dns.Responses[DNSResponseKey{RCode: ex.rcode, QType: ex.qtype, IPs: ex.ips}]++
	if tcp {
		s.dns.TCP++
	} else {
		s.dns.UDP++
	}
	if ex.truncated {
		s.dns.Truncated++
	}
}

// DNSStats returns a snapshot of the query and response counters.
func (s *DNSServer) DNSStats() DNSStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.dns
	out.Queries = maps.Clone(s.dns.Queries)
	out.Responses = maps.Clone(s.dns.Responses)
	return out
}

// Kind returns KindDNS.
func (s *DNSServer) Kind() Kind { return KindDNS }

// Addrs returns the listening addresses (each serves UDP and TCP).
func (s *DNSServer) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.addrs...) }

// Stats returns the queries served so far, by client.
func (s *DNSServer) Stats() Stats { return s.stats.snapshot() }

// Close stops the server and waits for its goroutines.
func (s *DNSServer) Close() error {
	s.once.Do(func() {
		s.stop()
		s.mu.Lock()
		s.closed = true
		for _, u := range s.udp {
			u.c.Close()
		}
		for _, l := range s.tcp {
			l.Close()
		}
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

// exchange describes one answered query, for the counters.
type exchange struct {
	qtype     string
	rcode     string
	ips       int
	truncated bool
}

// Message size limits: plain DNS over UDP, and what we advertise and accept
// with EDNS0.
const (
	udpPlainLimit = 512
	ednsSize      = 1232
)

// respond builds the answer to query, appended to out. ok is false when the
// query is not worth an answer (unparsable header, or a response).
func respond(rec *Records, query []byte, udp bool, out []byte) (resp []byte, ex exchange, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, ex, false
	}
	rh := dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
	}
	fail := func(code dnsmessage.RCode, q *dnsmessage.Question) ([]byte, exchange, bool) {
		rh.RCode = code
		ex.rcode = RCodeName(code)
		if q != nil {
			ex.qtype = QTypeName(q.Type)
		}
		msg, err := buildResponse(out, rh, q, Answer{RCode: code}, nil, false, "")
		if err != nil {
			return nil, ex, false
		}
		return msg, ex, true
	}
	if h.OpCode != 0 {
		return fail(dnsmessage.RCodeNotImplemented, nil)
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return fail(dnsmessage.RCodeFormatError, nil)
	}
	q := qs[0]
	limit := udpPlainLimit
	edns := false
	if p.SkipAllAnswers() == nil && p.SkipAllAuthorities() == nil {
		for {
			ah, err := p.AdditionalHeader()
			if err != nil {
				break
			}
			if ah.Type == dnsmessage.TypeOPT {
				edns = true
				if size := int(ah.Class); size > limit {
					limit = min(size, ednsSize)
				}
			}
			if p.SkipAdditional() != nil {
				break
			}
		}
	}
	if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
		return fail(dnsmessage.RCodeNotImplemented, &q)
	}
	ans := rec.Lookup(q.Name.String(), q.Type)
	rh.RCode = ans.RCode
	rh.Authoritative = ans.Authoritative
	ex = exchange{qtype: QTypeName(q.Type), rcode: RCodeName(ans.RCode), ips: len(ans.Addrs)}
	soa := ""
	if ans.Authoritative && len(ans.Addrs) == 0 {
		soa = rec.Domain()
	}
	var optHdr *dnsmessage.ResourceHeader
	if edns {
		optHdr = &dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(".")}
		if err := optHdr.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
			optHdr = nil
		}
	}
	msg, err := buildResponse(out, rh, &q, ans, optHdr, false, soa)
	if err != nil {
		return fail(dnsmessage.RCodeServerFailure, &q)
	}
	if udp && len(msg) > limit {
		rh.Truncated = true
		ex.truncated = true
		ex.ips = 0
		msg, err = buildResponse(out, rh, &q, Answer{RCode: ans.RCode}, optHdr, true, "")
		if err != nil {
			return nil, ex, false
		}
	}
	return msg, ex, true
}

// buildResponse encodes a response; soaDomain, when set, adds the zone's
// SOA to the authority section (negative answers inside the cluster).
func buildResponse(out []byte, h dnsmessage.Header, q *dnsmessage.Question, ans Answer, opt *dnsmessage.ResourceHeader, truncated bool, soaDomain string) ([]byte, error) {
	b := dnsmessage.NewBuilder(out, h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if q != nil {
		if err := b.Question(*q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if q != nil && !truncated {
		for _, ip := range ans.Addrs {
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ans.TTL}
			var err error
			if ip.Is4() {
				err = b.AResource(rh, dnsmessage.AResource{A: ip.As4()})
			} else {
				err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: ip.As16()})
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if err := b.StartAuthorities(); err != nil {
		return nil, err
	}
	if soaDomain != "" {
		zone, err := dnsmessage.NewName(soaDomain + ".")
		if err != nil {
			return nil, err
		}
		ns, err1 := dnsmessage.NewName("ns.dns." + soaDomain + ".")
		mbox, err2 := dnsmessage.NewName("hostmaster." + soaDomain + ".")
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		err = b.SOAResource(
			dnsmessage.ResourceHeader{Name: zone, Class: dnsmessage.ClassINET, TTL: DefaultClusterTTL},
			dnsmessage.SOAResource{NS: ns, MBox: mbox, Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, MinTTL: DefaultClusterTTL},
		)
		if err != nil {
			return nil, err
		}
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	if opt != nil {
		if err := b.OPTResource(*opt, dnsmessage.OPTResource{}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// RCodeName returns the conventional name of a DNS response code.
func RCodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return "RCODE" + strconv.Itoa(int(c))
}

// QTypeName returns the conventional name of a DNS question type (A, AAAA,
// SRV, ...).
func QTypeName(t dnsmessage.Type) string {
	switch t {
	case dnsmessage.TypeA:
		return "A"
	case dnsmessage.TypeNS:
		return "NS"
	case dnsmessage.TypeCNAME:
		return "CNAME"
	case dnsmessage.TypeSOA:
		return "SOA"
	case dnsmessage.TypePTR:
		return "PTR"
	case dnsmessage.TypeMX:
		return "MX"
	case dnsmessage.TypeTXT:
		return "TXT"
	case dnsmessage.TypeAAAA:
		return "AAAA"
	case dnsmessage.TypeSRV:
		return "SRV"
	case dnsmessage.TypeOPT:
		return "OPT"
	case dnsmessage.TypeSVCB:
		return "SVCB"
	case dnsmessage.TypeHTTPS:
		return "HTTPS"
	case dnsmessage.TypeALL:
		return "ANY"
	}
	return "TYPE" + strconv.Itoa(int(t))
}
