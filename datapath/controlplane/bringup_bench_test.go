package controlplane

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/podlab/podlab/internal/e2e"
	"github.com/podlab/podlab/topo"
)

// BenchmarkBringUp brings up 3 nodes × N pods with no datapath, podlab's
// BPF datapath and Cilium's (objects from the compile cache), and reports
// the bring-up time, pods/s and, for Cilium, the median and maximum time of
// one endpoint load (bpf_lxc verified for that endpoint) and the longest
// bpf_host load of a node (three instances: cilium_host, cilium_net,
// eth0):
//
//	sudo go test ./datapath/controlplane -run '^$' -bench BringUp -benchtime 1x
func BenchmarkBringUp(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	for _, pods := range []int{10, 100} {
		for _, dp := range []string{"none", "bpf", "cilium"} {
			b.Run(fmt.Sprintf("%s/3x%d", dp, pods), func(b *testing.B) {
				for range b.N {
					var hooks []topo.ClusterHook
					var cp *ControlPlane
					closeFn := func() error { return nil }
					if dp != "none" {
						cp = New("tbup", Options{AllowLocalhost: true, Datapath: dp, Attach: "netlink"})
						if err := cp.Prepare(context.Background()); err != nil {
							b.Fatal(err)
						}
						hooks, closeFn = []topo.ClusterHook{cp}, cp.Close
					}
					var loads []time.Duration
					var hostLoad time.Duration
					if dp == "cilium" {
						inner := closeFn
						closeFn = func() error {
							for _, n := range cp.Nodes() {
								loads = append(loads, cp.CiliumNode(n).LoadTimes()...)
								hostLoad = max(hostLoad, cp.CiliumNode(n).HostLoadTime())
							}
							return inner()
						}
					}
					r := topo.BenchClusterWith(context.Background(), "tbup", 3, pods, dp, hooks, closeFn)
					if r.Err != nil {
						b.Fatal(r.Err)
					}
					b.Logf("up %.3fs down %.3fs: %s", r.Up.Seconds(), r.Down.Seconds(), r.Phases)
					b.ReportMetric(r.Up.Seconds(), "up-s")
					b.ReportMetric(r.PodsPerSecond(), "pods/s")
					if len(loads) > 0 {
						sort.Slice(loads, func(i, j int) bool { return loads[i] < loads[j] })
						b.ReportMetric(float64(loads[len(loads)/2].Milliseconds()), "ep-load-median-ms")
						b.ReportMetric(float64(loads[len(loads)-1].Milliseconds()), "ep-load-max-ms")
						b.ReportMetric(float64(hostLoad.Milliseconds()), "host-load-max-ms")
					}
					time.Sleep(2 * time.Second) // let the kernel free the namespaces
				}
			})
		}
	}
}
