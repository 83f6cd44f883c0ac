package workload

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func buildQuery(t *testing.T, id uint16, name string, qtype dnsmessage.Type, edns uint16) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if edns > 0 {
		if err := b.StartAdditionals(); err != nil {
			t.Fatal(err)
		}
		var h dnsmessage.ResourceHeader
		h.Name = dnsmessage.MustNewName(".")
		if err := h.SetEDNS0(int(edns), dnsmessage.RCodeSuccess, false); err != nil {
			t.Fatal(err)
		}
		if err := b.OPTResource(h, dnsmessage.OPTResource{}); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func parseResponse(t *testing.T, b []byte) (dnsmessage.Header, []netip.Addr, int) {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	var out []netip.Addr
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, netip.AddrFrom4(r.A))
		}
	}
	return m.Header, out, len(m.Authorities)
}

func TestRespond(t *testing.T) {
	r := NewRecords("")
	r.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
	var many []netip.Addr
	for i := range 60 {
		many = append(many, netip.AddrFrom4([4]byte{10, 244, 1, byte(i + 1)}))
	}
	r.SetHeadlessService("default", "big", many)

	resp, ex, ok := respond(r, buildQuery(t, 7, "echo-a.default.svc.cluster.local.", dnsmessage.TypeA, 0), true, nil)
	if !ok {
		t.Fatal("no response")
	}
	h, got, _ := parseResponse(t, resp)
	if h.ID != 7 || !h.Response || !h.Authoritative || h.RCode != dnsmessage.RCodeSuccess || len(got) != 1 || got[0] != netip.MustParseAddr("10.96.0.20") {
		t.Fatalf("A echo-a: header %+v answers %v", h, got)
	}
	if ex != (exchange{qtype: "A", rcode: "NOERROR", ips: 1}) {
		t.Fatalf("exchange = %+v", ex)
	}

	resp, ex, _ = respond(r, buildQuery(t, 8, "nosuch.default.svc.cluster.local.", dnsmessage.TypeA, 0), true, nil)
	h, got, auth := parseResponse(t, resp)
	if h.RCode != dnsmessage.RCodeNameError || len(got) != 0 || auth != 1 || ex.rcode != "NXDOMAIN" {
		t.Fatalf("NXDOMAIN: header %+v answers %v authorities %d exchange %+v", h, got, auth, ex)
	}

	// 60 A records do not fit in 512 bytes: truncated over plain UDP...
	resp, ex, _ = respond(r, buildQuery(t, 9, "big.default.svc.cluster.local.", dnsmessage.TypeA, 0), true, nil)
	h, got, _ = parseResponse(t, resp)
	if !h.Truncated || len(got) != 0 || !ex.truncated || len(resp) > 512 {
		t.Fatalf("plain UDP: truncated=%v answers=%d len=%d", h.Truncated, len(got), len(resp))
	}
	// ...but fit with EDNS0 (1232 bytes) and over TCP.
	resp, _, _ = respond(r, buildQuery(t, 10, "big.default.svc.cluster.local.", dnsmessage.TypeA, 4096), true, nil)
	h, got, _ = parseResponse(t, resp)
	if h.Truncated || len(got) != 60 {
		t.Fatalf("EDNS0: truncated=%v answers=%d len=%d", h.Truncated, len(got), len(resp))
	}
	out := make([]byte, 2, 64)
	resp, _, _ = respond(r, buildQuery(t, 11, "big.default.svc.cluster.local.", dnsmessage.TypeA, 0), false, out)
	binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
	h, got, _ = parseResponse(t, resp[2:])
	if h.Truncated || len(got) != 60 || h.ID != 11 {
		t.Fatalf("TCP: truncated=%v answers=%d", h.Truncated, len(got))
	}

	// Garbage is ignored; a response is not answered; two questions are FORMERR.
	if _, _, ok := respond(r, []byte{1, 2, 3}, true, nil); ok {
		t.Error("answered garbage")
	}
	q := buildQuery(t, 12, "echo-a.default.svc.cluster.local.", dnsmessage.TypeA, 0)
	q[2] |= 0x80 // QR bit
	if _, _, ok := respond(r, q, true, nil); ok {
		t.Error("answered a response")
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 13})
	_ = b.StartQuestions()
	for _, n := range []string{"a.", "b."} {
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(n), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	}
	two, _ := b.Finish()
	resp, _, ok = respond(r, two, true, nil)
	if h, _, _ := parseResponse(t, resp); !ok || h.RCode != dnsmessage.RCodeFormatError {
		t.Errorf("two questions: ok=%v rcode=%v", ok, h.RCode)
	}
}

func TestNames(t *testing.T) {
	for c, want := range map[dnsmessage.RCode]string{0: "NOERROR", 3: "NXDOMAIN", 2: "SERVFAIL", 5: "REFUSED", 11: "RCODE11"} {
		if got := RCodeName(c); got != want {
			t.Errorf("RCodeName(%d) = %q", c, got)
		}
	}
	for ty, want := range map[dnsmessage.Type]string{dnsmessage.TypeA: "A", dnsmessage.TypeAAAA: "AAAA", dnsmessage.TypeSRV: "SRV", 99: "TYPE99"} {
		if got := QTypeName(ty); got != want {
			t.Errorf("QTypeName(%d) = %q", ty, got)
		}
	}
	s := Stats{Requests: 2, ByClient: map[netip.Addr]uint64{netip.MustParseAddr("10.0.0.2"): 1, netip.MustParseAddr("10.0.0.1"): 1}}
	if got, want := s.String(), "2 requests, 0 connections, 0 bytes from 10.0.0.1:1 10.0.0.2:1"; got != want {
		t.Errorf("Stats.String() = %q, want %q", got, want)
	}
}

// BenchmarkRespond measures answering one query in memory (no sockets).
func BenchmarkRespond(b *testing.B) {
	r := NewRecords("")
	r.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, RecursionDesired: true})
	_ = bld.StartQuestions()
	_ = bld.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("echo-a.default.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := bld.Finish()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := respond(r, q, true, out[:0]); !ok {
			b.Fatal("no answer")
		}
	}
}
