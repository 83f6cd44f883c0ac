package controlplane

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/podlab/podlab/topo"

	"github.com/podlab/podlab/internal/e2e"
)

// BenchmarkRequestResponse measures TCP request/response round trips (one
// byte each way on one connection) between pods on two nodes, through the
// BPF datapath (tracing every packet, and with Cilium's monitor
// aggregation) and, in the same run, with plain kernel routing
// (--datapath=none):
//
//	go test ./datapath/controlplane -run '^$' -bench RequestResponse -benchtime 20000x
func BenchmarkRequestResponse(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	for _, mode := range []string{"bpf", "bpf-aggregated", "none"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			var hooks []topo.ClusterHook
			var cp *ControlPlane
			if mode != "none" {
				cp = New("tbrr", Options{Attach: "netlink", MonitorAggregation: mode == "bpf-aggregated"})
				hooks = append(hooks, cp)
			}
			c, err := topo.NewCluster(topo.ClusterConfig{Lab: "tbrr", Nodes: topo.DefaultNodes(2), Hooks: hooks})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if cp != nil {
					_ = cp.Close()
				}
				_ = c.Down()
			}()
			if err := c.Up(ctx, nil); err != nil {
				b.Fatal(err)
			}
			src, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: "kind-worker", Labels: map[string]string{"app": "client"}})
			if err != nil {
				b.Fatal(err)
			}
			dst, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "server", Node: "kind-worker2", Labels: map[string]string{"app": "server"}})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.WaitLinksUp(ctx, []*topo.Pod{src, dst}, 5*time.Second); err != nil {
				b.Fatal(err)
			}
			var l net.Listener
			if err := topo.Do(dst.NS, func() error {
				var err error
				l, err = net.Listen("tcp4", ":7000")
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go func() {
				s, err := l.Accept()
				if err != nil {
					return
				}
				defer s.Close()
				_, _ = io.Copy(s, s)
			}()
			var conn net.Conn
			if err := topo.Do(src.NS, func() error {
				var err error
				conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(dst.IP, 7000).String(), 2*time.Second)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := []byte{'x'}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rr/s")
		})
	}
}
