package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// lbBenchNode is a tsvc test node with nSvc ClusterIP services of 10
// backends each (pods behind the remote node: 10.244.1.0/24).
func lbBenchNode(b *testing.B, nSvc int, aggregate bool) (*testNode, *ebpf.Program) {
	n := newTestNode(b, func(c *NodeConfig) {
		c.Lab = "tsvc"
		c.ConntrackSize = 1 << 18
		c.MonitorAggregation = aggregate
	})
	for i := 0; i < nSvc; i++ {
		s := Service{Frontend: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), 80), Proto: 6}
		for j := 0; j < 10; j++ {
			s.Backends = append(s.Backends, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + j)}), uint16(8000+i%1000)))
		}
		if err := n.d.UpsertService(s); err != nil {
			b.Fatal(err)
		}
	}
	spec, err := loadLbBench()
	if err != nil {
		b.Fatal(err)
	}
	coll, err := newCollection(spec, n.d.maps)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(coll.Close)
	return n, coll.Programs["lb_bench_first"]
}

// clearMap deletes every entry of m.
func clearMap(b *testing.B, m *ebpf.Map) {
	b.Helper()
	var keys []fromContainerCtKey
	var k fromContainerCtKey
	it := m.Iterate()
	var v []byte
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			b.Fatal(err)
		}
	}
}

// benchFirstPackets runs prog (a new connection per run) b.N times in
// chunks, emptying conntrack and the affinity table between chunks so that
// every run is the first packet of its connection, and reports ns/pkt.
func benchFirstPackets(b *testing.B, n *testNode, prog *ebpf.Program, data []byte, want uint32) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := n.rd.Read(); errors.Is(err, ErrClosed) {
				return
			}
		}
	}()
	const chunk = 50000
	var total time.Duration
	b.ResetTimer()
	b.StopTimer()
	for runs := 0; runs < b.N; {
		k := min(chunk, b.N-runs)
		b.StartTimer()
		ret, per, err := prog.Benchmark(data, k, nil)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict %d, want %d", ret, want)
		}
		total += per * time.Duration(k)
		runs += k
		clearMap(b, n.d.maps[mapConntrack])
		clearMap(b, n.d.maps[mapAffinity])
	}
	n.rd.Close()
	<-done
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// BenchmarkServiceFirstPacket measures from-container for the first packet
// (a TCP SYN, new source port every run) of a connection to a ClusterIP
// with 10, 1,000 and 10,000 services of 10 backends each, and, as the
// baseline of the same run, of a connection straight to a remote pod.
func BenchmarkServiceFirstPacket(b *testing.B) {
	for _, nSvc := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("clusterip/services=%d", nSvc), func(b *testing.B) {
			n, prog := lbBenchNode(b, nSvc, false)
			i := nSvc / 2
			dst := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
			benchFirstPackets(b, n, prog, syn(b, epA.IP, dst, 1000, 80), tcActRedirect)
		})
	}
	b.Run("direct-pod/services=10", func(b *testing.B) {
		n, prog := lbBenchNode(b, 10, false)
		benchFirstPackets(b, n, prog, syn(b, epA.IP, remotePodIP, 1000, 8000), tcActRedirect)
	})
}

// BenchmarkServiceEstablished measures from-container for a later packet
// of a connection to a ClusterIP (the same ACK repeated: service lookup,
// pinned backend, conntrack hit; monitor aggregation on, so no event) with
// 10, 1,000 and 10,000 services, and the same to a pod directly.
func BenchmarkServiceEstablished(b *testing.B) {
	run := func(b *testing.B, nSvc int, dst netip.Addr, dport uint16) {
		// Monitor aggregation on: an established ACK emits no event, so
		// the figure is the lookups' cost alone.
		n, _ := lbBenchNode(b, nSvc, true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, err := n.rd.Read(); errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
		if ret, _ := n.run(n.d.progs.fromContainer, syn(b, epA.IP, dst, 40000, dport)); ret != tcActRedirect {
			b.Fatalf("SYN verdict %d", ret)
		}
		data := craft(b, pkt{src: epA.IP, dst: dst, sport: 40000, dport: dport, ack: true})
		b.ResetTimer()
		ret, per, err := n.d.progs.fromContainer.Benchmark(data, b.N, nil)
		b.StopTimer()
		n.rd.Close()
		<-done
		if err != nil || ret != tcActRedirect {
			b.Fatalf("verdict %d, %v", ret, err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	}
	for _, nSvc := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("clusterip/services=%d", nSvc), func(b *testing.B) {
			i := nSvc / 2
			run(b, nSvc, netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), 80)
		})
	}
	b.Run("direct-pod/services=10", func(b *testing.B) { run(b, 10, remotePodIP, 8000) })
}
