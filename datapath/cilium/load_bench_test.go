package cilium

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podlab/podlab/datapath/policy"
	"github.com/podlab/podlab/internal/e2e"
)

// BenchmarkCiliumEndpointLoad measures one endpoint load of Cilium's
// bpf_lxc (load steps, verifier, call-policy tables; no namespace, so
// nothing is attached), one endpoint after the other on one node: wall
// time, the process's CPU time (user+system: the verifier runs in the
// loading thread) and the instructions the verifier processed, which does
// not depend on the machine's load:
//
//	sudo go test ./datapath/cilium -run '^$' -bench EndpointLoad -benchtime 20x
func BenchmarkCiliumEndpointLoad(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	objs := objectsForTest(b)
	bld := &Builder{Tree: objs.Tree, objs: map[Flavour]*Objects{testFlavour: objs}}
	n, err := LoadNode(context.Background(), bld, NodeConfig{Lab: "ccload", Node: "bench", VXLANIfindex: 5, HostIfindex: 3, NetIfindex: 4, Eth0Ifindex: 2,
		NodeIP: testFlavour.NodeIP, RouterIP: testFlavour.RouterIP})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close() })
	b.ResetTimer()
	var total, cpu time.Duration
	var verified uint64
	for i := range b.N {
		id := uint16(i + 1)
		ep := Endpoint{ID: id, IP: netip.AddrFrom4([4]byte{10, 244, 1, byte(i%250 + 2)}), Ifindex: 100 + i, Identity: 1000,
			MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}, HostMAC: net.HardwareAddr{2, 0, 0, 0, 1, byte(i)}}
		if err := n.SetPolicy(id, policy.EndpointPolicy{}); err != nil {
			b.Fatal(err)
		}
		start, cpu0 := time.Now(), processCPU(b)
		if err := n.AddEndpoint(ep); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		cpu += processCPU(b) - cpu0
		b.StopTimer()
		for _, p := range n.eps[id].coll.Programs {
			info, err := p.Info()
			if err != nil {
				b.Fatal(err)
			}
			v, _ := info.VerifiedInstructions()
			verified += uint64(v)
		}
		if err := n.RemoveEndpoint(id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/endpoint")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/endpoint")
	b.ReportMetric(float64(verified)/float64(b.N), "verified-insns/endpoint")
}

// processCPU returns the user and system time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
