package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestCandidates(t *testing.T) {
	cfg := PodDNSConfig("default", netip.MustParseAddr("10.96.0.10"))
	if cfg.Server != netip.MustParseAddrPort("10.96.0.10:53") {
		t.Fatalf("server %v", cfg.Server)
	}
	tests := map[string][]string{
		"echo-a": {"echo-a.default.svc.cluster.local.", "echo-a.svc.cluster.local.", "echo-a.cluster.local.", "echo-a."},
		"one.one.one.one": {"one.one.one.one.default.svc.cluster.local.", "one.one.one.one.svc.cluster.local.",
			"one.one.one.one.cluster.local.", "one.one.one.one."},
		"echo-a.default.svc.cluster.local.": {"echo-a.default.svc.cluster.local."},
		"a.b.c.d.e.f":                       {"a.b.c.d.e.f.", "a.b.c.d.e.f.default.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."},
	}
	for name, want := range tests {
		if got := cfg.Candidates(name); !slices.Equal(got, want) {
			t.Errorf("Candidates(%q) = %q, want %q", name, got, want)
		}
	}
	cfg.Ndots = 1
	if got := cfg.Candidates("example.com"); got[0] != "example.com." {
		t.Errorf("ndots 1: %q", got)
	}
	cfg.Ndots = -1
	if got := cfg.Candidates("echo-a"); got[0] != "echo-a." {
		t.Errorf("ndots 0: %q", got)
	}
	if got := (DNSConfig{}).Candidates("x"); !slices.Equal(got, []string{"x."}) {
		t.Errorf("no search: %q", got)
	}
}

func TestParseReply(t *testing.T) {
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("echo-a.default.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	id, query, err := newQuery(q, false)
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(query); err != nil || m.Header.ID != id || len(m.Questions) != 1 || !m.Header.RecursionDesired {
		t.Fatalf("query: %v %+v", err, m)
	}
	// TCP framing carries the length first.
	_, tq, _ := newQuery(q, true)
	if int(tq[0])<<8|int(tq[1]) != len(tq)-2 {
		t.Fatalf("TCP length prefix %v for %d bytes", tq[:2], len(tq)-2)
	}

	build := func(id uint16, name string, rcode dnsmessage.RCode, ips ...string) []byte {
		resp := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: id, Response: true, RCode: rcode},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
		}
		resp.Answers = append(resp.Answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET},
			Body:   &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName("target.")},
		})
		for _, ip := range ips {
			resp.Answers = append(resp.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("target."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
				Body:   &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()},
			})
		}
		b, err := resp.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r, ok := parseReply(build(id, "ECHO-A.default.svc.cluster.local.", 0, "10.96.0.20", "10.96.0.21"), id, q)
	if !ok || r.rcode != 0 || !slices.Equal(r.addrs, []netip.Addr{netip.MustParseAddr("10.96.0.20"), netip.MustParseAddr("10.96.0.21")}) {
		t.Fatalf("reply: ok=%v %+v", ok, r)
	}
	if _, ok := parseReply(build(id+1, "echo-a.default.svc.cluster.local.", 0), id, q); ok {
		t.Error("accepted a reply with another ID")
	}
	if _, ok := parseReply(build(id, "other.", 0), id, q); ok {
		t.Error("accepted a reply to another question")
	}
	if r, ok := parseReply(build(id, "echo-a.default.svc.cluster.local.", dnsmessage.RCodeNameError), id, q); !ok || r.rcode != dnsmessage.RCodeNameError {
		t.Errorf("NXDOMAIN reply: ok=%v %+v", ok, r)
	}
	if _, ok := parseReply(query, id, q); ok {
		t.Error("accepted a query as a reply")
	}
}

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		err       error
		connected bool
		want      Outcome
	}{
		{nil, false, Success},
		{op(syscall.ECONNREFUSED), false, Refused},
		{op(syscall.ECONNRESET), true, Reset},
		{op(syscall.EPIPE), true, Reset},
		{op(syscall.EHOSTUNREACH), false, Unreachable},
		{op(syscall.ENETUNREACH), false, Unreachable},
		{op(syscall.EACCES), false, Unreachable},
		{op(syscall.EINVAL), false, Unreachable},
		{op(syscall.ETIMEDOUT), false, Timeout},
		{fmt.Errorf("wrapped: %w", os.ErrDeadlineExceeded), true, Timeout},
		{context.DeadlineExceeded, false, Timeout},
		{context.Canceled, false, Error},
		{errors.New("weird"), false, Error},
	}
	for _, tt := range tests {
		if got, why := classify(tt.err, tt.connected); got != tt.want || (got != Success && why == "") {
			t.Errorf("classify(%v, %v) = %s %q, want %s", tt.err, tt.connected, got, why, tt.want)
		}
	}
}

func TestParseOutcome(t *testing.T) {
	for _, o := range Outcomes() {
		if got, err := ParseOutcome(string(o)); err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %q, %v", o, got, err)
		}
	}
	if got, _ := ParseOutcome(" NXDOMAIN "); got != NXDomain {
		t.Errorf("NXDOMAIN: %q", got)
	}
	if _, err := ParseOutcome("maybe"); err == nil {
		t.Error("accepted an unknown outcome")
	}
}

func TestICMPQuoted(t *testing.T) {
	dst := netip.MustParseAddr("10.0.9.2")
	quoted := make([]byte, 28)
	quoted[0] = 0x45
	quoted[9] = 1
	copy(quoted[16:20], dst.AsSlice())
	quoted[20] = 8
	quoted[24], quoted[25], quoted[26], quoted[27] = 0x12, 0x34, 0, 1
	var p ICMP
	if !p.ours(quoted, dst, 0x1234, 1) {
		t.Error("did not recognise our echo request")
	}
	if p.ours(quoted, dst, 0x1235, 1) || p.ours(quoted, netip.MustParseAddr("10.0.9.3"), 0x1234, 1) || p.ours(quoted[:20], dst, 0x1234, 1) {
		t.Error("matched someone else's packet")
	}
}

func mustAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
