package cilium

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf/perf"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/internal/e2e"
)

// TC verdicts.
const (
	tcActShot     = 2
	tcActRedirect = 7
)

var (
	benchA = Endpoint{ID: 1, IP: netip.MustParseAddr("10.244.1.2"), Ifindex: 100, Identity: 1000,
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, HostMAC: net.HardwareAddr{2, 0, 0, 0, 1, 1}}
	benchB = Endpoint{ID: 2, IP: netip.MustParseAddr("10.244.1.3"), Ifindex: 101, Identity: 1001,
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, HostMAC: net.HardwareAddr{2, 0, 0, 0, 1, 2}}
)

// tcpPacket crafts an Ethernet/IPv4/TCP packet from A's pod to B with TTL
// 255 (Cilium lowers the TTL on local delivery, and PROG_TEST_RUN's repeat
// reuses the packet: 255 leaves room for 254 runs).
func tcpPacket(src, dst Endpoint, sport, dport uint16, flags uint8) []byte {
	b := make([]byte, 14+20+20)
	copy(b[0:6], src.HostMAC)
	copy(b[6:12], src.MAC)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0], ip[8], ip[9] = 0x45, 255, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	s, d := src.IP.As4(), dst.IP.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tcp := b[34:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	return b
}

// BenchmarkCiliumFromContainer measures Cilium's cil_from_container per
// packet with BPF_PROG_TEST_RUN on the packets podlab's own
// BenchmarkFromContainer (package datapath) uses: a TCP SYN from endpoint A
// to local endpoint B that B's ingress policy allows (port 80) or denies
// (port 81), and an established ACK. Runs are at most 254 repeats of a TTL
// 255 packet; cilium_metrics proves which path ran (forwarded vs reason
// 133, never 196 TTL exceeded). Run both in one go:
//
//	sudo go test ./datapath/ ./datapath/cilium/ -run '^$' -bench 'FromContainer' -benchtime 200000x
func BenchmarkCiliumFromContainer(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	objs := objectsForTest(b)
	ctx := context.Background()
	bld := &Builder{Tree: objs.Tree, objs: map[Flavour]*Objects{testFlavour: objs}}
	n, err := LoadNode(ctx, bld, NodeConfig{Lab: "ccbench", Node: "bench", VXLANIfindex: 5, HostIfindex: 3, NetIfindex: 4, Eth0Ifindex: 2,
		NodeIP: testFlavour.NodeIP, RouterIP: testFlavour.RouterIP})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close() })
	for _, ep := range []Endpoint{benchA, benchB} {
		if err := n.UpsertIPCache(netip.PrefixFrom(ep.IP, 32), ep.Identity, netip.Addr{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := n.SetPolicy(benchB.ID, policy.EndpointPolicy{IngressEnforced: true, Entries: []policy.Entry{
		{Direction: policy.Ingress, Identity: benchA.Identity, Proto: 6, PortLo: 80},
	}}); err != nil {
		b.Fatal(err)
	}
	if err := n.SetPolicy(benchA.ID, policy.EndpointPolicy{}); err != nil {
		b.Fatal(err)
	}
	for _, ep := range []Endpoint{benchA, benchB} {
		if err := n.AddEndpoint(ep); err != nil {
			b.Fatal(err)
		}
	}
	// A reader that wakes per record costs ~9 µs per event on a small VM
	// (paid inside the packet's program run): wake at a watermark, as
	// datapath/cilium/monitor's reader does.
	rd, err := perf.NewReaderWithOptions(n.EventsMap(), 1<<20, perf.ReaderOptions{Watermark: 1 << 17})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := rd.Read(); errors.Is(err, perf.ErrClosed) {
				return
			}
		}
	}()
	b.Cleanup(func() { rd.Close(); <-done })

	prog := n.EndpointProgram(benchA.ID, "cil_from_container")
	count := func(reason uint8) uint64 {
		ms, err := n.Metrics()
		if err != nil {
			b.Fatal(err)
		}
		var c uint64
		for _, m := range ms {
			if m.Reason == reason {
				c += m.Packets
			}
		}
		return c
	}
	sport := uint16(40000)
	for _, tc := range []struct {
		name   string
		dport  uint16
		want   uint32
		reason uint8 // the cilium_metrics reason that must grow
		ack    bool
	}{{"allowed-syn", 80, tcActRedirect, 0, false}, {"denied-syn", 81, tcActShot, 133, false}, {"established-ack", 80, tcActRedirect, 0, true}} {
		b.Run(tc.name, func(b *testing.B) {
			sport++
			data := tcpPacket(benchA, benchB, sport, tc.dport, 0x02)
			if tc.ack {
				if ret, _, err := prog.Benchmark(data, 1, nil); err != nil || ret != tcActRedirect {
					b.Fatalf("SYN: verdict %d, %v", ret, err)
				}
				data = tcpPacket(benchA, benchB, sport, tc.dport, 0x10)
			}
			before, ttl := count(tc.reason), count(196)
			b.ResetTimer()
			var total time.Duration
			for left := b.N; left > 0; left -= 254 {
				reps := min(left, 254)
				ret, per, err := prog.Benchmark(data, reps, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != tc.want {
					b.Fatalf("verdict %d, want %d", ret, tc.want)
				}
				total += per * time.Duration(reps)
			}
			b.StopTimer()
			if got := count(tc.reason) - before; got < uint64(b.N) {
				b.Fatalf("cilium_metrics reason %d grew by %d over %d packets", tc.reason, got, b.N)
			}
			if count(196) != ttl {
				b.Fatalf("TTL-exceeded drops (196) during the run: the benchmark measured the wrong path")
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}
