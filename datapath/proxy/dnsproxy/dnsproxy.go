// Package dnsproxy is the node's DNS proxy: the datapath redirects DNS
// queries that an egress policy with DNS rules (toPorts[].rules.dns)
// covers to it, over UDP and TCP. For each query it
//
//   - answers REFUSED itself when no DNS rule of the client's policy allows
//     the name asked for (Cilium's default for denied queries);
//   - otherwise forwards the query unchanged to the server the client
//     asked (its original destination), and, before the answer is released
//     to the client, hands the answered addresses and TTL to the policy
//     (Config.Observe), so toFQDNs rules allow them by the time the client
//     connects;
//   - reports every query and answer as an L7 DNS record (Hubble's l7.dns
//     flows and the hubble_dns_* metrics are made from them).
//
// Handle holds the protocol logic and does not care how messages arrive;
// Serve (serve.go) reads them from the redirect sockets of package proxy.
package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Query is one DNS message the datapath redirected: who asked whom.
type Query struct {
	// Source is the client, OrigDst the DNS server it sent the query to.
	Source, OrigDst netip.AddrPort
	// SourceIdentity is the client's security identity.
	SourceIdentity uint32
	// TCP is set for a query over TCP.
	TCP bool
}

// Record is one DNS query or answer the proxy handled, for flows and
// metrics.
type Record struct {
	Time  time.Time
	Query Query
	// Response is false for a query, true for an answer.
	Response bool
	// Denied is set on a query no DNS rule allowed (the proxy answered
	// REFUSED).
	Denied bool
	// Name is the name asked for, with its trailing dot ("www.google.com.").
	Name string
	// QTypes are the question types ("A"), RRTypes the answer record types.
	QTypes, RRTypes []string
	// RCode of an answer (0 NOERROR, 3 NXDOMAIN, 5 REFUSED...).
	RCode uint8
	// IPs are the A/AAAA answers, CNAMEs the CNAME targets, TTL the lowest
	// TTL of the address records.
	IPs    []netip.Addr
	CNAMEs []string
	TTL    uint32
	// Latency is the time from query to answer (answers only).
	Latency time.Duration
}

// Config wires the proxy to the policy and the network.
type Config struct {
	// Allowed reports whether the client's DNS rules allow asking q.OrigDst
	// for name (canonical, with trailing dot).
	Allowed func(q Query, name string) bool
	// Observe receives the addresses an allowed answer carries for name,
	// valid for ttl; the answer is released only after it returns. An
	// error turns the answer into SERVFAIL (the policy could not follow).
	Observe func(name string, addrs []netip.Addr, ttl time.Duration) error
	// Exchange sends msg to q.OrigDst on the client's behalf and returns
	// the server's answer.
	Exchange func(ctx context.Context, q Query, msg []byte) ([]byte, error)
	// Report receives every record (may be nil).
	Report func(Record)
	// Timeout bounds one upstream exchange (0: 5s, the resolv.conf
	// default).
	Timeout time.Duration
}

// Proxy applies DNS policy to redirected queries.
type Proxy struct {
	cfg Config
}

// New returns a proxy.
func New(cfg Config) *Proxy {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Proxy{cfg: cfg}
}

// Handle answers one query message: the upstream answer when the policy
// allows the name (after the policy learned its addresses), REFUSED when
// it does not, SERVFAIL when the upstream fails. It returns nil for a
// message that is not a parsable DNS query (the client gets nothing, as
// from a server that drops garbage).
func (p *Proxy) Handle(ctx context.Context, q Query, msg []byte) []byte {
	start := time.Now()
	var parser dnsmessage.Parser
	hdr, err := parser.Start(msg)
	if err != nil || hdr.Response {
		return nil
	}
	questions, err := parser.AllQuestions()
	if err != nil || len(questions) == 0 {
		return nil
	}
	name := strings.ToLower(questions[0].Name.String())
	rec := Record{Time: start, Query: q, Name: name, QTypes: qtypes(questions)}
	if p.cfg.Allowed != nil && !p.cfg.Allowed(q, name) {
		rec.Denied = true
		p.report(rec)
		return reply(hdr, questions, dnsmessage.RCodeRefused)
	}
	p.report(rec)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	answer, err := p.cfg.Exchange(ctx, q, msg)
	if err != nil {
		return p.fail(rec, hdr, questions, start)
	}
	resp := Record{Time: time.Now(), Query: q, Response: true, Name: name, QTypes: rec.QTypes, Latency: time.Since(start)}
	if err := parseAnswer(answer, hdr.ID, &resp); err != nil {
		return p.fail(rec, hdr, questions, start)
	}
	if len(resp.IPs) > 0 && p.cfg.Observe != nil {
		if err := p.cfg.Observe(name, resp.IPs, time.Duration(resp.TTL)*time.Second); err != nil {
			return p.fail(rec, hdr, questions, start)
		}
	}
	p.report(resp)
	return answer
}

// fail answers SERVFAIL and reports it.
func (p *Proxy) fail(rec Record, hdr dnsmessage.Header, qs []dnsmessage.Question, start time.Time) []byte {
	rec.Response, rec.Time, rec.Latency = true, time.Now(), time.Since(start)
	rec.RCode = uint8(dnsmessage.RCodeServerFailure)
	p.report(rec)
	return reply(hdr, qs, dnsmessage.RCodeServerFailure)
}

func (p *Proxy) report(r Record) {
	if p.cfg.Report != nil {
		p.cfg.Report(r)
	}
}

func qtypes(qs []dnsmessage.Question) []string {
	out := make([]string, 0, len(qs))
	for _, q := range qs {
		out = append(out, TypeName(q.Type))
	}
	return out
}

// TypeName is the name of a record type ("A", "AAAA", "TYPE65").
func TypeName(t dnsmessage.Type) string {
	return strings.TrimPrefix(t.String(), "Type")
}

// reply builds the proxy's own answer to a query: same ID and question,
// recursion available, the given code, no records.
func reply(q dnsmessage.Header, qs []dnsmessage.Question, rcode dnsmessage.RCode) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: q.ID, Response: true, OpCode: q.OpCode, RecursionDesired: q.RecursionDesired,
		RecursionAvailable: true, RCode: rcode,
	})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	for _, qq := range qs {
		if err := b.Question(qq); err != nil {
			return nil
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// parseAnswer reads an upstream answer into r: rcode, address records
// (their lowest TTL), CNAMEs and the record types.
func parseAnswer(msg []byte, id uint16, r *Record) error {
	var parser dnsmessage.Parser
	hdr, err := parser.Start(msg)
	if err != nil {
		return fmt.Errorf("parse answer: %w", err)
	}
	if !hdr.Response || hdr.ID != id {
		return errors.New("answer does not match the query")
	}
	r.RCode = uint8(hdr.RCode)
	if err := parser.SkipAllQuestions(); err != nil {
		return fmt.Errorf("parse answer: %w", err)
	}
	first := true
	for {
		h, err := parser.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("parse answer: %w", err)
		}
		r.RRTypes = append(r.RRTypes, TypeName(h.Type))
		var addr netip.Addr
		switch h.Type {
		case dnsmessage.TypeA:
			a, err := parser.AResource()
			if err != nil {
				return err
			}
			addr = netip.AddrFrom4(a.A)
		case dnsmessage.TypeAAAA:
			a, err := parser.AAAAResource()
			if err != nil {
				return err
			}
			addr = netip.AddrFrom16(a.AAAA)
		case dnsmessage.TypeCNAME:
			c, err := parser.CNAMEResource()
			if err != nil {
				return err
			}
			r.CNAMEs = append(r.CNAMEs, strings.ToLower(c.CNAME.String()))
			continue
		default:
			if err := parser.SkipAnswer(); err != nil {
				return err
			}
			continue
		}
		r.IPs = append(r.IPs, addr)
		if first || h.TTL < r.TTL {
			r.TTL = h.TTL
		}
		first = false
	}
}
