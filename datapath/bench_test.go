package datapath

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/podlab/podlab/datapath/identity"
	"github.com/podlab/podlab/datapath/policy"
)

// benchPolicy returns about n policy map entries for endpoint B's ingress,
// with entries at every probe level that a TCP SYN from A to port 81 must
// miss: L3-L4 rules for many identities, L3-only and port ranges of other
// identities, L4-only UDP rules.
func benchPolicy(n int) policy.EndpointPolicy {
	p := policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: uint32(epA.Identity), Proto: 6, PortLo: 80},
		{Direction: policy.Ingress, Identity: 70000, Proto: 6, PortLo: 1024, PortHi: 1279}, // one block
		{Direction: policy.Ingress, Identity: 70001},                                       // L3-only
		{Direction: policy.Ingress, Identity: 70002, Proto: 17},                            // L3-proto
		{Direction: policy.Ingress, Proto: 17, PortLo: 53},                                 // L4-only
		{Direction: policy.Ingress, Proto: 17, PortLo: 2048, PortHi: 2303},                 // L4 block
		{Direction: policy.Ingress, Proto: 132},                                            // proto-only
	}}
	for i := 0; len(p.Entries) < n; i++ {
		p.Entries = append(p.Entries, policy.Entry{
			Direction: policy.Ingress, Identity: uint32(identity.MinUser) + 1000 + uint32(i/50),
			Proto: 6, PortLo: uint16(8000 + i%50),
		})
	}
	return p
}

// fillConntrack adds n unrelated connections to the conntrack map.
func fillConntrack(b *testing.B, d *Datapath, n int) {
	b.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	const batch = 65536
	keys := make([]fromContainerCtKey, 0, batch)
	vals := make([]fromContainerCtEntry, 0, batch)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		if _, err := d.maps[mapConntrack].BatchUpdate(keys, vals, nil); err != nil {
			b.Fatalf("fill conntrack: %v", err)
		}
		keys, vals = keys[:0], vals[:0]
	}
	for i := 0; i < n; i++ {
		keys = append(keys, fromContainerCtKey{
			Saddr: 0x0af40000 | uint32(rng.IntN(1<<16)), Daddr: rng.Uint32(),
			Sport: uint16(rng.IntN(65536)), Dport: uint16(i), Proto: 6,
		})
		vals = append(vals, fromContainerCtEntry{Expires: 1 << 31, SeenReply: 1})
		if len(keys) == batch {
			flush()
		}
	}
	flush()
}

// BenchmarkFromContainer measures from-container per packet with
// BPF_PROG_TEST_RUN: a TCP SYN from A to local endpoint B that B's ingress
// policy allows (port 80) or denies (port 81), with 10, 1,000 and 100,000
// policy entries and 1,000,000 conntrack entries. A reader drains the event
// ring buffer while the program runs, as an agent would.
func BenchmarkFromContainer(b *testing.B) {
	for _, entries := range []int{10, 1000, 100000} {
		for _, tc := range []struct {
			name  string
			dport uint16
			want  uint32
			ack   bool // an established ACK with monitor aggregation: no event at all
		}{{"allowed", 80, tcActRedirect, false}, {"denied", 81, tcActShot, false}, {"established-ack-aggregated", 80, tcActRedirect, true}} {
			b.Run(fmt.Sprintf("%s/policy=%d/ct=1M", tc.name, entries), func(b *testing.B) {
				n := newTestNode(b, func(c *NodeConfig) {
					c.ConntrackSize = 1 << 20
					c.MonitorAggregation = tc.ack
				})
				if err := n.d.SetPolicy(epB.ID, benchPolicy(entries)); err != nil {
					b.Fatal(err)
				}
				if err := n.d.SetPolicy(epA.ID, policy.EndpointPolicy{EgressEnforced: true, Entries: []policy.Entry{
					{Direction: policy.Egress, Identity: uint32(epB.Identity)},
				}}); err != nil {
					b.Fatal(err)
				}
				fillConntrack(b, n.d, 1000000)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						if _, err := n.rd.Read(); errors.Is(err, ErrClosed) {
							return
						}
					}
				}()
				data := syn(b, epA.IP, epB.IP, 40000, tc.dport)
				if tc.ack {
					if ret, _ := n.run(n.d.progs.fromContainer, data); ret != tcActRedirect {
						b.Fatalf("SYN verdict %d", ret)
					}
					data = craft(b, pkt{src: epA.IP, dst: epB.IP, sport: 40000, dport: tc.dport, ack: true})
				}
				b.ResetTimer()
				ret, per, err := n.d.progs.fromContainer.Benchmark(data, b.N, nil)
				b.StopTimer()
				n.rd.Close()
				<-done
				if err != nil {
					b.Fatal(err)
				}
				if ret != tc.want {
					b.Fatalf("verdict %d, want %d", ret, tc.want)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
				b.ReportMetric(float64(len(n.d.policies[epB.ID].keys)), "policy-keys")
			})
		}
	}
}
