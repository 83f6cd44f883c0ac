package dnsproxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func query(t testing.TB, id uint16, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// answer is a server's answer to q with one A record per address.
func answer(t testing.TB, q []byte, ttl uint32, addrs ...netip.Addr) []byte {
	t.Helper()
	var p dnsmessage.Parser
	h, _ := p.Start(q)
	qs, _ := p.AllQuestions()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionAvailable: true})
	_ = b.StartQuestions()
	_ = b.Question(qs[0])
	_ = b.StartAnswers()
	for _, a := range addrs {
		if err := b.AResource(dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: ttl}, dnsmessage.AResource{A: a.As4()}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func rcodeOf(t testing.TB, msg []byte) dnsmessage.RCode {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response {
		t.Fatalf("not a response: %v", err)
	}
	return h.RCode
}

func TestHandle(t *testing.T) {
	addr := netip.MustParseAddr("93.184.216.34")
	var events []string
	var records []Record
	p := New(Config{
		Allowed: func(q Query, name string) bool { return strings.HasSuffix(name, ".example.com.") },
		Observe: func(name string, addrs []netip.Addr, ttl time.Duration) error {
			events = append(events, "observe "+name)
			if !slices.Equal(addrs, []netip.Addr{addr}) || ttl != 7*time.Second {
				t.Errorf("observe %s %v %v", name, addrs, ttl)
			}
			return nil
		},
		Exchange: func(ctx context.Context, q Query, msg []byte) ([]byte, error) {
			events = append(events, "exchange")
			if strings.Contains(string(msg), "broken") {
				return nil, errors.New("upstream down")
			}
			return answer(t, msg, 7, addr), nil
		},
		Report: func(r Record) { records = append(records, r) },
	})
	q := Query{Source: netip.MustParseAddrPort("10.244.1.5:40000"), OrigDst: netip.MustParseAddrPort("10.244.0.3:53"), SourceIdentity: 1234}

	out := p.Handle(context.Background(), q, query(t, 7, "WWW.Example.com."))
	if rcodeOf(t, out) != dnsmessage.RCodeSuccess {
		t.Fatal("allowed query not answered")
	}
	if !slices.Equal(events, []string{"exchange", "observe www.example.com."}) {
		t.Fatalf("events %v", events)
	}
	if len(records) != 2 || records[0].Response || !records[1].Response || records[1].TTL != 7 || records[1].Name != "www.example.com." || !slices.Equal(records[1].RRTypes, []string{"A"}) {
		t.Fatalf("records %+v", records)
	}

	events, records = nil, nil
	out = p.Handle(context.Background(), q, query(t, 8, "www.google.com."))
	if rcodeOf(t, out) != dnsmessage.RCodeRefused || len(events) != 0 {
		t.Fatalf("denied query: %v %v", rcodeOf(t, out), events)
	}
	if len(records) != 1 || !records[0].Denied || !slices.Equal(records[0].QTypes, []string{"A"}) {
		t.Fatalf("denied records %+v", records)
	}

	out = p.Handle(context.Background(), q, query(t, 9, "broken.example.com."))
	if rcodeOf(t, out) != dnsmessage.RCodeServerFailure {
		t.Fatal("upstream failure not SERVFAIL")
	}
	if p.Handle(context.Background(), q, []byte("garbage")) != nil {
		t.Fatal("garbage answered")
	}
}

func BenchmarkHandle(b *testing.B) {
	addr := netip.MustParseAddr("198.18.3.4")
	p := New(Config{
		Allowed:  func(Query, string) bool { return true },
		Observe:  func(string, []netip.Addr, time.Duration) error { return nil },
		Exchange: func(ctx context.Context, q Query, msg []byte) ([]byte, error) { return answer(b, msg, 30, addr), nil },
	})
	msg := query(b, 1, "www.example.com.")
	for b.Loop() {
		p.Handle(context.Background(), Query{}, msg)
	}
}
