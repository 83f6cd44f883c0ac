package workload_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/podlab/podlab/scenarios/workload"
	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// benchNS creates a namespace for a benchmark; client and server talk over
// its loopback. Run with -cpu 1 for "served on one core" figures.
func benchNS(b *testing.B, short string) *topo.Namespace {
	b.Helper()
	e2e.Require(b, e2e.Root)
	name := topo.NSName(lab, short)
	b.Cleanup(func() {
		if err := topo.DeleteNamespace(name); err != nil {
			b.Error(err)
		}
	})
	if err := topo.DeleteNamespace(name); err != nil {
		b.Fatal(err)
	}
	ns, err := topo.CreateNamespace(lab, short)
	if err != nil {
		b.Fatal(err)
	}
	return ns
}

// BenchmarkHTTPEcho measures keep-alive HTTP requests served per second.
func BenchmarkHTTPEcho(b *testing.B) {
	ns := benchNS(b, "wl-bench-http")
	s, err := workload.StartHTTPEcho(context.Background(), ns, workload.HTTPEchoConfig{
		Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Pod:   workload.PodInfo{Namespace: "default", Name: "echo-a"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialFrom(ns, network, addr)
		},
		MaxIdleConnsPerHost: 64,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get("http://127.0.0.1/public")
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if got := s.Stats().Requests; got < uint64(b.N) {
		b.Fatalf("served %d of %d requests", got, b.N)
	}
}

// BenchmarkDNSUDP measures UDP queries answered per second (4 clients).
func BenchmarkDNSUDP(b *testing.B) {
	ns := benchNS(b, "wl-bench-dns")
	rec := workload.NewRecords("")
	rec.SetService("default", "echo-a", netip.MustParseAddr("10.96.0.20"))
	s, err := workload.StartDNS(context.Background(), ns, workload.DNSConfig{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Records: rec})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, RecursionDesired: true})
	_ = bld.StartQuestions()
	_ = bld.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("echo-a.default.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	query, err := bld.Finish()
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := dialFrom(ns, "udp", "127.0.0.1:53")
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		// A lost datagram must fail the benchmark, not hang it.
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		buf := make([]byte, 512)
		for pb.Next() {
			if _, err := c.Write(query); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}
