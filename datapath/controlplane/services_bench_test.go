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

// BenchmarkServiceConnections measures TCP connections per second from a
// pod to a pod on another node (connect, one byte each way, close), through
// a ClusterIP and straight to the pod IP, interleaved in the same run, and
// reports both rates and their ratio.
func BenchmarkServiceConnections(b *testing.B) {
	e2e.Require(b, e2e.Root, e2e.BPFFS)
	const lab = "tsvcbench"
	ctx := context.Background()
	cp := New(lab, Options{AllowLocalhost: true})
	c, err := topo.NewCluster(topo.ClusterConfig{Lab: lab, Nodes: topo.DefaultNodes(1), Hooks: []topo.ClusterHook{cp}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cp.Close(); err != nil {
			b.Error(err)
		}
		if err := c.Down(); err != nil {
			b.Error(err)
		}
	})
	if err := c.Up(ctx, nil); err != nil {
		b.Fatal(err)
	}
	server, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "server", Node: "kind-worker", Labels: map[string]string{"app": "server"}})
	if err != nil {
		b.Fatal(err)
	}
	client, err := c.AddPod(ctx, topo.PodSpec{Namespace: "default", Name: "client", Node: "kind-control-plane", Labels: map[string]string{"app": "client"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.WaitLinksUp(ctx, c.Pods(), 5*time.Second); err != nil {
		b.Fatal(err)
	}
	var l net.Listener
	if err := topo.Do(server.NS, func() error {
		var err error
		l, err = net.Listen("tcp4", ":80")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var one [1]byte
				if _, err := conn.Read(one[:]); err == nil {
					_, _ = conn.Write(one[:])
				}
				_, _ = io.Copy(io.Discard, conn)
			}()
		}
	}()
	clusterIP := netip.MustParseAddr("10.96.200.1")
	if err := cp.UpsertService(Service{Namespace: "default", Name: "server", ClusterIP: clusterIP,
		Ports: []ServicePort{{Proto: 6, Port: 80, Backends: []Backend{{IP: server.IP, Port: 80, Node: "kind-worker"}}}}}); err != nil {
		b.Fatal(err)
	}
	once := func(dst netip.Addr) (time.Duration, error) {
		var d time.Duration
		err := topo.Do(client.NS, func() error {
			start := time.Now()
			conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(dst, 80).String(), time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			var one = [1]byte{'x'}
			if _, err := conn.Write(one[:]); err != nil {
				return err
			}
			if _, err := conn.Read(one[:]); err != nil {
				return err
			}
			d = time.Since(start)
			return nil
		})
		return d, err
	}
	// Warm up both paths (neighbours, conntrack of the first connection).
	for _, dst := range []netip.Addr{clusterIP, server.IP} {
		if _, err := once(dst); err != nil {
			b.Fatalf("warm-up to %v: %v", dst, err)
		}
	}
	var viaService, direct time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := once(clusterIP)
		if err != nil {
			b.Fatalf("connection %d through the ClusterIP: %v", i, err)
		}
		viaService += d
		if d, err = once(server.IP); err != nil {
			b.Fatalf("connection %d to the pod: %v", i, err)
		}
		direct += d
	}
	b.StopTimer()
	svcRate := float64(b.N) / viaService.Seconds()
	directRate := float64(b.N) / direct.Seconds()
	b.ReportMetric(svcRate, "clusterip-conns/s")
	b.ReportMetric(directRate, "direct-conns/s")
	b.ReportMetric(svcRate/directRate, "ratio")
}
