package topo

import (
	"context"
	"fmt"
	"testing"

	"github.com/podlab/podlab/internal/e2e"
)

// BenchmarkClusterUpDown measures bring-up and teardown of whole clusters
// with plain routing: go test -run '^$' -bench ClusterUpDown -benchtime 3x ./topo
func BenchmarkClusterUpDown(b *testing.B) {
	e2e.Require(b, e2e.Root)
	for _, shape := range []struct{ nodes, pods int }{{3, 100}, {10, 100}} {
		b.Run(fmt.Sprintf("%dnodes-x%dpods", shape.nodes, shape.pods), func(b *testing.B) {
			var up, down float64
			for i := 0; i < b.N; i++ {
				r := BenchCluster(context.Background(), "tbench", shape.nodes, shape.pods)
				if r.Err != nil {
					b.Fatal(r.Err)
				}
				up += r.Up.Seconds()
				down += r.Down.Seconds()
			}
			n := float64(b.N)
			b.ReportMetric(up/n, "s-up")
			b.ReportMetric(down/n, "s-down")
			b.ReportMetric(float64(shape.nodes*shape.pods)*n/up, "pods/s")
		})
	}
}
